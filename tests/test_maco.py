"""MACO feature visualisation: parameterisation, crops, objectives, null model, caching, errors."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_adapter
from torch import nn

import unified_xai as ux
from unified_xai.core.hooks import count_hooks
from unified_xai.featviz import crop_boxes, crop_views, natural_spectrum, random_phase_images, render
from unified_xai.featviz.spectrum import SPECTRUM_FILE, decorrelate, recorrelate


pytestmark = pytest.mark.usefixtures("one_thread")


class CubedResponse(ux.objectives.Objective):
    """mean(relu(conv response)^3) of one channel: phase-sensitive (a pure filter energy would be fixed
    by the magnitude MACO holds constant)."""

    def __init__(self, layer: str, channel: int):
        self.layer, self.channel, self.layers = layer, channel, (layer,)

    def value(self, adapter, logits, acts, targets):
        return acts[self.layer][:, self.channel].relu().pow(3).flatten(1).mean(1)

    def describe(self):
        return f"relu^3({self.layer}, {self.channel})"


def filter_model(channels: int = 3, size: int = 32) -> ux.ModelAdapter:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(channels, 4, 5, padding=2, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():  # zero-mean filters: texture detectors, blind to the mean grey level
        weight = model[0].weight
        weight -= weight.mean(dim=(1, 2, 3), keepdim=True)
    return ux.ModelAdapter(model, (channels, size, size), device="cpu", progress=False, batch_size=16)


def view_mean(adapter, objective, image, seed=11):
    """The objective MACO raises: its mean over views drawn like MACO's (same boxes for every image)."""
    views = ux.featviz.sample_views(image, adapter, 32, seed=seed)
    scores, _ = adapter.objective_scores(views, objective, torch.zeros(32, dtype=torch.long))
    return float(scores.detach().mean())


@pytest.mark.parametrize("channels", [1, 3])
def test_optimised_image_beats_random_phase_by_z_3(channels):
    adapter = filter_model(channels)
    objective = CubedResponse("0", 1)
    result = ux.featviz.maco(adapter, objective, steps=48, crops=4, seed=0)
    null = torch.tensor([view_mean(adapter, objective, image) for image in random_phase_images(adapter, 16, seed=7)])
    z = (view_mean(adapter, objective, result.image) - null.mean()) / null.std()
    assert float(z) >= 3, f"z = {float(z):.2f}"
    assert result.history[-8:].mean() > result.history[:8].mean()
    # with whole-image views the whole image itself is what rises
    whole = ux.featviz.maco(adapter, objective, steps=48, crops=4, box_size=(1.0, 1.0), seed=0)
    null = random_phase_images(adapter, 16, seed=7)
    null_scores = adapter.objective_scores(null, objective, torch.zeros(16, dtype=torch.long))[0].detach()
    score = adapter.objective_scores(whole.image[None], objective, torch.zeros(1, dtype=torch.long))[0].detach()
    assert float((score - null_scores.mean()) / null_scores.std()) >= 3


def test_render_keeps_the_magnitude_and_the_value_range():
    size = (16, 20)
    magnitude = natural_spectrum(3, size)
    phase = torch.randn(magnitude.shape, generator=torch.Generator().manual_seed(0))
    image = render(phase, magnitude, size, (-2.0, 3.0))
    assert image.shape == (3, *size) and image.min() > -2 and image.max() < 3
    # before the sigmoid and the colour mixing the image is the inverse FFT of magnitude x e^{i phase}:
    # its spectrum's magnitude is the fixed one up to one factor (interior columns: no Hermitian folding)
    pre = torch.special.logit((image - -2.0) / 5.0)
    spectrum = torch.fft.rfft2(decorrelate(pre)).abs()[:, :, 1:-1]
    ratio = spectrum / magnitude[:, :, 1:-1]
    mask = magnitude[:, :, 1:-1] > magnitude.mean() * 1e-3
    assert torch.allclose(ratio[mask], ratio[mask].median().expand(int(mask.sum())), rtol=1e-3)


def test_colour_decorrelation_round_trip():
    x = torch.rand(2, 3, 5, 7)
    assert torch.allclose(recorrelate(decorrelate(x)), x, atol=1e-5)


def test_crop_views_are_exact_crops_at_pixel_centres():
    image = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 8, 8)
    boxes = torch.tensor([[0.5, 0.5, 0.5], [0.25, 0.75, 0.5], [0.5, 0.5, 1.0]])
    views = crop_views(image, boxes, (4, 4))
    assert torch.allclose(views[0], image[:, 2:6, 2:6])
    assert torch.allclose(views[1], image[:, 0:4, 4:8])
    full = crop_views(image, boxes[2:], (8, 8))
    assert torch.allclose(full[0], image)


