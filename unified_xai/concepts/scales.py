"""Shared by ``uxai concepts`` and ``ux.report``: the layer CRAFT factorises by default, and each
concept's wavelet scale profile (WAM on the concept's coefficient)."""
from __future__ import annotations

import math

import torch

from ..core import hooks
from ..core.errors import LayerError
from ..core.registry import create
from .craft import NegativeActivationsError, nonnegative_layers

#: WAM settings of concept scale profiles (levels: at most this many, fewer when the input is small)
CONCEPT_WAVELET, CONCEPT_LEVELS = "haar", 3
CONCEPT_SCALE_PROFILE = "removal"  # the default scale answer of wam (docs/results.md: it holds on real photos)


def concept_layers(adapter) -> tuple[list[str], list[str]]:
    """(non-negative layers, those of them with a spatial grid), in execution order."""
    nonnegative = nonnegative_layers(adapter)
    shapes = {name: tuple(shape) for name, _, shape in adapter.layer_shapes()}
    spatial = [n for n in nonnegative if len(shapes.get(n, ())) >= 3 and math.prod(shapes[n][2:]) > 1]
    return nonnegative, spatial


def _listing(names: list[str], last: int = 8) -> str:
    shown = names[-last:]
    return (f"... ({len(names) - len(shown)} earlier), " if len(names) > len(shown) else "") + \
        ", ".join(repr(n) for n in shown)


def default_concept_layer(adapter, layer: str | None = None) -> tuple[str, str]:
    """The layer to factorise and how it was chosen (default: the last non-negative layer with a spatial
    grid); a layer CRAFT cannot use is refused with the ones it can."""
    if layer is not None:
        hooks.get_layer(adapter.model, layer)  # an unknown name lists the valid ones
    nonnegative, spatial = concept_layers(adapter)
    if layer is None:
        if not spatial:
            raise NegativeActivationsError(
                f"{adapter.name} has no non-negative layer with a spatial grid, which CRAFT's NMF needs"
                + (f"; non-negative layers without a grid: {_listing(nonnegative)} (give one with --layer)"
                   if nonnegative else " (e.g. after a ReLU)"))
        return spatial[-1], "the last non-negative layer with a spatial grid; --layer to change"
    if layer not in nonnegative and not dict((n, s) for n, _, s in adapter.layer_shapes()).get(layer):
        raise LayerError(f"layer {layer!r} was not called during the forward pass (or returns no tensor), so it "
                         f"has no activations to factorise; pick a layer the model calls: "
                         f"{_listing(spatial or nonnegative)}")
    if layer not in nonnegative:
        raise NegativeActivationsError(
            f"--layer {layer!r} has negative activations (or is the logits), but CRAFT factorises the activations"
            f" with NMF, which needs values >= 0; pick a layer after a ReLU: "
            + (_listing(spatial or nonnegative) if nonnegative else "this model has none"))
    return layer, "given with --layer"


def concept_scale_profiles(adapter, craft, x, class_id: int, levels: int, samples: int,
                           batch_size=None) -> tuple[torch.Tensor, list[str], list[int]]:
    """Per concept, WAM's scale shares on ``craft.objective(k)`` averaged over the inputs ``x`` that express
    the concept: ``(K, levels + 1)``, the level names, and per concept how many inputs express it (an
    input whose coefficient is 0 does not hold the concept, so has no profile; all zeros when none does)."""
    profiles, names, counts = [], [], []
    inputs = adapter.check_input(x)
    targets = torch.full((len(inputs),), int(class_id), device=inputs.device)
    for k in range(int(craft.concepts_.shape[0])):
        params = {"objective": craft.objective(k), "n_samples": samples, "wavelet": CONCEPT_WAVELET, "levels": levels,
                  "scale_profile": CONCEPT_SCALE_PROFILE}
        if isinstance(batch_size, int):
            params["batch_size"] = batch_size
        e = create("wam", adapter, **params).explain(inputs, targets=targets)
        shares = e.scales.float().cpu()
        with torch.no_grad(), adapter.evaluating():  # an input expresses the concept when its coefficient is > 0
            coefficient = adapter.objective_scores(inputs, params["objective"], targets)[0]
        present = (coefficient.cpu() > 0) & (shares.abs().sum(1) > 0)
        profiles.append(shares[present].mean(0) if present.any() else torch.zeros(shares.shape[1]))
        counts.append(int(present.sum()))
        names = list(e.level_names or [])
    return torch.stack(profiles), names, counts
