"""Faithfulness metrics (Deletion, Insertion, µ-Fidelity, infidelity) in every domain, and Average Stability.

Hand-computed curves on a 4-pixel linear model; the exact attribution ``w * x`` of a linear model (µ-Fidelity
1 in pixels, and for WAM-IG in the wavelet domain; Deletion/Insertion orderings); agreement with scipy's
correlations and Captum's ``infidelity``; the scales domain on a model that reads one wavelet level; the
concepts domain on the planted-concepts model; batch independence, seeds, and every bad input.
"""
from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from torch import nn

import unified_xai as ux
from unified_xai import wavelets
from unified_xai.core.errors import InputError, ParameterError, UXAIError
from unified_xai.metrics import average_stability, deletion, infidelity, insertion, mu_fidelity

from conftest import random_inputs, tiny_adapter

SHAPE = (3, 16, 16)


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_adapter(shape=SHAPE, classes=5, seed=0, bias=True):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), classes, bias=bias)).eval()
    return ux.ModelAdapter(model, shape, device="cpu", progress=False, batch_size=64, name="linear")


@pytest.fixture(scope="module")
def linear():
    """A linear model, inputs, their predicted classes and the exact pixel attribution sum_c w_c x_c (baseline 0)."""
    adapter = linear_adapter()
    x = torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(1))
    targets = adapter.predict(x).argmax(1)
    w = adapter.model[1].weight.detach()[targets].view(6, *SHAPE)
    return adapter, x, targets, (w * x).sum(1)


