"""The library's one discrete wavelet transform (DWT), for 1D signals, 2D images and 3D volumes.

Used by WAM (gradients with respect to wavelet coefficients), WCAM / Sobol over wavelet coefficients,
and the wavelet-domain metrics. A single implementation is parameterised by the number of spatial
dims ``ndim``; the three ptwt entry points (``wavedec``/``wavedec2``/``wavedec3`` and their inverses)
only differ in how they hand back detail coefficients, which :func:`_from_ptwt` / :func:`_to_ptwt`
convert to and from one stacked layout.

Conventions (see ALGORITHMS.md §0.2)
------------------------------------
* Input ``x``: ``(B, C, *spatial)`` with ``len(spatial) == ndim``; every channel is transformed
  separately, batched (ptwt folds ``B`` and ``C`` into one batch axis, no Python loops).
* :class:`WaveletCoeffs` holds ``approx`` ``(B, C, *sub_J)`` and ``details``, **coarsest level first**
  (``details[0]`` = level ``J``, ``details[-1]`` = level 1, the finest), each ``(B, C, O, *sub_j)``
  with ``O = 2**ndim - 1`` orientations.
* Orientation order is :data:`ORIENTATIONS` ``[ndim]``, written in pywt's ``dwtn`` key notation where
  character ``k`` says low-pass (``a``) or high-pass (``d``) along spatial axis ``k``:

  - 1D: ``("d",)``
  - 2D: ``("da", "ad", "dd")`` = pywt's ``(cH, cV, cD)`` as returned by ``pywt.wavedec2`` and
    ``ptwt.wavedec2`` (``horizontal`` = high-pass along axis 0, the rows).
  - 3D: ``("aad", "ada", "add", "daa", "dad", "dda", "ddd")``: ptwt's dict keys, sorted (same keys and
    meaning as ``pywt.wavedecn``).
* Boundary modes are ptwt's: ``zero``, ``constant``, ``reflect``, ``periodic``, ``symmetric``
  (``periodic`` is pywt's redundant ``periodic``, *not* ``periodization``, which ptwt lacks). With
  filters longer than 2 or sizes not divisible by ``2**levels`` the sub-bands are larger than
  ``size / 2**j`` (the transform is redundant) and the inverse may come back larger: :func:`idwt`
  crops to the original size.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import pywt
import ptwt
import torch
import torch.nn.functional as F

from .core.errors import InputError, ParameterError, suggest

__all__ = [
    "MODES", "ORIENTATIONS", "ORIENTATION_NAMES", "WAVELETS", "WaveletCoeffs", "dwt", "dyadic_layout", "idwt",
    "is_orthonormal", "level_energy", "level_maps", "level_totals", "max_levels", "pack", "packed_levels",
    "unpack",
]

# pywt's discrete wavelets that reconstruct exactly. dmey is excluded: it is an FIR approximation of the
# Meyer wavelet (no perfect reconstruction) and crashes ptwt's 3D transform. Continuous wavelets
# (morl, mexh, gaus*, cgau*, shan*, fbsp*, cmor*) have no filter bank at all.
_FAMILIES = ("haar", "db", "sym", "coif", "bior", "rbio")
WAVELETS: list[str] = [w for f in _FAMILIES for w in pywt.wavelist(family=f, kind="discrete")]
MODES: list[str] = ["zero", "constant", "reflect", "periodic", "symmetric"]

ORIENTATIONS: dict[int, tuple[str, ...]] = {
    1: ("d",),
    2: ("da", "ad", "dd"),
    3: ("aad", "ada", "add", "daa", "dad", "dda", "ddd"),
}
ORIENTATION_NAMES: dict[int, tuple[str, ...]] = {
    1: ("detail",),
    2: ("horizontal", "vertical", "diagonal"),
    3: ORIENTATIONS[3],
}
_KEYS3 = ORIENTATIONS[3]
_DEC = {1: ptwt.wavedec, 2: ptwt.wavedec2, 3: ptwt.wavedec3}
_REC = {1: ptwt.waverec, 2: ptwt.waverec2, 3: ptwt.waverec3}
_REDUCE = {"abs": torch.abs, "signed": lambda t: t, "square": torch.square}
_PTWT_DTYPES = (torch.float32, torch.float64)


# --------------------------------------------------------------------------------------------------
# container
# --------------------------------------------------------------------------------------------------
@dataclass
class WaveletCoeffs:
    """Multilevel DWT coefficients of a batch, plus what is needed to invert them.

    Attributes
    ----------
    approx : torch.Tensor
        ``(B, C, *sub_J)`` coarsest approximation ``A_J``.
    details : list of torch.Tensor
        Coarsest level first: ``details[0]`` is level ``J``, ``details[-1]`` level 1 (finest). Each is
        ``(B, C, O, *sub_j)`` with ``O = 2**ndim - 1`` orientations in :data:`ORIENTATIONS` order.
    size : tuple of int
        Original spatial size; :func:`idwt` crops its output to it.
    wavelet, mode : str
        Wavelet name and boundary mode used by :func:`dwt`.
    ndim : int
        Number of spatial dims (1, 2 or 3).

    Notes
    -----
    "Coefficient-like" objects (gradients, masks, attributions laid out like the coefficients) use the
    same class, built with :meth:`with_tensors` or :meth:`map`, so every helper works on them too.
    """

    approx: torch.Tensor
    details: list[torch.Tensor]
    size: tuple[int, ...]
    wavelet: str
    mode: str
    ndim: int

    def __post_init__(self) -> None:
        self.size = tuple(int(s) for s in self.size)
        self.details = list(self.details)

    @property
    def levels(self) -> int:
        """Number of decomposition levels ``J``."""
        return len(self.details)

    @property
    def orientations(self) -> tuple[str, ...]:
        """Orientation keys of the ``O`` axis of every detail tensor (see :data:`ORIENTATIONS`)."""
        return ORIENTATIONS[self.ndim]

    @property
    def device(self) -> torch.device:
        return self.approx.device

    @property
    def dtype(self) -> torch.dtype:
        return self.approx.dtype

    def tensors(self) -> list[torch.Tensor]:
        """``[approx, *details]`` (coarsest first): ``levels + 1`` tensors."""
        return [self.approx, *self.details]

    def with_tensors(self, tensors: Sequence[torch.Tensor]) -> "WaveletCoeffs":
        """Same metadata, new tensors given as ``[approx, *details]`` (e.g. autograd leaves or grads)."""
        tensors = list(tensors)
        if len(tensors) != self.levels + 1:
            raise InputError(f"expected {self.levels + 1} tensors [approx, *details], got {len(tensors)}")
        return replace(self, approx=tensors[0], details=tensors[1:])

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "WaveletCoeffs":
        """Apply ``fn`` to every tensor (approximation and each detail level)."""
        return self.with_tensors([fn(t) for t in self.tensors()])

    def as_leaves(self) -> "WaveletCoeffs":
        """Detached copies that require grad: the coefficients ``z`` WAM differentiates with respect to."""
        return self.map(lambda t: t.detach().clone().requires_grad_(True))

    def band_keys(self) -> list[str]:
        """Storage keys of the bands, like :meth:`tensors`: ``approximation``, ``level_J`` ... ``level_1``."""
        return ["approximation"] + [f"level_{j}" for j in range(self.levels, 0, -1)]

    def level_names(self) -> list[str]:
        """Human names in :meth:`tensors` order, e.g.
        ``["approximation", "level 3 (coarsest)", "level 2", "level 1 (finest)"]``."""
        names = ["approximation"]
        for j in range(self.levels, 0, -1):
            tags = [t for t, on in (("coarsest", j == self.levels), ("finest", j == 1)) if on]
            names.append(f"level {j}" + (f" ({', '.join(tags)})" if tags else ""))
        return names


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def _check_wavelet(wavelet: str) -> str:
    if not isinstance(wavelet, str) or wavelet not in WAVELETS:
        why = ""
        if isinstance(wavelet, str) and wavelet in pywt.wavelist():
            why = (" (it does not reconstruct exactly: dmey is an approximation and continuous wavelets"
                   " have no filter bank)")
        raise ParameterError(
            f"unsupported wavelet {wavelet!r}{why}. Use a discrete wavelet that reconstructs exactly "
            f"(families haar, db*, sym*, coif*, bior*, rbio*), e.g. 'haar', 'db2', 'sym4', 'coif1', 'bior2.2'; "
            f"did you mean {suggest(str(wavelet), WAVELETS)}? Full list: unified_xai.wavelets.WAVELETS")
    return wavelet


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        hint = ""
        if mode == "periodization":
            hint = (" 'periodization' is not implemented by ptwt; 'periodic' is pywt's (redundant) periodic"
                    " extension. For an orthonormal transform use 'haar' with sizes divisible by 2**levels.")
        raise ParameterError(f"unsupported boundary mode {mode!r}: choose one of {MODES}.{hint}")
    return mode


def _check_ndim(ndim: int) -> int:
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim not in (1, 2, 3):
        raise ParameterError(f"ndim must be 1 (signals), 2 (images) or 3 (volumes), got {ndim!r}")
    return ndim


def _as_size(size: int | Sequence[int]) -> tuple[int, ...]:
    return (int(size),) if isinstance(size, int) else tuple(int(s) for s in size)


def max_levels(size: int | Sequence[int], wavelet: str) -> int:
    """Deepest useful decomposition for a spatial size: ``min`` over axes of ``pywt.dwt_max_level``.

    Parameters
    ----------
    size : int or sequence of int
        Spatial size (``T``, ``(H, W)`` or ``(D, H, W)``).
    wavelet : str
        Wavelet name from :data:`WAVELETS`.

    Returns
    -------
    int
        Maximum number of levels (0 when the input is shorter than the filter along some axis).
    """
    filt_len = pywt.Wavelet(_check_wavelet(wavelet)).dec_len
    return min(pywt.dwt_max_level(n, filt_len) for n in _as_size(size))


def _check_levels(levels: int, size: tuple[int, ...], wavelet: str) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ParameterError(f"levels must be an integer >= 1, got {levels!r}")
    top = max_levels(size, wavelet)
    if levels > top:
        filt_len = pywt.Wavelet(wavelet).dec_len
        if top == 0:
            raise ParameterError(
                f"spatial size {size} is too small for wavelet {wavelet!r} (filter length {filt_len}): "
                f"not even one level fits; use a shorter wavelet such as 'haar' or a larger input")
        raise ParameterError(
            f"levels={levels} is too deep for spatial size {size} with wavelet {wavelet!r} "
            f"(filter length {filt_len}): at most {top} (pywt.dwt_max_level on the smallest axis)")
    return levels


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """ptwt runs in float32/float64 only; half precision goes through float32 and is cast back."""
    if not dtype.is_floating_point:
        raise InputError(f"the wavelet transform needs a floating-point tensor, got dtype {dtype}")
    return dtype if dtype in _PTWT_DTYPES else torch.float32


# --------------------------------------------------------------------------------------------------
# ptwt format <-> stacked format (the only per-ndim code)
# --------------------------------------------------------------------------------------------------
def _from_ptwt(detail, ndim: int) -> torch.Tensor:
    """One ptwt detail level -> ``(B, C, O, *sub)``."""
    if ndim == 1:
        return detail.unsqueeze(2)
    if ndim == 2:
        return torch.stack(tuple(detail), dim=2)  # (H, V, D) named tuple, already pywt order
    return torch.stack([detail[k] for k in _KEYS3], dim=2)


def _to_ptwt(detail: torch.Tensor, ndim: int):
    """``(B, C, O, *sub)`` -> one ptwt detail level."""
    if ndim == 1:
        return detail.select(2, 0)
    parts = detail.unbind(2)
    if ndim == 2:
        return tuple(parts)  # waverec2 insists on a tuple
    return dict(zip(_KEYS3, parts))


# --------------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------------
def dwt(x: torch.Tensor, ndim: int, wavelet: str = "haar", levels: int = 3, mode: str = "reflect") -> WaveletCoeffs:
    """Multilevel DWT of every channel of a batch (differentiable, batched, device/dtype preserving).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, *spatial)`` with ``len(spatial) == ndim``: ``(B, C, T)``, ``(B, C, H, W)`` or
        ``(B, C, D, H, W)``.
    ndim : int
        Number of spatial dims, 1, 2 or 3.
    wavelet : str, default "haar"
        A name from :data:`WAVELETS`.
    levels : int, default 3
        Decomposition depth ``J``, ``1 <= J <= max_levels(spatial, wavelet)``.
    mode : str, default "reflect"
        Boundary mode from :data:`MODES` (always passed to ptwt explicitly: its defaults differ).

    Returns
    -------
    WaveletCoeffs
        ``approx`` ``(B, C, *sub_J)`` and ``details`` coarsest first, each ``(B, C, O, *sub_j)``.
        Coefficients equal pywt's (``wavedec`` / ``wavedec2`` / ``wavedecn``) for the same settings.
    """
    _check_ndim(ndim)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"dwt expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != ndim + 2:
        layout = {1: "(B, C, T)", 2: "(B, C, H, W)", 3: "(B, C, D, H, W)"}[ndim]
        raise InputError(f"dwt with ndim={ndim} expects a {ndim + 2}-D tensor {layout}, got shape {tuple(x.shape)}")
    _check_wavelet(wavelet)
    _check_mode(mode)
    size = tuple(x.shape[2:])
    _check_levels(levels, size, wavelet)

    dtype = x.dtype
    work = x.to(_work_dtype(dtype))
    if _haar_exact(wavelet, size, levels):
        approx, *details = _haar_dec(work, ndim, levels)
    else:  # ptwt transforms the last `ndim` axes and folds (B, C) into its batch axis itself.
        approx, *details = _DEC[ndim](work, wavelet, mode=mode, level=levels)
        details = [_from_ptwt(d, ndim) for d in details]
    approx, details = approx.to(dtype), [d.to(dtype) for d in details]
    return WaveletCoeffs(approx, details, size, wavelet, mode, ndim)


def idwt(coeffs: WaveletCoeffs) -> torch.Tensor:
    """Inverse DWT, cropped to the original spatial size (differentiable w.r.t. every coefficient).

    Parameters
    ----------
    coeffs : WaveletCoeffs
        Coefficients as returned by :func:`dwt` (or modified copies of the same shapes).

    Returns
    -------
    torch.Tensor
        ``(B, C, *coeffs.size)``, dtype and device of ``coeffs.approx``.
    """
    ndim = coeffs.ndim
    dtype = coeffs.dtype
    work = _work_dtype(dtype)
    if _haar_exact(coeffs.wavelet, coeffs.size, coeffs.levels):
        return _haar_rec(coeffs.approx.to(work), [d.to(work) for d in coeffs.details], ndim).to(dtype)
    parts = [_to_ptwt(d.to(work), ndim) for d in coeffs.details]
    rec = _REC[ndim]([coeffs.approx.to(work), *parts], coeffs.wavelet)
    # ptwt trims intermediate levels itself, but an odd size comes back one sample larger: crop
    crop = (Ellipsis, *(slice(0, s) for s in coeffs.size))
    return rec[crop].to(dtype)


# Haar on sizes divisible by 2**levels: no boundary samples, so the transform is the same in every mode
# and is one 2**ndim-point butterfly per level (its inverse 3-6x faster than ptwt's convolutions on the
# CPU; the wavelet-domain metrics invert a DWT per perturbed row). Tested equal to ptwt.
def _haar_exact(wavelet: str, size: tuple[int, ...], levels: int) -> bool:
    return _is_haar(wavelet) and all(n % 2**levels == 0 for n in size)


@functools.lru_cache(maxsize=None)
def _haar_butterfly(ndim: int) -> torch.Tensor:
    """The orthogonal ``(2**ndim, 2**ndim)`` map from the samples of a ``2 x ... x 2`` cell (row-major) to
    its bands, the approximation first, then the details in :data:`ORIENTATIONS` order; its transpose
    maps back. float64; cast by the callers."""
    H = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / math.sqrt(2)  # rows: low, high pass
    K = torch.ones(1, 1, dtype=torch.float64)
    for _ in range(ndim):
        K = torch.kron(K, H)  # row b: bit k of b (axis 0 first) is 1 for high-pass along axis k
    bands = ["a" * ndim, *ORIENTATIONS[ndim]]
    return K[[int(key.replace("a", "0").replace("d", "1"), 2) for key in bands]]


def _haar_dec(x: torch.Tensor, ndim: int, levels: int) -> list[torch.Tensor]:
    """``[approx, *details]``, details coarsest first in the stacked ``(B, C, O, *sub)`` layout."""
    lead, K = x.shape[:2], _haar_butterfly(ndim).to(x)
    details = []
    for _ in range(levels):
        sub = [n // 2 for n in x.shape[2:]]
        cells = x.reshape(*lead, *[v for n in sub for v in (n, 2)])  # (B, C, n0, 2, n1, 2, ...)
        cells = cells.permute(0, 1, *range(3, 3 + 2 * ndim, 2), *range(2, 2 + 2 * ndim, 2))
        bands = (K @ cells.reshape(*lead, 2**ndim, -1)).reshape(*lead, 2**ndim, *sub)
        x, detail = bands[:, :, 0], bands[:, :, 1:]
        details.append(detail)
    return [x.contiguous(), *details[::-1]]


def _haar_rec(approx: torch.Tensor, details: list[torch.Tensor], ndim: int) -> torch.Tensor:
    lead, K = approx.shape[:2], _haar_butterfly(ndim).to(approx).T
    x = approx
    for detail in details:
        sub = list(x.shape[2:])
        bands = torch.cat([x.unsqueeze(2), detail], dim=2).reshape(*lead, 2**ndim, -1)
        cells = (K @ bands).reshape(*lead, *[2] * ndim, *sub)
        # (B, C, 2, ..., 2, n0, n1, ...) -> (B, C, n0, 2, n1, 2, ...) -> (B, C, 2 n0, 2 n1, ...)
        cells = cells.permute(0, 1, *[p for k in range(ndim) for p in (2 + ndim + k, 2 + k)])
        x = cells.reshape(*lead, *[2 * n for n in sub])
    return x


def is_orthonormal(wavelet: str, mode: str, size: int | Sequence[int], levels: int) -> bool:
    """True when the DWT matrix is orthonormal, so ``idwt == dwt^T`` (and ``dwt^{-1} == dwt^T``).

    That holds for Haar (and its aliases ``db1``, ``bior1.1``, ``rbio1.1``) when every spatial size is
    divisible by ``2**levels``: no level needs padding, so the boundary mode never enters. Every other
    configuration ptwt offers pads (redundant transform), so gradients must go through autograd of
    :func:`idwt` instead of the shortcut ``grad_z f(idwt(z)) = dwt(grad_x f)``.

    Parameters
    ----------
    wavelet : str
    mode : str
    size : int or sequence of int
        Spatial size.
    levels : int

    Returns
    -------
    bool
    """
    _check_wavelet(wavelet)
    _check_mode(mode)
    size = _as_size(size)
    _check_levels(levels, size, wavelet)
    return _is_haar(wavelet) and all(n % 2**levels == 0 for n in size)


@functools.lru_cache(maxsize=None)
def _is_haar(wavelet: str) -> bool:
    w, h = pywt.Wavelet(wavelet), pywt.Wavelet("haar")
    return w.dec_len == 2 and all(
        len(a) == len(b) and all(math.isclose(p, q, abs_tol=1e-12) for p, q in zip(a, b))
        for a, b in zip(w.filter_bank, h.filter_bank))


# --------------------------------------------------------------------------------------------------
# per-level summaries and maps
# --------------------------------------------------------------------------------------------------
def _reduce_fn(reduce: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if reduce not in _REDUCE:
        raise ParameterError(f"reduce must be one of {list(_REDUCE)}, got {reduce!r}")
    return _REDUCE[reduce]


def level_totals(coeffs_like: WaveletCoeffs, reduce: str = "abs") -> torch.Tensor:
    """Per-level sum of ``reduce(values)`` over channels, orientations and positions.

    Parameters
    ----------
    coeffs_like : WaveletCoeffs
        Coefficients or anything laid out like them (gradients, attributions), leading dims ``(B, ...)``.
    reduce : {"abs", "signed", "square"}

    Returns
    -------
    torch.Tensor
        ``(B, levels + 1)``: approximation first, then level ``J`` ... level 1 (finest last).
    """
    fn = _reduce_fn(reduce)
    return torch.stack([fn(t).flatten(1).sum(1) for t in coeffs_like.tensors()], dim=1)


def level_energy(coeffs_like: WaveletCoeffs) -> torch.Tensor:
    """Sum of ``|values|`` per level: ``(B, levels + 1)``, approximation first, finest level last.

    ``level_energy(a) / level_energy(a).sum(1, keepdim=True)`` is the share of attribution per scale.
    """
    return level_totals(coeffs_like, "abs")


@functools.lru_cache(maxsize=256)
def _interp_colsum(n_in: int, n_out: int, mode: str) -> torch.Tensor:
    """Column sums ``L^T 1`` of the 1D resize matrix ``L`` (``n_in -> n_out``), float64 on the CPU."""
    eye = torch.eye(n_in, dtype=torch.float64).unsqueeze(1)  # (n_in, 1, n_in): row i = e_i
    kw = {"align_corners": False} if mode == "linear" else {}
    return F.interpolate(eye, size=n_out, mode=mode, **kw).sum(dim=(1, 2))


def _resize_axis(r: torch.Tensor, axis: int, n_out: int) -> torch.Tensor:
    """Mass-preserving 1D resize of one axis: ``L(r / w)`` with ``w = L^T 1``.

    Then ``sum(L(r / w)) = <L^T 1, r / w> = sum(r)`` exactly and linearly (signed values too). For an
    integer zoom factor ``f``, ``w == f``: the coefficient's value spread as a density over the ``f``
    samples it covers. ``L`` is linear interpolation (``align_corners=False``) when enlarging, and
    area averaging when shrinking (linear interpolation would skip samples, giving ``w == 0``).
    """
    n_in = r.shape[axis]
    if n_in == n_out:
        return r
    mode = "linear" if n_out > n_in else "area"
    w = _interp_colsum(n_in, n_out, mode).to(device=r.device, dtype=r.dtype)
    t = r.movedim(axis, -1)
    lead = t.shape[:-1]
    t = (t / w).reshape(-1, 1, n_in)
    t = F.interpolate(t, size=n_out, mode=mode, **({"align_corners": False} if mode == "linear" else {}))
    return t.reshape(*lead, n_out).movedim(-1, axis)


def _mass_preserving_resize(r: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize ``(B, *sub)`` to ``(B, *size)`` one axis at a time.

    When every axis grows this equals ``F.interpolate(..., mode="linear"/"bilinear"/"trilinear",
    align_corners=False)`` of the density ``r / w`` (multilinear interpolation is the tensor product of
    1D ones), and the column sums ``w`` factor per axis too.
    """
    for k, n_out in enumerate(size):
        r = _resize_axis(r, k + 1, n_out)
    return r


