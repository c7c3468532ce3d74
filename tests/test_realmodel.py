"""The real ImageNet model (EfficientNet-Lite0, weights from an installed package) on real photos, offline."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn

import unified_xai as ux
from unified_xai.core.errors import CheckpointError, ParameterError, UXAIError
from unified_xai.data import imagenet, load_dataset, load_model, save_checkpoint
from unified_xai.data.loading import Normalize

MODEL = "efficientnet-lite0-imagenet"
#: photo -> ImageNet class names accepted as its top-1 (measured: experiments/imagenet_photos.py)
EXPECTED_TOP1 = {"china": {"palace"}, "coffee": {"espresso"}, "chelsea": {"tabby, tabby cat", "Egyptian cat"},
                 "rocket": {"missile"}, "camera": {"tripod"}, "grace_hopper": {"military uniform"}}
GRAYSCALE = {"camera", "clock", "coins", "moon"}


@pytest.fixture(scope="module")
def adapter():
    return load_model(MODEL, device="cpu", progress=False)


@pytest.fixture(scope="module")
def photos():
    return load_dataset("photos")


@pytest.fixture(scope="module")
def logits(adapter, photos):
    return adapter.predict(photos.inputs)


def test_adapter_description(adapter):
    assert adapter.input_shape == (3, 224, 224) and adapter.modality == "image"
    assert len(adapter.class_names) == 1000 and adapter.class_names[698] == "palace"
    assert isinstance(adapter.preprocess, Normalize)
    assert adapter.preprocess.mean.tolist() == [0.5] * 3 and adapter.preprocess.std.tolist() == [0.5] * 3
    assert adapter.sample_rate is None
    assert MODEL in ux.data.list_models()


def test_photos_top1(adapter, photos, logits):
    top1 = {name: adapter.class_names[i] for name, i in zip(photos.names, logits.argmax(1).tolist())}
    assert top1["china"] == "palace"
    for name, accepted in EXPECTED_TOP1.items():
        assert top1[name] in accepted, f"{name}: predicted {top1[name]!r}, expected one of {accepted}"
    for i, accepted in enumerate(photos.metadata["accepted_targets"]):  # accepted lists hold the target
        assert (photos.targets[i].item() == -1) == (not accepted)
        assert not accepted or accepted[0] == photos.targets[i].item()


def test_photo_targets_are_imagenet_indices(photos):
    targets = dict(zip(photos.names, photos.targets.tolist()))
    assert {k: targets[k] for k in ("china", "coffee", "chelsea", "rocket", "camera")} == \
        {"china": 698, "coffee": 967, "chelsea": 281, "rocket": 657, "camera": 872}
    for name in ("astronaut", "flower", "motorcycle", "coins", "moon"):
        assert targets[name] == -1
    assert photos.class_names[698] == "palace" and photos.class_names[872] == "tripod"
    truth = photos.truth(photos.names.index("china"))
    assert truth["class_name"] == "palace" and truth["name"] == "china"
    assert photos.truth(photos.names.index("moon"))["class_name"] is None


def test_photos_dataset(photos):
    assert isinstance(photos, ux.data.ArrayDataset)
    n = len(photos)
    assert n == len(photos.names) == len(set(photos.names)) == len(photos.notes) >= 11
    assert photos.inputs.shape == (n, 3, 224, 224) and photos.inputs.dtype == torch.float32
    assert photos.inputs.min() >= 0.0 and photos.inputs.max() <= 1.0
    assert photos.inputs.std(dim=(1, 2, 3)).min() > 0.02  # real content, not blank
    for name in GRAYSCALE:  # repeated channels, and said so
        i = photos.names.index(name)
        assert torch.equal(photos.inputs[i, 0], photos.inputs[i, 2]) and "Grayscale" in photos.notes[i]
    assert not torch.equal(photos.inputs[0, 0], photos.inputs[0, 2])
    x, y = photos[:3]
    assert x.shape == (3, 3, 224, 224) and y.shape == (3,)


def test_dataset_lookup_by_model_name(photos):
    by_model = load_dataset(MODEL)
    assert by_model.names == photos.names and torch.equal(by_model.inputs, photos.inputs)
    assert ux.data.BUILTIN_MODELS[MODEL]["dataset"] == "photos"
    with pytest.raises(ParameterError, match="only a 'test' split"):
        load_dataset("photos", "train")


def test_weights_digest_mismatch(tmp_path):
    original = imagenet.weights_path()
    corrupted = tmp_path / "efficientnet-lite0-corrupted.pth"
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        imagenet.load_efficientnet_lite0(corrupted)
    message = str(info.value)
    assert str(corrupted) in message and imagenet.WEIGHTS_SHA256 in message
    assert imagenet.sha256_of(corrupted) in message
    with pytest.raises(CheckpointError, match="does not exist"):
        imagenet.load_efficientnet_lite0(tmp_path / "missing.pth")


def test_weights_loaded_with_weights_only(monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    model = imagenet.load_efficientnet_lite0()
    assert calls == [True]
    assert not model.training


def test_state_dict_mapping_is_checked(adapter):
    source = torch.load(imagenet.weights_path(), map_location="cpu", weights_only=True)
    target = adapter.model.state_dict()
    renamed = imagenet.convert_state_dict(source, target)
    assert list(renamed) == list(target)
    assert torch.equal(renamed["classifier.weight"], source["_fc.weight"])
    assert all(torch.equal(renamed[k], target[k]) for k in target)  # the loaded model holds these weights
    shorter = dict(list(source.items())[:-1])
    with pytest.raises(CheckpointError, match="296"):
        imagenet.convert_state_dict(shorter, target)
    reshaped = dict(source)
    reshaped["_fc.weight"] = source["_fc.weight"][:10]
    with pytest.raises(CheckpointError, match=r"_fc.weight \(10, 1280\) -> classifier.weight \(1000, 1280\)"):
        imagenet.convert_state_dict(reshaped, target)


@pytest.mark.parametrize("layer", ["blocks.1", "blocks.3", "blocks.5", "conv_head"])
def test_fx_split_is_exact(adapter, photos, logits, layer):
    split = adapter.split(layer)
    assert split.method == "fx"
    with torch.no_grad():
        out = split.h(split.g(photos.inputs[:2]))
    torch.testing.assert_close(out, logits[:2], rtol=1e-4, atol=1e-4)


def test_checkpoint_round_trip(adapter, photos, logits, tmp_path):
    path = save_checkpoint(adapter, tmp_path / "lite0.pt", arch=MODEL, input_shape=adapter.input_shape,
                           class_names=adapter.class_names)
    again = load_model(path, device="cpu", progress=False)
    assert isinstance(again.preprocess, Normalize) and again.class_names == adapter.class_names
    torch.testing.assert_close(again.predict(photos.inputs[:2]), logits[:2])


def test_pretrained_false_gives_random_weights():
    untrained = load_model(MODEL, pretrained=False, device="cpu", progress=False)
    assert untrained.input_shape == (3, 224, 224) and len(untrained.class_names) == 1000
    trained = imagenet.load_efficientnet_lite0()
    assert not torch.equal(untrained.model.classifier.weight, trained.classifier.weight)


# --------------------------------------------------------------------------- sample rates
class TinyAudio(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 9, stride=4)

    def forward(self, x):
        return self.conv(x).mean(-1)


def tiny_audio() -> nn.Module:
    return TinyAudio()


def test_builtin_audio_sample_rate():
    audio = load_model("planted-audio", device="cpu", progress=False)
    assert audio.sample_rate == 8000
    assert load_model("planted-audio", device="cpu", progress=False, sample_rate=8000).sample_rate == 8000
    with pytest.raises(ParameterError, match="8000 Hz"):
        load_model("planted-audio", device="cpu", progress=False, sample_rate=16000)
    assert load_model("digits", device="cpu", progress=False).sample_rate is None


def test_user_model_sample_rate():
    spec = f"{__name__}:tiny_audio"
    adapter = load_model(spec, input_shape=(1, 4000), sample_rate=16000, device="cpu", progress=False)
    assert adapter.sample_rate == 16000.0
    assert load_model(spec, input_shape=(1, 4000), device="cpu", progress=False).sample_rate is None
    with pytest.raises(ParameterError, match="positive"):
        load_model(spec, input_shape=(1, 4000), sample_rate=-1, device="cpu", progress=False)
    assert issubclass(ParameterError, UXAIError)
