"""WAM, the Wavelet Attribution Method (Kasmi et al., ICML 2025), for 1D, 2D and 3D inputs.

The input is written as the inverse DWT of its coefficients, ``x = W^-1(z)``, and the target logit
is attributed to every coefficient ``z`` by gradients:

* ``gradient``:   d f(W^-1(z)) / dz at z = W(x);
* ``smoothgrad``: the mean of that gradient over ``n_samples`` noisy copies ``x + N(0, sigma^2)``,
  sigma = ``stdev_spread`` x the input's value range;
* ``integrated``: ``(z - z0) * integral_0^1 grad(z0 + a (z - z0)) da`` from baseline coefficients
  ``z0`` (zero by default), with a quadrature rule (Gauss-Legendre by default).

``attributions`` holds the signed per-coefficient values (one tensor per sub-band);
``scales`` the importance of every level (approximation first, finest last; see below),
``scale_maps`` the per-level maps of |attribution| on the input grid and ``where`` their sum.

What ``scales`` means is ``scale_profile`` (docs/results.md, "Does the scale answer hold?", measures
every profile against the level-removal reference on the ImageNet model and the planted models).
Every profile is reported as signed shares ``v_j / sum_k |v_k|`` (``sum |scales| = 1``; a negative
share is a level whose presence *lowers* the target score):

* ``"removal"`` (the default): ``v_j = f(x) - f(x without level j)``, the drop of the target score
  (or ``objective``) when level ``j`` alone is removed: its detail coefficients set to 0, or, for the
  approximation, each channel's approximation coefficients set to their mean (the input keeps its
  mean value), as :func:`unified_xai.metrics.deletion` with ``domain="scales"`` removes levels. Measured
  by ``levels + 2`` forward passes per input (no gradient), whatever the variant. It is the answer to
  "which scale does the decision depend on", by definition; when the levels are redundant (each alone
  can go, all together cannot: ``sum_j v_j`` much smaller than ``f(x) - f(every level removed)``)
  every ``v_j`` is small and ``"shapley"`` splits the joint effect better.
* ``"shapley"``: ``v_j`` = the exact Shapley value of level ``j`` in the game whose players are the
  levels and whose value is the score with a subset of levels kept (the others removed as above):
  the fair additive split of ``f(x) - f(every level removed)`` (the ``v_j`` sum to it), equal to
  ``"removal"`` when the model adds up its levels' effects. ``2**(levels + 1)`` forward passes.
* ``"contribution"``: the split WAM's own attributions give. For ``integrated``, ``v_j`` = the sum of
  the level's attributions, which by completeness add up to ``f(x) - f(baseline)`` (up to quadrature
  error); for ``gradient`` and ``smoothgrad``, ``v_j = sum_level g (z - z0)`` with ``g`` the
  (noise-averaged) coefficient gradient and ``z0`` the baseline's coefficients (zero by default), the
  first-order estimate of the same split. Exact for a model linear in the coefficients; on the
  ImageNet model the path integral and the first-order term miss the levels' interactions and the
  ranking of the levels agrees with removal at Spearman median 0.4 only.
* ``"magnitude"``: ``v_j = sum_level |a|`` (the default until issue 11; the mass of ``scale_maps``
  per level). It counts cancelling positive and negative evidence as importance and grows with a
  level's number of coefficients (the finest level holds 3/4 of an image's), so it leans to the finest
  level: on the ImageNet model it ranks the levels against removal (Spearman median -0.4 for
  ``gradient`` and ``smoothgrad``). Read it as "where the attribution mass sits", not "which scale
  the decision depends on".

``reference_compat=True`` keeps the official recipe's non-negative maps as attributions, so its
default profile is ``"magnitude"`` (the official per-level sum); ``"contribution"`` is refused there.

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

import math
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
#: what ``scales`` reports (see the module doc); "auto": "removal", or "magnitude" under reference_compat
SCALE_PROFILES = ("auto", "removal", "shapley", "contribution", "magnitude")
#: largest number of levels (approximation included) whose 2**n subsets the "shapley" profile evaluates
SHAPLEY_MAX_LEVELS = 8

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
    z_delta: Bands | None = None  # z - z0: the integrated gradients factor, and the contribution profile's
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
        sample (C, *spatial) or one per input (B, C, *spatial). Also ``z0`` of the ``"contribution"``
        scale profile of the gradient and smoothgrad variants.
    quadrature : integrated path rule: gausslegendre, riemann_left/right/middle/trapezoid.
    fast_path : "auto" uses the orthonormal identity when it is exact; True requires it; False never.
    reference_compat : reproduce the official code's recipe for the input's modality (see the module doc).
    scale_profile : what ``scales`` reports: ``"removal"`` (score drop when one level alone is removed,
        ``levels + 2`` forwards), ``"shapley"`` (Shapley values of the levels, ``2**(levels + 1)``
        forwards), ``"contribution"`` (the signed level sums of the attributions: each level's share of
        ``f(x) - f(baseline)``), ``"magnitude"`` (share of ``|attribution|``) or ``"auto"`` (the default:
        removal; magnitude under ``reference_compat``). See the module doc for when to trust each.
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
        "scale_profile": Param("auto", choices=SCALE_PROFILES),
        "seed": Param(0, types=(int,)),
        "objective": OBJECTIVE_PARAM,
        "batch_size": Param(None, types=(int,), low=1, allow_none=True),
    }

    def _check_config(self) -> None:
        c = self.config
        if c["scale_profile"] == "auto":  # resolved here, so explanation.params records the profile used
            c["scale_profile"] = "magnitude" if c["reference_compat"] else "removal"
        if c["variant"] == "integrated" and c["n_samples"] < 2:
            if c["reference_compat"]:
                raise ParameterError("wam: reference_compat integrates with the trapezoid rule over linspace(0, 1, "
                                     "n_samples), which needs n_samples >= 2; pass n_samples=2 or more (25 officially)")
            if c["quadrature"] == "riemann_trapezoid":
                raise ParameterError("wam: the trapezoid rule needs n_samples >= 2; pass n_samples=2 or more, or "
                                     "quadrature='gausslegendre', which works from one point")
        if c["scale_profile"] == "shapley" and c["levels"] + 1 > SHAPLEY_MAX_LEVELS:
            raise ParameterError(f"wam: scale_profile='shapley' evaluates all 2**{c['levels'] + 1} subsets of the "
                                 f"{c['levels'] + 1} levels; use levels <= {SHAPLEY_MAX_LEVELS - 1}, or "
                                 f"scale_profile='removal' ({c['levels'] + 2} forwards)")
        if c["reference_compat"] and c["scale_profile"] == "contribution":
            raise ParameterError("wam: scale_profile='contribution' needs signed attributions, and reference_compat "
                                 "keeps the official recipe's non-negative maps; use scale_profile='magnitude' "
                                 "(the official per-level sum, the default with reference_compat) or "
                                 "reference_compat=False")

    # ------------------------------------------------------------------ steps
    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        plan = self._plan(x)
        sums = self._accumulate(plan, x, targets)
        explanation = self._finish(plan, sums, tuple(x.shape[2:]))
        profile = self._profile()
        if profile in ("removal", "shapley"):
            explanation.scales = _shares(self._measured_profile(x, targets, profile))
        return explanation

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
        else:
            if variant == "smoothgrad":
                span = x.flatten(1).amax(1) - x.flatten(1).amin(1)
                plan.sigma = (c["stdev_spread"] * span).view(-1, *[1] * (x.ndim - 1))
                plan.noise = noise_samples(c["seed"], len(weights), x.shape[1:], x.device, x.dtype)
            if self._profile() == "contribution":  # g (z - z0) per level: one DWT of x (and of the baseline)
                z = (coeffs if coeffs is not None else self._dwt(x)).tensors()
                if c["baseline"] is None:
                    plan.z_delta = [t.detach().clone() for t in z]
                else:
                    base = self._dwt(expand_baseline(c["baseline"], x, self.name)).tensors()
                    plan.z_delta = [t - b for t, b in zip(z, base)]
        return plan

    def _profile(self) -> str:
        """The scale profile in force ("auto" was resolved by ``_check_config``)."""
        return self.config["scale_profile"]

    @torch.no_grad()
    def _measured_profile(self, x: torch.Tensor, targets: torch.Tensor, profile: str) -> torch.Tensor:
        """``(B, levels + 1)`` score changes of whole-level removals, measured by forward passes.

        A removed detail level has all its coefficients set to 0; the removed approximation has each
        channel's coefficients set to their mean (the input keeps its mean value), as the ``scales``
        domain of :func:`unified_xai.metrics.deletion`. ``removal``: ``f(x) - f(x without level j)``,
        ``levels + 2`` forwards; ``shapley``: the exact Shapley value of every level over the
        ``2**(levels + 1)`` subsets of levels kept (``f`` = the objective, by default the target logit).
        """
        coeffs = self._dwt(x)
        parts = coeffs.tensors()
        n = len(parts)
        nd = self.adapter.spatial_ndim
        gone = [parts[0].mean(dim=tuple(range(parts[0].ndim - nd, parts[0].ndim)), keepdim=True).expand_as(parts[0])]
        gone += [torch.zeros_like(t) for t in parts[1:]]
        if profile == "removal":
            kept = [tuple(range(n))] + [tuple(k for k in range(n) if k != j) for j in range(n)]
        else:
            kept = [tuple(k for k in range(n) if mask >> k & 1) for mask in range(2 ** n)]
        objective = self.config["objective"]
        chunk = self.adapter.chunk_size(x, "nograd", rows=len(kept) * x.shape[0])
        scores = []
        for subset in kept:
            rows = wavelets.idwt(coeffs.with_tensors([t if k in subset else g for k, (t, g) in
                                                      enumerate(zip(parts, gone))]))
            scores.append(torch.cat([self.adapter.objective_scores(rows[i:i + chunk], objective,
                                                                   targets[i:i + chunk])[0].detach()
                                     for i in range(0, len(rows), chunk)]))
        value = {subset: s.to(torch.float64) for subset, s in zip(kept, scores)}
        if profile == "removal":
            full = value[kept[0]]
            return torch.stack([full - value[subset] for subset in kept[1:]], 1).to(x.dtype)
        phi = []
        for j in range(n):
            total = torch.zeros_like(scores[0], dtype=torch.float64)
            for subset in kept:
                if j not in subset:
                    size = len(subset)
                    weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                    total += weight * (value[tuple(sorted(subset + (j,)))] - value[subset])
            phi.append(total)
        return torch.stack(phi, 1).to(x.dtype)

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
        return self._to_explanation(attributions, size, self._scales(plan, attributions))

    def _scales(self, plan: _Plan, attributions: wavelets.WaveletCoeffs) -> torch.Tensor | None:
        """``(B, levels + 1)`` scale profile (see the module doc), each row with ``sum |.| = 1`` (or all 0)."""
        profile = self._profile()
        if profile in ("removal", "shapley"):  # measured by forward passes in _explain
            return None
        if profile == "magnitude":
            values = wavelets.level_energy(attributions)
        elif plan.variant == "integrated":  # completeness: the level sums split f(x) - f(baseline)
            values = wavelets.level_totals(attributions, "signed")
        else:  # first order: g (z - z0)
            values = wavelets.level_totals(attributions.with_tensors(
                [g * d for g, d in zip(attributions.tensors(), plan.z_delta)]), "signed")
        return _shares(values)

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

    def _to_explanation(self, attributions: wavelets.WaveletCoeffs, size, scales: torch.Tensor | None) -> Explanation:
        magnitude = attributions.map(torch.abs)
        scale_maps = wavelets.level_maps(magnitude, size)
        names = attributions.level_names()
        return Explanation(
            where=scale_maps.sum(1), method=self.name, scales=scales, scale_maps=scale_maps,
            attributions=dict(zip(attributions.band_keys(), attributions.tensors())), level_names=names,
        )


def _shares(values: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum of ``|.|`` (signed shares; an all-zero row stays zero)."""
    return values / values.abs().sum(1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)


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
