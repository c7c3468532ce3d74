"""Built-in models and datasets: accuracy, planted ground truth, loaders and checkpoints."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from unified_xai.core.errors import ParameterError, UnknownNameError
from unified_xai.core.model import ModelAdapter
from unified_xai.data import (CheckpointError, PlantedDataset, list_datasets, list_models, load_dataset, load_model,
                              save_checkpoint)
from builtin_checks import gradient_recoverability, input_gradients  # experiments/ (see conftest)
from train_builtin import RECIPES
from unified_xai.data.loading import WEIGHTS_DIR

PLANTED = ["planted-image", "planted-audio", "planted-volume"]
MIN_ACCURACY = {"digits": 0.95, "planted-image": 0.98, "planted-audio": 0.98, "planted-volume": 0.98}


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name, device="cpu", progress=False) for name in list_models()}


@pytest.fixture(scope="module")
def test_sets():
    return {name: load_dataset(name, "test") for name in list_datasets()}


def tiny_factory() -> nn.Module:
    """A factory for the ``module:factory`` form."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2))


# --------------------------------------------------------------------------- built-ins
def test_lists():
    assert list_models() == ["digits", "efficientnet-lite0-imagenet", "planted-audio", "planted-concepts",
                             "planted-image", "planted-volume"]
    assert list_datasets() == ["digits", "photos", "planted-audio", "planted-concepts", "planted-image",
                               "planted-volume"]


@pytest.mark.parametrize("name", ["digits", *PLANTED])
def test_builtin_accuracy(models, test_sets, name):
    adapter, ds = models[name], test_sets[name]
    assert isinstance(adapter, ModelAdapter)
    assert adapter.name == name and adapter.class_names == ds.class_names
    assert tuple(adapter.input_shape) == ds.input_shape
    accuracy = (adapter.predict(ds.inputs).argmax(1) == ds.targets).float().mean().item()
    assert accuracy >= MIN_ACCURACY[name], f"{name}: test accuracy {accuracy:.3f}"


def test_weight_files_are_small():
    for name in [m for m in list_models() if m in RECIPES]:  # the ImageNet model's weights ship in their own package
        path = WEIGHTS_DIR / f"{name}.pt"
        assert path.exists() and path.stat().st_size < 2 * 1024 ** 2


@pytest.mark.parametrize("name", PLANTED)
def test_planted_gradient_recoverability(models, test_sets, name):
    """The target-logit gradient, in Haar coefficients, points at the planted scale and place."""
    result = gradient_recoverability(models[name].forward, test_sets[name])
    assert result["n"] >= 100
    assert result["scale_accuracy"] >= 0.9, result["by_class"]
    assert result["where_accuracy"] >= 0.9, result["by_class"]
    assert result["mass_ratio"] > 3.0


def test_wam_gradient_identity(models, test_sets):
    """For Haar, the gradient w.r.t. DWT coefficients (autograd through the inverse) = DWT of the input gradient."""
    ptwt = pytest.importorskip("ptwt")
    adapter, ds = models["planted-image"], test_sets["planted-image"]
    x, targets = ds.inputs[:4], ds.targets[:4]
    coeffs = ptwt.wavedec2(x, "haar", mode="zero", level=3)
    leaves = [coeffs[0]] + [c for detail in coeffs[1:] for c in detail]
    leaves = [leaf.detach().requires_grad_(True) for leaf in leaves]

    def rebuild(*parts):
        return ptwt.waverec2([parts[0]] + [tuple(parts[1 + 3 * k:4 + 3 * k]) for k in range(3)], "haar")

    score = adapter.forward(rebuild(*leaves)).gather(1, targets.view(-1, 1)).sum()
    wam = torch.autograd.grad(score, leaves)
    via_input = ptwt.wavedec2(input_gradients(adapter.forward, x, targets), "haar", mode="zero", level=3)
    via_input = [via_input[0]] + [c for detail in via_input[1:] for c in detail]
    for a, b in zip(wam, via_input):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name", PLANTED)
