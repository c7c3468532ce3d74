"""MeGe and ReCo (Fel et al., WACV 2022; Xplique's ``MeGe``): hand-computed cases on linear models whose
saliency maps are known, identical models, agreement with scipy (Spearman, Kolmogorov-Smirnov) and with a
plain re-implementation of Xplique's pair loop, random models, determinism and every bad input.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp, spearmanr
from torch import nn

import unified_xai as ux
from unified_xai.core.errors import InputError, ParameterError, UnknownNameError, UXAIError
from unified_xai.metrics.stability import MeGeReCo, explanation_distance, mege_reco, mege_score, reco_score

from conftest import random_inputs, tiny_adapter


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ hand-checkable linear models
W = [1.0, 2.0, 3.0, 4.0]
W_OTHER = [2.0, 4.0, 1.0, 3.0]  # its ranks have Spearman rho = 0 with W's: d = sqrt(1 - 0) = 1


def linear(w, name):
    """logits (w . x, -w . x) on a (1, 4) signal: class 0 iff w . x > 0; the saliency |d logit_y / dx| is |w|."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([w, [-v for v in w]]))
    return ux.ModelAdapter(model, (1, 4), device="cpu", progress=False, batch_size=16, name=name)


def three_models():
    """Models 0 and 1 (w and 2w: the same ranking, always right) and model 2 (another ranking)."""
    return [linear(W, "w"), linear([2 * v for v in W], "2w"), linear(W_OTHER, "other")]


# model 2 predicts the opposite class of w on these (w . x and w' . x have opposite signs)
WRONG_FOR_2 = [[0, 1, -1, 0], [0, -1, 1, 0], [-1, 0, 1, 0], [1, 0, -1, 0], [0, 2, -2, 0], [-2, 0, 2, 0]]
RIGHT_FOR_2 = [[0, 0, -1, 1], [1, 0, 0, -1]]  # same sign: model 2 is right too


def signals(rows):
    x = torch.tensor(rows, dtype=torch.float32)[:, None, :]
    y = (x[:, 0] @ torch.tensor(W) <= 0).long()  # the truth is model 0's rule
    return x, y


def test_saliency_maps_of_the_linear_models_are_their_weights():
    x, y = signals(WRONG_FOR_2)
    for adapter, w in zip(three_models(), [W, [2 * v for v in W], W_OTHER]):
        where = ux.create("saliency", adapter).explain(x, y).where
        assert torch.allclose(where, torch.tensor(w).expand(len(x), 4))
    models = three_models()
    assert torch.equal(models[0].predict(x).argmax(1), y)
    assert torch.equal(models[2].predict(x).argmax(1), 1 - y)
    assert explanation_distance(torch.tensor([W]), torch.tensor([W_OTHER])).item() == pytest.approx(1.0)


def test_small_distances_for_agreeing_models_and_large_for_disagreeing_ones_give_reco_1():
    x, y = signals(WRONG_FOR_2)
    folds = [0, 1, 2, 0, 1, 2]
    r = mege_reco(three_models(), x, y, folds)
    assert isinstance(r, MeGeReCo)
    # fold 0 / 1 inputs: the pair (0, 1) is in S= at distance 0, the pair with model 2 in S≠ at distance 1;
    # fold 2 inputs: model 2 (the unseen one) is wrong, both its pairs are in S≠
    assert (r.n_equal, r.n_different, r.n_excluded, r.n_flat) == (4, 8, 0, 0)
    assert r.s_equal.tolist() == [0.0] * 4
    assert r.s_different.tolist() == pytest.approx([1.0] * 8)
    assert r.mege == 1.0 and r.reco == 1.0 and r.threshold == 0.0
    # pairs: (input, the model that did not train on it, the other), sorted by input then model
    assert r.pairs[:4].tolist() == [[0, 0, 1], [0, 0, 2], [1, 1, 0], [1, 1, 2]]
    assert r.kinds[:4].tolist() == [1, 0, 1, 0]
    assert r.pairs[4:6].tolist() == [[2, 2, 0], [2, 2, 1]] and r.kinds[4:6].tolist() == [0, 0]
    assert r.accuracy.tolist() == [1.0, 1.0, 0.0]
    assert r.as_dict()["mean_different"] == pytest.approx(1.0)


