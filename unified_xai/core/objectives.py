"""Objectives: the scalar per input that a method attributes (gradient explainers) or maximises (MACO).

One set of small composable objects, evaluated through the adapter's hooks:

* :class:`Logit` — a class logit; ``Logit()`` is the explained target of each input (the default);
* :class:`Channel` — the mean of one channel of a layer over its spatial positions;
* :class:`Neuron` — one channel of a layer at one spatial position (the centre by default);
* :class:`Direction` — the projection of a layer's spatially pooled activations on a vector,
  ``<a, v> * max(cos(a, v), 0.1) ** cossim_pow`` (``cossim_pow=0``: the plain dot product);
* ``ux.concepts.Concept`` — a CRAFT concept coefficient (defined with the concept banks).

They combine with ``+``, ``-`` and scalar weights: ``Logit() - 0.5 * Channel("layer4", 7)``.
Token layers of ViTs ``(B, N, D)`` are read as grids ``(B, D, h, w)`` of their patch tokens.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import torch

from .errors import LayerError, ParameterError


class Objective:
    """Base class: ``layers`` names the activations it reads, ``needs_logits`` whether it reads logits.

    ``value(adapter, logits, acts, targets)`` returns one score per input ``(B,)`` (differentiable);
    ``logits`` is None when no term needs them (the forward then stops at the last layer read).
    """

    layers: tuple[str, ...] = ()
    needs_logits: bool = False

    def value(self, adapter, logits: torch.Tensor | None, acts: dict[str, torch.Tensor],
              targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, adapter) -> None:
        """Validate layer names against the adapter's model (a wrong name lists the valid ones)."""
        from . import hooks

        for layer in self.layers:
            hooks.get_layer(adapter.model, layer)

    # ------------------------------------------------------------ algebra
    def terms(self) -> list[tuple[float, "Objective"]]:
        return [(1.0, self)]

    def __add__(self, other: "Objective") -> "Objective":
        if not isinstance(other, Objective):
            return NotImplemented
        return Combination(self.terms() + other.terms())

    def __sub__(self, other: "Objective") -> "Objective":
        if not isinstance(other, Objective):
            return NotImplemented
        return Combination(self.terms() + [(-w, o) for w, o in other.terms()])

    def __mul__(self, weight) -> "Objective":
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            return NotImplemented
        return Combination([(float(weight) * w, o) for w, o in self.terms()])

    __rmul__ = __mul__

    def __truediv__(self, weight) -> "Objective":
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or weight == 0:
            return NotImplemented
        return self * (1.0 / float(weight))

    def __neg__(self) -> "Objective":
        return self * -1.0

    def __repr__(self) -> str:
        return f"Objective({self.describe()})"

    def _identity(self) -> tuple:
        """What makes two objectives the same (the description, plus any data it does not show)."""
        return (self.describe(),)

    def __eq__(self, other) -> bool:
        return isinstance(other, Objective) and other._identity() == self._identity()

    def __hash__(self) -> int:
        return hash(self._identity())


class Combination(Objective):
    """A weighted sum of objectives (built by ``+``, ``-`` and ``*``)."""

    def __init__(self, terms: Sequence[tuple[float, Objective]]):
        self._terms = [(float(w), o) for w, o in terms]
        self.layers = tuple(dict.fromkeys(layer for _, o in self._terms for layer in o.layers))
        self.needs_logits = any(o.needs_logits for _, o in self._terms)

    def terms(self):
        return list(self._terms)

    def value(self, adapter, logits, acts, targets):
        return sum(w * o.value(adapter, logits, acts, targets) for w, o in self._terms)

    def check(self, adapter) -> None:
        for _, o in self._terms:
            o.check(adapter)

    def describe(self) -> str:
        text = ""
        for w, o in self._terms:
            sign = "-" if w < 0 else "+"
            weight = "" if abs(w) == 1 else f"{abs(w):g}*"
            text += (f"{'-' if w < 0 else ''}" if not text else f" {sign} ") + weight + o.describe()
        return text


class Logit(Objective):
    """The logit of a class: ``Logit()`` is each input's explained target; ``Logit(3)`` or
    ``Logit("espresso")`` a fixed class (by index or name)."""

    needs_logits = True

    def __init__(self, target: int | str | None = None):
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, str))):
            raise ParameterError(f"Logit: target must be None (each input's target), a class index or a class"
                                 f" name, got {target!r}")
        self.target = target

    def value(self, adapter, logits, acts, targets):
        if self.target is None:
            return logits.gather(1, targets.view(-1, 1)).squeeze(1)
        return logits[:, adapter.class_index(self.target, logits.shape[1])]

    def describe(self) -> str:
        return "logit(target)" if self.target is None else f"logit({self.target!r})"


def _grid(adapter, act: torch.Tensor) -> torch.Tensor:
    """Activations with channels on dim 1: ``(B, C, *grid)``; tokens ``(B, N, D)`` of an image model
    become ``(B, D, h, w)``; pooled features stay ``(B, D)``."""
    return adapter.as_grid(act) if act.ndim == 3 else act


def pooled_activations(adapter, act: torch.Tensor) -> torch.Tensor:
    """``(B, D)``: a layer's activations averaged over their spatial positions (patch tokens for ViTs).

    The one pooling of CRAFT's crops, the concept coefficient objective and :class:`Direction`.
    """
    grid = _grid(adapter, act)
    return grid.flatten(2).mean(2) if grid.ndim > 2 else grid


