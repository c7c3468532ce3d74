"""WAM: completeness, exact gradients, fast path == autograd path, batch independence, per-input
baselines, parity of ``reference_compat`` with the official recipe of every modality, odd sizes."""
from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import unified_xai as ux
from unified_xai import wavelets
from unified_xai.core.seeds import noise_samples

from conftest import CONV, POOL, SHAPES, random_inputs, tiny_adapter
from reference_wam import reference_wam


class SmoothNet(nn.Module):
    """Small conv net with smooth activations, so path integrals are well conditioned."""

    def __init__(self, ndim: int, channels: int, classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(CONV[ndim](channels, 6, 3, padding=1), nn.Softplus(), CONV[ndim](6, 6, 3, padding=1),
                                  nn.Tanh(), POOL[ndim](2), nn.Flatten())
        self.head = nn.Linear(6 * 2 ** ndim, classes)

    def forward(self, x):
        return 20 * self.head(self.body(x))


def smooth_adapter(ndim: int, dtype=torch.float32) -> ux.ModelAdapter:
    torch.manual_seed(3)
    shape = SHAPES[ndim]
    return ux.ModelAdapter(SmoothNet(ndim, shape[0]).eval().to(dtype), shape, device="cpu", progress=False,
                           dtype=dtype)


def _sum_attr(explanation):
    return sum(v.flatten(1).sum(1) for v in explanation.raw_attributions().values())


# ----------------------------------------------------------------------------- integrated gradients
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


@pytest.mark.parametrize("wavelet, fast", [("haar", True), ("db2", False)], ids=["fast", "autograd"])
def test_integrated_completeness_with_per_input_baselines(wavelet, fast):
    adapter = smooth_adapter(2)
    x = random_inputs(adapter, batch=3)
    baselines = 0.5 * random_inputs(adapter, batch=3, seed=7)  # (B, C, H, W): one per input
    targets = (adapter.predict(x) - adapter.predict(baselines)).abs().argmax(1)
    explanation = ux.create("wam", adapter, n_samples=64, baseline=baselines, wavelet=wavelet, levels=2,
                            fast_path=fast).explain(x, targets)
    gap = adapter.scores(x, targets) - adapter.scores(baselines, targets)
    assert gap.abs().min() > 0.1
    torch.testing.assert_close(_sum_attr(explanation), gap, rtol=0.01, atol=1e-4)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "autograd"])
def test_per_input_baselines_equal_explaining_each_input_alone(fast):
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=3)
    baselines = random_inputs(adapter, batch=3, seed=5)
    kw = dict(variant="integrated", n_samples=6, levels=2, fast_path=fast)
    together = ux.create("wam", adapter, baseline=baselines, **kw).explain(x)
    for i in range(3):
        alone = ux.create("wam", adapter, baseline=baselines[i], **kw).explain(x[i:i + 1], together.targets[i:i + 1])
        for key, value in alone.raw_attributions().items():
            torch.testing.assert_close(value, together.raw_attributions()[key][i:i + 1], rtol=1e-5, atol=1e-6)
    # and the baseline matters: the same explainer from zero gives another answer
    zero = ux.create("wam", adapter, **kw).explain(x)
    assert not torch.allclose(zero.where, together.where, rtol=1e-2)


def test_one_baseline_per_input_is_checked(adapter2d):
    x = random_inputs(adapter2d, batch=3)
    with pytest.raises(ux.InputError, match="one per input"):
        ux.create("wam", adapter2d, baseline=torch.zeros(2, *SHAPES[2])).explain(x)