# ------------------------------------------------------------------ hand-computed curves
def four_pixel_adapter():
    """logits = (x . [1, 2, 3, 4], 0) on a (1, 4) signal."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))
    return ux.ModelAdapter(model, (1, 4), device="cpu", progress=False, batch_size=16, name="four")


def test_deletion_and_insertion_equal_hand_computed_values():
    adapter = four_pixel_adapter()
    x = torch.ones(1, 1, 4)
    ranking = torch.tensor([[0.1, 0.4, 0.3, 0.2]])  # removal order: pixel 1 (w 2), 2 (w 3), 3 (w 4), 0 (w 1)
    score, curve = deletion(adapter, x, ranking, targets=0, steps=4, return_curves=True)
    assert curve.tolist() == [[10.0, 8.0, 5.0, 1.0, 0.0]]
    assert score.item() == pytest.approx((10 / 2 + 8 + 5 + 1 + 0 / 2) / 4)  # 4.75
    score, curve = insertion(adapter, x, ranking, targets=0, steps=4, return_curves=True)
    assert curve.tolist() == [[0.0, 2.0, 5.0, 9.0, 10.0]]
    assert score.item() == pytest.approx((0 / 2 + 2 + 5 + 9 + 10 / 2) / 4)  # 5.25
    # the WAM evaluation's AUC: sum / (max * (steps + 1))
    assert deletion(adapter, x, ranking, targets=0, steps=4, auc="wam").item() == pytest.approx(24 / 50)
    # 2 steps remove floor(k * 4 / 2) = 0, 2, 4 pixels
    score, curve = deletion(adapter, x, ranking, targets=0, steps=2, return_curves=True)
    assert curve.tolist() == [[10.0, 5.0, 0.0]] and score.item() == pytest.approx(5.0)
    # 3 steps: floor(4k / 3) = 0, 1, 2, 4 pixels
    _, curve = deletion(adapter, x, ranking, targets=0, steps=3, return_curves=True)
    assert curve.tolist() == [[10.0, 8.0, 5.0, 0.0]]
    # a baseline of 0.5: a removed pixel keeps half its contribution
    _, curve = deletion(adapter, x, ranking, targets=0, steps=4, baseline=0.5, return_curves=True)
    assert curve.tolist() == [[10.0, 9.0, 7.5, 5.5, 5.0]]
    # probabilities: softmax of (logit, 0) is the sigmoid of the logit
    score, curve = deletion(adapter, x, ranking, targets=0, steps=4, output="probability", return_curves=True)
    p = torch.sigmoid(torch.tensor([10.0, 8.0, 5.0, 1.0, 0.0]))
    torch.testing.assert_close(curve[0], p)
    assert score.item() == pytest.approx(float((p.sum() - (p[0] + p[-1]) / 2) / 4), rel=1e-6)
    # the map's own scale and a per-channel (B, C, T) layout do not change the ranking
    assert deletion(adapter, x, 7 * ranking[:, None], targets=0, steps=4).item() == pytest.approx(4.75)


def test_mu_fidelity_terms_are_the_subset_sums_and_drops_and_match_scipy():
    adapter = four_pixel_adapter()
    x = torch.tensor([[[1.0, -2.0, 0.5, 3.0]]])
    contributions = torch.tensor([1.0, -4.0, 1.5, 12.0])  # w * x
    phi = torch.tensor([[0.3, -1.0, 2.0, 5.0]])
    score, terms = mu_fidelity(adapter, x, phi, targets=0, subset_size=2, n_subsets=20, grid_size=None,
                               return_terms=True)
    masks = terms["masks"].double()
    assert terms["masks"].shape == (20, 4) and (terms["masks"].sum(1) == 2).all()
    torch.testing.assert_close(terms["drops"][0], masks @ contributions.double())
    torch.testing.assert_close(terms["attributions"][0], masks @ phi[0].double())
    assert terms["clean"].item() == pytest.approx(float(contributions.sum()))
    a, d = terms["attributions"][0].numpy(), terms["drops"][0].numpy()
    assert score.item() == pytest.approx(pearsonr(a, d).statistic, abs=1e-6)
    rho = mu_fidelity(adapter, x, phi, targets=0, subset_size=2, n_subsets=20, grid_size=None, correlation="spearman")
    assert rho.item() == pytest.approx(spearmanr(a, d).statistic, abs=1e-6)  # with ties (6 distinct pairs)


# ------------------------------------------------------------------ the exact attribution of a linear model
def test_linear_model_exact_attribution_has_mu_fidelity_one_and_the_best_deletion_and_insertion(linear):
    adapter, x, targets, exact = linear
    random_map = torch.randn(exact.shape, generator=torch.Generator().manual_seed(3))
    for grid in (4, None):
        mu = mu_fidelity(adapter, x, exact, targets, grid_size=grid)
        torch.testing.assert_close(mu, torch.ones(6), atol=1e-5, rtol=0)
        chance = mu_fidelity(adapter, x, random_map, targets, grid_size=grid)
        assert chance.abs().mean() < 0.15 and chance.abs().max() < 0.35, chance
    assert (mu_fidelity(adapter, x, exact, targets, correlation="spearman") > 1 - 1e-6).all()
    assert (infidelity(adapter, x, exact, targets) < 1e-8).all()
    dele = {name: deletion(adapter, x, m, targets) for name, m in
            (("exact", exact), ("random", random_map), ("reversed", -exact))}
    ins = {name: insertion(adapter, x, m, targets) for name, m in
           (("exact", exact), ("random", random_map), ("reversed", -exact))}
    assert (dele["exact"] < dele["random"]).all() and (dele["random"] < dele["reversed"]).all(), dele
    assert (ins["exact"] > ins["random"]).all() and (ins["random"] > ins["reversed"]).all(), ins
    # an Explanation's `where` is used as the map: Input x Gradient (signed) is the exact attribution
    e = ux.create("input_x_gradient", adapter, absolute=False).explain(x, targets)
    torch.testing.assert_close(deletion(adapter, x, e), dele["exact"])


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_wam_integrated_gradients_has_wavelet_mu_fidelity_one_on_a_linear_model(linear, wavelet):
    adapter, x, targets, _ = linear
    e = ux.create("wam", adapter, variant="integrated", n_samples=4, wavelet=wavelet, levels=2).explain(x, targets)
    mu = mu_fidelity(adapter, x, e, domain="wavelet")
    torch.testing.assert_close(mu, torch.ones(6), atol=1e-5, rtol=0)
    # the bands passed raw (WAM's dict, per channel) give the same scores as the Explanation
    raw = mu_fidelity(adapter, x, e.attributions, targets, domain="wavelet", wavelet=wavelet, levels=2)
    torch.testing.assert_close(raw, mu)
    # the coefficients ranked by the exact attribution delete better than a random ranking
    shuffled = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(5)) for k, v in e.attributions.items()}
    exact_del = deletion(adapter, x, e, domain="wavelet")
    random_del = deletion(adapter, x, shuffled, targets, domain="wavelet", wavelet=wavelet, levels=2)
    assert (exact_del < random_del).all()


def test_insertion_of_the_reversed_order_is_deletion_of_the_order():
    """Keeping the k least important features removes the N - k most important: the same curve, reversed."""
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    m = torch.randn(2, 16, 24, generator=torch.Generator().manual_seed(0))
    d, dc = deletion(adapter, x, m, steps=24, return_curves=True)
    i, ic = insertion(adapter, x, -m, targets=adapter.predict(x).argmax(1), steps=24, return_curves=True)
    torch.testing.assert_close(dc, ic.flip(1))
    torch.testing.assert_close(d, i)


@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_curves_run_from_the_intact_input_to_everything_removed_in_every_modality(ndim):
    adapter = tiny_adapter(ndim)
    x = random_inputs(adapter, batch=2)
    e = ux.create("wam", adapter, n_samples=2, levels=2).explain(x)
    pick = e.targets[:, None]
    intact = adapter.predict(x).gather(1, pick)[:, 0]
    c = wavelets.dwt(x, ndim, "haar", 2)  # every level removed: details 0, approximation its mean per channel
    flat = c.approx.mean(dim=tuple(range(2, c.approx.ndim)), keepdim=True).expand_as(c.approx)
    means = wavelets.idwt(c.with_tensors([flat] + [torch.zeros_like(d) for d in c.details]))
    removed = {"pixels": torch.full_like(x, 0.25), "wavelet": torch.full_like(x, 0.25), "scales": means}
    for domain, emptied in removed.items():
        baseline = {} if domain == "scales" else {"baseline": 0.25}
        _, d = deletion(adapter, x, e, domain=domain, return_curves=True, **baseline)
        _, i = insertion(adapter, x, e, domain=domain, return_curves=True, **baseline)
        end = adapter.predict(emptied).gather(1, pick)[:, 0]
        for curve in (d, i.flip(1)):
            torch.testing.assert_close(curve[:, 0], intact, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(curve[:, -1], end, atol=1e-5, rtol=1e-5)
        mu = mu_fidelity(adapter, x, e, domain=domain, n_subsets=8, subset_size=1 if domain == "scales" else 0.2)
        assert mu.shape == (2,) and bool(((mu >= -1) & (mu <= 1)).all())


# ------------------------------------------------------------------ Captum
def test_infidelity_equals_captum_infidelity_with_the_same_subsets():
    from captum.metrics import infidelity as captum_infidelity

    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=3)
    e = ux.create("input_x_gradient", adapter, absolute=False).explain(x)
    n, baseline = 24, 0.5
    for normalize in (False, True):
        ours, terms = infidelity(adapter, x, e, n_subsets=n, grid_size=4, baseline=baseline, normalize=normalize,
                                 return_terms=True)
        masks = terms["masks"].view(n, 1, *x.shape[2:]).to(x.dtype)

        def perturb(inputs):  # Captum repeats each input n times in a row: row i * n + k is subset k of input i
            indicator = masks.repeat(x.shape[0], 1, 1, 1).expand_as(inputs)
            return indicator, inputs * (1 - indicator) + baseline * indicator

        attributions = (e.where / x.shape[1])[:, None].expand_as(x)  # sum over channels of phi * I = the cell sums
        theirs = captum_infidelity(adapter.network, perturb, x, attributions, target=e.targets, n_perturb_samples=n,
                                   normalize=normalize)
        torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-4, atol=1e-9)
        assert (ours > 0).all()


# ------------------------------------------------------------------ scales
class ReadsOneLevel(nn.Module):
    """Class 0's logit is the l1 norm of one level of the input's Haar DWT (2 levels); class 1 is 0."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        band = wavelets.dwt(x, 2, "haar", 2).tensors()[self.level]
        s = self.scale * band.abs().flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_scales_domain_removing_the_level_the_model_reads_first_scores_lowest():
    adapter = ux.ModelAdapter(ReadsOneLevel(level=2).eval(), (1, 8, 8), device="cpu", progress=False, batch_size=16)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    s = adapter.predict(x)[:, 0]
    finest_first = torch.tensor([[0.1, 0.2, 0.7]]).expand(2, 3)  # approximation, level 2, level 1 (read)
    finest_last = torch.tensor([[0.7, 0.2, 0.1]]).expand(2, 3)
    low, low_curve = deletion(adapter, x, finest_first, targets=0, domain="scales", levels=2, return_curves=True)
    high, high_curve = deletion(adapter, x, finest_last, targets=0, domain="scales", levels=2, return_curves=True)
    torch.testing.assert_close(low_curve, torch.stack([s, 0 * s, 0 * s, 0 * s], 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(high_curve, torch.stack([s, s, s, 0 * s], 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(low, s / 6, rtol=1e-5, atol=0)  # (s / 2) / 3
    torch.testing.assert_close(high, 5 * s / 6, rtol=1e-5, atol=0)  # (s / 2 + 2 s) / 3
    assert (low < high).all()
    assert (insertion(adapter, x, finest_first, targets=0, domain="scales", levels=2)
            > insertion(adapter, x, finest_last, targets=0, domain="scales", levels=2)).all()
    # WAM's scale profile puts everything on the finest level: its deletion is the finest-first one
    e = ux.create("wam", adapter, variant="gradient", levels=2).explain(x, targets=0)
    assert (e.scales.argmax(1) == 2).all()
    torch.testing.assert_close(deletion(adapter, x, e, domain="scales"), low)


def test_scales_domain_sets_the_approximation_to_its_mean():
    adapter = ux.ModelAdapter(ReadsOneLevel(level=0).eval(), (1, 8, 8), device="cpu", progress=False, batch_size=16)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    approx = wavelets.dwt(x, 2, "haar", 2).approx
    _, curve = deletion(adapter, x, torch.tensor([[1.0, 0.5, 0.2]]), targets=0, domain="scales", levels=2,
                        return_curves=True)
    # approximation first: its 2x2 coefficients become their mean, so its l1 norm becomes 4 |mean|
    assert curve[0, 1].item() == pytest.approx(4 * approx.mean().abs().item(), rel=1e-5)
    assert curve[0, 0].item() == pytest.approx(approx.abs().sum().item(), rel=1e-5)


# ------------------------------------------------------------------ wavelet layouts
def test_wavelet_bands_per_channel_summed_or_region_grids_give_the_same_scores():
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    coeffs = wavelets.dwt(x, 2, "haar", 2)
    gen = torch.Generator().manual_seed(4)
    # a WCAM-like map: one value per region of a 2x2 grid in each level's sub-band
    regions = {k: torch.rand(2, 2, 2, generator=gen) for k in coeffs.band_keys()}
    upsampled = [torch.repeat_interleave(torch.repeat_interleave(regions[k], t.shape[-2] // 2, 1), t.shape[-1] // 2, 2)
                 for k, t in zip(coeffs.band_keys(), coeffs.tensors())]
    dense = [upsampled[0]] + [u[:, None].expand(2, 3, *u.shape[1:]) for u in upsampled[1:]]
    per_channel = [d[:, None].expand(2, 3, *d.shape[1:]) / 3 for d in dense]
    kw = dict(domain="wavelet", levels=2, steps=16)
    a = deletion(adapter, x, regions, **kw)
    torch.testing.assert_close(deletion(adapter, x, dense, **kw), a)
    torch.testing.assert_close(deletion(adapter, x, coeffs.with_tensors(per_channel), steps=16, domain="wavelet"), a)
    # every coefficient removed (baseline 0) is the zero input
    _, curve = deletion(adapter, x, regions, return_curves=True, **kw)
    zero = adapter.predict(torch.zeros_like(x)).gather(1, adapter.predict(x).argmax(1, keepdim=True))[:, 0]
    torch.testing.assert_close(curve[:, -1], zero)


# ------------------------------------------------------------------ concepts
@pytest.fixture(scope="module")
def concept_case():
    from unified_xai.concepts import Craft

    adapter = ux.data.load_model("planted-concepts", device="cpu", batch_size=64, progress=False)
    ds = ux.data.load_dataset("planted-concepts", "test")
    index = torch.nonzero(ds.targets == 0).flatten()[:8]
    craft = Craft(adapter, "features.7", 4, patch_size=24, stride=8, crop_fit="tile", n_designs=8).fit(
        ds.inputs[index], 0)
    return adapter, craft, ds.inputs[index[:4]]


def test_concepts_domain_removes_concepts_in_importance_order(concept_case):
    adapter, craft, x = concept_case
    kw = dict(domain="concepts", concepts=craft)
    d, d_curve = deletion(adapter, x, None, return_curves=True, **kw)  # the bank's order
    i, i_curve = insertion(adapter, x, None, return_curves=True, **kw)
    reversed_order = -craft.importances_
    assert d.mean() < deletion(adapter, x, reversed_order, **kw).mean()
    assert i.mean() > insertion(adapter, x, reversed_order, **kw).mean()
    assert d_curve.shape == (4, 5)  # one concept per step
    # the intact point is h(U W) (both ends agree), and removing the top concept drops it by Craft.ablation
    torch.testing.assert_close(d_curve[:, 0], i_curve[:, -1])
    torch.testing.assert_close(d_curve[:, 1], d_curve[:, 0] - craft.ablation(x)[:, 0], atol=1e-4, rtol=1e-4)
    # the craft explainer's per-input importances are accepted as the order
    e = ux.create("craft", adapter, bank=craft.bank_, scales=False, n_designs=8).explain(x, targets=0)
    torch.testing.assert_close(deletion(adapter, x, e, **kw), deletion(adapter, x, e.concept_importances, **kw))
    # µ-Fidelity's drops of single-concept subsets are Craft.ablation's drops
    _, terms = mu_fidelity(adapter, x, None, subset_size=1, n_subsets=8, return_terms=True, **kw)
    removed = terms["masks"].float().argmax(1)
    torch.testing.assert_close(terms["drops"].float(), craft.ablation(x)[:, removed], atol=1e-4, rtol=1e-4)
    other_class = ux.Explanation(where=e.where, method="craft", targets=torch.ones(4, dtype=torch.long),
                                 concept_ids=e.concept_ids, concept_importances=e.concept_importances)
    with pytest.raises(InputError, match="bank is for class 0"):
        deletion(adapter, x, other_class, **kw)


# ------------------------------------------------------------------ batches and seeds
@pytest.mark.parametrize("domain", ["pixels", "wavelet", "scales"])
def test_an_input_score_does_not_depend_on_its_batch_or_the_chunking(domain):
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=4)
    e = ux.create("wam", adapter, n_samples=4).explain(x)

    def item(i):
        if domain == "pixels":
            return e.where[i:i + 1]
        if domain == "wavelet":
            return {k: v[i:i + 1] for k, v in e.attributions.items()}
        return e.scales[i:i + 1]

    subset = 1 if domain == "scales" else 0.2
    for metric, kw in ((deletion, {}), (insertion, {}), (mu_fidelity, {"subset_size": subset, "n_subsets": 16})):
        full = metric(adapter, x, e, domain=domain, **kw)
        alone = torch.cat([metric(adapter, x[i:i + 1], item(i), targets=e.targets[i:i + 1], domain=domain,
                                  batch_size=5, **kw) for i in range(4)])
        torch.testing.assert_close(alone, full, rtol=1e-6, atol=1e-6)


def test_a_seed_gives_identical_scores_and_another_seed_other_subsets():
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    m = torch.randn(2, 16, 24, generator=torch.Generator().manual_seed(0))
    a, ta = mu_fidelity(adapter, x, m, seed=3, n_subsets=16, return_terms=True)
    b, tb = mu_fidelity(adapter, x, m, seed=3, n_subsets=16, return_terms=True)
    c, tc = mu_fidelity(adapter, x, m, seed=4, n_subsets=16, return_terms=True)
    assert torch.equal(a, b) and torch.equal(ta["masks"], tb["masks"])
    assert not torch.equal(ta["masks"], tc["masks"]) and not torch.equal(a, c)
    # the first subsets do not depend on how many are drawn
    _, td = mu_fidelity(adapter, x, m, seed=3, n_subsets=8, return_terms=True)
    assert torch.equal(td["masks"], ta["masks"][:8])
    # ties (a constant map) are broken in a seeded order
    flat = torch.zeros(2, 16, 24)
    assert torch.equal(deletion(adapter, x, flat, seed=1), deletion(adapter, x, flat, seed=1))
    assert not torch.equal(deletion(adapter, x, flat, seed=1), deletion(adapter, x, flat, seed=2))


# ------------------------------------------------------------------ Average Stability
def test_average_stability_is_zero_for_an_input_free_map_and_linear_in_the_radius(linear):
    adapter, x, targets, _ = linear
    saliency = ux.create("saliency", adapter)  # a linear model's gradient is w: the same map everywhere
    assert torch.equal(average_stability(saliency, x, targets, n_samples=4), torch.zeros(6))
    ixg = ux.create("input_x_gradient", adapter, absolute=False)  # map(x + eps) - map(x) = sum_c w eps: linear
    small = average_stability(ixg, x, targets, radius=0.1, n_samples=5, seed=7)
    large = average_stability(ixg, x, targets, radius=0.2, n_samples=5, seed=7)
    torch.testing.assert_close(large, 2 * small, rtol=1e-5, atol=0)
    assert (small > 0).all()
    assert (average_stability(ixg, x, targets, radius=0.1, n_samples=5, seed=7, statistic="max") >= small).all()
    assert torch.equal(average_stability(ixg, x, targets, n_samples=5, seed=7, radius=0.1), small)
    assert not torch.equal(average_stability(ixg, x, targets, n_samples=5, seed=8, radius=0.1), small)
    with pytest.raises(ParameterError, match="radius"):
        average_stability(ixg, x, radius=0)
    with pytest.raises(ParameterError, match="explainer"):
        average_stability(adapter, x)
    with pytest.raises(InputError, match="scales"):
        average_stability(saliency, x, n_samples=1, field="scales")


# ------------------------------------------------------------------ errors
def test_bad_inputs_are_clear_errors():
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    sal = ux.create("saliency", adapter).explain(x)
    wam = ux.create("wam", adapter, n_samples=2, levels=2).explain(x)
    cases = [
        (ParameterError, "unknown domain 'pixel'.*did you mean 'pixels'",
         lambda: deletion(adapter, x, sal, domain="pixel")),
        (InputError, r"shape \(2, 5, 24\).*\(2, 16, 24\)", lambda: deletion(adapter, x, sal.where[:, :5])),
        (InputError, "NaN", lambda: deletion(adapter, x, torch.full((2, 16, 24), float("nan")))),
        (ParameterError, "steps must be a positive int", lambda: deletion(adapter, x, sal, steps=0)),
        (ParameterError, "steps must be a positive int", lambda: insertion(adapter, x, sal, steps=-3)),
        (ParameterError, "steps=1000 exceeds the 384 features", lambda: deletion(adapter, x, sal, steps=1000)),
        (ParameterError, r"subset_size=0 is out of range.*\[1, 80\]",
         lambda: mu_fidelity(adapter, x, sal, subset_size=0)),
        (ParameterError, "subset_size=81 is out of range", lambda: mu_fidelity(adapter, x, sal, subset_size=81)),
        (ParameterError, r"fraction must lie in \(0, 1\)", lambda: mu_fidelity(adapter, x, sal, subset_size=1.5)),
        (ParameterError, "n_subsets", lambda: mu_fidelity(adapter, x, sal, n_subsets=1)),
        (InputError, "no scale profile", lambda: deletion(adapter, x, sal, domain="scales")),
        (InputError, r"scale profile has shape \(2, 3, 1\)",
         lambda: deletion(adapter, x, torch.rand(2, 3, 1), domain="scales")),
        (InputError, "levels=3 gives 4", lambda: deletion(adapter, x, wam.scales, domain="scales", levels=3)),
        (InputError, "no wavelet-domain attributions", lambda: deletion(adapter, x, sal, domain="wavelet")),
        (InputError, "band 'level_1' has shape", lambda: deletion(
            adapter, x, {**wam.attributions, "level_1": torch.rand(2, 5, 5, 5)}, domain="wavelet", levels=2)),
        (InputError, "needs the keys",
         lambda: deletion(adapter, x, {"approximation": wam.where}, domain="wavelet", levels=2)),
        (InputError, "wavelet-domain map", lambda: deletion(adapter, x, wam.where, domain="wavelet")),
        (ParameterError, "levels=3 differs from the explanation's levels=2",
         lambda: deletion(adapter, x, wam, domain="wavelet", levels=3)),
        (ParameterError, "concepts=craft", lambda: deletion(adapter, x, None, domain="concepts")),
        (ParameterError, "only used by domain='concepts'", lambda: deletion(adapter, x, sal, concepts=object())),
        (ParameterError, "baseline does not apply",
         lambda: deletion(adapter, x, wam, domain="scales", baseline=1.0)),
        (ParameterError, "output must be one of", lambda: deletion(adapter, x, sal, output="prob")),
        (ParameterError, "auc must be one of", lambda: deletion(adapter, x, sal, auc="simpson")),
        (ParameterError, "correlation must be one of", lambda: mu_fidelity(adapter, x, sal, correlation="kendall")),
        (ParameterError, "grid_size", lambda: mu_fidelity(adapter, x, sal, grid_size=(2, 2, 2))),
        (InputError, "explanation is None", lambda: deletion(adapter, x, None)),
        (InputError, "2 items but x has 1", lambda: deletion(adapter, x[:1], sal)),
        (InputError, "baseline of shape", lambda: deletion(adapter, x, sal, baseline=torch.zeros(5, 5))),
        (ParameterError, "ModelAdapter", lambda: deletion(adapter.model, x, sal)),
        (ParameterError, "seed must be an int", lambda: deletion(adapter, x, sal, seed=0.5)),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()
        assert issubclass(error, UXAIError)
