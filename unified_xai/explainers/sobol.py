"""Sobol attribution (Fel et al., NeurIPS 2021) and its wavelet form WCAM (Kasmi et al., 2023).

Both are black-box: random masks from a replicated quasi-Monte Carlo design perturb the input, the
model scores every perturbed copy (``torch.no_grad``, chunks of ``batch_size`` perturbed samples) and
the total-order Sobol index of each mask variable measures how much the target logit depends on it,
interactions included. The design and the estimators come from :mod:`unified_xai.sampling`.

* ``sobol``: one variable per cell of a grid over the input (1D, 2D or 3D). Masks are upsampled with
  nearest neighbours; the index map is resized smoothly (linear / bicubic / trilinear) into ``where``.
  Perturbations, applied in the adapter's input space (before its ``preprocess``):
  ``inpainting``: ``x' = M x + (1 - M) x0`` toward a baseline ``x0`` (default 0);
  ``blur``:       the same toward a box-blurred copy of ``x``;
  ``amplitude``:  ``x' = x + sigma (M - 0.5)``, an additive amplitude change of at most +-sigma/2
  (the reference code multiplies, ``x (M - 0.5) sigma``, which its docstring contradicts; the
  additive form keeps the sign and scale of the input).
* ``sobol_wavelet``: one variable per (wavelet level, region): the mask multiplies every coefficient
  of that level (all orientations and channels) in that region of the sub-band, and the model sees
  the inverse DWT. The indices give a black-box ``scales`` (share per level), ``scale_maps`` (per-level
  index maps on the input grid) and ``where`` (their sum), in the same fields as WAM.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .. import sampling, wavelets
from ..core.batching import chunks, progress_bar
from ..core.errors import ParameterError
from ..core.explanation import Explanation
from ..core.registry import Param, register_explainer
from .base import WAVELET_PARAMS, Explainer, expand_baseline, resize

PERTURBATIONS = ("inpainting", "blur", "amplitude")


def _grid_ok(value):
    if isinstance(value, int):
        return None if value >= 1 else "must be >= 1"
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) and v >= 1 for v in value):
        return None
    return "must be a positive int or a tuple of positive ints (one per spatial dim)"


def _baseline_ok(value):
    return None if isinstance(value, (int, float, torch.Tensor)) else "must be a number or a tensor"


_COMMON = {
    "n_designs": Param(32, types=(int,), low=2, doc="N; cost N (d + 2) forwards per input; a power of two for sobol"),
    "sampler": Param("sobol", choices=tuple(sampling.SAMPLERS), doc="quasi-Monte Carlo design of the masks"),
    "estimator": Param("jansen", choices=tuple(sampling.ESTIMATORS), doc="total-order Sobol estimator"),
    "seed": Param(0, types=(int,), doc="seed of the design (scrambling)"),
    "batch_size": Param(None, types=(int,), low=1, allow_none=True, doc="perturbed samples per forward"),
}


class _SobolExplainer(Explainer):
    """Shared loop: design rows -> perturbed batch -> target scores -> Sobol indices."""

    pass_kind = "nograd"

    def _check_config(self) -> None:
        # the sampler's own checks (e.g. a power of two for sobol), up front rather than at explain time
        sampling.get_sampler(self.config["sampler"]).check(self.config["n_designs"], 1)

    def _indices(self, d: int, perturb: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
                 design: sampling.ReplicatedDesign, label: str, chunk: int) -> torch.Tensor:
        """Total indices (d,) of the target logit over the design; ``perturb`` maps masks (n, d) to inputs."""
        total = len(design)
        # scores in the model's dtype, so the constant-output check uses its precision
        scores = torch.empty(total, device=self.adapter.device, dtype=self.adapter.dtype)
        with progress_bar(total, label, self.adapter.show_progress()) as advance, torch.no_grad():
            for part in chunks(total, chunk):
                batch = perturb(design.rows(part.start, part.stop))
                scores[part] = self.adapter.scores(batch, target.expand(part.stop - part.start))
                advance(part.stop - part.start)
        return sampling.estimate(scores, d, design.n_designs, self.config["estimator"], self.config["sampler"]).total

    def _design(self, d: int) -> sampling.ReplicatedDesign:
        c = self.config
        return sampling.ReplicatedDesign.generate(d, c["n_designs"], c["sampler"], c["seed"],
                                                  device=self.adapter.device)


@register_explainer("sobol")
class SobolAttribution(_SobolExplainer):
    """Total Sobol indices of grid regions: where the model looks, black-box.

    Parameters
    ----------
    grid_size : cells per spatial axis (int, or one per axis).
    n_designs : N; cost is ``N (d + 2)`` forwards per input, d = number of cells.
    perturbation : "inpainting" (toward ``baseline``), "blur" (toward a box blur of width
        ``blur_size``) or "amplitude" (``x + amplitude_sigma (M - 0.5)``).
    sampler, estimator, seed, batch_size : see :mod:`unified_xai.sampling`.
    """

    params = {
        "grid_size": Param(8, check=_grid_ok, doc="cells per spatial axis (int, or one per axis)"),
        "perturbation": Param("inpainting", choices=PERTURBATIONS, doc="what a masked-out cell becomes"),
        "baseline": Param(0.0, check=_baseline_ok,
                          doc="inpainting target: a number, one sample (C, *spatial) or one per input"),
        "blur_size": Param(9, types=(int,), low=1, doc="box-blur width of the blur perturbation"),
        "amplitude_sigma": Param(1.0, types=(float, int), low=0.0, doc="amplitude perturbation: x + sigma (M - 0.5)"),
        **_COMMON,
    }

    def _grid(self, size) -> tuple[int, ...]:
        grid = self.config["grid_size"]
        grid = (grid,) * len(size) if isinstance(grid, int) else tuple(grid)
        if len(grid) != len(size):
            raise ParameterError(f"sobol: grid_size {grid} needs one entry per spatial dim of the inputs {tuple(size)}")
        if any(g > s for g, s in zip(grid, size)):
            raise ParameterError(f"sobol: grid_size {grid} has more cells than the inputs {tuple(size)} have positions;"
                                 f" use at most {tuple(size)}")
        return grid

    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        size = tuple(x.shape[2:])
        grid = self._grid(size)
        d = math.prod(grid)
        design = self._design(d)
        c = self.config
        references = self._reference(x)
        chunk = self.chunk_size(x, len(design))
        maps = []
        for i in range(x.shape[0]):
            xi, x0 = x[i : i + 1], references[i : i + 1]
            delta = xi - x0  # x' = x0 + M (x - x0): one fused op per chunk

            def perturb(masks: torch.Tensor, xi=xi, x0=x0, delta=delta) -> torch.Tensor:
                m = resize(masks.to(xi.dtype).view(-1, 1, *grid), size, "nearest")
                if c["perturbation"] == "amplitude":
                    return torch.add(xi, m - 0.5, alpha=c["amplitude_sigma"])
                return torch.addcmul(x0, m, delta)

            st = self._indices(d, perturb, targets[i], design, f"sobol {i + 1}/{x.shape[0]}", chunk)
            maps.append(st.to(x.dtype).view(1, 1, *grid))
        grids = torch.cat(maps)
        where = resize(grids, size)[:, 0]
        return Explanation(where=where, method=self.name, attributions=grids[:, 0])

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """What a masked-out cell becomes, ``(B, C, *spatial)``: the baseline or a blurred copy."""
        c = self.config
        if c["perturbation"] == "blur":
            k = c["blur_size"]
            if k > min(x.shape[2:]):
                raise ParameterError(f"sobol: blur_size {k} exceeds the input size {tuple(x.shape[2:])}; use a smaller one")
            pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[x.ndim - 2]
            pad = [p for _ in range(x.ndim - 2) for p in (k // 2, (k - 1) // 2)]
            return pool(F.pad(x, pad, mode="replicate"), kernel_size=k, stride=1)
        return expand_baseline(c["baseline"], x, self.name)


@register_explainer("sobol_wavelet")
class WaveletSobol(_SobolExplainer):
    """WCAM: total Sobol indices of (wavelet level, region) masks: what scale and where, black-box.

    Parameters
    ----------
    grid_size : regions per axis within each level's sub-band (clipped to the sub-band size).
    wavelet, levels, mode : the DWT.
    n_designs, sampler, estimator, seed, batch_size : see :mod:`unified_xai.sampling`.
    """

    params = {
        "grid_size": Param(4, types=(int,), low=1, doc="regions per axis in each level's sub-band (clipped to it)"),
        **WAVELET_PARAMS,
        **_COMMON,
    }

    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        c = self.config
        size = tuple(x.shape[2:])
        coeffs = wavelets.dwt(x, self.adapter.spatial_ndim, c["wavelet"], c["levels"], c["mode"])
        level_grids = [tuple(min(c["grid_size"], s) for s in t.shape[-len(size):]) for t in coeffs.tensors()]
        counts = [math.prod(g) for g in level_grids]
        offsets = [sum(counts[:j]) for j in range(len(counts))]
        d = sum(counts)
        design = self._design(d)
        chunk = self.chunk_size(x, len(design))
        indices = []
        for i in range(x.shape[0]):
            zi = [t[i : i + 1] for t in coeffs.tensors()]

            def perturb(masks: torch.Tensor, zi=zi) -> torch.Tensor:
                masks = masks.to(x.dtype)
                scaled = []
                for level, (t, g) in enumerate(zip(zi, level_grids)):
                    m = masks[:, offsets[level] : offsets[level] + counts[level]].reshape(-1, 1, *g)
                    m = resize(m, t.shape[-len(size):], "nearest")
                    if level > 0:  # details (1, C, O, *s): one mask shared by channels and orientations
                        m = m.unsqueeze(2)
                    scaled.append(t * m)
                return wavelets.idwt(coeffs.with_tensors(scaled))

            indices.append(self._indices(d, perturb, targets[i], design, f"sobol_wavelet {i + 1}/{x.shape[0]}", chunk))
        st = torch.stack(indices).to(x.dtype)  # (B, d)
        per_level = [st[:, o : o + n].reshape(-1, 1, *g) for o, n, g in zip(offsets, counts, level_grids)]
        level_sums = torch.stack([p.flatten(1).sum(1) for p in per_level], 1)
        scales = level_sums / level_sums.sum(1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        # each level's index grid spread over the input grid with the level's total as its mass
        maps = []
        for p in per_level:
            up = resize(p, size).clamp_min(0)[:, 0]
            mass = up.flatten(1).sum(1).clamp_min(torch.finfo(x.dtype).tiny)
            maps.append(up * (p.flatten(1).sum(1) / mass).view(-1, *[1] * len(size)))
        scale_maps = torch.stack(maps, 1)
        return Explanation(
            where=scale_maps.sum(1), method=self.name, scales=scales, scale_maps=scale_maps,
            attributions={k: p[:, 0] for k, p in zip(coeffs.band_keys(), per_level)}, level_names=coeffs.level_names(),
        )