# ----------------------------------------------------------------------------- exact gradients
@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_linear_model_gradient_is_dwt_of_weights(ndim):
    shape = {1: (2, 64), 2: (3, 16, 32), 3: (1, 8, 16, 8)}[ndim]
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(shape).prod()), 5))
    adapter = ux.ModelAdapter(linear.eval(), shape, device="cpu")
    x = torch.randn(2, *shape)
    targets = torch.tensor([1, 4])
    explanation = ux.create("wam", adapter, variant="gradient", levels=3, fast_path=False).explain(x, targets)
    weights = linear[1].weight[targets].reshape(2, *shape).detach()
    expected = wavelets.dwt(weights, ndim, "haar", 3, "reflect").tensors()
    for got, want in zip(explanation.raw_attributions().values(), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_redundant_transform_gradients_equal_finite_differences():
    """db2 pads, so W^-1 is not W^T: the autograd path must give d f(W^-1 z) / dz itself."""
    adapter = smooth_adapter(2, dtype=torch.float64)
    x = random_inputs(adapter, batch=1).double()
    target = torch.tensor([1])
    e = ux.create("wam", adapter, variant="gradient", wavelet="db2", levels=2).explain(x, target)
    z = wavelets.dwt(x, 2, "db2", 2, "reflect")
    flat = wavelets.pack(z)
    got = wavelets.pack(z.with_tensors(list(e.raw_attributions().values())))
    gen = torch.Generator().manual_seed(0)
    for index in torch.randint(flat.shape[-1], (12,), generator=gen).tolist():
        c = index % flat.shape[1]  # channel
        step = torch.zeros_like(flat)
        step[0, c, index] = 1e-5

        def f(values):
            return adapter.scores(wavelets.idwt(wavelets.unpack(values, z)), target)

        numeric = (f(flat + step) - f(flat - step)) / 2e-5
        torch.testing.assert_close(got[0, c, index], numeric[0], rtol=1e-5, atol=1e-8)


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
    ig = ux.create("integrated_gradients", adapter2d, n_samples=64).explain(x, targets).attributions
    torch.testing.assert_close(_sum_attr(wam), ig.flatten(1).sum(1), rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------- what the maps say
@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_planted_scale_and_place_are_recovered(ndim):
    """A linear model whose weights are one level-2 wavelet atom: all attribution sits at that level and
    ``where`` peaks on the atom's support."""
    shape = {1: (2, 64), 2: (3, 16, 24), 3: (1, 8, 8, 8)}[ndim]
    atom = wavelets.dwt(torch.zeros(1, *shape), ndim, "haar", 2, "reflect")
    # details[0] is level 2 of 2, (1, C, O, *sub): one coefficient (channel, orientation, position)
    position = {1: (1, 0, 5), 2: (2, 1, 1, 3), 3: (0, 4, 1, 0, 1)}[ndim]
    atom.details[0][(0, *position)] = 1.0
    weights = wavelets.idwt(atom)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(weights.numel(), 2, bias=False))
    with torch.no_grad():
        linear[1].weight.zero_()
        linear[1].weight[1] = weights.flatten()
    adapter = ux.ModelAdapter(linear.eval(), shape, device="cpu", progress=False)
    x = torch.randn(2, *shape)
    e = ux.create("wam", adapter, variant="gradient", levels=2).explain(x, torch.tensor([1, 1]))
    assert e.scales.shape == (2, 3) and e.scale_maps.shape == (2, 3, *shape[1:])
    # the default profile (removal, measured: float32 rounding of the logits) is signed: level 2's share
    # is the sign of the atom's coefficient in x
    torch.testing.assert_close(e.scales.abs(), torch.tensor([[0.0, 1.0, 0.0]] * 2), atol=1e-5, rtol=0)
    magnitude = ux.create("wam", adapter, variant="gradient", levels=2, scale_profile="magnitude").explain(
        x, torch.tensor([1, 1]))
    torch.testing.assert_close(magnitude.scales, torch.tensor([[0.0, 1.0, 0.0]] * 2), atol=1e-6, rtol=0)
    support = weights[0].abs().sum(0) > 0  # the atom's footprint on the grid (4 samples a side)
    assert support.flatten()[e.where[0].flatten().argmax()]
    # linear interpolation spreads a level-2 coefficient over its neighbours' cells, no further
    pool = {1: nn.functional.max_pool1d, 2: nn.functional.max_pool2d, 3: nn.functional.max_pool3d}[ndim]
    near = pool(support[None].float(), 9, stride=1, padding=4)[0] > 0
    assert e.where[0][support].sum() > 0.5 * e.where[0].sum()
    torch.testing.assert_close(e.where[0][near].sum(), e.where[0].sum())
    assert e.level_names[0] == "approximation" and "finest" in e.level_names[-1]
    assert list(e.raw_attributions()) == ["approximation", "level_2", "level_1"]


# ----------------------------------------------------------------------------- batch independence
def test_smoothgrad_noise_does_not_depend_on_chunking(adapter2d):
    x = random_inputs(adapter2d, batch=3)
    a = ux.create("wam", adapter2d, variant="smoothgrad", n_samples=5, batch_size=4).explain(x)
    b = ux.create("wam", adapter2d, variant="smoothgrad", n_samples=5, batch_size=15).explain(x)
    c = ux.create("wam", adapter2d, variant="smoothgrad", n_samples=5, seed=1).explain(x)
    torch.testing.assert_close(a.where, b.where)
    assert not torch.allclose(a.where, c.where)


@pytest.fixture(scope="module")
def planted_image():
    adapter = ux.data.load_model("planted-image", progress=False)
    x, y = ux.data.load_dataset("planted-image")[:7]
    return adapter, x, y


@pytest.mark.parametrize("variant", ["smoothgrad", "integrated", "gradient"])
def test_inputs_explained_alone_or_in_a_batch_agree(planted_image, variant):
    adapter, x, y = planted_image
    explainer = ux.create("wam", adapter, variant=variant, n_samples=6, batch_size=16)
    together = explainer.explain(x, y).where
    alone = torch.cat([explainer.explain(x[i:i + 1], y[i:i + 1]).where for i in range(len(x))])
    scale = together.flatten(1).abs().amax(1).view(-1, 1, 1)
    torch.testing.assert_close(alone / scale, together / scale, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto", "vit_tiny_patch16_224"])
def test_timm_models_at_224_batch_independent(name):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    adapter = ux.ModelAdapter(model, (3, 224, 224), device="cpu", progress=False)
    x = torch.randn(3, 3, 224, 224)
    explainer = ux.create("wam", adapter, variant="gradient")
    together = explainer.explain(x)
    alone = explainer.explain(x[1:2])
    assert together.where.shape == (3, 224, 224) and torch.isfinite(together.scales).all()
    for key, value in alone.raw_attributions().items():
        other = together.raw_attributions()[key][1:2]
        torch.testing.assert_close(value, other, rtol=1e-4, atol=1e-4 * other.abs().max().item())


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("size", [(97, 131), (64, 40), (33, 33)])
def test_non_square_and_odd_sizes(size):
    """Odd sizes go through padding and the crop after the inverse transform; a random ResNet in eval mode
    is positively homogeneous (f(a x) = a f(x)), so IG from zero is exact even with 3 Gauss-Legendre
    points: completeness then checks the crop and the gradient through it."""
    torch.manual_seed(0)
    adapter = ux.ModelAdapter(timm.create_model("resnet18", pretrained=False, num_classes=5).eval(), (3, None, None),
                              device="cpu", progress=False)
    x = torch.randn(2, 3, *size)
    targets = torch.tensor([0, 3])
    gap = adapter.scores(x, targets) - adapter.scores(torch.zeros_like(x), targets)
    for wavelet in ("haar", "db2"):
        e = ux.create("wam", adapter, variant="integrated", n_samples=3, wavelet=wavelet).explain(x, targets)
        assert e.where.shape == (2, *size) and e.scale_maps.shape == (2, 4, *size)
        torch.testing.assert_close(_sum_attr(e), gap, rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------- reference_compat
def _library_vs_reference(adapter, x, targets, variant, n, **kw):
    ndim = adapter.spatial_ndim
    e = ux.create("wam", adapter, variant=variant, n_samples=n, reference_compat=True, seed=3, **kw).explain(x, targets)
    noise = noise_samples(3, n, x.shape[1:])
    ref = reference_wam(adapter.model, x, targets, ndim, variant, n, wavelet=kw.get("wavelet", "haar"),
                        levels=kw["levels"], mode=kw.get("mode", "reflect"), stdev_spread=kw["stdev_spread"],
                        noise=noise)
    return e, ref


@pytest.mark.parametrize("variant", ["smoothgrad", "integrated", "gradient"])
@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_reference_compat_matches_the_official_recipe(ndim, variant):
    """1D: signed z * trapz(g), plain mean of g; 2D: channel mean, |.|, per-sub-band max; 3D: |z| * trapz(|g|)."""
    adapter = tiny_adapter(ndim)
    x = random_inputs(adapter, batch=3)
    targets = torch.tensor([0, 1, 3])
    e, ref = _library_vs_reference(adapter, x, targets, variant, 5, levels=2, stdev_spread=0.2, fast_path=False)
    bands = list(e.raw_attributions().values())
    for i, want in enumerate(ref):
        for got, expected in zip(bands, want):
            scale = expected.abs().max().item()
            assert scale > 0
            torch.testing.assert_close(got[i], expected, rtol=1e-5, atol=1e-5 * scale)
    if ndim == 2:  # maps are non-negative with every sub-band's max at most one
        assert all(b.shape[1] == 1 and (b >= 0).all() for b in bands)
    if ndim == 1 and variant != "gradient":  # signed, as the 1D code
        assert any((b < 0).any() for b in bands)


def test_reference_compat_with_a_padded_wavelet_and_the_fast_path():
    """db2 (redundant transform) through autograd, and Haar on the fast path, which evaluates the model at
    x instead of W^-1 W(x): equal to float error on a smooth model."""
    adapter = smooth_adapter(2)
    x = random_inputs(adapter, batch=2)
    targets = torch.tensor([0, 2])
    for kw in (dict(wavelet="db2", mode="symmetric", fast_path=False), dict(fast_path=True)):
        e, ref = _library_vs_reference(adapter, x, targets, "integrated", 4, levels=2, stdev_spread=0.2, **kw)
        for i, want in enumerate(ref):
            for got, expected in zip(e.raw_attributions().values(), want):
                torch.testing.assert_close(got[i], expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


# ----------------------------------------------------------------------------- trained models, errors
@pytest.mark.parametrize("model_name", ["planted-audio", "digits", "planted-volume"])
def test_integrated_completeness_on_trained_builtins(model_name):
    """1D (waveform through an in-model log-mel), 2D and 3D trained models, 128 Gauss-Legendre points."""
    adapter = ux.data.load_model(model_name, progress=False)
    x, y = ux.data.load_dataset(model_name, split="test")[:3]
    e = ux.create("wam", adapter, variant="integrated", n_samples=128, levels=2).explain(x, y)
    gap = adapter.scores(x, y) - adapter.scores(torch.zeros_like(x), y)
    torch.testing.assert_close(_sum_attr(e), gap, rtol=0.01, atol=1e-3)


def test_bad_parameters(adapter2d):
    x = random_inputs(adapter2d, 1)
    with pytest.raises(ux.ParameterError, match="variant"):
        ux.create("wam", adapter2d, variant="smooth")
    with pytest.raises(ux.ParameterError, match="wavelet"):
        ux.create("wam", adapter2d, wavelet="dmey")
    with pytest.raises(ux.ParameterError, match="n_samples"):
        ux.create("wam", adapter2d, n_samples=0)
    with pytest.raises(ux.ParameterError, match="n_samples=2 or more"):
        ux.create("wam", adapter2d, n_samples=1, reference_compat=True)
    with pytest.raises(ux.ParameterError, match="n_samples=2 or more"):
        ux.create("wam", adapter2d, n_samples=1, quadrature="riemann_trapezoid")
    with pytest.raises(ux.ParameterError, match="levels"):
        ux.create("wam", adapter2d, levels=9).explain(x)
    with pytest.raises(ux.ParameterError, match="orthonormal.*fast_path='auto'"):
        ux.create("wam", adapter2d, wavelet="db2", levels=2, fast_path=True).explain(x)
