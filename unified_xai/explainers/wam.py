"""WAM, the Wavelet Attribution Method (Kasmi et al., ICML 2025), for 1D, 2D and 3D inputs.

The input is written as the inverse DWT of its coefficients, ``x = W^-1(z)``, and the target logit
is attributed to every coefficient ``z`` by gradients:

* ``gradient``:   d f(W^-1(z)) / dz at z = W(x);
* ``smoothgrad``: the mean of that gradient over ``n_samples`` noisy copies ``x + N(0, sigma^2)``,
  sigma = ``stdev_spread`` x the input's value range;
* ``integrated``: ``(z - z0) * integral_0^1 grad(z0 + a (z - z0)) da`` from baseline coefficients
  ``z0`` (zero by default), with a quadrature rule (Gauss-Legendre by default).

``attributions`` holds the signed per-coefficient values (one tensor per sub-band);
``scales`` the share of |attribution| per level (approximation first, finest last),
``scale_maps`` the per-level maps on the input grid and ``where`` their sum.

When the transform is orthonormal (Haar at sizes divisible by 2**levels), ``W^-1 = W^T`` and the
coefficient gradient is the DWT of the input gradient: the fast path then needs no transform in the
backward pass and one DWT per batch instead of one per sample (``fast_path="auto"``).

``reference_compat=True`` reproduces the official code's post-processing for parity with the
paper's numbers: per sample, the gradient is averaged over channels, made absolute and each
sub-band divided by its max; SmoothGrad averages those maps, Integrated Gradients integrates them
with the trapezoid rule at unit spacing over ``linspace(0, 1, n)`` and multiplies by the equally
normalised |channel-mean coefficients|.
"""
from __future__ import annotations

import torch

from .. import wavelets
from ..core.batching import chunks, progress_bar, sample_blocks
from ..core.seeds import noise_samples
from ..core.explanation import Explanation
from ..core.registry import Param, register_explainer
from .base import WAVELET_PARAMS, Explainer, expand_baseline
from .quadrature import RULES, quadrature

VARIANTS = ("integrated", "smoothgrad", "gradient")


def _is_baseline(value):
    return None if isinstance(value, (torch.Tensor, float, int)) else "must be None, a number or a tensor"


