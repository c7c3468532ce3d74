"""Gradient baselines for comparison with WAM, adapted from Captum through the registry.

``input_x_gradient``, ``integrated_gradients`` and ``gradcam`` call Captum's implementations on the
adapter's forward (preprocessing included). ``smoothgrad`` averages Captum's ``Saliency`` over
noisy copies drawn like WAM's (sigma = ``stdev_spread`` x each input's value range, noise seeded per
sample index) because Captum's NoiseTunnel takes one sigma for the whole batch and its noise
depends on the chunking. All outputs fill ``where``; the raw signed maps go to ``attributions``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import hooks
from ..core.batching import chunks, progress_bar, sample_blocks
from ..core.seeds import noise_samples
from ..core.explanation import Explanation
from ..core.registry import Param, register_explainer
from .base import Explainer, channel_sum
from .quadrature import RULES

_CAPTUM_RULES = {"gausslegendre": "gausslegendre", "riemann_left": "riemann_left", "riemann_right": "riemann_right",
                 "riemann_middle": "riemann_middle", "riemann_trapezoid": "riemann_trapezoid"}

_ABSOLUTE = Param(True, types=(bool,), doc="abs before the channel sum in `where`")
_BATCH = Param(None, types=(int,), low=1, allow_none=True, doc="perturbed samples per chunk")


class _CaptumExplainer(Explainer):
    """Runs a Captum attribution on the adapter's forward, chunked over inputs."""

    def _attribute_chunk(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _inputs_per_chunk(self) -> int:
        return self.batch_size

    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        out = []
        with progress_bar(x.shape[0], self.name, self.adapter.show_progress() and x.shape[0] > 1) as advance:
            for part in chunks(x.shape[0], self._inputs_per_chunk()):
                with self.adapter.frozen(), torch.enable_grad():
                    leaf = x[part].detach().requires_grad_(True)
                    out.append(self._attribute_chunk(leaf, targets[part]).detach())
                advance(part.stop - part.start)
        attr = torch.cat(out)
        # a method without an `absolute` parameter (Grad-CAM: one signed channel) keeps its sign
        absolute = self.config.get("absolute", False)
        return Explanation(where=channel_sum(attr, absolute), method=self.name, attributions=attr)


@register_explainer("input_x_gradient")
class InputXGradient(_CaptumExplainer):
    """Input times its gradient (Captum ``InputXGradient``)."""

    params = {"absolute": _ABSOLUTE, "batch_size": _BATCH}

    def _attribute_chunk(self, x, targets):
        from captum.attr import InputXGradient as CaptumIxG

        return CaptumIxG(self.adapter.forward).attribute(x, target=targets)


@register_explainer("integrated_gradients")
class IntegratedGradients(_CaptumExplainer):
    """Integrated Gradients in input space (Captum), from a baseline (zeros by default)."""

    params = {
        "n_steps": Param(50, types=(int,), low=1),
        "baseline": Param(0.0, types=(float, int, torch.Tensor)),
        "quadrature": Param("gausslegendre", choices=RULES),
        "absolute": _ABSOLUTE,
        "batch_size": _BATCH,
    }

    def _attribute_chunk(self, x, targets):
        from captum.attr import IntegratedGradients as CaptumIG

        baseline = self.config["baseline"]
        if isinstance(baseline, torch.Tensor):
            baseline = baseline.to(x.device, x.dtype).expand_as(x)
        else:
            baseline = float(baseline)
        # internal_batch_size counts perturbed samples, like our batch_size
        return CaptumIG(self.adapter.forward).attribute(
            x, baselines=baseline, target=targets, n_steps=self.config["n_steps"],
            method=_CAPTUM_RULES[self.config["quadrature"]], internal_batch_size=self.batch_size)

    def _inputs_per_chunk(self) -> int:
        return max(1, self.batch_size // self.config["n_steps"])


@register_explainer("smoothgrad")
class SmoothGrad(Explainer):
    """SmoothGrad (Smilkov et al., 2017): mean Captum ``Saliency`` gradient over noisy copies."""

    params = {
        "n_samples": Param(25, types=(int,), low=1),
        "stdev_spread": Param(0.15, types=(float, int), low=0.0),
        "absolute": _ABSOLUTE,
        "seed": Param(0, types=(int,)),
        "batch_size": _BATCH,
    }

    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        from captum.attr import Saliency

        saliency = Saliency(self.adapter.forward)
        n, batch = self.config["n_samples"], x.shape[0]
        sigma = self.config["stdev_spread"] * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
        acc = torch.zeros_like(x)
        noise = noise_samples(self.config["seed"], n, x.shape[1:], x.device, x.dtype)
        total = n * batch  # row = sample k * batch + input i, as in WAM: same noise for the same seed
        with progress_bar(total, self.name, self.adapter.show_progress()) as advance:
            for part in chunks(total, self.batch_size):
                blocks = list(sample_blocks(part.start, part.stop, batch))
                noisy = torch.cat([x[i0:i1] + noise[k]
                                   * sigma[i0:i1].view(-1, *[1] * (x.ndim - 1)) for k, i0, i1 in blocks])
                chunk_targets = torch.cat([targets[i0:i1] for _, i0, i1 in blocks])
                with self.adapter.frozen(), torch.enable_grad():
                    grads = saliency.attribute(noisy.requires_grad_(True), target=chunk_targets, abs=False).detach()
                offset = 0
                for _, i0, i1 in blocks:
                    acc[i0:i1] += grads[offset:offset + i1 - i0]
                    offset += i1 - i0
                advance(part.stop - part.start)
        attr = acc / n
        return Explanation(where=channel_sum(attr, self.config["absolute"]), method=self.name, attributions=attr)


@register_explainer("gradcam")
class GradCAM(_CaptumExplainer):
    """Grad-CAM (Selvaraju et al., 2017) at a named layer (Captum ``LayerGradCam``), upsampled to the input."""

    params = {
        "layer": Param(None, types=(str,), doc="dotted layer name, see `uxai info MODEL`"),
        "relu": Param(True, types=(bool,)),
        "batch_size": _BATCH,
    }

    def _check_config(self) -> None:
        if self.config["layer"] is None:
            raise ValueError(
                "gradcam: parameter 'layer' is required (a convolutional layer name, e.g. the last block);"
                f" layers: {', '.join(self.adapter.layer_names()[-8:])} ..."
            )
        self.module = hooks.get_layer(self.adapter.model, self.config["layer"])

    def _attribute_chunk(self, x, targets):
        from captum.attr import LayerGradCam

        cam = LayerGradCam(self.adapter.forward, self.module).attribute(
            x, target=targets, relu_attributions=self.config["relu"])
        if cam.ndim == 3 and self.adapter.spatial_ndim != 1:  # token layer (B, N, 1): lay out as a grid
            cam = hooks.tokens_to_grid(cam, hooks.prefix_token_count(self.adapter.model, cam.shape[1]))
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[self.adapter.spatial_ndim]
        return F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)