def _checked_channel(layer: str, grid: torch.Tensor, channel: int) -> None:
    if not 0 <= channel < grid.shape[1]:
        raise LayerError(f"channel {channel} does not exist in layer {layer!r}: it has {grid.shape[1]} channels"
                         f" (0 to {grid.shape[1] - 1}); `uxai info MODEL` lists layer shapes")


def _check_int(name: str, value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ParameterError(f"{name}: {what} must be a non-negative int, got {value!r}")
    return int(value)


def _check_layer_name(name: str, layer) -> str:
    if not isinstance(layer, str) or not layer:
        raise ParameterError(f"{name}: layer must be a layer name (e.g. 'layer4'; `uxai info MODEL` lists them),"
                             f" got {layer!r}")
    return layer


class Channel(Objective):
    """The mean over spatial positions of channel ``channel`` of ``layer``."""

    def __init__(self, layer: str, channel: int):
        self.layer = _check_layer_name("Channel", layer)
        self.channel = _check_int("Channel", channel, "channel")
        self.layers = (self.layer,)

    def value(self, adapter, logits, acts, targets):
        grid = _grid(adapter, acts[self.layer])
        _checked_channel(self.layer, grid, self.channel)
        selected = grid[:, self.channel]
        return selected.flatten(1).mean(1) if selected.ndim > 1 else selected

    def describe(self) -> str:
        return f"channel({self.layer}, {self.channel})"


class Neuron(Objective):
    """Channel ``channel`` of ``layer`` at one spatial ``position`` (a tuple; None = the centre)."""

    def __init__(self, layer: str, channel: int, position: Sequence[int] | None = None):
        self.layer = _check_layer_name("Neuron", layer)
        self.channel = _check_int("Neuron", channel, "channel")
        self.position = None if position is None else tuple(_check_int("Neuron", p, "position") for p in position)
        self.layers = (self.layer,)

    def value(self, adapter, logits, acts, targets):
        grid = _grid(adapter, acts[self.layer])
        _checked_channel(self.layer, grid, self.channel)
        spatial = tuple(grid.shape[2:])
        position = self.position if self.position is not None else tuple(s // 2 for s in spatial)
        if len(position) != len(spatial) or any(p >= s for p, s in zip(position, spatial)):
            raise LayerError(f"position {position} is outside layer {self.layer!r}, whose grid is {spatial}")
        return grid[(slice(None), self.channel) + position]

    def describe(self) -> str:
        where = "centre" if self.position is None else ",".join(map(str, self.position))
        return f"neuron({self.layer}, {self.channel}, {where})"


class Direction(Objective):
    """``<a, v> * max(cos(a, v), 0.1) ** cossim_pow`` of the pooled activations ``a`` of ``layer``.

    ``cossim_pow=0`` is the plain projection; MACO uses 2 for CRAFT concept vectors (Fel et al.).
    """

    def __init__(self, layer: str, vector, cossim_pow: float = 0.0, name: str | None = None):
        self.layer = _check_layer_name("Direction", layer)
        vector = torch.as_tensor(vector)
        if vector.ndim != 1 or not torch.is_floating_point(vector) or not torch.isfinite(vector).all():
            raise ParameterError(f"Direction: vector must be a finite 1-D float tensor (one value per channel),"
                                 f" got shape {tuple(vector.shape)}")
        if float(vector.norm()) == 0:
            raise ParameterError("Direction: vector is all zeros, so it defines no direction")
        if isinstance(cossim_pow, bool) or not isinstance(cossim_pow, numbers.Real) or cossim_pow < 0:
            raise ParameterError(f"Direction: cossim_pow must be a number >= 0, got {cossim_pow!r}")
        self.vector = vector.detach()
        self.cossim_pow = float(cossim_pow)
        self.name = name
        self.layers = (self.layer,)

    def value(self, adapter, logits, acts, targets):
        pooled = pooled_activations(adapter, acts[self.layer])
        if pooled.shape[1] != self.vector.shape[0]:
            raise LayerError(f"Direction: the vector has {self.vector.shape[0]} values but layer {self.layer!r}"
                             f" has {pooled.shape[1]} channels")
        v = self.vector.to(device=pooled.device, dtype=pooled.dtype)
        dot = pooled @ v
        if self.cossim_pow == 0:
            return dot
        cos = dot / (pooled.norm(dim=1) * v.norm()).clamp_min(1e-12)
        return dot * cos.clamp_min(0.1) ** self.cossim_pow

    def _identity(self) -> tuple:
        return (self.describe(), tuple(self.vector.tolist()))  # two vectors of one size read the same

    def describe(self) -> str:
        label = self.name or f"{self.vector.shape[0]}-d vector"
        power = f", cos^{self.cossim_pow:g}" if self.cossim_pow else ""
        return f"direction({self.layer}, {label}{power})"


def as_objective(value) -> Objective:
    """``None`` -> ``Logit()``; an int or class name -> ``Logit(value)``; an Objective as it is."""
    if value is None:
        return Logit()
    if isinstance(value, Objective):
        return value
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return Logit(value)
    raise ParameterError(f"objective must be None (the target logit), a class index or name, or an objective"
                         f" such as ux.objectives.Channel('layer4', 3); got {type(value).__name__}")


def check_objective(value) -> str | None:
    """A :class:`~unified_xai.core.registry.Param` check: None or an Objective."""
    if value is None or isinstance(value, Objective):
        return None
    return ("must be None (the target logit) or an objective, e.g. ux.objectives.Channel('layer4', 3),"
            " ux.objectives.Logit('espresso') or craft.objective(0); combine them with + - and weights")
