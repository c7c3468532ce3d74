"""Algorithmic stability of explanations: MeGe and ReCo (Fel, Vigouroux, Cadène, Serre, WACV 2022).

"How Good is your Explanation? Algorithmic Stability Measures to Assess the Quality of Explanations for
Deep Neural Networks" (arXiv:2009.04521) asks whether an explanation survives retraining: a good
explanation of ``x`` should not change much when ``x`` is removed from the training set, and should
change when the model changes its mind. The data set is split into ``k`` folds ``V_0 .. V_{k-1}`` and
model ``f_i`` is trained on every fold but ``V_i``, so each input is unseen by exactly one model.

The definition followed is the one of the authors' own implementation, Xplique's ``MeGe``
(``xplique/metrics/representativity.py``; ``evaluate`` and ``_pairwise_distances``):

* **Pairs.** For an input ``x`` of fold ``i`` (``folds[n] == i``), the explanation of the model that did
  not train on it, ``f_i``, is compared with the explanation of every model that did, ``f_j`` for
  ``j != i``: ``k - 1`` pairs per input. (Xplique loops over model pairs ``i < j`` and keeps the inputs of
  fold ``i`` or ``j``: the same set of pairs.) Every model explains the **true label** ``y`` (Xplique
  explains ``targets``, whatever the model predicts).
* **S= and S≠.** A pair where both models predict ``y`` goes to ``S=``; a pair where exactly one of them
  does goes to ``S≠``; a pair where both are wrong is left out.
* **Distance.** ``distance="spearman"`` (the default, Xplique's): ``d = sqrt(1 - |rho|)`` with ``rho``
  the Spearman rank correlation of the two flattened maps (average ranks for ties, as
  ``scipy.stats.spearmanr``). Rank correlation needs no normalisation of the maps: it is unchanged by
  any increasing transform of either map (a rescaling, an offset), and ``|rho|`` also forgives a sign
  flip. ``d`` lies in ``[0, 1]``.
* **MeGe** (mean generalizability) ``= 1 / (1 + mean(S=))``: 1 when models that agree on ``x`` explain
  it identically, whether they saw it or not.
* **ReCo** (relative consistency) ``= max_gamma TPR(gamma) + TNR(gamma) - 1``, the best balanced accuracy
  (Youden's J) of the rule "``d <= gamma``: the two models agree" separating ``S=`` (positives) from
  ``S≠`` (negatives): ``TPR = |{d in S= : d <= gamma}| / |S=|``, ``TNR = |{d in S≠ : d > gamma}| / |S≠|``.
  It is taken exactly, over every distinct distance as ``gamma`` (and ``gamma = -inf``, which gives 0,
  so ReCo is in ``[0, 1]``); it equals the one-sided two-sample Kolmogorov-Smirnov statistic
  ``max(F_S= - F_S≠)`` of the two sets of distances. 1: the explanations of agreeing models are all
  closer than those of disagreeing ones; about 0: the distance does not tell them apart.

Where this differs from Xplique, on purpose: Xplique tries only every ``(P // 20 + 1)``-th sorted
distance as ``gamma`` (an approximation, for speed) and counts a distance equal to ``gamma`` in neither
set; here every threshold is tried and ``d <= gamma`` counts as agreeing. Xplique drops a pair whose
Spearman correlation is NaN (a constant map, e.g. an all-zero Grad-CAM); here two maps with the same
ranking (identical maps, or two constant maps) are at distance exactly 0, and a constant map against a
non-constant one has ``rho = 0`` (distance 1): such pairs stay in, and ``n_flat`` counts them. Xplique
averages a map over channels first; ``explanation.where`` is already one value per position.

``distance="l1"`` and ``"l2"`` are offered besides (not Xplique's): the maps are divided by their own
l1 (resp. l2) norm and ``d = ||a / |a|_p - b / |b|_p||_p``, in ``[0, 2]`` (an all-zero map stays zero).

All maps are ``ux.create(explainer, adapter_i, **explainer_params).explain(x, targets=y).where``; the
``seed`` is passed to explainers that take one (the same noise for every model), so a seed gives the
same result every run, and the inputs are explained in chunks of ``batch_size`` whose maps do not
depend on the chunking.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..core.batching import chunks, progress_bar
from ..core.errors import InputError, ParameterError, suggest
from ..core.model import ModelAdapter

#: distances between two explanations (see the module doc)
DISTANCES = ("spearman", "l1", "l2")
#: inputs explained per call when ``batch_size=None``
DEFAULT_BATCH = 256

__all__ = ["DISTANCES", "MeGeReCo", "explanation_distance", "mege_reco", "mege_score", "reco_score"]


@dataclass
class MeGeReCo:
    """The result of :func:`mege_reco`.

    Attributes
    ----------
    mege, reco : the two scores (NaN when ``S=`` is empty; ReCo also when ``S≠`` is empty).
    threshold : the ``gamma`` reaching ReCo (the smallest one; ``-inf`` when ReCo is 0, NaN when undefined).
    n_equal, n_different, n_excluded : pairs in ``S=``, in ``S≠``, and left out (both models wrong).
    n_flat : pairs where one map is constant and the other is not (Spearman distance 1 by convention).
    distances : ``(P,)`` float64, the distance of every pair (those left out included), on the CPU.
    pairs : ``(P, 3)`` long: input index ``n``, the model that did not train on it (``folds[n]``), the
        model compared with it; sorted by input, then model.
    kinds : ``(P,)`` int8: 1 for ``S=``, 0 for ``S≠``, -1 for a pair left out.
    predictions : ``(k, N)`` long, each model's predicted class; ``correct`` ``(k, N)`` bool.
    accuracy : ``(k,)`` each model's accuracy on the inputs of the fold it did not train on (NaN for an
        empty fold).
    explainer, distance : what was measured.
    """

    mege: float
    reco: float
    threshold: float
    n_equal: int
    n_different: int
    n_excluded: int
    n_flat: int
    distances: torch.Tensor
    pairs: torch.Tensor
    kinds: torch.Tensor
    predictions: torch.Tensor
    correct: torch.Tensor
    accuracy: torch.Tensor
    explainer: str
    distance: str
    params: dict = field(default_factory=dict)

    @property
    def s_equal(self) -> torch.Tensor:
        """Distances of ``S=`` (both models right)."""
        return self.distances[self.kinds == 1]

    @property
    def s_different(self) -> torch.Tensor:
        """Distances of ``S≠`` (exactly one model right)."""
        return self.distances[self.kinds == 0]

    def as_dict(self) -> dict[str, Any]:
        """The scalars (scores, counts, mean distances, per-model accuracy) as plain Python values."""
        eq, ne = self.s_equal, self.s_different
        return {"explainer": self.explainer, "distance": self.distance, "mege": self.mege, "reco": self.reco,
                "threshold": self.threshold, "n_equal": self.n_equal, "n_different": self.n_different,
                "n_excluded": self.n_excluded, "n_flat": self.n_flat,
                "mean_equal": float(eq.mean()) if len(eq) else math.nan,
                "mean_different": float(ne.mean()) if len(ne) else math.nan,
                "accuracy": [float(a) for a in self.accuracy]}

    def __repr__(self) -> str:
        return (f"MeGeReCo({self.explainer}, distance={self.distance!r}: mege={self.mege:.4f}, reco={self.reco:.4f},"
                f" S= {self.n_equal}, S≠ {self.n_different}, left out {self.n_excluded})")


# ==================================================================================================
# the scores of two sets of distances
# ==================================================================================================
def mege_score(s_equal) -> float:
    """MeGe ``= 1 / (1 + mean(S=))`` of the distances between explanations of models that are both right
    (NaN for an empty set)."""
    s = _distances_1d("mege_score", "s_equal", s_equal)
    return math.nan if len(s) == 0 else float(1.0 / (1.0 + s.mean()))


def reco_score(s_equal, s_different, return_threshold: bool = False):
    """ReCo ``= max_gamma TPR(gamma) + TNR(gamma) - 1`` of the rule "``d <= gamma``: agree" separating
    ``s_equal`` (positives) from ``s_different`` (negatives), maximised exactly over every distinct
    distance (and ``-inf``, worth 0). NaN when either set is empty.

    With ``return_threshold``, also the smallest ``gamma`` reaching it (``-inf`` for a ReCo of 0).
    """
    eq = _distances_1d("reco_score", "s_equal", s_equal)
    ne = _distances_1d("reco_score", "s_different", s_different)
    if len(eq) == 0 or len(ne) == 0:
        return (math.nan, math.nan) if return_threshold else math.nan
    eq, ne = eq.sort().values, ne.sort().values
    gammas = torch.unique(torch.cat([eq, ne]))  # sorted
    n_eq, n_ne = len(eq), len(ne)
    below_eq = torch.searchsorted(eq, gammas, right=True)  # S= with d <= gamma: TPR * |S=|
    below_ne = torch.searchsorted(ne, gammas, right=True)  # S≠ with d <= gamma: (1 - TNR) * |S≠|
    j = below_eq * n_ne - below_ne * n_eq  # (TPR + TNR - 1) |S=| |S≠|, in integers: exact ties between gammas
    best = int(torch.argmax(j))  # the first (smallest gamma) of the maxima
    if int(j[best]) <= 0:
        reco, gamma = 0.0, -math.inf
    else:
        reco, gamma = int(j[best]) / (n_eq * n_ne), float(gammas[best])
    return (reco, gamma) if return_threshold else reco


# ==================================================================================================
# distances between maps
# ==================================================================================================
def explanation_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "spearman") -> torch.Tensor:
    """Row-wise distance ``(B,)`` float64 between two batches of maps ``(B, *shape)`` (see the module doc:
    ``"spearman"`` ``sqrt(1 - |rho|)``, ``"l1"`` / ``"l2"`` between the maps divided by their norm)."""
    distance = _choice("explanation_distance", "distance", distance, DISTANCES)
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise InputError(f"explanation_distance: the maps must be tensors, got {type(a).__name__} and"
                         f" {type(b).__name__}")
    if a.shape != b.shape or a.ndim < 1:
        raise InputError(f"explanation_distance: the maps must have the same shape (B, *shape), got"
                         f" {tuple(a.shape)} and {tuple(b.shape)}")
    return _distance(a.flatten(1) if a.ndim > 1 else a[:, None], b.flatten(1) if b.ndim > 1 else b[:, None],
                     distance)[0]


def _distance(a: torch.Tensor, b: torch.Tensor, distance: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distances (B,), flat (B,) bool)`` of flattened maps ``(B, F)``; ``flat``: exactly one map constant
    while the rankings differ (Spearman only)."""
    a, b = a.double(), b.double()
    if distance == "spearman":
        ra, rb = _average_ranks(a), _average_ranks(b)
        same = (ra == rb).all(1)  # identical rankings (identical maps, or both constant)
        ra = ra - ra.mean(1, keepdim=True)
        rb = rb - rb.mean(1, keepdim=True)
        na, nb = ra.norm(dim=1), rb.norm(dim=1)
        flat = ((na == 0) | (nb == 0)) & ~same
        rho = (ra * rb).sum(1) / (na * nb).clamp_min(1e-300)
        d = torch.sqrt((1.0 - rho.abs().clamp(0.0, 1.0)).clamp_min(0.0))
        d = torch.where(flat, torch.ones_like(d), d)
        return torch.where(same, torch.zeros_like(d), d), flat
    p = 1 if distance == "l1" else 2
    ua = a / a.norm(p=p, dim=1, keepdim=True).clamp_min(1e-300)
    ub = b / b.norm(p=p, dim=1, keepdim=True).clamp_min(1e-300)
    return (ua - ub).norm(p=p, dim=1), torch.zeros(a.shape[0], dtype=torch.bool, device=a.device)


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks along dim 1 of ``(B, F)``, ties given their average rank (as scipy.stats.rankdata)."""
    s = v.sort(dim=1).values.contiguous()
    v = v.contiguous()
    below = torch.searchsorted(s, v, right=False)  # values strictly smaller
    upto = torch.searchsorted(s, v, right=True)  # values smaller or equal
    return (below + upto + 1).double() / 2


# ==================================================================================================
# the metric
# ==================================================================================================
def mege_reco(adapters: Sequence[ModelAdapter], x, y, folds, explainer: str | Callable = "saliency",
              explainer_params: dict | None = None, *, distance: str = "spearman", batch_size: int | None = None,
              seed: int = 0, progress: bool | None = None) -> MeGeReCo:
    """MeGe and ReCo (Fel et al., WACV 2022; Xplique's ``MeGe``) of an explainer over ``k`` models
    trained on ``k`` folds. The exact definition followed is in the module doc.

    Parameters
    ----------
    adapters : ``k >= 2`` :class:`~unified_xai.ModelAdapter` of the same input shape; model ``i`` was
        trained on every fold but fold ``i`` (it did not see the inputs with ``folds == i``).
    x : the inputs ``(N, C, *spatial)`` (every fold's; each is unseen by the model of its fold).
    y : their true labels ``(N,)`` (class indices or names): correctness, and the class every model explains.
    folds : ``(N,)`` the fold of each input, ints in ``[0, k)``.
    explainer : a registered explainer name (``ux.list_explainers()``), or a callable
        ``adapter -> explainer`` (anything with ``explain(x, targets)`` returning an Explanation).
    explainer_params : parameters of the explainer (``ux.create(explainer, adapter, **params)``).
    distance : ``"spearman"`` (the default, Xplique's ``sqrt(1 - |rho|)``), ``"l1"`` or ``"l2"``.
    batch_size : inputs explained per call (their maps from all ``k`` models are held at once);
        None: 256.
    seed : given to explainers that take a ``seed`` (unless ``explainer_params`` sets one).
    progress : progress bar over the explanations (None: the first adapter's setting).

    Returns
    -------
    MeGeReCo
        ``mege``, ``reco``, the counts of ``S=`` / ``S≠`` pairs and the distance of every pair
        (``.as_dict()`` gives the scalars).

    Raises
    ------
    ParameterError : fewer than 2 adapters, adapters of different input shapes, an unknown distance,
        a bad ``batch_size`` / ``seed`` / ``explainer_params``, an unknown explainer.
    InputError : inputs the adapters refuse, labels or folds of the wrong length or out of range, an
        explanation without a ``where`` map, or maps of different shapes across models.
    """
    metric = "mege_reco"
    adapters = _adapters(metric, adapters)
    k = len(adapters)
    distance = _choice(metric, "distance", distance, DISTANCES)
    if batch_size is not None:
        batch_size = _positive_int(metric, "batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ParameterError(f"{metric}: seed must be an int, got {seed!r}")
    if explainer_params is not None and not isinstance(explainer_params, dict):
        raise ParameterError(f"{metric}: explainer_params must be a dict of the explainer's parameters or None, got"
                             f" {type(explainer_params).__name__}")
    params = dict(explainer_params or {})
    head = adapters[0]
    x = head.check_input(x)
    n = x.shape[0]
    labels = _labels(metric, head, y, x)
    fold = _folds(metric, folds, n, k, x.device)
    explainers, name = _explainers(metric, explainer, adapters, params, int(seed))

    predictions = torch.stack([a.predict(x).argmax(1).to(x.device) for a in adapters])  # (k, N)
    correct = predictions == labels[None]
    accuracy = torch.stack([correct[i][fold == i].double().mean() if bool((fold == i).any())
                            else torch.tensor(math.nan, dtype=torch.float64, device=x.device) for i in range(k)])

    # pairs (input n, unseen model folds[n], seen model j) for every j != folds[n], sorted by n then j
    others = torch.arange(k, device=x.device).expand(n, k)
    keep = others != fold[:, None]
    inputs = torch.arange(n, device=x.device)[:, None].expand(n, k)[keep]
    seen = others[keep]
    unseen = fold[inputs]
    distances = torch.empty(len(inputs), dtype=torch.float64, device=x.device)
    flat = torch.zeros(len(inputs), dtype=torch.bool, device=x.device)
    size = batch_size or DEFAULT_BATCH
    with progress_bar(k * n, f"mege/reco ({name})", head.show_progress(progress) and k * n > 1) as advance:
        for part in chunks(n, size):
            maps = []
            for e in explainers:
                maps.append(_where(metric, e, x[part], labels[part], name, x.device))
                advance(part.stop - part.start)
            shapes = {tuple(m.shape) for m in maps}
            if len(shapes) != 1:
                raise InputError(f"{metric}: the {name} maps of the {k} models have different shapes {sorted(shapes)};"
                                 f" MeGe / ReCo compare maps position by position, so the models must explain"
                                 f" into the same shape")
            maps = torch.stack(maps)  # (k, B, F)
            rows = ((inputs >= part.start) & (inputs < part.stop)).nonzero().squeeze(1)
            local = inputs[rows] - part.start
            d, f = _distance(maps[unseen[rows], local], maps[seen[rows], local], distance)
            distances[rows], flat[rows] = d, f

    right_unseen = correct[unseen, inputs]
    right_seen = correct[seen, inputs]
    kinds = torch.full_like(inputs, -1, dtype=torch.int8)
    kinds[right_unseen & right_seen] = 1
    kinds[right_unseen ^ right_seen] = 0
    distances, kinds = distances.cpu(), kinds.cpu()
    s_eq, s_ne = distances[kinds == 1], distances[kinds == 0]
    reco, gamma = reco_score(s_eq, s_ne, return_threshold=True)
    return MeGeReCo(
        mege=mege_score(s_eq), reco=reco, threshold=gamma, n_equal=int(len(s_eq)), n_different=int(len(s_ne)),
        n_excluded=int((kinds == -1).sum()), n_flat=int(flat.sum()), distances=distances,
        pairs=torch.stack([inputs, unseen, seen], 1).cpu(), kinds=kinds, predictions=predictions.cpu(),
        correct=correct.cpu(), accuracy=accuracy.cpu(), explainer=name, distance=distance,
        params=dict(getattr(explainers[0], "config", params)))


# --------------------------------------------------------------------------------------------- checks
def _adapters(metric, adapters) -> list[ModelAdapter]:
    if isinstance(adapters, ModelAdapter) or not isinstance(adapters, (list, tuple)):
        raise ParameterError(f"{metric}: adapters must be a list of the k ModelAdapters trained on the k folds (model i"
                             f" without fold i), got {type(adapters).__name__}")
    adapters = list(adapters)
    bad = [type(a).__name__ for a in adapters if not isinstance(a, ModelAdapter)]
    if bad:
        raise ParameterError(f"{metric}: every model must be a unified_xai.ModelAdapter, got {bad[0]}; wrap each"
                             f" with ux.ModelAdapter(model, input_shape=(C, *spatial))")
    if len(adapters) < 2:
        raise ParameterError(f"{metric}: needs k >= 2 models trained on k folds (got {len(adapters)}); the paper"
                             f" and Xplique use k = 4 to 6")
    shapes = {a.input_shape for a in adapters}
    if len(shapes) != 1:
        raise ParameterError(f"{metric}: the models take different input shapes {sorted(map(str, shapes))}; the k"
                             f" models must be the same architecture trained on different folds")
    return adapters


def _labels(metric, adapter, y, x) -> torch.Tensor:
    if y is None:
        raise InputError(f"{metric}: y (the true labels) is required: correctness decides S= and S≠")
    values = y.tolist() if isinstance(y, (torch.Tensor, np.ndarray)) else y
    if isinstance(values, str) or not isinstance(values, Sequence):
        values = [values]
    if len(values) != x.shape[0]:
        raise InputError(f"{metric}: y must hold one true label per input: {x.shape[0]} inputs, got {len(values)}"
                         f" label(s)")
    return adapter.check_targets(list(values), x)


def _folds(metric, folds, n, k, device) -> torch.Tensor:
    if isinstance(folds, np.ndarray):
        folds = torch.from_numpy(folds)
    if not isinstance(folds, torch.Tensor):
        try:
            folds = torch.as_tensor(folds)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{metric}: folds must be a sequence of ints, got {type(folds).__name__}") from None
    if folds.ndim != 1 or folds.shape[0] != n:
        raise InputError(f"{metric}: folds must hold the fold of each input, shape ({n},), got {tuple(folds.shape)}")
    if folds.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        raise InputError(f"{metric}: folds must be integer fold indices in [0, {k}), got dtype {folds.dtype}")
    folds = folds.long()
    if bool(((folds < 0) | (folds >= k)).any()):
        raise InputError(f"{metric}: folds must lie in [0, {k}) for {k} models (model i did not train on the inputs of"
                         f" fold i), got values {sorted(set(folds.tolist()) - set(range(k)))[:5]}")
    return folds.to(device)


def _explainers(metric, explainer, adapters, params, seed) -> tuple[list, str]:
    from ..core.registry import create, get_explainer_class, list_explainers

    if isinstance(explainer, str):
        if explainer not in list_explainers():
            raise ParameterError(f"{metric}: unknown explainer {explainer!r}; did you mean"
                                 f" {suggest(explainer, list_explainers(), n=3)}?")
        if "seed" in get_explainer_class(explainer).params and "seed" not in params:
            params["seed"] = seed
        return [create(explainer, a, **params) for a in adapters], explainer
    if callable(explainer):
        if params:
            raise ParameterError(f"{metric}: explainer_params only apply to an explainer given by name; a callable"
                                 f" builds its own explainer")
        built = [explainer(a) for a in adapters]
        if not all(callable(getattr(e, "explain", None)) for e in built):
            raise ParameterError(f"{metric}: the explainer callable must return explainers (with explain(x, targets))")
        return built, getattr(built[0], "name", None) or getattr(explainer, "__name__", "explainer")
    raise ParameterError(f"{metric}: explainer must be a registered name ({', '.join(list_explainers())}) or a"
                         f" callable adapter -> explainer, got {type(explainer).__name__}")


def _where(metric, explainer, x, targets, name, device) -> torch.Tensor:
    where = getattr(explainer.explain(x, targets), "where", None)
    if where is None:
        raise InputError(f"{metric}: the {name} explanation has no 'where' map; MeGe / ReCo compare where maps")
    where = where.detach().to(device)
    if where.shape[0] != x.shape[0]:
        raise InputError(f"{metric}: the {name} explainer gave {where.shape[0]} maps for {x.shape[0]} inputs")
    if not bool(torch.isfinite(where).all()):
        raise InputError(f"{metric}: the {name} maps contain NaN or infinite values")
    return where.flatten(1)


def _distances_1d(metric, name, values) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{metric}: {name} contains NaN or infinite distances")
    return t


def _choice(metric, name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ParameterError(f"{metric}: {name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
                             + (f" (did you mean {suggest(value, allowed, n=2)}?)" if isinstance(value, str) else ""))
    return value


def _positive_int(metric, name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{metric}: {name} must be an int >= 1, got {value!r}")
    return int(value)