def test_a_mixed_case_computed_by_hand():
    x, y = signals(WRONG_FOR_2 + RIGHT_FOR_2)
    folds = [0, 1, 2, 0, 1, 2, 0, 2]
    r = mege_reco(three_models(), x, y, folds)
    # the two new inputs add S= pairs: fold 0: (0, 1) at 0 and (0, 2) at 1; fold 2: (2, 0) and (2, 1) at 1
    assert (r.n_equal, r.n_different) == (8, 8)
    assert sorted(r.s_equal.tolist()) == pytest.approx([0.0] * 5 + [1.0] * 3)
    assert r.mege == pytest.approx(1 / (1 + 3 / 8))
    # gamma = 0 keeps the 5 zeros of S= and none of S≠: TPR 5/8, TNR 1
    assert r.reco == pytest.approx(5 / 8) and r.threshold == 0.0
    # the l1 distance of the l1-normalised maps: |w - w'|_1 / 10 = 0.6
    l1 = mege_reco(three_models(), x, y, folds, distance="l1")
    assert sorted(l1.s_equal.tolist()) == pytest.approx([0.0] * 5 + [0.6] * 3)
    assert l1.mege == pytest.approx(1 / (1 + 3 * 0.6 / 8)) and l1.reco == pytest.approx(5 / 8)
    l2 = mege_reco(three_models(), x, y, folds, distance="l2")
    u, v = torch.tensor(W) / math.sqrt(30), torch.tensor(W_OTHER) / math.sqrt(30)
    assert l2.s_different.tolist() == pytest.approx([float((u - v).norm())] * 8)


def test_both_models_wrong_leaves_the_pair_out():
    x, y = signals(WRONG_FOR_2[:2])
    r = mege_reco(three_models(), x, 1 - y, [0, 1])  # models 0 and 1 now always wrong, model 2 always right
    # input 0 (fold 0): (0, 1) both wrong -> left out; (0, 2) one right -> S≠; input 1 likewise
    assert (r.n_equal, r.n_different, r.n_excluded) == (0, 2, 2)
    assert math.isnan(r.mege) and math.isnan(r.reco) and math.isnan(r.threshold)


# ------------------------------------------------------------------ identical and random models
def test_identical_models_give_mege_1_and_distances_0():
    models = [tiny_adapter(2, seed=3) for _ in range(3)]
    x = random_inputs(models[0], batch=9, seed=2)
    pred = models[0].predict(x).argmax(1)
    y = pred.clone()
    y[::3] = (pred[::3] + 1) % 4  # a third of the inputs wrong for every model: both wrong, left out
    for explainer in ("saliency", "smoothgrad", "integrated_gradients"):
        r = mege_reco(models, x, y, torch.arange(9) % 3, explainer)
        assert torch.equal(r.distances, torch.zeros(18, dtype=torch.float64)), explainer
        assert r.mege == 1.0 and (r.n_equal, r.n_different, r.n_excluded) == (12, 0, 6)
        assert math.isnan(r.reco)  # no S≠ pair: nothing to separate
        for distance in ("l1", "l2"):
            assert mege_reco(models, x, y, torch.arange(9) % 3, explainer, distance=distance).mege == 1.0


def xplique_pairs(models, x, y, folds, explainer="saliency"):
    """Xplique's ``_pairwise_distances`` loop (model pairs i < j, inputs of fold i or j), with scipy's Spearman."""
    k = len(models)
    maps = [ux.create(explainer, m).explain(x, y).where.flatten(1).numpy() for m in models]
    pred = [m.predict(x).argmax(1).numpy() for m in models]
    s_eq, s_ne = [], []
    for i in range(k):
        for j in range(i + 1, k):
            for n in range(len(x)):
                if folds[n] in (i, j) and (pred[i][n] == y[n] or pred[j][n] == y[n]):
                    d = math.sqrt(1 - abs(spearmanr(maps[i][n], maps[j][n])[0]))
                    (s_eq if pred[i][n] == pred[j][n] else s_ne).append(d)
    return sorted(s_eq), sorted(s_ne)


@pytest.fixture(scope="module")
def random_models():
    """Four random tiny nets; the truth is model 0's prediction, so agreement is chance, unrelated to the maps."""
    models = [tiny_adapter(2, seed=s) for s in range(4)]
    x = random_inputs(models[0], batch=48, seed=5)
    y = models[0].predict(x).argmax(1)
    folds = torch.arange(48) % 4
    return models, x, y, folds