@register_explainer("wam")
class WAM(Explainer):
    """Wavelet attribution: where (``where``), at what scale (``scales``, ``scale_maps``).

    Parameters
    ----------
    variant : "integrated" (default), "smoothgrad" or "gradient".
    n_samples : noisy copies (smoothgrad) or path points (integrated).
    wavelet, levels, mode : the DWT (any pywt wavelet that reconstructs exactly).
    stdev_spread : smoothgrad noise sigma as a fraction of each input's value range.
    baseline : integrated path start, in input space (None: zero coefficients).
    quadrature : integrated path rule: gausslegendre, riemann_left/right/middle/trapezoid.
    fast_path : "auto" uses the orthonormal identity when it is exact; True requires it; False never.
    reference_compat : reproduce the official code's abs / per-sub-band normalisation.
    seed : noise seed.  batch_size : perturbed samples per forward/backward chunk.
    """

    params = {
        "variant": Param("integrated", choices=VARIANTS),
        "n_samples": Param(25, types=(int,), low=1),
        **WAVELET_PARAMS,
        "stdev_spread": Param(0.15, types=(float, int), low=0.0),
        "baseline": Param(None, allow_none=True, check=_is_baseline),
        "quadrature": Param("gausslegendre", choices=RULES),
        "fast_path": Param("auto", choices=("auto", True, False)),
        "reference_compat": Param(False, types=(bool,)),
        "seed": Param(0, types=(int,)),
        "batch_size": Param(None, types=(int,), low=1, allow_none=True),
    }

    def _check_config(self) -> None:
        c = self.config
        if c["variant"] == "integrated" and c["quadrature"] == "riemann_trapezoid" and c["n_samples"] < 2:
            raise ValueError("wam: the trapezoid rule needs n_samples >= 2")

    # ------------------------------------------------------------------ helpers
    def _dwt(self, x: torch.Tensor) -> wavelets.WaveletCoeffs:
        c = self.config
        return wavelets.dwt(x, self.adapter.spatial_ndim, wavelet=c["wavelet"], levels=c["levels"], mode=c["mode"])

    def _use_fast_path(self, size) -> bool:
        c = self.config
        exact = wavelets.is_orthonormal(c["wavelet"], c["mode"], size, c["levels"])
        if c["fast_path"] is True and not exact:
            raise ValueError(
                f"wam: fast_path=True needs an orthonormal transform (haar at sizes divisible by "
                f"{2 ** c['levels']}); {c['wavelet']} on {tuple(size)} is not. Use fast_path='auto'."
            )
        return exact and c["fast_path"] != False  # noqa: E712  ("auto" or True)

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        base = self.config["baseline"]
        if base is None:
            return torch.zeros_like(x)
        return expand_baseline(base, x, self.name)

    def _coefficient_gradients(self, rows: torch.Tensor | list[torch.Tensor], targets: torch.Tensor,
                               template: wavelets.WaveletCoeffs, fast: bool) -> list[torch.Tensor]:
        """Gradient of the target logits w.r.t. every coefficient, for one chunk of rows.

        ``rows`` is a batch of inputs on the fast path, a list of coefficient tensors otherwise.
        """
        if fast:
            _, (grad_x,) = self.adapter.target_gradient(rows, targets)
            return self._dwt(grad_x).tensors()
        _, grads = self.adapter.target_gradient(
            rows, targets, transform=lambda *leaves: wavelets.idwt(template.with_tensors(list(leaves))))
        return list(grads)

    # ------------------------------------------------------------------ main
    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        c = self.config
        batch, size = x.shape[0], tuple(x.shape[2:])
        fast = self._use_fast_path(size)
        variant = c["variant"]
        n = 1 if variant == "gradient" else c["n_samples"]
        compat = c["reference_compat"]
        # the input's coefficients: for the autograd path, the IG factor (z - z0) and reference maps
        coeffs = self._dwt(x) if (not fast or variant == "integrated" or compat) else None

        if variant == "integrated":
            if compat:
                alphas = torch.linspace(0, 1, n, dtype=torch.float64)
                weights = torch.ones(n, dtype=torch.float64)
                if n > 1:
                    weights[0] = weights[-1] = 0.5  # np.trapz with unit spacing, as the reference
            else:
                alphas, weights = quadrature(c["quadrature"], n)
            base_x = self._baseline(x)
            base_z = self._dwt(base_x) if c["baseline"] is not None else coeffs.map(torch.zeros_like)
        else:
            alphas, weights = torch.zeros(n, dtype=torch.float64), torch.full((n,), 1.0 / n, dtype=torch.float64)
        sigma = c["stdev_spread"] * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
        sigma = sigma.view(-1, *[1] * (x.ndim - 1))
        noise = noise_samples(c["seed"], n, x.shape[1:], x.device, x.dtype) if variant == "smoothgrad" else None

        # accumulators: pixel space on the canonical fast path (one DWT at the end), else coefficients
        pixel_acc = torch.zeros_like(x) if fast and not compat else None
        coeff_acc = None
        if variant == "integrated":
            x_delta = x - base_x
            z_delta = [z - b for z, b in zip(coeffs.tensors(), base_z.tensors())]
        weights = weights.tolist()
        total_rows = n * batch  # row r = sample k * batch + input i: one sample's rows are contiguous
        with progress_bar(total_rows, f"wam ({variant})", self.adapter.show_progress()) as advance, \
                self.adapter.frozen():
            for part in chunks(total_rows, self.batch_size):
                segments = list(sample_blocks(part.start, part.stop, batch))
                if fast:  # build the chunk in place: no per-block temporaries
                    inputs = torch.empty(part.stop - part.start, *x.shape[1:], device=x.device, dtype=x.dtype)
                    offset = 0
                    for k, i0, i1 in segments:
                        out = inputs[offset:offset + i1 - i0]
                        if variant == "integrated":
                            torch.add(base_x[i0:i1], x_delta[i0:i1], alpha=float(alphas[k]), out=out)
                        elif variant == "smoothgrad":
                            torch.addcmul(x[i0:i1], noise[k], sigma[i0:i1], out=out)
                        else:
                            out.copy_(x[i0:i1])
                        offset += i1 - i0
                else:
                    pieces = []
                    for k, i0, i1 in segments:
                        if variant == "integrated":
                            a = float(alphas[k])
                            pieces.append([b[i0:i1] + a * d[i0:i1] for b, d in zip(base_z.tensors(), z_delta)])
                        elif variant == "smoothgrad":
                            noisy = torch.addcmul(x[i0:i1], noise[k], sigma[i0:i1])
                            pieces.append(self._dwt(noisy).tensors())
                        else:
                            pieces.append([t[i0:i1] for t in coeffs.tensors()])
                    inputs = [torch.cat(group) for group in zip(*pieces)]
                chunk_targets = torch.cat([targets[i0:i1] for _, i0, i1 in segments])

                if pixel_acc is not None:
                    _, grads = self.adapter.target_gradient(inputs, chunk_targets)
                    accumulators = [pixel_acc]
                else:
                    grads = self._coefficient_gradients(inputs, chunk_targets, coeffs, fast)
                    if compat:
                        grads = _compat_maps(grads)
                    if coeff_acc is None:
                        coeff_acc = [torch.zeros(batch, *g.shape[1:], device=x.device, dtype=x.dtype) for g in grads]
                    accumulators = coeff_acc
                offset = 0
                for k, i0, i1 in segments:
                    for acc, g in zip(accumulators, grads):
                        acc[i0:i1].add_(g[offset:offset + i1 - i0], alpha=weights[k])
                    offset += i1 - i0
                advance(part.stop - part.start)

        if pixel_acc is not None:
            gradients = self._dwt(pixel_acc)
        else:
            gradients = coeffs.with_tensors(coeff_acc)
        if variant == "integrated":
            if compat:
                scale = _compat_maps(coeffs.tensors())
                gradients = gradients.with_tensors([g * s for g, s in zip(gradients.tensors(), scale)])
            else:
                gradients = gradients.with_tensors(
                    [g * (z - b) for g, z, b in zip(gradients.tensors(), coeffs.tensors(), base_z.tensors())])
        return self._to_explanation(gradients, size)

    def _to_explanation(self, attributions: wavelets.WaveletCoeffs, size) -> Explanation:
        magnitude = attributions.map(torch.abs)
        energy = wavelets.level_energy(magnitude)
        scales = energy / energy.sum(1, keepdim=True).clamp_min(torch.finfo(energy.dtype).tiny)
        scale_maps = wavelets.level_maps(magnitude, size)
        names = attributions.level_names()
        return Explanation(
            where=scale_maps.sum(1), method=self.name, scales=scales, scale_maps=scale_maps,
            attributions=dict(zip(attributions.band_keys(), attributions.tensors())), level_names=names,
        )


def _compat_maps(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Official WAM post-processing per sample: channel mean, abs, each sub-band over its own max."""
    out = []
    for index, t in enumerate(tensors):
        m = t.mean(1, keepdim=True).abs()  # (N, 1, [O,] *s)
        if index == 0:  # approximation: one sub-band
            peak = m.flatten(1).amax(1).view(-1, *[1] * (m.ndim - 1))
        else:  # details: one max per orientation
            peak = m.flatten(3).amax(3) if m.ndim > 3 else m
            peak = peak.view(*peak.shape[:3], *[1] * (m.ndim - 3))
        out.append(m / peak.clamp_min(1e-12))
    return out
