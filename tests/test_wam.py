"""WAM: completeness, the linear-model identity, fast path == autograd path, timm models, odd sizes."""
from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import unified_xai as ux
from unified_xai import wavelets

from conftest import CONV, POOL, SHAPES, random_inputs, tiny_adapter


class SmoothNet(nn.Module):
    """Small conv net with smooth activations, so path integrals are well conditioned."""

    def __init__(self, ndim: int, channels: int, classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(CONV[ndim](channels, 6, 3, padding=1), nn.Softplus(), CONV[ndim](6, 6, 3, padding=1),
                                  nn.Tanh(), POOL[ndim](2), nn.Flatten())
        self.head = nn.Linear(6 * 2 ** ndim, classes)

    def forward(self, x):
        return 20 * self.head(self.body(x))


def smooth_adapter(ndim: int) -> ux.ModelAdapter:
    torch.manual_seed(3)
    shape = SHAPES[ndim]
    return ux.ModelAdapter(SmoothNet(ndim, shape[0]), shape, device="cpu", progress=False)


def _sum_attr(explanation):
    return sum(v.flatten(1).sum(1) for v in explanation.raw_attributions().values())


@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("wavelet, fast", [("haar", "auto"), ("db2", False)])
def test_integrated_completeness(ndim, wavelet, fast):
    adapter = smooth_adapter(ndim)
    x = random_inputs(adapter, batch=3)
    # explain, per input, the class whose logit moves most from the baseline (a well-conditioned check)
    targets = (adapter.predict(x) - adapter.predict(torch.zeros_like(x))).abs().argmax(1)
    levels = 1 if (wavelet, ndim) == ("db2", 3) else 2  # db2 on 8^3 supports one level
    explanation = ux.create("wam", adapter, variant="integrated", n_samples=128, wavelet=wavelet, levels=levels,
                            fast_path=fast).explain(x, targets)
    gap = adapter.scores(x, targets) - adapter.scores(torch.zeros_like(x), targets)
    assert gap.abs().min() > 0.1  # a meaningful difference to explain
    torch.testing.assert_close(_sum_attr(explanation), gap, rtol=0.01, atol=1e-4)


def test_integrated_completeness_with_baseline():
    adapter = smooth_adapter(2)
    x = random_inputs(adapter, batch=2)
    baseline = torch.full(SHAPES[2], 0.3)
    targets = torch.tensor([1, 2])
    explanation = ux.create("wam", adapter, n_samples=64, baseline=baseline).explain(x, targets)
    gap = adapter.scores(x, targets) - adapter.scores(baseline.expand_as(x), targets)
    torch.testing.assert_close(_sum_attr(explanation), gap, rtol=0.01, atol=1e-4)


@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_linear_model_gradient_is_dwt_of_weights(ndim):
    shape = {1: (2, 64), 2: (3, 16, 32), 3: (1, 8, 16, 8)}[ndim]
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(shape).prod()), 5))
    adapter = ux.ModelAdapter(linear, shape, device="cpu")
    x = torch.randn(2, *shape)
    targets = torch.tensor([1, 4])
    explanation = ux.create("wam", adapter, variant="gradient", levels=3, fast_path=False).explain(x, targets)
    weights = linear[1].weight[targets].reshape(2, *shape).detach()
    expected = wavelets.dwt(weights, ndim, "haar", 3, "reflect").tensors()
    for got, want in zip(explanation.raw_attributions().values(), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["gradient", "smoothgrad", "integrated"])
@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_fast_path_equals_autograd_path(variant, ndim):
    adapter = tiny_adapter(ndim)
    x = random_inputs(adapter, batch=2)
    kw = dict(variant=variant, n_samples=6, levels=2)
    fast = ux.create("wam", adapter, fast_path=True, **kw).explain(x)
    slow = ux.create("wam", adapter, fast_path=False, **kw).explain(x)
    for key, value in fast.raw_attributions().items():
        torch.testing.assert_close(value, slow.raw_attributions()[key], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.scales, slow.scales)


def test_fast_path_refused_when_not_exact(adapter2d):
    with pytest.raises(ValueError, match="orthonormal"):
        ux.create("wam", adapter2d, wavelet="db2", levels=2, fast_path=True).explain(random_inputs(adapter2d, 1))


def test_outputs_are_consistent(adapter_nd):
    x = random_inputs(adapter_nd, batch=2)
    e = ux.create("wam", adapter_nd, variant="smoothgrad", n_samples=4, levels=2).explain(x)
    assert e.scales.shape == (2, 3) and e.scale_maps.shape == (2, 3, *x.shape[2:])
    torch.testing.assert_close(e.scales.sum(1), torch.ones(2))
    torch.testing.assert_close(e.where, e.scale_maps.sum(1))
    # scales are the share of |attribution| per level, from un-normalised magnitudes
    mags = [v.abs().flatten(1).sum(1) for v in e.raw_attributions().values()]
    torch.testing.assert_close(e.scales, torch.stack(mags, 1) / sum(mags)[:, None], rtol=1e-5, atol=1e-6)
    assert e.level_names[0] == "approximation" and "finest" in e.level_names[-1]
    assert list(e.raw_attributions()) == ["approximation", "level_2", "level_1"]