def test_planted_dataset_contents(test_sets, name):
    ds = test_sets[name]
    assert isinstance(ds, PlantedDataset)
    n = len(ds)
    spatial = ds.inputs.shape[2:]
    assert ds.inputs.dtype == torch.float32 and ds.targets.dtype == torch.long
    assert ds.masks.shape == (n, *spatial) and ds.masks.dtype == torch.bool
    assert ds.scales.shape == ds.concepts.shape == ds.has_evidence.shape == (n,)
    assert ds.wavelet == "haar" and all(s % 2 ** ds.levels == 0 for s in spatial)
    assert torch.isfinite(ds.inputs).all()
    area = ds.masks.flatten(1).sum(1)
    assert (area[ds.has_evidence] > 0).all() and (area[~ds.has_evidence] == 0).all()
    assert ((ds.scales >= 1) & (ds.scales <= ds.levels))[ds.has_evidence].all()
    assert (ds.concepts[~ds.has_evidence] == -1).all() and (ds.concepts[ds.has_evidence] >= 0).all()
    # one scale per class, as declared in the metadata; every class present
    for c, cls in enumerate(ds.class_names):
        sel = ds.targets == c
        assert sel.any()
        declared = ds.class_scales[cls]
        assert set(ds.scales[sel].tolist()) == {-1 if declared is None else declared}
    inputs, targets = ds[2:5]
    assert inputs.shape == (3, *ds.input_shape) and targets.shape == (3,)
    i = int(torch.nonzero(ds.has_evidence)[0])
    truth = ds.truth(i)
    assert truth["has_evidence"] and truth["mask"].any() and truth["scale"] == int(ds.scales[i])
    assert truth["haar_level"] == ds.levels - truth["scale"] + 1
    assert truth["concept_name"] in ds.concept_names[truth["class_name"]]


@pytest.mark.parametrize("name", PLANTED)
def test_planted_evidence_sits_at_its_scale_and_place(name):
    """The evidence alone (same seed, nuisance removed) has all its Haar energy in the planted level and mask."""
    import pywt

    from unified_xai.data.planted import generate_planted

    noisy = generate_planted(name, 24, seed=5)
    clean = generate_planted(name, 24, seed=5, clean=True)
    assert torch.equal(noisy.masks, clean.masks) and torch.equal(noisy.scales, clean.scales)
    x = clean.inputs.double().numpy()
    axes = tuple(range(-(x.ndim - 2), 0))
    coeffs = pywt.wavedecn(x, "haar", mode="periodization", level=clean.levels, axes=axes)
    energy = np.stack([(coeffs[0] ** 2).reshape(len(x), -1).sum(1)]
                      + [sum((v ** 2).reshape(len(x), -1).sum(1) for v in c.values()) for c in coeffs[1:]], 1)
    for i in range(len(x)):
        if clean.has_evidence[i]:
            assert energy[i, int(clean.scales[i])] / energy[i].sum() > 0.999
            outside = x[i][:, ~clean.masks[i].numpy()]
            assert np.abs(outside).max() == 0.0
        else:
            assert energy[i].sum() == 0.0


def test_datasets_are_deterministic_and_fast():
    for name in PLANTED:
        start = time.perf_counter()
        a = load_dataset(name, "test")
        assert time.perf_counter() - start < 2.0
        b = load_dataset(name, "test")
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.masks, b.masks)
        assert torch.equal(a.targets, b.targets) and torch.equal(a.concepts, b.concepts)
    train, test = load_dataset("planted-image", "train"), load_dataset("planted-image", "test")
    assert len(train) > len(test) and not torch.equal(train.inputs[:10], test.inputs[:10])


