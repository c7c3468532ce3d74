"""Faithfulness and stability: Deletion, Insertion, µ-Fidelity, infidelity and Average Stability.

Each faithfulness metric removes features of the input in an order, or in random subsets, given by an
explanation and watches the target's score. What a *feature* is, and what *removing* it means, is the
``domain``:

* ``"pixels"``: a spatial position (all channels at once), set to ``baseline`` (a number, one sample
  ``(C, *spatial)`` or one per input, in the model's input space: 0 on normalised inputs is the mean
  colour). The map is ``explanation.where`` ``(B, *spatial)``, or a raw map ``(B, *spatial)``, or a
  per-channel map ``(B, C, *spatial)`` (summed over channels: the attribution of the whole position).
* ``"wavelet"``: a wavelet coefficient (one position of one sub-band, all channels at once), set to the
  coefficient of the baseline input (zero for ``baseline=0``), then the inverse DWT is scored — the WAM
  paper's protocol. The map is the explanation's wavelet-domain ``attributions``: WAM's (and WCAM's)
  dict of bands ``{"approximation", "level_J", ..., "level_1"}``, or that dict, a list
  ``[approx, *details]`` or a :class:`~unified_xai.wavelets.WaveletCoeffs` passed raw. A band may be per
  channel ``(B, C, [O,] *sub)`` (summed over channels), channel-summed ``(B, [O,] *sub)``, or a coarser
  grid of regions ``(B, *grid)`` as WCAM gives (each coefficient takes its region's value).
* ``"scales"``: a whole wavelet level, removed in the order of the claimed scale profile
  ``explanation.scales`` ``(B, levels + 1)`` (approximation first, finest last): removing a detail level
  sets all its coefficients to 0; removing the approximation sets each channel's approximation
  coefficients to their mean (the input keeps its mean value instead of going black). ``baseline`` does
  not apply (it must be left at 0).
* ``"concepts"``: a CRAFT concept of a fitted :class:`~unified_xai.concepts.Craft` passed as
  ``concepts=craft``. The activations at the craft's layer are factored on its bank by NNLS (bank
  fixed, per position: ``U``), removed concepts get coefficient 0, and the rebuilt ``U W`` goes through
  the ``h`` part of the split — the same path as ``Craft.importance`` and ``Craft.ablation``, so the
  NMF residual is left out and the curve starts at ``h(U W)``, not at the model's score of the input.
  The order is ``explanation.concept_importances`` (the ``craft`` explainer's), a raw ``(B, K)`` or
  ``(K,)`` tensor, or, for ``explanation=None``, the bank's own ``craft.importances_``. ``baseline``
  does not apply; ``targets`` default to the bank's class.

The score of a row is the target's logit (``output="logit"``) or softmax probability
(``"probability"``). Without ``targets``, an :class:`~unified_xai.Explanation`'s own targets are used,
else the predicted classes.

All work is batched in torch on the adapter's device, in chunks of ``batch_size`` rows (default: the
adapter's choice for no-grad passes). Perturbed rows are laid out sample-major (row ``k * B + i`` is
step / subset ``k`` of input ``i``) and every random draw (subsets, tie-breaks, stability noise) is a
function of ``(seed, k)`` only, shared by all inputs, so an input's score never depends on the rest of
its batch or on the chunking, and a seed gives the same scores every run.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Iterator

import torch

from .. import wavelets
from ..core.batching import chunks, progress_bar
from ..core.errors import InputError, ParameterError, suggest
from ..core.explanation import Explanation
from ..core.model import ModelAdapter
from ..core.seeds import noise_samples
from ..core.spatial import resize

DOMAINS = ("pixels", "wavelet", "scales", "concepts")
OUTPUTS = ("logit", "probability")
AUCS = ("trapezoid", "wam")
CORRELATIONS = ("pearson", "spearman")
DISTANCES = ("l2", "l1", "linf")
STATISTICS = ("mean", "max")
#: removal steps of Deletion / Insertion in the pixel and wavelet domains when ``steps=None``
DEFAULT_STEPS = 32
_WAVELET_DEFAULTS = {"wavelet": "haar", "levels": 3, "mode": "reflect"}

__all__ = ["AUCS", "CORRELATIONS", "DEFAULT_STEPS", "DOMAINS", "OUTPUTS", "average_stability", "deletion",
           "infidelity", "insertion", "mu_fidelity"]


# ==================================================================================================
# domains: the features of a batch, their attribution values, and how rows with features removed score
# ==================================================================================================
class _Domain:
    """Features of one domain for a batch: ``values`` ``(B, N)`` and :meth:`scores` of rows in which the
    features flagged in ``removed`` ``(R, N)`` are removed. ``groups`` ``(N,)`` (pixel grid cells) or None."""

    groups: torch.Tensor | None = None

    def __init__(self, metric: str, adapter: ModelAdapter, x: torch.Tensor, output: str, batch_size: int | None):
        self.metric, self.adapter, self.x, self.output, self.batch_size = metric, adapter, x, output, batch_size
        self.values: torch.Tensor = None  # set by subclasses

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    def blocks(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(ks, idx)`` per chunk: the step / subset index and the input of every row (sample-major)."""
        batch = self.x.shape[0]
        total = n * batch
        size = self.batch_size or self.adapter.chunk_size(self.x, "nograd", rows=total)
        for part in chunks(total, size):
            rows = torch.arange(part.start, part.stop, device=self.x.device)
            yield rows // batch, rows % batch

    def inputs(self, removed: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def scores(self, removed: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rows = self.inputs(removed, idx)
        with self.adapter.evaluating():
            return _target_output(self.adapter.forward(rows), targets, self.output)


class _Pixels(_Domain):
    def __init__(self, metric, adapter, x, output, batch_size, explanation, baseline, grid_size=None):
        super().__init__(metric, adapter, x, output, batch_size)
        self.size = tuple(x.shape[2:])
        self.values = _pixel_values(metric, explanation, x)
        self.base = _baseline(metric, baseline, x)
        if grid_size is not None:
            self.groups = _grid_groups(metric, self.size, grid_size, x.device)

    def inputs(self, removed, idx):
        mask = removed.view(len(idx), 1, *self.size)
        return torch.where(mask, self.base[idx], self.x[idx])


class _Wavelet(_Domain):
    def __init__(self, metric, adapter, x, output, batch_size, explanation, baseline, config):
        super().__init__(metric, adapter, x, output, batch_size)
        self.like = wavelets.dwt(x, adapter.spatial_ndim, **config)
        self.z = wavelets.pack(self.like)  # (B, C, N)
        base = _baseline(metric, baseline, x)
        zero = isinstance(baseline, numbers.Real) and float(baseline) == 0.0  # the common case: no second gather
        self.zb = None if zero else wavelets.pack(wavelets.dwt(base.contiguous(), adapter.spatial_ndim, **config))
        bands = _wavelet_bands(metric, explanation, self.like)
        self.values = wavelets.pack(self.like.with_tensors(bands))  # (B, N): channel-summed, pack order

    def inputs(self, removed, idx):
        mask = removed[:, None, :]
        flat = self.z[idx].masked_fill_(mask, 0.0) if self.zb is None else torch.where(mask, self.zb[idx], self.z[idx])
        return wavelets.idwt(wavelets.unpack(flat, self.like))


class _Scales(_Domain):
    def __init__(self, metric, adapter, x, output, batch_size, profile, config):
        super().__init__(metric, adapter, x, output, batch_size)
        self.like = wavelets.dwt(x, adapter.spatial_ndim, **config)
        self.tensors = self.like.tensors()
        nd = adapter.spatial_ndim
        approx = self.tensors[0]
        self.removal = [approx.mean(dim=tuple(range(approx.ndim - nd, approx.ndim)), keepdim=True).expand_as(approx)]
        self.values = profile

    def inputs(self, removed, idx):
        parts = []
        for level, t in enumerate(self.tensors):
            rows = t[idx]
            mask = removed[:, level].view(-1, *[1] * (rows.ndim - 1))
            gone = self.removal[0][idx] if level == 0 else rows.new_zeros(())
            parts.append(torch.where(mask, gone, rows))
        return wavelets.idwt(self.like.with_tensors(parts))


class _Concepts(_Domain):
    """Rows of one input at a time (its own activations and coefficients), as ``Craft.importance``."""

    def __init__(self, metric, adapter, x, output, batch_size, craft, values):
        super().__init__(metric, adapter, x, output, batch_size)
        self.craft = craft
        self.bank = craft._bank()
        self.items = list(craft._per_input(x))  # (activations (1, ...), coefficients U (P, K), grid) per input
        self.values = values

    def blocks(self, n):
        for i, (act, _, _) in enumerate(self.items):
            size = self.batch_size or self.craft._h_chunk(act, n)
            for part in chunks(n, size):
                ks = torch.arange(part.start, part.stop, device=self.x.device)
                yield ks, torch.full_like(ks, i)

    @torch.no_grad()
    def scores(self, removed, idx, targets):
        act, coefficients, grid = self.items[int(idx[0])]
        keep = (~removed).to(coefficients.dtype)
        rebuilt = (coefficients[None] * keep[:, None, :]) @ self.bank.to(coefficients.dtype)  # (R, P, D)
        with self.adapter.evaluating():
            logits = self.craft.split().h(self.craft._layout(rebuilt.to(act.dtype), grid, act))
        return _target_output(logits, targets, self.output)


# ==================================================================================================
# the metrics
# ==================================================================================================
def deletion(adapter: ModelAdapter, x, explanation, targets=None, domain: str = "pixels", baseline=0.0,
             steps: int | None = None, output: str = "logit", *, auc: str = "trapezoid", concepts=None,
             wavelet: str | None = None, levels: int | None = None, mode: str | None = None, seed: int = 0,
             batch_size: int | None = None, progress: bool | None = None, return_curves: bool = False):
    """Deletion (Petsiuk et al., RISE 2018; Xplique ``Deletion``): the area under the target's score as
    features are removed, most important first. Lower is better.

    Step ``k`` of ``steps`` removes the ``floor(k N / steps)`` features of highest attribution (signed:
    no ``|.|``; ties broken by a fixed random order drawn from ``seed``), so the curve has ``steps + 1``
    points, from the intact input to every feature removed. Cost: ``steps + 1`` forwards per input.

    Parameters
    ----------
    adapter : the model (:class:`~unified_xai.ModelAdapter`).
    x : inputs ``(B, C, *spatial)``.
    explanation : an :class:`~unified_xai.Explanation` of ``x``, or a raw map in the domain's layout
        (see the module doc); for ``domain="concepts"`` also None (the bank's importance order).
    targets : classes whose score is watched; None: the explanation's targets, else the predicted
        classes (``"concepts"``: the bank's class).
    domain : ``"pixels"``, ``"wavelet"``, ``"scales"`` or ``"concepts"`` (see the module doc).
    baseline : what a removed pixel becomes (``"pixels"``), or the input whose coefficients replace
        removed ones (``"wavelet"``): a number, one sample ``(C, *spatial)`` or one per input.
    steps : removal steps; None: ``min(32, N)`` in the pixel and wavelet domains, one feature per step
        (``N``) for scales and concepts. At most ``N`` features.
    output : ``"logit"`` or ``"probability"`` (softmax) of the target.
    auc : ``"trapezoid"``: trapezoid rule with x in [0, 1], ``(sum s - (s_0 + s_steps) / 2) / steps``
        (RISE, Xplique); ``"wam"``: the WAM evaluation's ``sum s / (max s * (steps + 1))``.
    concepts : a fitted :class:`~unified_xai.concepts.Craft` (``domain="concepts"`` only).
    wavelet, levels, mode : the DWT of the ``"wavelet"`` and ``"scales"`` domains; None: the
        explanation's own (its ``params``), else haar, 3, reflect.
    seed : seed of the tie-break order.
    batch_size : rows per model call; None: the adapter's choice.
    progress : progress bar (None: the adapter's setting).
    return_curves : also return the curves ``(B, steps + 1)``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` scores on the adapter's device; with ``return_curves``, ``(scores, curves)``.

    Raises
    ------
    ParameterError : unknown domain, output or auc; ``steps`` not an int in ``[1, N]``; a Craft missing
        for the concepts domain; a baseline where it does not apply.
    InputError : a map of the wrong shape or with NaN; an explanation without the field the domain needs.
    """
    return _causal("deletion", adapter, x, explanation, targets, domain, baseline, steps, output, auc, concepts,
                   wavelet, levels, mode, seed, batch_size, progress, return_curves)


def insertion(adapter: ModelAdapter, x, explanation, targets=None, domain: str = "pixels", baseline=0.0,
              steps: int | None = None, output: str = "logit", *, auc: str = "trapezoid", concepts=None,
              wavelet: str | None = None, levels: int | None = None, mode: str | None = None, seed: int = 0,
              batch_size: int | None = None, progress: bool | None = None, return_curves: bool = False):
    """Insertion (Petsiuk et al., RISE 2018; Xplique ``Insertion``): the area under the target's score
    as features are put back into the fully removed input, most important first. Higher is better.

    The mirror of :func:`deletion` (same parameters, same ranking and steps): step ``k`` keeps the
    ``floor(k N / steps)`` features of highest attribution and removes the rest, so the curve goes from
    the baseline (every feature removed) to the intact input. The WAM paper reports
    ``Faithfulness = Insertion - Deletion``. RISE starts insertion from a blurred copy; here the start is
    ``baseline`` (Xplique's choice), for both metrics.
    """
    return _causal("insertion", adapter, x, explanation, targets, domain, baseline, steps, output, auc, concepts,
                   wavelet, levels, mode, seed, batch_size, progress, return_curves)


def mu_fidelity(adapter: ModelAdapter, x, explanation, targets=None, domain: str = "pixels", baseline=0.0,
                subset_size: int | float = 0.2, n_subsets: int = 128, seed: int = 0, *, output: str = "logit",
                grid_size: int | tuple | None = 9, correlation: str = "pearson", concepts=None,
                wavelet: str | None = None, levels: int | None = None, mode: str | None = None,
                batch_size: int | None = None, progress: bool | None = None, return_terms: bool = False):
    """µ-Fidelity (Bhatt, Weller, Moura, IJCAI 2020, the definition followed): per input, the correlation
    over random subsets ``S`` of a fixed size between ``sum_{i in S} phi_i`` (the attribution of the
    subset) and ``f(x) - f(x with S removed)`` (the drop of the target's score). 1 is a perfectly
    faithful (additive) explanation; a random map gives about 0.

    Bhatt et al. use the Pearson correlation over subsets of fixed size (``correlation="pearson"``, the
    default); Xplique's ``MuFidelity`` instead removes each cell with probability ``subset_percent`` and
    uses Spearman (``correlation="spearman"`` gives its correlation; the subsets stay of fixed size). An
    input whose attribution sums or drops are constant over the subsets gets 0 (Xplique's NaN -> 0).

    Features are the domain's (see the module doc). In the pixel domain they are the cells of a
    ``grid_size`` grid per spatial axis (Xplique's ``grid_size=9``; position ``p`` of an axis of
    length ``n`` lies in cell ``floor(p g / n)``; None: every position is its own feature): a cell's
    attribution is the sum of the map over it, and removing it sets all its positions to ``baseline``.
    ``grid_size`` is only used by the pixel domain: in the wavelet domain every coefficient position is a
    feature (the WAM evaluation groups 8 x 8 cells of the dyadic layout instead), in the scales and
    concepts domains every level or concept. Subset ``k`` is drawn from ``(seed, k)`` only and is
    shared by every input. Cost: ``n_subsets + 1`` forwards per input.

    Parameters
    ----------
    subset_size : features per subset: an int in ``[1, G - 1]`` (G features or grid cells), or a
        fraction in ``(0, 1)`` of G (rounded, at least 1, at most G - 1). Default 20 %, as Xplique and
        the WAM evaluation (157 of 784 cells).
    n_subsets : random subsets per input (>= 2).
    seed : seed of the subsets.
    grid_size : cells per spatial axis in the pixel domain (an int, one per axis, or None).
    correlation : ``"pearson"`` (Bhatt et al.) or ``"spearman"`` (Xplique; average ranks for ties).
    return_terms : also return a dict with ``attributions`` and ``drops`` ``(B, n_subsets)``, ``clean``
        ``(B,)`` (the intact score) and ``masks`` ``(n_subsets, N)`` bool, the removed features of each
        subset in the domain's feature order (pixels: positions row-major; wavelet:
        :func:`~unified_xai.wavelets.pack` order; scales: levels; concepts: the bank's concepts).

    The other parameters are those of :func:`deletion`.

    Returns
    -------
    torch.Tensor
        ``(B,)`` correlations on the adapter's device; with ``return_terms``, ``(scores, terms)``.

    Raises
    ------
    ParameterError : ``subset_size`` or ``n_subsets`` out of range, unknown domain / correlation, ...
    InputError : a map of the wrong shape (see :func:`deletion`).
    """
    correlation = _choice("mu_fidelity", "correlation", correlation, CORRELATIONS)
    terms = _subset_terms("mu_fidelity", adapter, x, explanation, targets, domain, baseline, subset_size, n_subsets,
                          seed, output, grid_size, concepts, wavelet, levels, mode, batch_size, progress)
    scores = _correlation(terms["attributions"], terms["drops"], correlation, terms["clean"]).to(terms["clean"].dtype)
    return (scores, terms) if return_terms else scores


def infidelity(adapter: ModelAdapter, x, explanation, targets=None, domain: str = "pixels", baseline=0.0,
               subset_size: int | float = 0.2, n_subsets: int = 128, seed: int = 0, *, normalize: bool = False,
               output: str = "logit", grid_size: int | tuple | None = 9, concepts=None, wavelet: str | None = None,
               levels: int | None = None, mode: str | None = None, batch_size: int | None = None,
               progress: bool | None = None, return_terms: bool = False):
    """Infidelity (Yeh et al., NeurIPS 2019) with subset removals: the mean over the random subsets of
    :func:`mu_fidelity` of ``(sum_{i in S} phi_i - (f(x) - f(x with S removed)))**2``. Lower is better.

    This is exactly ``captum.metrics.infidelity`` with ``n_perturb_samples=n_subsets`` and a
    ``perturb_func`` returning the subset indicator as the perturbation ``I`` and the input with the
    subset set to ``baseline`` as the perturbed input (Captum computes ``sum(phi * I)`` and
    ``f(x) - f(perturbed)``); ``normalize=True`` is Captum's ``normalize=True``: the attribution sums are
    first scaled by the least-squares factor ``beta = sum(a d) / sum(a^2)`` per input. The tests check
    agreement with Captum. Parameters as :func:`mu_fidelity`.
    """
    if not isinstance(normalize, bool):
        raise ParameterError(f"infidelity: normalize must be True or False, got {normalize!r}")
    terms = _subset_terms("infidelity", adapter, x, explanation, targets, domain, baseline, subset_size, n_subsets,
                          seed, output, grid_size, concepts, wavelet, levels, mode, batch_size, progress)
    a, d = terms["attributions"], terms["drops"]
    if normalize:
        beta = (a * d).sum(1, keepdim=True) / (a * a).sum(1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
        a = beta * a
    scores = ((a - d) ** 2).mean(1).to(terms["clean"].dtype)
    return (scores, terms) if return_terms else scores


def average_stability(explainer, x, targets=None, radius: float = 0.1, n_samples: int = 20, *,
                      distance: str = "l2", statistic: str = "mean", normalize: bool = False, field: str = "where",
                      seed: int = 0, progress: bool | None = None) -> torch.Tensor:
    """Average Stability (Bhatt et al. 2020, def. 2; Xplique ``AverageStability``): how much an
    explainer's map changes under small input noise. Lower is better; 0 for a map that ignores the input.

    For each of ``n_samples`` neighbours ``z_k = x + eps_k`` with ``eps_k ~ U(-radius, radius)``
    element-wise (the l-inf ball of Bhatt et al.'s neighbourhood; Xplique draws ``U(0, radius)``),
    the explainer explains ``z_k`` for the same targets as ``x`` and the distance between the two maps
    is taken; ``statistic="mean"`` averages over neighbours (average sensitivity), ``"max"`` takes the
    largest (max-sensitivity). Noise ``k`` is a function of ``(seed, k)`` only, shared by every input.
    Cost: ``n_samples + 1`` explanation calls on the batch.

    Parameters
    ----------
    explainer : an explainer from ``ux.create(...)`` (its ``explain`` and ``adapter`` are used).
    x : inputs ``(B, C, *spatial)``.
    targets : explained classes; None: the predicted classes of the clean inputs (kept for the neighbours).
    radius : noise half-width, in the model's input space.
    n_samples : neighbours per input.
    distance : ``"l2"``, ``"l1"`` or ``"linf"`` between the flattened maps.
    statistic : ``"mean"`` or ``"max"`` over the neighbours.
    normalize : divide every map by its l2 norm first (compares methods whose maps differ in scale).
    field : the Explanation field compared: ``"where"``, ``"scales"`` or ``"scale_maps"``.
    seed : seed of the noise.
    progress : progress bar over the neighbours (None: the adapter's setting).

    Returns
    -------
    torch.Tensor
        ``(B,)`` distances on the adapter's device.
    """
    adapter = getattr(explainer, "adapter", None)
    if not callable(getattr(explainer, "explain", None)) or not isinstance(adapter, ModelAdapter):
        raise ParameterError(f"average_stability: explainer must be an explainer built by ux.create(name, adapter),"
                             f" got {type(explainer).__name__}")
    if not isinstance(radius, numbers.Real) or isinstance(radius, bool) or not radius > 0 or not math.isfinite(radius):
        raise ParameterError(f"average_stability: radius must be a positive number, got {radius!r}")
    n_samples = _positive_int("average_stability", "n_samples", n_samples)
    distance = _choice("average_stability", "distance", distance, DISTANCES)
    statistic = _choice("average_stability", "statistic", statistic, STATISTICS)
    field = _choice("average_stability", "field", field, ("where", "scales", "scale_maps"))
    if not isinstance(normalize, bool):
        raise ParameterError(f"average_stability: normalize must be True or False, got {normalize!r}")
    seed = _seed("average_stability", seed)
    x = adapter.check_input(x)
    targets = adapter.check_targets(targets, x)

    def flat_map(inputs: torch.Tensor) -> torch.Tensor:
        value = getattr(explainer.explain(inputs, targets), field)
        if value is None:
            raise InputError(f"average_stability: {getattr(explainer, 'name', 'the explainer')} gives no {field!r};"
                             f" use field='where'")
        value = value.detach().to(adapter.device).flatten(1).double()
        return value / value.norm(dim=1, keepdim=True).clamp_min(1e-300) if normalize else value

    reference = flat_map(x)
    # U(0, 1) noise as Phi(N(0, 1)) of the library's seeded normal draws: sample k depends on (seed, k) only
    normal = noise_samples(seed, n_samples, x.shape[1:], x.device, torch.float64)
    uniform = 0.5 * (1 + torch.erf(normal / math.sqrt(2.0)))
    distances = torch.empty(x.shape[0], n_samples, dtype=torch.float64, device=x.device)
    with progress_bar(n_samples, "average stability", adapter.show_progress(progress) and n_samples > 1) as advance:
        for k in range(n_samples):
            eps = (radius * (2 * uniform[k] - 1)).to(x.dtype)
            diff = flat_map(x + eps) - reference
            if distance == "l2":
                distances[:, k] = diff.norm(dim=1)
            elif distance == "l1":
                distances[:, k] = diff.abs().sum(1)
            else:
                distances[:, k] = diff.abs().amax(1)
            advance(1)
    result = distances.mean(1) if statistic == "mean" else distances.amax(1)
    return result.to(x.dtype)


# ==================================================================================================
# shared machinery
# ==================================================================================================
def _causal(metric, adapter, x, explanation, targets, domain, baseline, steps, output, auc, concepts, wavelet,
            levels, mode, seed, batch_size, progress, return_curves):
    auc = _choice(metric, "auc", auc, AUCS)
    seed = _seed(metric, seed)
    dom, targets = _domain(metric, adapter, x, explanation, targets, domain, baseline, output, concepts, wavelet,
                           levels, mode, batch_size)
    n = dom.n_features
    if steps is None:
        steps = min(DEFAULT_STEPS, n) if domain in ("pixels", "wavelet") else n
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ParameterError(f"{metric}: steps must be a positive int (the curve has steps + 1 points), got {steps!r}")
    if steps > n:
        default = "one feature per step" if domain in ("scales", "concepts") else min(DEFAULT_STEPS, n)
        raise ParameterError(f"{metric}: steps={steps} exceeds the {n} features of the {domain!r} domain; use"
                             f" steps <= {n} (None: {default})")
    steps = int(steps)
    counts = torch.arange(steps + 1, device=dom.x.device) * n // steps  # features removed (deletion) / kept (insertion)
    rank = _ranks(dom.values, seed)  # (B, N): position of each feature in the removal order
    if metric == "deletion":
        def removed(ks, idx):
            return rank[idx] < counts[ks][:, None]
    else:
        def removed(ks, idx):
            return rank[idx] >= counts[ks][:, None]
    curves = _run(dom, steps + 1, removed, targets, f"{metric} ({domain})", progress)
    c = curves.double()
    if auc == "trapezoid":
        scores = (c.sum(1) - 0.5 * (c[:, 0] + c[:, -1])) / steps
    else:
        scores = c.sum(1) / (c.amax(1) * (steps + 1))
    scores = scores.to(curves.dtype)
    return (scores, curves) if return_curves else scores


def _subset_terms(metric, adapter, x, explanation, targets, domain, baseline, subset_size, n_subsets, seed, output,
                  grid_size, concepts, wavelet, levels, mode, batch_size, progress) -> dict:
    """Attribution sums and score drops ``(B, n_subsets)`` over the seeded random subsets."""
    n_subsets = _positive_int(metric, "n_subsets", n_subsets, low=2)
    seed = _seed(metric, seed)
    dom, targets = _domain(metric, adapter, x, explanation, targets, domain, baseline, output, concepts, wavelet,
                           levels, mode, batch_size, grid_size=grid_size if domain == "pixels" else None)
    values = dom.values
    if dom.groups is not None:
        n_cells = int(dom.groups.max()) + 1
        cell_values = values.new_zeros(values.shape[0], n_cells).index_add_(1, dom.groups, values)
    else:
        n_cells, cell_values = values.shape[1], values
    size = _subset_size(metric, subset_size, n_cells, domain)
    cells = _subset_masks(seed, n_subsets, n_cells, size, values.device)  # (n, G)
    features = cells[:, dom.groups] if dom.groups is not None else cells  # (n, N)
    masks = torch.cat([torch.zeros_like(features[:1]), features])  # row 0: the intact input
    curves = _run(dom, n_subsets + 1, lambda ks, idx: masks[ks], targets, f"{metric} ({domain})", progress)
    clean = curves[:, 0]
    drops = (clean[:, None] - curves[:, 1:]).double()
    attributions = cell_values.double() @ cells.double().T  # (B, n)
    return {"attributions": attributions, "drops": drops, "clean": clean, "masks": features}


def _run(dom: _Domain, n: int, removed: Callable, targets: torch.Tensor, label: str, progress) -> torch.Tensor:
    """Scores ``(B, n)`` of rows ``(k, i)`` for ``k < n``; ``removed(ks, idx)`` flags the removed features."""
    batch = dom.x.shape[0]
    out = torch.empty(n, batch, device=dom.x.device, dtype=dom.x.dtype)
    total = n * batch
    with progress_bar(total, label, dom.adapter.show_progress(progress) and total > 1) as advance:
        for ks, idx in dom.blocks(n):
            out[ks, idx] = dom.scores(removed(ks, idx), idx, targets[idx]).to(out.dtype)
            advance(len(ks))
    return out.T.contiguous()


def _domain(metric, adapter, x, explanation, targets, domain, baseline, output, concepts, wavelet, levels, mode,
            batch_size, grid_size=None) -> tuple[_Domain, torch.Tensor]:
    """Validate the common arguments and build the domain and the targets."""
    if not isinstance(adapter, ModelAdapter):
        raise ParameterError(f"{metric}: expected a unified_xai.ModelAdapter, got {type(adapter).__name__}; wrap the"
                             f" model with ux.ModelAdapter(model, input_shape=(C, *spatial))")
    if not isinstance(domain, str) or domain not in DOMAINS:
        raise ParameterError(f"{metric}: unknown domain {domain!r}; choose one of {', '.join(map(repr, DOMAINS))}"
                             f" (did you mean {suggest(str(domain), DOMAINS, n=2)}?)")
    output = _choice(metric, "output", output, OUTPUTS)
    if batch_size is not None:
        batch_size = _positive_int(metric, "batch_size", batch_size)
    if concepts is not None and domain != "concepts":
        raise ParameterError(f"{metric}: concepts= is only used by domain='concepts' (got domain={domain!r})")
    if domain in ("scales", "concepts") and not (isinstance(baseline, numbers.Real) and float(baseline) == 0.0):
        what = ("a detail level is set to 0 and the approximation to its mean" if domain == "scales"
                else "a concept's coefficients are set to 0")
        raise ParameterError(f"{metric}: baseline does not apply to the {domain!r} domain ({what}); leave it at 0")
    x = adapter.check_input(x)
    if isinstance(explanation, Explanation) and len(explanation) != x.shape[0]:
        raise InputError(f"{metric}: the explanation has {len(explanation)} items but x has {x.shape[0]} inputs;"
                         f" give the explanation of these inputs")
    if domain == "concepts":
        craft, values = _concept_values(metric, explanation, concepts, adapter, x)
        if targets is None and isinstance(explanation, Explanation) and explanation.targets is not None:
            targets = explanation.targets
        if targets is None:
            targets = craft.class_id_
        targets = adapter.check_targets(_on(targets, adapter), x)
        return _Concepts(metric, adapter, x, output, batch_size, craft, values), targets
    if explanation is None:
        raise InputError(f"{metric}: explanation is None; give an Explanation of x or a raw map (None is only"
                         f" allowed in the concepts domain)")
    if targets is None and isinstance(explanation, Explanation) and explanation.targets is not None:
        targets = explanation.targets
    targets = adapter.check_targets(_on(targets, adapter), x)
    if domain == "pixels":
        dom = _Pixels(metric, adapter, x, output, batch_size, explanation, baseline, grid_size)
    elif domain == "wavelet":
        config = _wavelet_config(metric, explanation, wavelet, levels, mode)
        dom = _Wavelet(metric, adapter, x, output, batch_size, explanation, baseline, config)
    else:
        profile = _scale_profile(metric, explanation, x)
        config = _wavelet_config(metric, explanation, wavelet, levels, mode, default_levels=profile.shape[1] - 1)
        if config["levels"] + 1 != profile.shape[1]:
            raise InputError(f"{metric}: the scale profile has {profile.shape[1]} entries but levels={config['levels']}"
                             f" gives {config['levels'] + 1} (approximation + one per level); pass matching levels")
        dom = _Scales(metric, adapter, x, output, batch_size, profile, config)
    return dom, targets


def _on(targets, adapter):
    return targets.to(adapter.device) if isinstance(targets, torch.Tensor) else targets


# --------------------------------------------------------------------------------------------- maps
def _as_map(metric: str, value, adapter_x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{metric}: {what} must be a tensor, got {type(value).__name__}") from None
    if not torch.is_floating_point(value) and value.dtype not in (torch.int32, torch.int64, torch.bool):
        raise InputError(f"{metric}: {what} must be a real tensor, got dtype {value.dtype}")
    value = value.detach().to(device=adapter_x.device, dtype=adapter_x.dtype)
    if not torch.isfinite(value).all():
        raise InputError(f"{metric}: {what} contains NaN or infinite values")
    return value


def _pixel_values(metric, explanation, x) -> torch.Tensor:
    if isinstance(explanation, (dict, list, tuple, wavelets.WaveletCoeffs)):
        raise InputError(f"{metric}: a dict / list of bands is a wavelet-domain map; use domain='wavelet', or give a"
                         f" pixel map (B, *spatial)")
    raw = explanation.where if isinstance(explanation, Explanation) else explanation
    m = _as_map(metric, raw, x, "the pixel map")
    batch, channels, size = x.shape[0], x.shape[1], tuple(x.shape[2:])
    if tuple(m.shape) == (batch, channels, *size) and m.ndim == len(size) + 2:
        m = m.sum(1)
    if tuple(m.shape) != (batch, *size):
        raise InputError(f"{metric}: the pixel-domain map has shape {tuple(m.shape)}, but x {tuple(x.shape)} needs"
                         f" (B, *spatial) = {(batch, *size)} (or per channel (B, C, *spatial) ="
                         f" {(batch, channels, *size)}, summed over channels)")
    return m.flatten(1)


def _wavelet_config(metric, explanation, wavelet, levels, mode, default_levels=None) -> dict:
    found = {}
    if isinstance(explanation, Explanation):
        found = {k: explanation.params[k] for k in _WAVELET_DEFAULTS if explanation.params.get(k) is not None}
    elif isinstance(explanation, wavelets.WaveletCoeffs):
        found = {"wavelet": explanation.wavelet, "levels": explanation.levels, "mode": explanation.mode}
    given = {"wavelet": wavelet, "levels": levels, "mode": mode}
    for key, value in given.items():
        if value is not None and key in found and found[key] != value:
            raise ParameterError(f"{metric}: {key}={value!r} differs from the explanation's {key}={found[key]!r};"
                                 f" leave {key}=None to use the explanation's")
    config = dict(_WAVELET_DEFAULTS)
    if default_levels is not None:
        config["levels"] = int(default_levels)
    config.update(found)
    config.update({k: v for k, v in given.items() if v is not None})
    return config


def _wavelet_bands(metric, explanation, like: wavelets.WaveletCoeffs) -> list[torch.Tensor]:
    """The explanation's wavelet-domain attributions as channel-summed bands ``[(B, *sub_J), (B, O, *sub_j)...]``."""
    keys = like.band_keys()
    if isinstance(explanation, Explanation):
        raw = explanation.raw_attributions()
        if list(raw) != keys:
            raise InputError(
                f"{metric}: the {explanation.method!r} explanation has no wavelet-domain attributions (its attributions"
                f" are {list(raw) or 'empty'}, the wavelet domain needs the bands {keys}); use domain='pixels', or an"
                f" explanation from wam or sobol_wavelet with levels={like.levels}")
        bands = [raw[k] for k in keys]
    elif isinstance(explanation, wavelets.WaveletCoeffs):
        bands = explanation.tensors()
    elif isinstance(explanation, dict):
        if list(explanation) != keys:
            raise InputError(f"{metric}: a wavelet-domain map as a dict needs the keys {keys} in this order (as WAM's"
                             f" attributions), got {list(explanation)}")
        bands = [explanation[k] for k in keys]
    elif isinstance(explanation, (list, tuple)) and not isinstance(explanation, torch.Tensor):
        bands = list(explanation)
    else:
        raise InputError(f"{metric}: a wavelet-domain map must be an Explanation with wavelet attributions (wam,"
                         f" sobol_wavelet), a dict of bands {keys} (WAM's layout), a list [approx, *details] or a"
                         f" WaveletCoeffs, got {type(explanation).__name__}")
    if len(bands) != len(keys):
        raise InputError(f"{metric}: got {len(bands)} bands, the DWT with levels={like.levels} has {len(keys)}"
                         f" ({keys})")
    nd, x_like = like.ndim, like.approx
    batch, channels = like.approx.shape[:2]
    out = []
    for level, (band, t, key) in enumerate(zip(bands, like.tensors(), keys)):
        band = _as_map(metric, band, x_like, f"band {key!r}")
        sub = tuple(t.shape[-nd:])
        orient = () if level == 0 else (t.shape[2],)
        if tuple(band.shape) == (batch, channels, *orient, *sub) and band.ndim == 2 + len(orient) + nd:
            band = band.sum(1)  # per channel -> the coefficient position's attribution
        elif tuple(band.shape) == (batch, *orient, *sub):
            pass
        elif band.ndim == nd + 1 and band.shape[0] == batch and all(g <= s for g, s in zip(band.shape[1:], sub)):
            # a region grid (WCAM): each coefficient takes its region's value
            band = resize(band[:, None], sub, "nearest")[:, 0]
            if orient:
                band = band[:, None].expand(batch, *orient, *sub)
        else:
            raise InputError(
                f"{metric}: band {key!r} has shape {tuple(band.shape)}; for x of this shape it must be per channel"
                f" {(batch, channels, *orient, *sub)}, channel-summed {(batch, *orient, *sub)} or a region grid"
                f" (B, *grid) no finer than {sub} (the DWT: {like.wavelet}, levels={like.levels}, mode={like.mode})")
        out.append(band)
    return out


def _scale_profile(metric, explanation, x) -> torch.Tensor:
    if isinstance(explanation, Explanation):
        if explanation.scales is None:
            raise InputError(f"{metric}: the {explanation.method!r} explanation has no scale profile (scales is None);"
                             f" the scales domain needs one: explain with wam or sobol_wavelet, or pass a"
                             f" (B, levels + 1) tensor")
        raw = explanation.scales
    else:
        raw = explanation
    profile = _as_map(metric, raw, x, "the scale profile")
    if profile.ndim != 2 or profile.shape[0] != x.shape[0] or profile.shape[1] < 2:
        raise InputError(f"{metric}: the scale profile has shape {tuple(profile.shape)}; the scales domain needs"
                         f" (B, levels + 1) = ({x.shape[0]}, levels + 1), approximation first, finest level last")
    return profile


def _concept_values(metric, explanation, craft, adapter, x):
    from ..concepts.craft import Craft

    if craft is None:
        raise ParameterError(f"{metric}: domain='concepts' needs the fitted concept bank: pass concepts=craft (a"
                             f" ux.concepts.Craft after fit, or Craft.from_bank)")
    if not isinstance(craft, Craft):
        raise ParameterError(f"{metric}: concepts must be a fitted ux.concepts.Craft, got {type(craft).__name__}")
    if craft.adapter is not adapter:
        raise ParameterError(f"{metric}: the Craft was built on another ModelAdapter; pass the adapter it uses"
                             f" (craft.adapter)")
    k = int(craft.concepts_.shape[0])  # NotFittedError when not fitted
    batch = x.shape[0]
    if explanation is None:
        values = _as_map(metric, craft.importances_, x, "craft.importances_").expand(batch, k)
    elif isinstance(explanation, Explanation):
        if explanation.concept_importances is None or explanation.concept_ids is None:
            raise InputError(f"{metric}: the {explanation.method!r} explanation has no concept importances; explain"
                             f" with the craft explainer, pass a (B, K) importance tensor, or explanation=None for the"
                             f" bank's order")
        if explanation.targets is not None and bool((explanation.targets.cpu() != craft.class_id_).any()):
            raise InputError(f"{metric}: the explanation's concepts are of classes"
                             f" {sorted(set(explanation.targets.cpu().tolist()))}, but this Craft's bank is for class"
                             f" {craft.class_id_}; evaluate each class with its own Craft")
        ids = explanation.concept_ids.to(adapter.device).long()
        if ids.shape != (batch, k) or not bool((ids.sort(1).values == torch.arange(k, device=ids.device)).all()):
            raise InputError(f"{metric}: the explanation's concept_ids {tuple(ids.shape)} must list each of the bank's"
                             f" {k} concepts once per input")
        imp = _as_map(metric, explanation.concept_importances, x, "concept_importances")
        values = imp.new_zeros(batch, k).scatter_(1, ids, imp)
    else:
        values = _as_map(metric, explanation, x, "the concept importances")
        if values.shape == (k,):
            values = values.expand(batch, k)
        if tuple(values.shape) != (batch, k):
            raise InputError(f"{metric}: concept importances have shape {tuple(values.shape)}; expected (B, K) ="
                             f" {(batch, k)} or (K,) = ({k},) for the bank's {k} concepts")
    return craft, values.contiguous()


def _baseline(metric, baseline, x):
    from ..explainers.base import expand_baseline

    return expand_baseline(baseline, x, metric)


# --------------------------------------------------------------------------------------------- helpers
def _target_output(logits: torch.Tensor, targets: torch.Tensor, output: str) -> torch.Tensor:
    if output == "probability":
        logits = torch.softmax(logits, dim=1)
    return logits.gather(1, targets.view(-1, 1)).squeeze(1)


def _ranks(values: torch.Tensor, seed: int) -> torch.Tensor:
    """Position of every feature in the order of decreasing value ``(B, N)``; ties in a fixed random order
    drawn from ``seed`` (shared by all inputs)."""
    batch, n = values.shape
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).to(values.device)
    order = perm[torch.argsort(values[:, perm], dim=1, descending=True, stable=True)]
    rank = torch.empty(batch, n, dtype=torch.int32, device=values.device)  # int32: half the memory of the row masks
    rank.scatter_(1, order, torch.arange(n, dtype=torch.int32, device=values.device).expand(batch, n))
    return rank


def _subset_masks(seed: int, n: int, n_features: int, size: int, device) -> torch.Tensor:
    """``(n, n_features)`` bool, ``size`` features per row; row ``k`` is a function of ``(seed, k)`` only."""
    out = torch.zeros(n, n_features, dtype=torch.bool)
    gen = torch.Generator()
    for k in range(n):
        gen.manual_seed(int(seed) * 1_000_003 + k)
        out[k, torch.randperm(n_features, generator=gen)[:size]] = True
    return out.to(device)


def _grid_groups(metric, size: tuple[int, ...], grid_size, device) -> torch.Tensor:
    """Cell index of every position (row-major), ``floor(p g / n)`` per axis."""
    grid = (grid_size,) * len(size) if isinstance(grid_size, numbers.Integral) and not isinstance(grid_size, bool) \
        else grid_size
    if not isinstance(grid, (tuple, list)) or len(grid) != len(size) or not all(
            isinstance(g, numbers.Integral) and not isinstance(g, bool) and g >= 1 for g in grid):
        raise ParameterError(f"{metric}: grid_size must be a positive int, one per spatial axis ({len(size)}), or None;"
                             f" got {grid_size!r}")
    grid = tuple(min(int(g), s) for g, s in zip(grid, size))
    cells = torch.zeros(size, dtype=torch.long, device=device)
    for axis, (g, s) in enumerate(zip(grid, size)):
        shape = [1] * len(size)
        shape[axis] = s
        stride = math.prod(grid[axis + 1:])
        cells = cells + (torch.arange(s, device=device) * g // s).view(shape) * stride
    return cells.flatten()


def _subset_size(metric, subset_size, n_features, domain) -> int:
    if n_features < 2:
        raise ParameterError(f"{metric}: the {domain!r} domain has {n_features} feature(s) here; random subsets need"
                             f" at least 2 (use a finer grid_size)")
    if isinstance(subset_size, bool) or not isinstance(subset_size, numbers.Real):
        raise ParameterError(f"{metric}: subset_size must be an int or a fraction in (0, 1), got {subset_size!r}")
    if isinstance(subset_size, numbers.Integral):
        if not 1 <= subset_size <= n_features - 1:
            raise ParameterError(f"{metric}: subset_size={subset_size} is out of range: the {domain!r} domain has"
                                 f" {n_features} features here, so give an int in [1, {n_features - 1}] or a fraction"
                                 f" in (0, 1)")
        return int(subset_size)
    if not 0 < subset_size < 1:
        raise ParameterError(f"{metric}: subset_size={subset_size} is out of range: a fraction must lie in (0, 1)"
                             f" (or give an int in [1, {n_features - 1}])")
    return int(min(n_features - 1, max(1, round(subset_size * n_features))))


def _correlation(a: torch.Tensor, b: torch.Tensor, kind: str, scale_b: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise Pearson (or Spearman, average ranks) correlation of ``(B, n)`` tensors.

    A row whose spread is at the float32 rounding level of its values (``std <= 1e-6 * max |value|``;
    for ``b`` also relative to ``scale_b``, e.g. the intact score the drops are taken from) is constant:
    it carries no ordering and gets 0.
    """
    a, b = a.double(), b.double()
    ref_a = a.abs().amax(1)
    ref_b = b.abs().amax(1) + (scale_b.double().abs() if scale_b is not None else 0)
    flat = (a.std(1) <= 1e-6 * ref_a) | (b.std(1) <= 1e-6 * ref_b)
    if kind == "spearman":
        a, b = _average_ranks(a), _average_ranks(b)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)
    return torch.where(flat, torch.zeros_like(r), r.clamp(-1, 1))


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks along dim 1, ties given their average rank (as scipy.stats.rankdata)."""
    less = (v[:, None, :] < v[:, :, None]).sum(-1)
    equal = (v[:, None, :] == v[:, :, None]).sum(-1)
    return less.double() + (equal.double() + 1) / 2


def _choice(metric, name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ParameterError(f"{metric}: {name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _positive_int(metric, name, value, low=1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ParameterError(f"{metric}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def _seed(metric, seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ParameterError(f"{metric}: seed must be an int, got {seed!r}")
    return int(seed)