def test_smoothgrad_noise_does_not_depend_on_chunking(adapter2d):
    x = random_inputs(adapter2d, batch=3)
    a = ux.create("wam", adapter2d, variant="smoothgrad", n_samples=5, batch_size=4).explain(x)
    b = ux.create("wam", adapter2d, variant="smoothgrad", n_samples=5, batch_size=15).explain(x)
    c = ux.create("wam", adapter2d, variant="smoothgrad", n_samples=5, seed=1).explain(x)
    torch.testing.assert_close(a.where, b.where)
    assert not torch.allclose(a.where, c.where)


def test_reference_compat_maps(adapter2d):
    x = random_inputs(adapter2d, batch=2)
    e = ux.create("wam", adapter2d, variant="smoothgrad", n_samples=3, levels=2, reference_compat=True).explain(x)
    for key, value in e.raw_attributions().items():
        assert value.shape[1] == 1 and (value >= 0).all()  # channel mean, abs
        peak = value.flatten(3).amax(3) if key != "approximation" else value.flatten(1).amax(1)
        assert (peak <= 1 + 1e-6).all() and (peak > 0.3).all()  # each sub-band over its max, averaged
    ig = ux.create("wam", adapter2d, variant="integrated", n_samples=4, levels=2, reference_compat=True).explain(x)
    assert all((v >= 0).all() for v in ig.raw_attributions().values())


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto", "vit_tiny_patch16_224"])
def test_timm_models_at_224(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    adapter = ux.ModelAdapter(model, (3, 224, 224), device="cpu", progress=False)
    for batch in (1, 7):
        x = torch.randn(batch, 3, 224, 224)
        e = ux.create("wam", adapter, variant="gradient").explain(x)
        assert e.where.shape == (batch, 224, 224) and torch.isfinite(e.scales).all()


@pytest.mark.parametrize("size", [(97, 131), (64, 40), (33, 33)])
def test_non_square_and_odd_sizes(size):
    torch.manual_seed(0)
    adapter = ux.ModelAdapter(timm.create_model("resnet18", pretrained=False, num_classes=5), (3, None, None),
                              device="cpu", progress=False)
    x = torch.randn(2, 3, *size)
    for wavelet in ("haar", "db2"):
        e = ux.create("wam", adapter, variant="integrated", n_samples=3, wavelet=wavelet).explain(x)
        assert e.where.shape == (2, *size) and e.scale_maps.shape == (2, 4, *size)
        assert torch.isfinite(e.where).all()


def test_bad_parameters(adapter2d):
    with pytest.raises(ux.ParameterError, match="variant"):
        ux.create("wam", adapter2d, variant="smooth")
    with pytest.raises(ux.ParameterError, match="wavelet"):
        ux.create("wam", adapter2d, wavelet="dmey")
    with pytest.raises(ux.ParameterError, match="n_samples"):
        ux.create("wam", adapter2d, n_samples=0)
    with pytest.raises(ValueError, match="levels"):
        ux.create("wam", adapter2d, levels=9).explain(random_inputs(adapter2d, 1))


def test_agrees_with_captum_baselines_in_the_wavelet_domain(adapter2d):
    """Haar is orthonormal: WAM's coefficient gradients are the DWT of the pixel-space ones that the
    Captum-based baselines compute on the same inputs and the same noise."""
    x = random_inputs(adapter2d, batch=3)
    targets = torch.tensor([0, 2, 3])
    pairs = [("gradient", "saliency", {}), ("smoothgrad", "smoothgrad", {"n_samples": 5})]
    for variant, baseline, kw in pairs:
        wam = ux.create("wam", adapter2d, variant=variant, levels=2, fast_path=False, **kw).explain(x, targets)
        pixel = ux.create(baseline, adapter2d, **kw).explain(x, targets).attributions
        expected = wavelets.dwt(pixel, 2, "haar", 2, "reflect").tensors()
        for got, want in zip(wam.raw_attributions().values(), expected):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # IG: both are complete for the same model and baseline, so their totals agree
    wam = ux.create("wam", adapter2d, variant="integrated", n_samples=64).explain(x, targets)
    ig = ux.create("integrated_gradients", adapter2d, n_steps=64).explain(x, targets).attributions
    torch.testing.assert_close(_sum_attr(wam), ig.flatten(1).sum(1), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("model_name", ["planted-audio", "digits", "planted-volume"])
def test_integrated_completeness_on_trained_builtins(model_name):
    """1D (waveform through an in-model log-mel), 2D and 3D trained models, 128 Gauss-Legendre points."""
    adapter = ux.data.load_model(model_name, progress=False)
    x, y = ux.data.load_dataset(model_name, split="test")[:3]
    e = ux.create("wam", adapter, variant="integrated", n_samples=128, levels=2).explain(x, y)
    gap = adapter.scores(x, y) - adapter.scores(torch.zeros_like(x), y)
    torch.testing.assert_close(_sum_attr(e), gap, rtol=0.01, atol=1e-3)