def test_boxes_stay_inside_the_image_and_shrink_with_the_schedule():
    g = torch.Generator().manual_seed(0)
    big, small = crop_boxes(500, 0.6, g), crop_boxes(500, 0.2, g)
    for boxes in (big, small):
        half = boxes[:, 2:] / 2
        assert ((boxes[:, :2] - half) >= -1e-6).all() and ((boxes[:, :2] + half) <= 1 + 1e-6).all()
    assert big[:, 2].mean() > 0.55 and small[:, 2].mean() < 0.25


def test_seeded_and_independent_of_the_chunk_size(adapter2d):
    a = ux.featviz.maco(adapter2d, 1, steps=6, crops=4, seed=3)
    b = ux.featviz.maco(adapter2d, 1, steps=6, crops=4, seed=3, batch_size=1)
    c = ux.featviz.maco(adapter2d, 1, steps=6, crops=4, seed=4)
    assert torch.allclose(a.image, b.image, atol=1e-5) and torch.allclose(a.transparency, b.transparency, atol=1e-5)
    assert not torch.allclose(a.image, c.image)
    assert a.image.shape == (3, 16, 24) and a.alpha.shape == (16, 24)
    assert 0 <= float(a.alpha.min()) and float(a.alpha.max()) == pytest.approx(1.0)