def test_digits_dataset():
    test, train = load_dataset("digits", "test"), load_dataset("digits", "train")
    assert len(test) + len(train) == 1797 and len(test) == 450
    assert test.inputs.shape[1:] == (1, 32, 32) and test.inputs.dtype == torch.float32
    assert 0.0 <= test.inputs.min() and test.inputs.max() <= 1.0
    assert torch.bincount(test.targets).min() >= 40  # stratified
    assert torch.equal(test.inputs, load_dataset("digits", "test").inputs)


def test_dataset_errors():
    with pytest.raises(ParameterError, match="split"):
        load_dataset("digits", "validation")
    with pytest.raises(UnknownNameError, match="planted-image"):
        load_dataset("planted-images")


# --------------------------------------------------------------------------- loaders and checkpoints
def test_checkpoint_round_trip(models, test_sets, tmp_path):
    adapter = models["digits"]
    path = save_checkpoint(adapter, tmp_path / "digits_copy.pt", arch="digits-cnn", input_shape=(1, 32, 32),
                           class_names=adapter.class_names, arch_kwargs={"num_classes": 10, "width": 16})
    loaded = load_model(path, device="cpu", progress=False)
    x = test_sets["digits"].inputs[:8]
    assert torch.equal(loaded.predict(x), adapter.predict(x))
    assert loaded.class_names == adapter.class_names and loaded.input_shape == (1, 32, 32)
    content = torch.load(path, weights_only=True)
    assert content["format"] == "unified_xai.checkpoint" and content["arch"] == "digits-cnn"


def test_plain_state_dict_needs_arch(models, test_sets, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(models["digits"].model.state_dict(), path)
    with pytest.raises(ParameterError, match="arch="):
        load_model(path, device="cpu")
    loaded = load_model(path, arch="digits", device="cpu", progress=False)
    x = test_sets["digits"].inputs[:4]
    assert torch.equal(loaded.predict(x), models["digits"].predict(x))


def test_mismatched_checkpoint_is_a_clear_error(models, tmp_path):
    path = tmp_path / "digits.pt"
    torch.save(models["digits"].model.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, arch="planted-image", device="cpu")
    message = str(info.value)
    assert "missing key" in message and "unexpected key" in message and "arch" in message
    wrong = save_checkpoint(models["digits"].model, tmp_path / "wrong.pt", arch="digits-cnn",
                            input_shape=(1, 32, 32), arch_kwargs={"num_classes": 10, "width": 8})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(wrong, device="cpu")


def test_timm_offline_random_weights_warn():
    pytest.importorskip("timm")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        adapter = load_model("timm:resnet18", device="cpu", progress=False, input_shape=(3, None, None))
    assert adapter.input_shape == (3, None, None) and adapter.preprocess is not None
    assert adapter.predict(torch.rand(1, 3, 32, 32)).shape == (1, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = load_model("timm:resnet18", pretrained=False, device="cpu", progress=False)
    assert plain.input_shape == (3, 224, 224)
    with pytest.raises(UnknownNameError, match="timm"):
        load_model("timm:resnet_does_not_exist", pretrained=False)


def test_module_factory():
    adapter = load_model(f"{__name__}:tiny_factory", input_shape=(3, 16, 16), device="cpu", progress=False)
    assert adapter.predict(torch.rand(2, 3, 16, 16)).shape == (2, 2)
    with pytest.raises(ParameterError, match="input_shape"):
        load_model(f"{__name__}:tiny_factory")
    with pytest.raises(UnknownNameError, match="no attribute"):
        load_model(f"{__name__}:missing_factory", input_shape=(3, 16, 16))


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        load_model("digit")
    message = str(info.value)
    for name in list_models():
        assert name in message
    assert "timm:" in message and "module:factory" in message


def test_untrained_builtin_architecture():
    adapter = load_model("planted-volume", pretrained=False, device="cpu", progress=False)
    assert adapter.predict(torch.rand(1, 1, 32, 32, 32)).shape == (1, 3)