def test_pairs_and_distances_match_xplique_loop_and_scipy(random_models):
    models, x, y, folds = random_models
    r = mege_reco(models, x, y, folds)
    s_eq, s_ne = xplique_pairs(models, x, y.tolist(), folds.tolist())
    assert sorted(r.s_equal.tolist()) == pytest.approx(s_eq, abs=1e-9)
    assert sorted(r.s_different.tolist()) == pytest.approx(s_ne, abs=1e-9)
    assert r.n_equal + r.n_different + r.n_excluded == 48 * 3
    assert r.mege == pytest.approx(1 / (1 + np.mean(s_eq)))
    # ReCo is the one-sided two-sample Kolmogorov-Smirnov statistic max(F_S= - F_S≠)
    assert r.reco == pytest.approx(ks_2samp(s_eq, s_ne, alternative="greater").statistic)


class RandomMaps:
    """An 'explainer' whose maps are noise drawn from its own seed, unrelated to the model and the input."""

    name = "random"

    def __init__(self, adapter, seed):
        self.adapter, self.seed = adapter, seed

    def explain(self, x, targets=None):
        gen = torch.Generator().manual_seed(self.seed)
        return SimpleNamespace(where=torch.rand(len(x), *x.shape[2:], generator=gen))


def test_random_maps_give_a_small_reco():
    """Four noisy copies of a linear rule (accuracy 70-95 %, right and wrong on different inputs) and maps
    that are noise: S= and S≠ hold distances of one distribution, so ReCo is near 0 (the KS scale)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, generator=gen)
    models = [linear((w + 0.5 * torch.randn(4, generator=gen)).tolist(), f"noisy{i}") for i in range(4)]
    x = torch.randn(240, 1, 4, generator=gen)
    y = (x[:, 0] @ w <= 0).long()
    seeds = iter(range(100, 104))
    r = mege_reco(models, x, y, torch.arange(240) % 4, lambda adapter: RandomMaps(adapter, next(seeds)))
    assert r.explainer == "random"
    assert r.n_equal > 300 and r.n_different > 60
    assert 0 <= r.reco < 0.15
    # the score itself on large samples of one distribution
    assert reco_score(torch.rand(2000, generator=gen), torch.rand(2000, generator=gen)) < 0.05


def test_reco_and_mege_scores_by_hand():
    assert reco_score([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert reco_score([0.3, 0.4], [0.1, 0.2]) == 0.0  # reversed: no threshold helps, ReCo floors at 0
    assert reco_score([0.3, 0.4], [0.1, 0.2], return_threshold=True) == (0.0, -math.inf)
    # S= {0.1, 0.3, 0.5}, S≠ {0.2, 0.4, 0.6}: gamma = 0.1 -> TPR 1/3, TNR 1; every gamma gives J <= 1/3
    assert reco_score([0.1, 0.3, 0.5], [0.2, 0.4, 0.6], return_threshold=True) == (pytest.approx(1 / 3), 0.1)
    # ties at the threshold count as agreeing: S= {0.2, 0.2}, S≠ {0.2, 0.5} -> gamma 0.2: TPR 1, TNR 1/2
    assert reco_score([0.2, 0.2], [0.2, 0.5]) == pytest.approx(0.5)
    assert mege_score([0.0, 1.0]) == pytest.approx(1 / 1.5)
    assert math.isnan(mege_score([])) and math.isnan(reco_score([0.1], []))
    with pytest.raises(InputError, match="NaN"):
        reco_score([0.1, float("nan")], [0.2])


def test_spearman_distance_matches_scipy_with_ties_and_handles_constant_maps():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(4, 50, generator=gen).round()  # many ties
    b = (a + torch.randn(4, 50, generator=gen)).round()
    b[1] = -a[1]  # a sign flip: |rho| = 1
    d = explanation_distance(a, b)
    ref = [math.sqrt(max(0.0, 1 - abs(spearmanr(a[i], b[i])[0]))) for i in range(4)]
    assert d.tolist() == pytest.approx(ref, abs=1e-9) and d[1] == pytest.approx(0.0, abs=1e-7)
    flat, ramp = torch.zeros(1, 6), torch.arange(6.0)[None]
    assert explanation_distance(flat, flat + 3).item() == 0.0  # two constant maps rank alike
    assert explanation_distance(flat, ramp).item() == 1.0  # a constant map against a ranking: rho = 0
    assert explanation_distance(ramp, 5 * ramp + 2, "spearman").item() == 0.0
    assert explanation_distance(ramp, 5 * ramp, "l1").item() == pytest.approx(0.0, abs=1e-12)
    assert explanation_distance(ramp[:, :2], torch.tensor([[1.0, 0.0]]), "l1").item() == pytest.approx(2.0)


# ------------------------------------------------------------------ determinism and chunking
def test_a_seed_gives_the_same_result_and_chunking_does_not_matter(random_models):
    models, x, y, folds = random_models
    x, y, folds = x[:16], y[:16], folds[:16]
    params = {"n_samples": 4}
    first = mege_reco(models, x, y, folds, "smoothgrad", params, seed=3)
    again = mege_reco(models, x, y, folds, "smoothgrad", params, seed=3, batch_size=5)
    assert torch.equal(first.distances, again.distances) and first.reco == again.reco and first.mege == again.mege
    other = mege_reco(models, x, y, folds, "smoothgrad", params, seed=4)
    assert not torch.equal(first.distances, other.distances)
    assert first.params["seed"] == 3 and first.params["n_samples"] == 4
    # an explicit seed in the parameters wins
    assert mege_reco(models, x, y, folds, "smoothgrad", {"n_samples": 4, "seed": 4}, seed=3).params["seed"] == 4


def test_an_explainer_callable_is_accepted(random_models):
    models, x, y, folds = random_models
    by_name = mege_reco(models, x, y, folds, "saliency")
    by_callable = mege_reco(models, x, y, folds, lambda adapter: ux.create("saliency", adapter))
    assert torch.equal(by_name.distances, by_callable.distances) and by_callable.explainer == "saliency"


# ------------------------------------------------------------------ bad input
def test_bad_input_gets_a_clear_error(random_models):
    models, x, y, folds = random_models
    x, y, folds = x[:8], y[:8], folds[:8]
    cases = [
        (ParameterError, "list of the k ModelAdapters", dict(adapters=models[0])),
        (ParameterError, "k >= 2", dict(adapters=models[:1])),
        (ParameterError, "ModelAdapter", dict(adapters=[models[0], models[1].model])),
        (ParameterError, "different input shapes", dict(adapters=[models[0], tiny_adapter(1)])),
        (InputError, "one true label per input", dict(y=y[:5])),
        (InputError, "required", dict(y=None)),
        (InputError, "out of range", dict(y=torch.full((8,), 7))),
        (InputError, r"shape \(8,\)", dict(folds=folds[:3])),
        (InputError, r"\[0, 4\)", dict(folds=torch.full((8,), 4))),
        (InputError, "integer", dict(folds=folds.float())),
        (ParameterError, "distance must be one of", dict(distance="cosine")),
        (ParameterError, "batch_size", dict(batch_size=0)),
        (ParameterError, "seed", dict(seed="0")),
        (ParameterError, "unknown explainer 'saliancy'; did you mean 'saliency'", dict(explainer="saliancy")),
        (ParameterError, "explainer_params must be a dict", dict(explainer_params=[("n_samples", 3)])),
        (ParameterError, "only apply to an explainer given by name",
         dict(explainer=lambda a: ux.create("saliency", a), explainer_params={"absolute": False})),
        (ParameterError, "unknown parameter", dict(explainer_params={"n_sample": 3})),
        (InputError, "expects", dict(x=torch.zeros(8, 3, 16, 16 + 1))),
    ]
    for error, message, change in cases:
        kwargs = dict(adapters=models, x=x, y=y, folds=folds, explainer="saliency")
        kwargs.update(change)
        with pytest.raises(error, match=message):
            mege_reco(**kwargs)
        assert issubclass(error, UXAIError) and not issubclass(error, UnknownNameError)
    with pytest.raises(ParameterError, match="distance"):
        explanation_distance(torch.zeros(1, 3), torch.zeros(1, 3), "l3")
    with pytest.raises(InputError, match="same shape"):
        explanation_distance(torch.zeros(1, 3), torch.zeros(1, 4))
