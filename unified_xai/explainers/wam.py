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

``reference_compat=True`` reproduces the official code's recipe of the input's modality, for parity
with the paper's numbers. Each per-sample coefficient gradient ``g`` becomes a map ``M(g)``:

* 1D (``lib/wam_1D.py``): ``M(g) = g``, signed, per channel;
* 2D (``lib/wam_2D.py``): mean over channels, ``|.|``, each sub-band divided by its max (per input);
* 3D (``lib/wam_3D.py``): ``M(g) = |g|`` per coefficient, no normalisation.

SmoothGrad averages the maps; Integrated Gradients integrates the maps over ``linspace(0, 1, n)``
with the trapezoid rule at unit spacing (``quadrature`` is ignored) and multiplies by ``M(z - z0)``.
docs/design-notes.md lists what still differs from the official code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import wavelets
from ..core.errors import ParameterError
from ..core.explanation import Explanation
from ..core.registry import Param, register_explainer
from ..core.seeds import noise_samples
from .base import OBJECTIVE_PARAM, WAVELET_PARAMS, Explainer, expand_baseline, sample_rows
from .quadrature import RULES, quadrature

VARIANTS = ("integrated", "smoothgrad", "gradient")

Bands = list  # [approx, level J, ..., level 1] tensors, as WaveletCoeffs.tensors()


def _is_baseline(value):
    if isinstance(value, (torch.Tensor, float, int)):
        return None
    return "must be None, a number, one sample (C, *spatial) or one per input (B, C, *spatial) as a tensor"


@dataclass
class _Plan:
    """What the chunk loop needs, decided once per call (see :meth:`WAM._plan`)."""

    variant: str
    fast: bool  # coefficient gradients = DWT of input gradients (orthonormal transform)
    in_pixels: bool  # accumulate input gradients and transform the sum once at the end
    row_map: Callable[[Bands], Bands] | None  # per-row map of coefficient gradients (reference_compat)
    alphas: list[float]  # path point of sample k (integrated)
    weights: list[float]  # weight of sample k in the sum
    coeffs: wavelets.WaveletCoeffs | None  # W(x): the autograd path's template
    start: Bands | None = None  # integrated path start and step, in the space rows are built in
    delta: Bands | None = None
    z_delta: Bands | None = None  # z - z0, the integrated gradients factor
    noise: torch.Tensor | None = None  # (n, C, *spatial), sample k shared by every input
    sigma: torch.Tensor | None = None  # (B, 1, ...) noise scale per input