def level_maps(coeffs_like: WaveletCoeffs, size: Sequence[int] | None = None, reduce: str = "abs") -> torch.Tensor:
    """Per-level importance maps on the input grid ("where" for each scale).

    For every level (approximation, then level ``J`` ... level 1): ``reduce`` the values, sum over
    channels and orientations, and resize the ``(B, *sub_j)`` result to ``size`` with
    linear / bilinear / trilinear interpolation (``align_corners=False``; area averaging along axes
    that shrink, e.g. when ``size`` is smaller than the input) in a mass-preserving way:
    each map is the sub-band value density, rescaled so that **the sum over the grid of map ``j``
    equals** ``level_totals(coeffs_like, reduce)[:, j]`` (``== level_energy[:, j]`` for ``"abs"``).
    Hence ``level_maps(a).sum(1)`` carries the total ``|a|`` mass, and
    ``level_energy(a) / level_energy(a).sum(1, keepdim=True)`` is the split over scales.

    Sub-bands are stretched over the whole grid, so for padded (non-Haar / non-dyadic) transforms the
    few boundary coefficients shift positions by at most ``filter_length`` coefficients per level.

    Parameters
    ----------
    coeffs_like : WaveletCoeffs
        Leading dims ``(B, C)``; details ``(B, C, O, *sub_j)``.
    size : sequence of int, optional
        Output grid; defaults to ``coeffs_like.size`` (the input size).
    reduce : {"abs", "signed", "square"}, default "abs"

    Returns
    -------
    torch.Tensor
        ``(B, levels + 1, *size)``, approximation first, finest level last.
    """
    fn = _reduce_fn(reduce)
    ndim = coeffs_like.ndim
    size = coeffs_like.size if size is None else _as_size(size)
    if len(size) != ndim:
        raise InputError(f"size must have {ndim} entries for ndim={ndim}, got {size}")
    maps = []
    for t in coeffs_like.tensors():
        # sum every non-batch, non-spatial axis: channels (and orientations for details)
        r = fn(t).flatten(1, t.dim() - ndim - 1).sum(1)
        maps.append(_mass_preserving_resize(r, tuple(size)))
    return torch.stack(maps, dim=1)


