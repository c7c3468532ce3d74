"""Gradient baselines, compared with WAM: Saliency, Input x Gradient, SmoothGrad, Integrated Gradients, Grad-CAM.

Every gradient comes from the adapter (``target_gradient``, ``layer_gradient``): eval mode,
frozen parameters, chunked rows. Perturbed copies are laid out sample-major (row = k * B + i) and
built in place, as in WAM, so an input's result never depends on the rest of its batch or the
chunk size. Captum computes the same quantities; the tests check agreement with it.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..core import hooks
from ..core.batching import chunks, progress_bar
from ..core.errors import ParameterError, UXAIError
from ..core.explanation import Explanation
from ..core.registry import Param, register_explainer
from ..core.seeds import noise_samples
from ..core.spatial import to_input_grid
from .base import OBJECTIVE_PARAM, Explainer, channel_sum, expand_baseline, sample_rows
from .quadrature import RULES, quadrature

_ABSOLUTE = Param(True, types=(bool,), doc="abs before the channel sum in `where`")
_BATCH = Param(None, types=(int,), low=1, allow_none=True, doc="perturbed rows per model call (default: the adapter's)")
_OBJECTIVE = OBJECTIVE_PARAM
_N_SAMPLES = "perturbed copies per input: noise draws (SmoothGrad) or path points (Integrated Gradients)"


class _GradientExplainer(Explainer):
    """Accumulates weighted input gradients over ``n`` perturbed copies of every input."""

    def weighted_gradients(self, x: torch.Tensor, targets: torch.Tensor, weights: Sequence[float],
                           build: Callable[[int, int, int, torch.Tensor], None]) -> torch.Tensor:
        """``sum_k weights[k] * grad f(row_k)`` per input, ``(B, C, *spatial)``.

        ``build(k, i0, i1, out)`` writes copy ``k`` of inputs ``i0:i1`` into ``out`` (in place).
        """
        (sums,) = self.weighted_sums(x, targets, weights, lambda segments, count: sample_rows(segments, count, x, build),
                                     lambda rows, t: list(self.adapter.target_gradient(
                                         rows, t, objective=self.config["objective"])[1]))
        return sums

    def gradients(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weighted_gradients(x, targets, [1.0], lambda k, i0, i1, out: out.copy_(x[i0:i1]))

    def _result(self, attr: torch.Tensor) -> Explanation:
        return Explanation(where=channel_sum(attr, self.config["absolute"]), method=self.name, attributions=attr)


@register_explainer("saliency")
class Saliency(_GradientExplainer):
    """Saliency (Simonyan et al., 2014): ``attributions`` = d logit_target / d x (signed, per channel);
    ``where`` = |grad| summed over channels. Cost: one forward + backward per input."""

    params = {"absolute": _ABSOLUTE, "objective": _OBJECTIVE, "batch_size": _BATCH}

    def _explain(self, x, targets):
        return self._result(self.gradients(x, targets))


@register_explainer("input_x_gradient")
class InputXGradient(_GradientExplainer):
    """Input times its gradient (Shrikumar et al., 2016). Cost: one forward + backward per input."""

    params = {"absolute": _ABSOLUTE, "objective": _OBJECTIVE, "batch_size": _BATCH}

    def _explain(self, x, targets):
        return self._result(x * self.gradients(x, targets))


@register_explainer("smoothgrad")
class SmoothGrad(_GradientExplainer):
    """SmoothGrad (Smilkov et al., 2017): the mean gradient over ``n_samples`` noisy copies
    ``x + sigma * noise_k``, sigma = ``stdev_spread`` x each input's value range; noise ``k`` is
    drawn from ``(seed, k)`` and shared by every input. Cost: ``n_samples`` forward + backward per input."""

    params = {
        "n_samples": Param(25, types=(int,), low=1, doc=_N_SAMPLES),
        "stdev_spread": Param(0.15, types=(float, int), low=0.0, doc="noise sigma as a fraction of each input's range"),
        "absolute": _ABSOLUTE,
        "seed": Param(0, types=(int,), doc="noise seed"),
        "objective": _OBJECTIVE,
        "batch_size": _BATCH,
    }

    def _explain(self, x, targets):
        n = self.config["n_samples"]
        sigma = self.config["stdev_spread"] * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
        sigma = sigma.view(-1, *[1] * (x.ndim - 1))
        noise = noise_samples(self.config["seed"], n, x.shape[1:], x.device, x.dtype)

        def build(k, i0, i1, out):
            torch.addcmul(x[i0:i1], noise[k], sigma[i0:i1], out=out)

        return self._result(self.weighted_gradients(x, targets, [1.0 / n] * n, build))


@register_explainer("integrated_gradients")
class IntegratedGradients(_GradientExplainer):
    """Integrated Gradients (Sundararajan et al., 2017) in input space:
    ``(x - x0) * integral_0^1 grad f(x0 + a (x - x0)) da`` with an ``n_samples``-point quadrature.
    Complete: the attributions sum to ``f(x) - f(x0)`` up to the quadrature error.
    ``baseline``: a number, one sample (C, *spatial) or one per input (B, C, *spatial).
    Cost: ``n_samples`` forward + backward per input."""

    params = {
        "n_samples": Param(50, types=(int,), low=1, doc=_N_SAMPLES),
        "baseline": Param(0.0, types=(float, int, torch.Tensor), doc="path start x0"),
        "quadrature": Param("gausslegendre", choices=RULES, doc="rule on [0, 1]"),
        "absolute": _ABSOLUTE,
        "objective": _OBJECTIVE,
        "batch_size": _BATCH,
    }
    aliases = {"n_steps": "n_samples"}

    def _check_config(self):
        quadrature(self.config["quadrature"], self.config["n_samples"])  # e.g. trapezoid needs 2 points

    def _explain(self, x, targets):
        alphas, weights = quadrature(self.config["quadrature"], self.config["n_samples"])
        base = expand_baseline(self.config["baseline"], x, self.name)
        delta = x - base

        def build(k, i0, i1, out):
            torch.add(base[i0:i1], delta[i0:i1], alpha=float(alphas[k]), out=out)

        return self._result(delta * self.weighted_gradients(x, targets, weights.tolist(), build))


@register_explainer("gradcam")
class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al., 2017): ``relu(sum_c mean(dlogit/dA_c) A_c)`` at a layer, resized to the input.

    ``layer``: a convolutional layer ``(B, C, *spatial)`` or a ViT token layer ``(B, N, D)`` (patch
    tokens laid out as a grid, class/register tokens dropped); for audio models, a ``(B, C, freq, time)``
    layer too (the CAM is averaged over frequency into a time curve). ``None`` picks the last spatial layer
    the target's gradient flows through before global pooling, and records it in the params.
    Cost: one forward + backward per input."""

    params = {
        "layer": Param(None, types=(str,), allow_none=True, doc="dotted layer name (`uxai info MODEL`); None: automatic"),
        "relu": Param(True, types=(bool,), doc="keep only positive evidence"),
        "objective": _OBJECTIVE,
        "batch_size": _BATCH,
    }

    def _check_config(self) -> None:
        if self.config["layer"] is not None:
            hooks.get_layer(self.adapter.model, self.config["layer"])  # a wrong name lists the valid ones

    def _explain(self, x, targets):
        if self.config["layer"] is None:
            self.config["layer"] = default_cam_layer(self.adapter, x[:1])
        layer = self.config["layer"]
        maps = []
        with progress_bar(x.shape[0], self.name, self.adapter.show_progress() and x.shape[0] > 1) as advance:
            for part in chunks(x.shape[0], self.chunk_size(x, x.shape[0])):
                acts, grads = self.adapter.layer_gradient(x[part], targets[part], layer,
                                                          objective=self.config["objective"])
                acts, grads = self._spatial(acts, layer), self._spatial(grads, layer)
                weights = grads.flatten(2).mean(2).view(*grads.shape[:2], *[1] * (grads.ndim - 2))
                cam = (weights * acts).sum(1, keepdim=True)
                maps.append(cam.relu() if self.config["relu"] else cam)
                advance(part.stop - part.start)
        # an audio model's (frequency, time) map becomes a time curve
        cam = to_input_grid(torch.cat(maps), x.shape[2:], self.name)
        return Explanation(where=cam[:, 0], method=self.name, attributions=cam)

    def _spatial(self, act: torch.Tensor, layer: str) -> torch.Tensor:
        grid = self.adapter.as_grid(act)
        spectrogram = self.adapter.spatial_ndim == 1 and grid.ndim == 4  # audio models' (freq, time) maps
        if grid.ndim != 2 + self.adapter.spatial_ndim and not spectrogram:
            raise ParameterError(
                f"gradcam: layer {layer!r} outputs {tuple(act.shape)}, which has no spatial grid; Grad-CAM needs a"
                f" convolutional layer (B, C, *spatial) or a token layer (B, N, D). Leave layer=None to pick the"
                f" last spatial layer, or see `uxai info MODEL`")
        return grid


