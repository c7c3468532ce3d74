"""lucent interop (optional extra: ``torch-lucent``, which needs ``kornia<=0.4.1``).

Two ways to mix MACO and lucent (Olah et al.'s Lucid for PyTorch):

* :func:`maco_param` is a lucent ``param_f``: MACO's phase-only image under the natural-image
  magnitude, to use inside ``lucent.optvis.render.render_vis`` with lucent's transforms and optimiser;
* :func:`lucent_objective` turns a lucent objective (``lucent.optvis.objectives``, with its algebra
  and extras such as ``diversity``) into an ``ux.objectives`` object whose activations come from the
  adapter's own hooks, for :func:`~unified_xai.featviz.maco` or any gradient explainer.

:func:`render_vis` runs lucent's ``render_vis`` on an adapter's model and leaves the model as it came:
lucent's ``hook_model`` hooks every module and never removes the hooks; here they are removed on exit,
and the model's mode and ``requires_grad`` are restored.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..core import hooks
from ..core.errors import ParameterError, UXAIError
from ..core.objectives import Objective
from .maco import _fraction_pair_range, _image_size, _objective, _view_size, render
from .spectrum import natural_spectrum

INSTALL_HINT = ("lucent is an optional extra: pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 &&"
                " pip install ipython decorator (lucent needs kornia<=0.4.1; its own metadata lists test tools)")


def _lucent():
    try:
        import lucent.optvis.objectives as lucent_objectives
        import lucent.optvis.render as lucent_render
        import lucent.optvis.transform as lucent_transform
    except ImportError as exc:
        raise UXAIError(f"lucent is not installed ({exc}); {INSTALL_HINT}") from None
    return lucent_objectives, lucent_render, lucent_transform


def lucent_name(layer: str) -> str:
    """lucent's name of a layer: the module path joined by underscores (``layer4.0.conv1`` -> ``layer4_0_conv1``)."""
    return layer.replace(".", "_")


def maco_param(adapter, image_size=None, spectrum=None, value_range=(0.0, 1.0), seed: int = 0):
    """A lucent ``param_f``: ``param_f()`` -> ``([phase], image_f)``, ``image_f()`` a ``(1, C, H, W)``
    MACO render (phase free, magnitude fixed to the natural-image spectrum) in ``value_range``."""
    size = _image_size(adapter, image_size)
    low, high = _fraction_pair_range(value_range)
    magnitude = natural_spectrum(adapter.channels, size, spectrum).to(device=adapter.device, dtype=adapter.dtype)

    def param_f():
        generator = torch.Generator().manual_seed(int(seed))
        phase = torch.randn(magnitude.shape, generator=generator).to(magnitude).requires_grad_(True)
        return [phase], lambda: render(phase, magnitude, size, (low, high))[None]

    return param_f


class LucentObjective(Objective):
    """A lucent objective evaluated on activations from the adapter's hooks.

    ``layers``: the layers the lucent objective reads, by the model's dotted names; inside it they are
    read by lucent's names (:func:`lucent_name`). lucent objectives are losses reduced over the batch;
    here each input is evaluated on its own (one score per input, the loss negated: higher is better).
    """

    def __init__(self, objective, layers: Sequence[str], name: str | None = None):
        if not callable(objective):
            raise ParameterError(f"lucent_objective: expected a lucent objective (callable on a hook), got"
                                 f" {type(objective).__name__}")
        if isinstance(layers, str) or not layers or not all(isinstance(n, str) and n for n in layers):
            raise ParameterError("lucent_objective: layers must list the dotted names of the layers the objective"
                                 " reads, e.g. ['layer4'] (`uxai info MODEL` lists them)")
        self.objective = objective
        self.layers = tuple(layers)
        self.name = name or getattr(objective, "description", None) or "lucent objective"

    def value(self, adapter, logits, acts, targets):
        by_lucent = {lucent_name(n): acts[n] for n in self.layers}
        by_lucent.update({n: acts[n] for n in self.layers})
        rows = next(iter(acts.values())).shape[0]
        scores = []
        for i in range(rows):
            def hook(name, i=i):
                if name not in by_lucent:
                    raise UXAIError(f"the lucent objective reads layer {name!r}, which is not among the layers"
                                    f" given to lucent_objective: {list(self.layers)}")
                return by_lucent[name][i:i + 1]
            scores.append(-self.objective(hook))
        return torch.stack([torch.as_tensor(s).reshape(()) for s in scores])

    def _identity(self) -> tuple:
        return (self.describe(), id(self.objective))

    def describe(self) -> str:
        return f"lucent({self.name})"


def lucent_objective(objective, layers: Sequence[str], name: str | None = None) -> LucentObjective:
    """An ``ux.objectives`` object from a lucent objective reading ``layers`` (see :class:`LucentObjective`)."""
    return LucentObjective(objective, layers, name)


def render_vis(adapter, objective, param_f=None, thresholds: Sequence[int] = (256,), transforms=None,
               optimizer=None, progress: bool = False, **kwargs):
    """lucent's ``render_vis`` on the adapter's model, leaving the model exactly as it came.

    ``objective``: a lucent objective (layers by lucent's names, e.g. ``"layer4_0_conv1"``) or any
    ``ux.objectives`` object (evaluated by the adapter's hooks; an int is a class logit).
    ``param_f``: default :func:`maco_param` (MACO inside lucent's loop). The adapter's preprocessing runs
    after lucent's transforms (so lucent's own ImageNet normalisation is off). Returns lucent's list of
    ``(1, H, W, C)`` arrays, one per threshold.
    """
    lucent_objectives, lucent_render, lucent_transform = _lucent()
    param_f = param_f or maco_param(adapter)
    transforms = list(lucent_transform.standard_transforms if transforms is None else transforms)
    if adapter.preprocess is not None:
        transforms.append(adapter.preprocess)
    captured: dict = {}
    watched: list = []
    if isinstance(objective, (Objective, int, str)) and not isinstance(objective, bool):
        ours = _objective(objective)
        ours.check(adapter)
        watched = [hooks.get_layer(adapter.model, n) for n in ours.layers]
        names = {id(m): n for n, m in zip(ours.layers, watched)}

        def keep(module, inputs, output):
            captured.setdefault(names.get(id(module), "logits"), hooks._first_tensor(output))

        def as_lucent(_hook):
            acts = {n: captured[n] for n in ours.layers}
            targets = torch.zeros(1, dtype=torch.long, device=adapter.device)
            value = ours.value(adapter, captured.get("logits"), acts, targets)
            captured.clear()
            return -value.mean()
        lucent_obj = lucent_objectives.Objective(as_lucent, description=ours.describe())
        watched = watched + [adapter.model]
    else:
        lucent_obj, keep = objective, None
    # lucent upsamples images under 224 px to 224 unless told the model's size
    kwargs.setdefault("fixed_image_size", _view_size(adapter, _image_size(adapter, None)))
    with adapter.evaluating(), adapter.frozen(), hooks.hooks_restored(adapter.model):
        if keep is not None:
            for module in watched:
                module.register_forward_hook(keep)  # removed with lucent's on leaving the block
        return lucent_render.render_vis(adapter.model, lucent_obj, param_f=param_f, optimizer=optimizer,
                                        transforms=transforms, thresholds=tuple(thresholds), preprocess=False,
                                        progress=progress, show_image=False, **kwargs)


__all__ = ["LucentObjective", "lucent_name", "lucent_objective", "maco_param", "render_vis"]