@register_explainer("wam")
class WAM(Explainer):
    """Wavelet attribution: where (``where``), at what scale (``scales``, ``scale_maps``).

    Parameters
    ----------
    variant : "integrated" (default), "smoothgrad" or "gradient".
    n_samples : noisy copies (smoothgrad) or path points (integrated).
    wavelet, levels, mode : the DWT (any pywt wavelet that reconstructs exactly).
    stdev_spread : smoothgrad noise sigma as a fraction of each input's value range.
    baseline : integrated path start, in input space (None: zero coefficients); a number, one
        sample (C, *spatial) or one per input (B, C, *spatial).
    quadrature : integrated path rule: gausslegendre, riemann_left/right/middle/trapezoid.
    fast_path : "auto" uses the orthonormal identity when it is exact; True requires it; False never.
    reference_compat : reproduce the official code's recipe for the input's modality (see the module doc).
    objective : what to attribute (None: the target logit); e.g. ``craft.objective(k)`` gives the
        wavelet scale profile of CRAFT concept ``k`` in this input.
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
        "objective": OBJECTIVE_PARAM,
        "batch_size": Param(None, types=(int,), low=1, allow_none=True),
    }

    def _check_config(self) -> None:
        c = self.config
        if c["variant"] == "integrated" and c["n_samples"] < 2:
            if c["reference_compat"]:
                raise ParameterError("wam: reference_compat integrates with the trapezoid rule over linspace(0, 1, "
                                     "n_samples), which needs n_samples >= 2; pass n_samples=2 or more (25 officially)")
            if c["quadrature"] == "riemann_trapezoid":
                raise ParameterError("wam: the trapezoid rule needs n_samples >= 2; pass n_samples=2 or more, or "
                                     "quadrature='gausslegendre', which works from one point")

    # ------------------------------------------------------------------ steps
    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        plan = self._plan(x)
        sums = self._accumulate(plan, x, targets)
        return self._finish(plan, sums, tuple(x.shape[2:]))

    def _plan(self, x: torch.Tensor) -> _Plan:
        """Fast path or autograd, accumulation space, path and weights, noise: everything but the loop."""
        c = self.config
        variant = c["variant"]
        fast = self._use_fast_path(tuple(x.shape[2:]))
        row_map = _REFERENCE_MAPS[self.adapter.spatial_ndim] if c["reference_compat"] else None
        alphas, weights = self._path_and_weights()
        coeffs = self._dwt(x) if not fast or variant == "integrated" else None
        plan = _Plan(variant, fast, in_pixels=fast and row_map is None, row_map=row_map, alphas=alphas,
                     weights=weights, coeffs=coeffs)
        if variant == "integrated":
            base_x = torch.zeros_like(x) if c["baseline"] is None else expand_baseline(c["baseline"], x, self.name)
            base_z = coeffs.map(torch.zeros_like) if c["baseline"] is None else self._dwt(base_x)
            plan.z_delta = [z - b for z, b in zip(coeffs.tensors(), base_z.tensors())]
            plan.start, plan.delta = ([base_x], [x - base_x]) if fast else (base_z.tensors(), plan.z_delta)
        elif variant == "smoothgrad":
            span = x.flatten(1).amax(1) - x.flatten(1).amin(1)
            plan.sigma = (c["stdev_spread"] * span).view(-1, *[1] * (x.ndim - 1))
            plan.noise = noise_samples(c["seed"], len(weights), x.shape[1:], x.device, x.dtype)
        return plan

    def _path_and_weights(self) -> tuple[list[float], list[float]]:
        """Path point ``alpha_k`` and weight of every sample ``k`` (alphas only matter for integrated)."""
        c = self.config
        n = c["n_samples"]
        if c["variant"] == "gradient":
            return [0.0], [1.0]
        if c["variant"] == "smoothgrad":
            return [0.0] * n, [1.0 / n] * n
        if c["reference_compat"]:  # np.trapz over linspace(0, 1, n) with unit spacing, as the official code
            return torch.linspace(0, 1, n, dtype=torch.float64).tolist(), [0.5] + [1.0] * (n - 2) + [0.5]
        alphas, weights = quadrature(c["quadrature"], n)
        return alphas.tolist(), weights.tolist()

    def _accumulate(self, plan: _Plan, x: torch.Tensor, targets: torch.Tensor) -> Bands:
        """Weighted sums per input over the shared chunk loop (rows ``k * B + i``: sample k of input i)."""
        return self.weighted_sums(x, targets, plan.weights, lambda segments, count: self._rows(plan, x, segments, count),
                                  lambda rows, chunk_targets: self._gradients(plan, rows, chunk_targets))

    def _rows(self, plan: _Plan, x: torch.Tensor, segments, count: int) -> torch.Tensor | Bands:
        """The perturbed rows of one chunk, written in place: inputs on the fast path, else coefficients."""
        if plan.variant == "integrated":
            rows = [sample_rows(segments, count, s, lambda k, i0, i1, out, s=s, d=d: torch.add(
                s[i0:i1], d[i0:i1], alpha=plan.alphas[k], out=out)) for s, d in zip(plan.start, plan.delta)]
            return rows[0] if plan.fast else rows
        if plan.variant == "smoothgrad":
            rows = sample_rows(segments, count, x, lambda k, i0, i1, out: torch.addcmul(
                x[i0:i1], plan.noise[k], plan.sigma[i0:i1], out=out))
        else:
            rows = sample_rows(segments, count, x, lambda k, i0, i1, out: out.copy_(x[i0:i1]))
        return rows if plan.fast else self._dwt(rows).tensors()

    def _gradients(self, plan: _Plan, rows, targets: torch.Tensor) -> Bands:
        """Per-row gradients of the target logits: of the input when accumulating in pixels, else of
        every coefficient (mapped by the reference recipe under ``reference_compat``)."""
        objective = self.config["objective"]
        if plan.in_pixels:
            _, grads = self.adapter.target_gradient(rows, targets, objective=objective)
            return list(grads)
        if plan.fast:
            _, (grad_x,) = self.adapter.target_gradient(rows, targets, objective=objective)
            grads = self._dwt(grad_x).tensors()
        else:
            _, grads = self.adapter.target_gradient(
                rows, targets, transform=lambda *leaves: wavelets.idwt(plan.coeffs.with_tensors(list(leaves))),
                objective=objective)
        return plan.row_map(list(grads)) if plan.row_map is not None else list(grads)

    def _finish(self, plan: _Plan, sums: Bands, size) -> Explanation:
        """Coefficient attributions from the weighted sums: DWT of pixel sums, integrated gradients factor."""
        c = self.config
        bands = self._dwt(sums[0]).tensors() if plan.in_pixels else sums
        if plan.variant == "integrated":
            factor = plan.row_map(plan.z_delta) if plan.row_map is not None else plan.z_delta
            bands = [g * f for g, f in zip(bands, factor)]
        attributions = wavelets.WaveletCoeffs(bands[0], bands[1:], size, c["wavelet"], c["mode"],
                                              self.adapter.spatial_ndim)
        return self._to_explanation(attributions, size)

    # ------------------------------------------------------------------ helpers
    def _dwt(self, x: torch.Tensor) -> wavelets.WaveletCoeffs:
        c = self.config
        return wavelets.dwt(x, self.adapter.spatial_ndim, wavelet=c["wavelet"], levels=c["levels"], mode=c["mode"])

    def _use_fast_path(self, size) -> bool:
        c = self.config
        exact = wavelets.is_orthonormal(c["wavelet"], c["mode"], size, c["levels"])
        if c["fast_path"] is True and not exact:
            raise ParameterError(
                f"wam: fast_path=True needs an orthonormal transform (haar at sizes divisible by "
                f"{2 ** c['levels']}); {c['wavelet']} on {tuple(size)} is not. Use fast_path='auto' (or False) to "
                f"differentiate through the inverse transform, or wavelet='haar' with levels such that 2**levels "
                f"divides every spatial size.")
        return exact and c["fast_path"] != False  # noqa: E712  ("auto" or True)

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


def _channel_mean_abs_normalised(bands: Bands) -> Bands:
    """2D recipe: per input, channel mean (signed), |.|, each sub-band divided by its own max."""
    out = []
    for index, t in enumerate(bands):
        m = t.mean(1, keepdim=True).abs()  # (N, 1, [O,] *s)
        keep = 1 if index == 0 else 3  # the approximation is one sub-band; details (N, 1, O, *s) one per orientation
        peak = m.flatten(keep).amax(-1).view(*m.shape[:keep], *[1] * (m.ndim - keep))
        out.append(m / peak.clamp_min(1e-12))  # an all-zero band stays zero (the official code's nan -> 0)
    return out


def _absolute(bands: Bands) -> Bands:
    """3D recipe: |.| of every coefficient (per channel), no normalisation."""
    return [t.abs() for t in bands]


#: per-sample map of the official recipe per number of spatial dims; None = identity (1D keeps the signed
#: gradient, so it is linear and the fast path may still accumulate input gradients)
_REFERENCE_MAPS: dict[int, Callable[[Bands], Bands] | None] = {1: None, 2: _channel_mean_abs_normalised, 3: _absolute}