def default_cam_layer(adapter, x: torch.Tensor) -> str:
    """The last layer (in execution order) with a spatial output of more than one cell through which
    the gradient of the predicted logit flows: the input of the global pooling in a CNN, inside the
    last attention block in a ViT whose head reads the class token."""
    outputs: dict[str, torch.Tensor] = {}
    names = {id(m): n for n, m in adapter.model.named_modules() if n}

    def hook(module, inputs, output):
        name = names.get(id(module))
        if name is None or name in outputs:
            return
        try:
            out = hooks._first_tensor(output)
        except Exception:
            return
        if out.requires_grad:
            try:
                grid = adapter.as_grid(out) if out.ndim == 3 else out
            except UXAIError:  # a token sequence that is not a grid of patches
                return
            if _is_feature_grid(grid.shape[2:], x.shape[2:]):
                out.retain_grad()
                outputs[name] = out

    modules = [m for n, m in adapter.model.named_modules() if n]
    with adapter.evaluating(), adapter.frozen(), torch.enable_grad(), hooks.forward_hooks(modules, hook):
        leaf = x.detach().clone().requires_grad_(True)
        logits = adapter.forward(leaf)
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    if not outputs:
        raise ParameterError("gradcam: the model has no layer with a spatial output; pass layer=... (`uxai info MODEL`)")
    for name in reversed(list(outputs)):
        grad = outputs[name].grad
        # on the grid: a ViT head reading only the class token sends no gradient to later patch tokens
        if grad is not None and adapter.as_grid(grad).abs().sum() > 0:
            return name
    return list(outputs)[-1]  # no gradient anywhere (e.g. a flat input): the last spatial layer


def _is_feature_grid(grid: tuple, size: tuple) -> bool:
    """A feature map over the input: as many spatial dims, more than one cell, and one stride for every
    axis (so attention tensors such as (heads, tokens, dim) are not mistaken for a grid). For a signal,
    (frequency, time) maps count too: their last axis is time."""
    if len(size) == 1 and len(grid) == 2:
        return grid[-1] > 1 and grid[-1] <= size[0]
    if len(grid) != len(size) or max(grid) <= 1 or any(g > s for g, s in zip(grid, size)):
        return False
    strides = [s / g for g, s in zip(grid, size)]
    return max(strides) / min(strides) <= 1.5