# --------------------------------------------------------------------------------------------------
# flat views and layouts
# --------------------------------------------------------------------------------------------------
def pack(coeffs: WaveletCoeffs) -> torch.Tensor:
    """All coefficients of each (sample, channel) as one flat vector.

    Order: approximation (row-major), then each detail level coarsest first, each as
    ``(O, *sub_j)`` row-major. :func:`packed_levels` gives the level of each position.

    Parameters
    ----------
    coeffs : WaveletCoeffs
        Leading dims ``(B, C)`` (any leading dims work).

    Returns
    -------
    torch.Tensor
        ``(B, C, N)``, ``N`` = number of coefficients per channel.
    """
    nd = coeffs.ndim
    flat = [coeffs.approx.flatten(coeffs.approx.dim() - nd)]
    flat += [d.flatten(d.dim() - nd - 1) for d in coeffs.details]
    return torch.cat(flat, dim=-1)


def _shapes(like: WaveletCoeffs) -> list[tuple[int, ...]]:
    """Per-tensor trailing shapes (without the leading ``(B, C)``)."""
    nd = like.ndim
    return [tuple(like.approx.shape[-nd:])] + [tuple(d.shape[-nd - 1:]) for d in like.details]


def unpack(flat: torch.Tensor, like: WaveletCoeffs) -> WaveletCoeffs:
    """Inverse of :func:`pack`.

    Parameters
    ----------
    flat : torch.Tensor
        ``(*lead, N)``, usually ``(B, C, N)``; ``lead`` may differ from ``like``'s (e.g. masks
        ``(n_masks, 1, N)`` that broadcast over channels).
    like : WaveletCoeffs
        Supplies the sub-band shapes and metadata.

    Returns
    -------
    WaveletCoeffs
        Tensors ``(*lead, *sub_J)`` and ``(*lead, O, *sub_j)``, views of ``flat`` when possible.
    """
    shapes = _shapes(like)
    counts = [math.prod(s) for s in shapes]
    if flat.shape[-1] != sum(counts):
        raise InputError(f"unpack: last dim of flat is {flat.shape[-1]}, expected {sum(counts)} coefficients")
    lead = tuple(flat.shape[:-1])
    parts = torch.split(flat, counts, dim=-1)
    return like.with_tensors([p.reshape(*lead, *s) for p, s in zip(parts, shapes)])