def test_the_model_is_left_as_it_came(adapter2d):
    model = adapter2d.model
    model.train()
    model.features[0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    hooks = count_hooks(model)
    ux.featviz.maco(adapter2d, ux.objectives.Channel("features.2", 1) + 0.5 * ux.objectives.Logit(0), steps=3, crops=2)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags and count_hooks(model) == hooks


def test_concept_direction_objective_rises(adapter2d):
    vector = torch.rand(8)
    objective = ux.objectives.Direction("features.3", vector, cossim_pow=2)
    result = ux.featviz.maco(adapter2d, objective, steps=24, crops=4)
    assert result.history[-4:].mean() > result.history[:4].mean()
    assert "direction(features.3" in result.objective


def test_results_save_and_load(adapter2d, tmp_path):
    result = ux.featviz.maco(adapter2d, 2, steps=2, crops=2)
    result.save_npz(tmp_path / "r.npz")
    back = ux.featviz.MacoResult.load(tmp_path / "r.npz")
    assert torch.equal(back.image, result.image) and torch.equal(back.transparency, result.transparency)
    assert back.config == result.config and back.objective == result.objective
    image_png, alpha_png = result.save(tmp_path / "viz")
    assert image_png.stat().st_size > 0 and alpha_png.stat().st_size > 0


def test_concept_images_are_cached_beside_the_bank(adapter2d, tmp_path, monkeypatch):
    from unified_xai.concepts import ConceptBank
    from unified_xai.featviz import bank_images

    bank = ConceptBank(concepts_=torch.rand(3, 8), importances_=torch.tensor([0.5, 0.3, 0.2]), layer="features.3",
                       class_id=1, key="k123")
    path = tmp_path / "bank_k123.h5"
    first = ux.featviz.concept_images(adapter2d, bank, 2, bank_path=path, steps=3, crops=2)
    assert len(first) == 2 and len(list((tmp_path / "bank_k123.maco").glob("*.npz"))) == 2

    def refuse(*args, **kwargs):
        raise AssertionError("optimised again instead of reading the cache")
    monkeypatch.setattr(bank_images, "maco", refuse)
    again = ux.featviz.concept_images(adapter2d, bank, 2, bank_path=path, steps=3, crops=2)
    assert all(torch.equal(a.image, b.image) for a, b in zip(first, again))
    with pytest.raises(AssertionError):  # other settings are another cache entry
        ux.featviz.concept_images(adapter2d, bank, 1, bank_path=path, steps=4, crops=2)


def test_spectrum_file_estimate_and_user_spectra(tmp_path):
    assert SPECTRUM_FILE.is_file()
    rgb, grey = natural_spectrum(3, (224, 224)), natural_spectrum(1, (64, 48))
    assert rgb.shape == (3, 224, 113) and grey.shape == (1, 64, 25)
    # natural images: energy falls with frequency
    assert rgb[0, 1, 1] > rgb[0, 20, 20] > rgb[0, 100, 100]
    # a pure horizontal sinusoid puts its mean magnitude at its frequency
    t = torch.arange(64, dtype=torch.float32)
    stripes = (0.5 + 0.4 * torch.sin(2 * torch.pi * 8 * t / 64)).expand(3, 64, 64).clone()
    stripes[1] *= 0.5  # not grey
    spectra = ux.featviz.estimate_spectrum([stripes], size=64, crops_per_image=1)
    assert spectra["grey"][0].argmax() == 8 and spectra["rgb"].shape == (3, 64, 33)
    ux.featviz.save_spectrum(spectra, tmp_path / "s.npz", "stripes")
    loaded = natural_spectrum(3, (64, 64), tmp_path / "s.npz")
    assert torch.allclose(loaded, spectra["rgb"])


def test_bad_input_is_a_clear_error(adapter2d):
    with pytest.raises(ux.LayerError, match="features.3"):
        ux.featviz.maco(adapter2d, ux.objectives.Channel("nope", 0), steps=2)
    with pytest.raises(ux.LayerError, match="has 8 channels"):
        ux.featviz.maco(adapter2d, ux.objectives.Channel("features.3", 99), steps=2)
    with pytest.raises(ux.ParameterError, match="steps"):
        ux.featviz.maco(adapter2d, 0, steps=0)
    with pytest.raises(ux.ParameterError, match="name the class"):
        ux.featviz.maco(adapter2d, ux.objectives.Logit(), steps=2)
    with pytest.raises(ux.InputError, match="spectrum must have shape"):
        ux.featviz.maco(adapter2d, 0, steps=2, spectrum=torch.ones(2, 8, 5))
    with pytest.raises(ux.InputError, match="does not exist"):
        ux.featviz.maco(adapter2d, 0, steps=2, spectrum="missing.npz")
    with pytest.raises(ux.ParameterError, match="box_size"):
        ux.featviz.maco(adapter2d, 0, steps=2, box_size=(0.5, 1.5))
    with pytest.raises(ux.UXAIError, match="image models"):
        ux.featviz.maco(tiny_adapter(1), 0, steps=2)
    with pytest.raises(ux.InputError, match="out of range"):
        ux.featviz.maco(adapter2d, 17, steps=2)


def test_imagenet_class_logit_far_above_random_phase():
    adapter = ux.data.load_model("efficientnet-lite0-imagenet", progress=False)
    espresso = 967
    result = ux.featviz.maco(adapter, espresso, steps=16, crops=3)
    null = adapter.predict(random_phase_images(adapter, 16, seed=1))[:, espresso]
    logit = adapter.predict(result.image[None])[0, espresso]
    assert float((logit - null.mean()) / null.std()) >= 3


def test_lucent_interop(adapter2d):
    pytest.importorskip("lucent", reason="the lucent extra (CI installs it: scripts/setup.sh)")
    import lucent.optvis.objectives as lo

    from unified_xai.featviz import lucent as uxlucent

    model = adapter2d.model
    hooks = count_hooks(model)
    # MACO as lucent's parameterisation, our objective, inside lucent's render_vis
    images = uxlucent.render_vis(adapter2d, ux.objectives.Channel("features.3", 2), thresholds=(4,),
                                 transforms=[])
    assert images[0].shape == (1, 16, 24, 3) and count_hooks(model) == hooks
    # lucent's own objective inside its loop: its hooks are removed after
    uxlucent.render_vis(adapter2d, lo.channel("features_3", 2), thresholds=(2,), transforms=[])
    assert count_hooks(model) == hooks
    # a lucent objective evaluated by our hooks equals ours
    theirs = uxlucent.lucent_objective(lo.channel("features_3", 2) - lo.channel("features_1", 0),
                                       ["features.3", "features.1"])
    ours = ux.objectives.Channel("features.3", 2) - ux.objectives.Channel("features.1", 0)
    x = torch.rand(3, 3, 16, 24)
    t = torch.zeros(3, dtype=torch.long)
    assert torch.allclose(adapter2d.objective_scores(x, theirs, t)[0], adapter2d.objective_scores(x, ours, t)[0],
                          atol=1e-6)
    result = ux.featviz.maco(adapter2d, theirs, steps=4, crops=2)
    assert result.image.shape == (3, 16, 24) and count_hooks(model) == hooks


def test_any_input_size_and_non_square_images():
    torch.manual_seed(0)
    from conftest import TinyNet

    free = ux.ModelAdapter(TinyNet(2, 3).eval(), (3, None, None), device="cpu", progress=False, batch_size=8)
    result = ux.featviz.maco(free, 1, steps=2, crops=2, image_size=(24, 40))
    assert result.image.shape == (3, 24, 40) and result.alpha.shape == (24, 40)
    default = ux.featviz.maco(free, 1, steps=1, crops=1)
    assert default.image.shape == (3, 224, 224)
    # a fixed-size model: views are resized to its input size whatever the image size
    fixed = tiny_adapter(2)
    bigger = ux.featviz.maco(fixed, 1, steps=2, crops=2, image_size=48)
    assert bigger.image.shape == (3, 48, 48)


def test_the_model_is_left_as_it_came_when_the_objective_raises(adapter2d):
    class Broken(CubedResponse):
        def value(self, adapter, logits, acts, targets):
            raise RuntimeError("objective failed")

    model = adapter2d.model
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    hooks = count_hooks(model)
    with pytest.raises(RuntimeError, match="objective failed"):
        ux.featviz.maco(adapter2d, Broken("features.1", 0), steps=2, crops=2)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags and count_hooks(model) == hooks
