"""Issue 11: the scale profile WAM reports (``scale_profile``) holds.

The default, ``"removal"``, is the drop of the score when one level alone is removed, measured by
forward passes: it must equal the level-removal reference of ``ux.metrics.deletion(..., domain="scales")``
(one level removed first) on any model, and find the planted scale of the built-in planted models. The
other profiles are checked where the truth is analytic: a model linear in the wavelet coefficients
(every additive profile equals the removal drops; the |attribution| share is fooled by cancelling
evidence), a logit that depends on one level only, IG completeness on a random CNN, and exact Shapley
values. The measurement on the real ImageNet model is ``experiments/scale_answer.py`` (docs/results.md).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import unified_xai as ux  # noqa: E402
from unified_xai import wavelets  # noqa: E402
from unified_xai.core.errors import ParameterError  # noqa: E402
from unified_xai.plotting import level_infos, plot_explanation  # noqa: E402

from conftest import random_inputs, tiny_adapter  # noqa: E402

HAAR2 = {"wavelet": "haar", "levels": 2, "mode": "reflect"}


class WaveletLinear(nn.Module):
    """Class 0's logit is ``<w, W(x)>``: linear in the Haar coefficients (2 levels); class 1 is 0."""

    def __init__(self, weights: list[torch.Tensor]):
        super().__init__()
        self.weights = [w.clone() for w in weights]  # [approx, level 2, level 1], each (1, C, [O,] *sub)

    def forward(self, x):
        z = wavelets.dwt(x, 2, **HAAR2).tensors()
        s = sum((t * w).flatten(1).sum(1) for t, w in zip(z, self.weights))
        return torch.stack([s, torch.zeros_like(s)], 1)