def packed_levels(coeffs: WaveletCoeffs) -> torch.Tensor:
    """Level index of every position of :func:`pack`: ``(N,)`` long, 0 = approximation, then ``1`` = level
    ``J`` ... ``levels`` = level 1 (finest), i.e. the :meth:`WaveletCoeffs.tensors` index."""
    counts = [math.prod(s) for s in _shapes(coeffs)]
    return torch.repeat_interleave(torch.arange(len(counts), device=coeffs.device),
                                   torch.tensor(counts, device=coeffs.device))


def dyadic_layout(coeffs: WaveletCoeffs, convention: str = "pywt") -> torch.Tensor:
    """Mosaic of all sub-bands on the input grid (pywt ``coeffs_to_array`` style), differentiable.

    The approximation fills the ``[0, S/2**J)`` corner; for level ``j`` with ``s = S/2**j`` and
    ``e = 2s`` per axis, orientation key character ``k`` = ``a`` puts the band in ``[0, s)`` and ``d``
    in ``[s, e)`` along axis ``k``. In 2D (``convention="pywt"``, matches ``pywt.coeffs_to_array``):
    H (``da``) bottom-left, V (``ad``) top-right, D bottom-right. ``convention="wam"`` (2D only) swaps
    H and V: H top-right, V bottom-left, as the WAM reference code draws it.

    Only valid when the sub-bands tile the grid exactly: Haar with every size divisible by
    ``2**levels``. Otherwise raises :class:`InputError` (use :func:`level_maps` instead).

    Parameters
    ----------
    coeffs : WaveletCoeffs
        Leading dims ``(B, C)`` (any leading dims work).
    convention : {"pywt", "wam"}

    Returns
    -------
    torch.Tensor
        ``(B, C, *coeffs.size)``.
    """
    if convention not in ("pywt", "wam"):
        raise ParameterError(f"convention must be 'pywt' or 'wam', got {convention!r}")
    nd, size, J = coeffs.ndim, coeffs.size, coeffs.levels
    if convention == "wam" and nd != 2:
        raise ParameterError("convention='wam' only exists for 2D coefficients")
    expected = [tuple(n // 2**J for n in size)] + [tuple(n // 2**j for n in size) for j in range(J, 0, -1)]
    got = [tuple(t.shape[-nd:]) for t in coeffs.tensors()]
    if any(n % 2**J for n in size) or got != expected:
        raise InputError(
            f"dyadic_layout needs sub-bands that tile the input: a Haar wavelet and every size divisible by "
            f"2**levels={2**J}; got size {size}, wavelet {coeffs.wavelet!r}, sub-band sizes {got} "
            f"(expected {expected}). Use level_maps() for other wavelets or sizes.")
    keys = list(ORIENTATIONS[nd])
    if convention == "wam":
        keys = ["ad", "da", "dd"]  # slot of H is pywt's V slot and vice versa
    lead = tuple(coeffs.approx.shape[:-nd])
    out = coeffs.approx.new_zeros(*lead, *size)
    out[(Ellipsis, *(slice(0, s) for s in expected[0]))] = coeffs.approx
    for sub, d in zip(expected[1:], coeffs.details):
        for o, key in enumerate(keys):
            idx = tuple(slice(0, s) if c == "a" else slice(s, 2 * s) for c, s in zip(key, sub))
            out[(Ellipsis, *idx)] = d.select(-nd - 1, o)
    return out