class SquaredLevel(nn.Module):
    """Class 0's logit is the energy ``sum z_j^2`` of one Haar level only (nonlinear); class 1 is 0."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def forward(self, x):
        z = wavelets.dwt(x, 2, **HAAR2).tensors()[self.level]
        s = z.square().flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def level_removal_drops(adapter, x, targets, levels=2, **cfg) -> torch.Tensor:
    """``f(x) - f(x without level j)`` per level, by the ``scales`` domain of Deletion (one level first)."""
    drops = []
    for j in range(levels + 1):
        first = torch.zeros(len(x), levels + 1)
        first[:, j] = 1.0
        _, curve = ux.metrics.deletion(adapter, x, first, targets=targets, domain="scales", levels=levels,
                                       return_curves=True, progress=False, **cfg)
        drops.append(curve[:, 0] - curve[:, 1])
    return torch.stack(drops, 1)


def level_sums(e) -> torch.Tensor:
    return torch.stack([t.flatten(1).sum(1) for t in e.raw_attributions().values()], 1)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ra, rb = a.argsort(1).argsort(1).double(), b.argsort(1).argsort(1).double()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


# ------------------------------------------------------------------ analytic truth
@pytest.fixture
def cancelling():
    """An input whose level-1 coefficients come in equal pairs, read with weights +1, -1: level 1 carries
    the most |attribution| but no effect (removing it changes nothing); level 2 carries the logit."""
    gen = torch.Generator().manual_seed(0)
    like = wavelets.dwt(torch.zeros(2, 1, 8, 8), 2, **HAAR2)
    approx = torch.rand(like.approx.shape, generator=gen)
    level2 = torch.randn(like.details[0].shape, generator=gen)
    pairs = 3.0 * torch.randn(*like.details[1].shape[:-1], like.details[1].shape[-1] // 2, generator=gen)
    level1 = pairs.repeat_interleave(2, dim=-1)  # z[..., 2i] == z[..., 2i + 1]
    x = wavelets.idwt(like.with_tensors([approx, level2, level1]))
    signs = torch.tensor([1.0, -1.0]).repeat(level1.shape[-1] // 2)
    weights = [torch.zeros_like(approx[:1]), 0.5 * level2[:1].sign(), signs.expand_as(level1[:1]).clone()]
    model = WaveletLinear(weights).eval()
    adapter = ux.ModelAdapter(model, (1, 8, 8), device="cpu", progress=False, batch_size=16)
    return adapter, x


@pytest.mark.parametrize("variant", ["integrated", "gradient", "smoothgrad"])
@pytest.mark.parametrize("profile", ["auto", "removal", "shapley", "contribution"])
def test_additive_profiles_of_a_linear_model_are_the_level_removal_drops(cancelling, variant, profile):
    adapter, x = cancelling
    e = ux.create("wam", adapter, variant=variant, n_samples=4, scale_profile=profile, **HAAR2).explain(x, targets=0)
    drops = level_removal_drops(adapter, x, 0)
    # the model reads level 2 only in effect: removing it drops the whole logit, the rest drop nothing
    torch.testing.assert_close(drops[:, 2], torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(drops[:, 1], adapter.predict(x)[:, 0], rtol=1e-5, atol=1e-5)
    assert (e.scales.argmax(1) == 1).all()
    # linear: removal is the drop by definition, Shapley equals it (no interaction between levels), and
    # every variant's contribution is exact (smoothgrad's noise does not change a linear model's gradient)
    torch.testing.assert_close(e.scales, drops / drops.abs().sum(1, keepdim=True), atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["integrated", "gradient", "smoothgrad"])
def test_magnitude_share_is_fooled_by_cancelling_evidence(cancelling, variant):
    adapter, x = cancelling
    default = ux.create("wam", adapter, variant=variant, n_samples=4, **HAAR2).explain(x, targets=0)
    magnitude = ux.create("wam", adapter, variant=variant, n_samples=4, scale_profile="magnitude",
                          **HAAR2).explain(x, targets=0)
    assert (magnitude.scales.argmax(1) == 2).all(), magnitude.scales  # the level that changes nothing
    # the profile changes scales only
    torch.testing.assert_close(magnitude.where, default.where)
    torch.testing.assert_close(magnitude.scale_maps, default.scale_maps)
    for key, value in default.raw_attributions().items():
        torch.testing.assert_close(magnitude.raw_attributions()[key], value)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_a_logit_of_one_level_puts_the_whole_profile_there_and_contributions_add_up(level):
    adapter = ux.ModelAdapter(SquaredLevel(level).eval(), (1, 8, 8), device="cpu", progress=False, batch_size=16)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = torch.zeros(3, 3)
    expected[:, level] = 1.0
    for profile in ("auto", "removal", "shapley", "contribution"):
        e = ux.create("wam", adapter, n_samples=2, scale_profile=profile, **HAAR2).explain(x, targets=0)
        # measured profiles: differences of float32 logits of order 10 (rounding about 1e-6 of them)
        torch.testing.assert_close(e.scales, expected, atol=1e-6 if profile == "contribution" else 1e-4, rtol=0)
    # completeness (Gauss-Legendre with 2 points is exact on x^2): the level contributions sum to
    # f(x) - f(baseline), baseline 0: f = 0
    torch.testing.assert_close(level_sums(e).sum(1), adapter.predict(x)[:, 0], rtol=1e-5, atol=1e-6)
    drops = level_removal_drops(adapter, x, 0)
    if level > 0:  # a removed detail level is set to 0, as the baseline has it: each sum is its drop
        torch.testing.assert_close(level_sums(e), drops, rtol=1e-5, atol=1e-5)


def test_contributions_add_up_to_the_score_change_on_a_cnn_with_a_baseline():
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=3)
    targets = torch.tensor([0, 2, 3])
    base = torch.full_like(x[0], 0.3)
    e = ux.create("wam", adapter, n_samples=32, baseline=base, levels=2, scale_profile="contribution").explain(
        x, targets)
    c = level_sums(e)
    change = (adapter.predict(x) - adapter.predict(base[None].expand_as(x))).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(c.sum(1), change, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(e.scales, c / c.abs().sum(1, keepdim=True))
    torch.testing.assert_close(e.scales.abs().sum(1), torch.ones(3))


def test_gradient_contribution_uses_the_baseline_coefficients():
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    base = torch.full_like(x[0], 0.5)
    e = ux.create("wam", adapter, variant="gradient", baseline=base, levels=2,
                  scale_profile="contribution").explain(x, torch.tensor([1, 2]))
    dz = [a - b for a, b in zip(wavelets.dwt(x, 2, **HAAR2).tensors(),
                                 wavelets.dwt(base[None].expand_as(x), 2, **HAAR2).tensors())]
    c = torch.stack([(g * d).flatten(1).sum(1) for g, d in zip(e.raw_attributions().values(), dz)], 1)
    torch.testing.assert_close(e.scales, c / c.abs().sum(1, keepdim=True))


@pytest.mark.parametrize("variant", ["gradient", "smoothgrad", "integrated"])
def test_contribution_profile_is_the_same_on_the_fast_and_autograd_paths(variant):
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    kw = dict(variant=variant, n_samples=4, levels=2, scale_profile="contribution", baseline=0.2)
    fast = ux.create("wam", adapter, fast_path=True, **kw).explain(x)
    slow = ux.create("wam", adapter, fast_path=False, **kw).explain(x)
    torch.testing.assert_close(fast.scales, slow.scales, rtol=1e-4, atol=1e-6)


def test_magnitude_profile_is_the_share_of_absolute_attribution():
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    for variant in ("integrated", "gradient", "smoothgrad"):
        e = ux.create("wam", adapter, variant=variant, n_samples=3, scale_profile="magnitude").explain(x)
        energy = torch.stack([t.abs().flatten(1).sum(1) for t in e.raw_attributions().values()], 1)
        torch.testing.assert_close(e.scales, energy / energy.sum(1, keepdim=True))
        assert (e.scales >= 0).all()


def test_reference_compat_keeps_the_official_profile_and_refuses_contribution(adapter2d):
    x = random_inputs(adapter2d, batch=2)
    auto = ux.create("wam", adapter2d, variant="gradient", reference_compat=True).explain(x)
    magnitude = ux.create("wam", adapter2d, variant="gradient", reference_compat=True,
                          scale_profile="magnitude").explain(x)
    torch.testing.assert_close(auto.scales, magnitude.scales)
    removal = ux.create("wam", adapter2d, variant="gradient", reference_compat=True, scale_profile="removal")
    torch.testing.assert_close(removal.explain(x).scales, ux.create("wam", adapter2d).explain(x).scales)
    with pytest.raises(ParameterError, match="reference_compat"):
        ux.create("wam", adapter2d, reference_compat=True, scale_profile="contribution")
    with pytest.raises(ParameterError):
        ux.create("wam", adapter2d, scale_profile="share")


# ------------------------------------------------------------------ measured profiles
def subset_scores(adapter, x, targets, kept, levels=2):
    """Target logits with only the levels in ``kept`` present (the others removed as the scales domain does)."""
    coeffs = wavelets.dwt(x, adapter.spatial_ndim, "haar", levels, "reflect")
    parts = coeffs.tensors()
    nd = adapter.spatial_ndim
    gone = [parts[0].mean(dim=tuple(range(-nd, 0)), keepdim=True).expand_as(parts[0])] + \
        [torch.zeros_like(t) for t in parts[1:]]
    rows = wavelets.idwt(coeffs.with_tensors([t if k in kept else g for k, (t, g) in enumerate(zip(parts, gone))]))
    return adapter.predict(rows).gather(1, targets[:, None])[:, 0].double()


@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_shapley_profile_is_the_exact_shapley_value_of_the_levels(ndim):
    from itertools import combinations
    from math import factorial

    adapter = tiny_adapter(ndim)
    x = random_inputs(adapter, batch=2)
    targets = torch.tensor([1, 3])
    e = ux.create("wam", adapter, variant="gradient", levels=2, scale_profile="shapley").explain(x, targets)
    n = 3
    phi = torch.zeros(2, n, dtype=torch.float64)
    for j in range(n):
        others = [k for k in range(n) if k != j]
        for size in range(n):
            for kept in combinations(others, size):
                weight = factorial(size) * factorial(n - size - 1) / factorial(n)
                phi[:, j] += weight * (subset_scores(adapter, x, targets, set(kept) | {j})
                                       - subset_scores(adapter, x, targets, set(kept)))
    # efficiency: the values split f(x) - f(every level removed)
    torch.testing.assert_close(phi.sum(1), subset_scores(adapter, x, targets, {0, 1, 2})
                               - subset_scores(adapter, x, targets, set()))
    torch.testing.assert_close(e.scales.double(), phi / phi.abs().sum(1, keepdim=True), rtol=1e-4, atol=1e-6)
    with pytest.raises(ParameterError, match="levels <= 7"):
        ux.create("wam", adapter, levels=8, scale_profile="shapley")


def test_removal_profile_follows_the_objective(adapter2d):
    x = random_inputs(adapter2d, batch=2)
    drops = level_removal_drops(adapter2d, x, torch.tensor([2, 2]), levels=3)
    for targets, objective in ((torch.tensor([2, 2]), None), (torch.tensor([0, 1]), ux.objectives.Logit(2))):
        e = ux.create("wam", adapter2d, variant="gradient", objective=objective).explain(x, targets)
        torch.testing.assert_close(e.scales.double(), drops.double() / drops.abs().sum(1, keepdim=True).double(),
                                   rtol=1e-4, atol=1e-6)


def test_negative_shares_still_plot(adapter2d):
    x = random_inputs(adapter2d, batch=1)
    e = ux.create("wam", adapter2d, n_samples=3).explain(x)
    e.scales = torch.tensor([[0.5, -0.2, 0.2, 0.1]], dtype=e.scales.dtype)
    infos = level_infos(e, 0, 2)  # shares in % of sum |scales|, signed
    assert [i.share_text for i in infos] == ["50 %", "-20 %", "20 %", "10 %"]
    assert plot_explanation(e, 0, inputs=x) is not None
    plt.close("all")


# ------------------------------------------------------------------ a built-in planted model
@pytest.mark.parametrize("name", ["planted-image", "planted-audio"])
def test_default_profile_agrees_with_level_removal_on_a_planted_model(name):
    adapter = ux.data.load_model(name, progress=False)
    ds = ux.data.load_dataset(name)
    index = torch.nonzero(ds.has_evidence).flatten()[:4]
    x, y = ds.inputs[index], ds.targets[index]
    cfg = {"wavelet": ds.wavelet, "levels": ds.levels}
    drops = level_removal_drops(adapter, x, y, **cfg)
    e = ux.create("wam", adapter, variant="gradient", **cfg).explain(x, y)  # the removal profile: any variant
    torch.testing.assert_close(e.scales.double(), drops.double() / drops.abs().sum(1, keepdim=True).double(),
                               rtol=1e-3, atol=1e-5)
    assert (e.scales.argmax(1) == ds.scales[index]).all(), (e.scales, ds.scales[index])  # the planted scale
    # the attribution-based additive profile agrees too on these models (not on the ImageNet model)
    contribution = ux.create("wam", adapter, n_samples=8, scale_profile="contribution", **cfg).explain(x, y)
    assert (contribution.scales.argmax(1) == drops.argmax(1)).all(), (contribution.scales, drops)
    assert spearman(contribution.scales, drops).median() >= 0.8, (contribution.scales, drops)


def test_explanation_records_the_profile_it_used(adapter2d, tmp_path):
    x = random_inputs(adapter2d, batch=1)
    assert ux.create("wam", adapter2d, n_samples=2).explain(x).params["scale_profile"] == "removal"
    e = ux.create("wam", adapter2d, n_samples=2, reference_compat=True).explain(x)
    assert e.params["scale_profile"] == "magnitude"
    e.save(tmp_path / "e.h5")
    assert ux.Explanation.load(tmp_path / "e.h5").params["scale_profile"] == "magnitude"
