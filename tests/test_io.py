"""Reading input files (unified_xai.io): audio resampling, image geometry and modes, tensors, NIfTI."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

import unified_xai as ux
from unified_xai.io import LoadedInputs, load_input, load_inputs

soundfile = pytest.importorskip("soundfile")
Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")


def _error(call) -> ux.UXAIError:
    with pytest.raises(ux.UXAIError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    return info.value


def _api_error(x, shape) -> str:
    adapter = ux.ModelAdapter(nn.Identity().eval(), shape, device="cpu", progress=False)
    with pytest.raises(ux.UXAIError) as info:
        adapter.check_input(x)
    return str(info.value)


def _tone(freq, rate, seconds, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _peak_hz(wave: torch.Tensor, rate: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy().astype(np.float64) * np.hanning(wave.numel())))
    return float(np.fft.rfftfreq(wave.numel(), 1 / rate)[spectrum.argmax()])


# --------------------------------------------------------------------------- audio
def test_16khz_copy_of_planted_audio_keeps_the_predicted_class(tmp_path):
    from scipy.signal import resample

    adapter = ux.data.load_model("planted-audio", device="cpu", progress=False)
    rate = adapter.sample_rate or 8000  # pass it explicitly while the built-in adapter has none
    x, _ = ux.data.load_dataset("planted-audio", split="test")[:16]
    originals, copies = [], []
    for i in range(x.shape[0]):
        wave = x[i, 0].double().numpy()
        originals.append(tmp_path / f"item{i}.wav")
        copies.append(tmp_path / f"item{i}_16k.wav")
        soundfile.write(originals[i], wave, 8000, subtype="FLOAT")
        # an independent band-limited upsampler (FFT), not the loader's polyphase filter
        soundfile.write(copies[i], resample(wave, 2 * wave.size), 16000, subtype="FLOAT")

    at_8k = load_inputs(originals, adapter, sample_rate=rate)
    at_16k = load_inputs(copies, adapter, sample_rate=rate)
    assert torch.equal(at_8k.x, x) and at_8k.notes == []
    assert at_16k.x.shape == x.shape and at_16k.x.dtype == torch.float32
    assert at_16k.names == [f"item{i}_16k" for i in range(16)]
    assert all("resampled 16000 Hz -> 8000 Hz" in note for note in at_16k.notes) and len(at_16k.notes) == 16
    predicted = adapter.predict(at_8k.x).argmax(1)
    assert torch.equal(adapter.predict(at_16k.x).argmax(1), predicted)

    # without the model's rate the file is used as is (and said so): classes change, hence the resampling
    unknown = load_inputs(copies, (1, 8192))
    assert all("model sample rate unknown; using the file's 16000 Hz as is" in n and "sample_rate=" in n
               for n in unknown.notes)
    assert not torch.equal(adapter.predict(unknown.x).argmax(1), predicted)


@pytest.mark.parametrize("file_rate, freq", [(16000, 1000.0), (44100, 1000.0), (22050, 3125.0), (4000, 750.0)])
def test_resampling_preserves_a_tone_frequency(tmp_path, file_rate, freq):
    path = tmp_path / "tone.wav"
    soundfile.write(path, _tone(freq, file_rate, 1.5), file_rate, subtype="FLOAT")
    loaded = load_inputs([path], (1, 8000), sample_rate=8000)
    assert loaded.x.shape == (1, 1, 8000)
    assert loaded.notes == [f"tone.wav: resampled {file_rate} Hz -> 8000 Hz"
                            f" ({int(1.5 * file_rate):,} -> 12,000 samples); cropped 12,000 -> 8,000 samples"
                            f" (kept the first 1 s)"]
    assert abs(_peak_hz(loaded.x[0, 0, 1000:7000], 8000) - freq) <= 8000 / 6000
    # the amplitude is kept (0.5 sine: RMS 0.354) away from the filter's edges
    assert loaded.x[0, 0, 1000:7000].pow(2).mean().sqrt().item() == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_resampling_removes_content_above_the_new_nyquist(tmp_path):
    """A 6 kHz tone cannot exist at 8 kHz: band-limited resampling removes it instead of aliasing it to 2 kHz."""
    path = tmp_path / "high.wav"
    soundfile.write(path, _tone(6000, 16000, 1.0), 16000, subtype="FLOAT")
    wave = load_inputs([path], (1, 8000), sample_rate=8000).x[0, 0]
    assert wave[500:7500].abs().max().item() < 0.01  # naive decimation would give a 0.5 tone at 2 kHz


def test_stereo_mixdown_crop_and_pad_are_noted(tmp_path):
    stereo = np.stack([np.full(12000, 0.6), np.full(12000, 0.2)], axis=1)
    soundfile.write(tmp_path / "long.wav", stereo, 8000, subtype="FLOAT")
    soundfile.write(tmp_path / "short.wav", np.full(3000, 0.25), 8000, subtype="FLOAT")
    loaded = load_inputs([tmp_path / "long.wav", tmp_path / "short.wav"], (1, 8192), sample_rate=8000)
    assert loaded.x.shape == (2, 1, 8192) and loaded.names == ["long", "short"]
    assert torch.allclose(loaded.x[0], torch.full((1, 8192), 0.4))
    assert torch.allclose(loaded.x[1, 0, :3000], torch.tensor(0.25)) and loaded.x[1, 0, 3000:].abs().max() == 0
    long_note, short_note = loaded.notes
    assert long_note.startswith("long.wav: ") and "stereo mixed down to mono" in long_note
    assert "cropped 12,000 -> 8,192 samples" in long_note
    assert short_note == "short.wav: zero-padded 3,000 -> 8,192 samples (silence added at the end)"
    # a mono file for a 2-channel model is copied to both channels, and said so
    two = load_inputs([tmp_path / "short.wav"], (2, None), sample_rate=8000)
    assert two.x.shape == (1, 2, 3000) and "mono copied to the model's 2 channels" in two.notes[0]


def test_adapter_sample_rate_is_used(tmp_path):
    soundfile.write(tmp_path / "a.wav", _tone(500, 16000, 1.0), 16000, subtype="FLOAT")
    adapter = ux.ModelAdapter(nn.Flatten().eval(), (1, 8000), device="cpu", progress=False, sample_rate=8000)
    loaded = load_input(tmp_path / "a.wav", adapter)
    assert isinstance(loaded, LoadedInputs) and loaded.x.shape == (1, 1, 8000)
    assert loaded.notes == ["a.wav: resampled 16000 Hz -> 8000 Hz (16,000 -> 8,000 samples)"]


# --------------------------------------------------------------------------- images
def _circle_photo(path, width, height, radius):
    image = Image.new("RGB", (width, height), "white")
    cx, cy = width / 2, height / 2
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(0, 0, 0))
    image.save(path)


@pytest.mark.parametrize("width, height", [(640, 427), (427, 640)])
def test_photo_is_centre_cropped_not_stretched(tmp_path, width, height):
    _circle_photo(tmp_path / "photo.png", width, height, radius=150)
    loaded = load_inputs([tmp_path / "photo.png"], (3, 64, 64))
    x = loaded.x
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    rows, cols = torch.nonzero(x[0, 0] < 0.5, as_tuple=True)
    tall, wide = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert abs(int(tall) - int(wide)) <= 1  # a circle stays a circle (stretching would give 45 vs 30 px)
    side = min(width, height)
    assert int(wide) == pytest.approx(300 * 64 / side, abs=2)
    assert loaded.notes == [f"photo.png: centre-cropped {width}x{height} -> {side}x{side} px to the aspect ratio"
                            f" of the model's 64x64 input; resized {side}x{side} -> 64x64 px (antialiased bilinear)"]


def test_non_square_model_and_free_size(tmp_path):
    _circle_photo(tmp_path / "photo.png", 640, 427, radius=150)
    wide = load_inputs([tmp_path / "photo.png"], (1, 40, 80)).x
    rows, cols = torch.nonzero(wide[0, 0] < 0.5, as_tuple=True)
    assert wide.shape == (1, 1, 40, 80) and abs(int(rows.max() - rows.min()) - int(cols.max() - cols.min())) <= 1
    free = load_inputs([tmp_path / "photo.png"], (3, None, None))
    assert free.x.shape == (1, 3, 427, 640) and free.notes == []
    half = load_inputs([tmp_path / "photo.png"], (3, None, 320))
    assert half.x.shape == (1, 3, 214, 320)


def test_image_mode_conversions_are_noted(tmp_path):
    Image.new("L", (32, 32), 128).save(tmp_path / "gray.png")
    gray = load_inputs([tmp_path / "gray.png"], (3, 32, 32))
    assert gray.notes == ["gray.png: grayscale copied to 3 channels (RGB)"]
    assert torch.allclose(gray.x, torch.full((1, 3, 32, 32), 128 / 255))

    Image.new("RGBA", (32, 32), (255, 0, 0, 128)).save(tmp_path / "half.png")
    half = load_inputs([tmp_path / "half.png"], (3, 32, 32))
    assert half.notes == ["half.png: transparency composited on white (100% of pixels not fully opaque)"]
    alpha = 128 / 255
    assert torch.allclose(half.x[0, :, 0, 0], torch.tensor([1.0, 1 - alpha, 1 - alpha]), atol=1e-6)

    Image.new("RGBA", (32, 32), (0, 0, 255, 255)).save(tmp_path / "opaque.png")
    opaque = load_inputs([tmp_path / "opaque.png"], (3, 32, 32))
    assert opaque.notes == ["opaque.png: alpha channel fully opaque: dropped"]
    assert torch.equal(opaque.x[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]))

    Image.new("RGB", (32, 32), (255, 0, 0)).convert("P").save(tmp_path / "palette.gif")
    palette = load_inputs([tmp_path / "palette.gif"], (3, 32, 32))
    assert palette.notes == ["palette.gif: palette image converted to RGB"]
    assert torch.equal(palette.x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))

    Image.fromarray(np.full((32, 32), 65535 // 4, np.uint16)).save(tmp_path / "deep.png")
    deep = load_inputs([tmp_path / "deep.png"], (1, 32, 32))
    assert deep.notes == ["deep.png: 16-bit grayscale scaled to [0, 1] (divided by 65535)"]
    assert deep.x.max().item() == pytest.approx(0.25, abs=1e-4)

    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "red.png")
    luma = load_inputs([tmp_path / "red.png"], (1, 32, 32))
    assert luma.notes == ["red.png: RGB converted to grayscale (ITU-R 601 luma)"]
    assert luma.x.max().item() == pytest.approx(0.299, abs=1e-6)


# --------------------------------------------------------------------------- tensors
@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.bool_])
def test_integer_and_boolean_arrays_are_refused_like_the_api(tmp_path, dtype):
    array = np.ones((1, 8, 8), dtype=dtype)
    np.save(tmp_path / "ints.npy", array)
    error = _error(lambda: load_inputs([tmp_path / "ints.npy"], (1, 8, 8)))
    assert isinstance(error, ux.InputError) and str(tmp_path / "ints.npy") in str(error)
    assert _api_error(array, (1, 8, 8)) in str(error) and "astype('float32') / 255" in str(error)
    torch.save(torch.from_numpy(array), tmp_path / "ints.pt")
    assert _api_error(array, (1, 8, 8)) in str(_error(lambda: load_inputs([tmp_path / "ints.pt"], (1, 8, 8))))


def test_big_endian_array_equals_the_native_one(tmp_path):
    native = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "native.npy", native)
    np.save(tmp_path / "big.npy", native.astype(">f4"))
    a, b = load_inputs([tmp_path / "native.npy"], (1, 8, 8)), load_inputs([tmp_path / "big.npy"], (1, 8, 8))
    assert torch.equal(a.x, b.x) and torch.equal(a.x, torch.from_numpy(native))
    assert a.names == ["native[0]", "native[1]", "native[2]"] and a.notes == []
    assert b.notes == ["big.npy: big-endian >f4 converted to native byte order"]


def test_tensor_files_one_sample_batch_and_wrong_shape(tmp_path):
    torch.save(torch.rand(1, 8, 8, dtype=torch.float64), tmp_path / "one.pt")
    np.save(tmp_path / "plain.npy", np.zeros((8, 8), np.float32))
    loaded = load_inputs([tmp_path / "one.pt", tmp_path / "plain.npy"], (1, 8, 8))
    assert loaded.x.shape == (2, 1, 8, 8) and loaded.x.dtype == torch.float32 and loaded.names == ["one", "plain"]
    assert loaded.notes == ["one.pt: float64 converted to float32", "plain.npy: channel axis added"]

    torch.save(torch.zeros(3, 8, 9), tmp_path / "wrong.pt")
    message = str(_error(lambda: load_inputs([tmp_path / "wrong.pt"], (1, 8, 8))))
    assert "wrong.pt" in message and "(3, 8, 9)" in message and "(1, 8, 8)" in message and "(B, 1, 8, 8)" in message
    np.save(tmp_path / "last.npy", np.zeros((8, 8, 3), np.float32))
    assert "np.moveaxis(x, -1, -3)" in str(_error(lambda: load_inputs([tmp_path / "last.npy"], (3, 8, 8))))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "ckpt.pt")
    assert "must hold one tensor" in str(_error(lambda: load_inputs([tmp_path / "ckpt.pt"], (1, 8, 8))))
    np.save(tmp_path / "nan.npy", np.full((1, 8, 8), np.nan, np.float32))
    assert "NaN" in str(_error(lambda: load_inputs([tmp_path / "nan.npy"], (1, 8, 8))))


def test_corrupt_tensor_files_name_the_path_and_the_cause(tmp_path):
    torch.save(torch.zeros(1, 8, 8), tmp_path / "good.pt")
    good = (tmp_path / "good.pt").read_bytes()
    cases = {"garbage.pt": (b"not a tensor at all", "not a torch.save file"),
             "empty.pt": (b"", "the file is empty"),
             "truncated.pt": (good[: len(good) // 2], "corrupted or truncated"),
             "stop.pt": (b"\x80\x02.", "corrupted or truncated"),
             "bad.npy": (b"\x93NUMPY garbage", "cannot read")}
    for name, (content, cause) in cases.items():
        (tmp_path / name).write_bytes(content)
        message = str(_error(lambda: load_inputs([tmp_path / name], (1, 8, 8))))
        assert str(tmp_path / name) in message and cause in message, message
        assert not message.startswith("pop from")


# --------------------------------------------------------------------------- volumes
def test_nibabel_example_4d_volume():
    nibabel = pytest.importorskip("nibabel")
    from nibabel.testing import data_path

    path = os.path.join(data_path, "example4d.nii.gz")
    volume = nibabel.load(path).get_fdata(dtype=np.float32)  # 128x96x24x2
    first = load_inputs([path], (1, 32, 32, 32))
    assert first.x.shape == (1, 1, 32, 32, 32) and first.x.dtype == torch.float32 and first.names == ["example4d"]
    assert "kept the first of its 2 volumes" in first.notes[0] and "resized 128x96x24 -> 32x32x32" in first.notes[0]
    assert first.x.mean().item() == pytest.approx(float(volume[..., 0].mean()), rel=0.02)
    channels = load_inputs([path], (2, None, None, None))
    assert channels.x.shape == (1, 2, 128, 96, 24)
    assert torch.equal(channels.x[0], torch.from_numpy(np.moveaxis(volume, 3, 0)))
    assert "its 2 volumes taken as the model's 2 channels" in channels.notes[0]
    assert "takes 3 channels" in str(_error(lambda: load_inputs([path], (3, 32, 32, 32))))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_synthetic_nifti_volume(tmp_path, suffix):
    nibabel = pytest.importorskip("nibabel")
    data = np.random.default_rng(1).random((16, 12, 8)).astype(np.float32)
    data[0, 0, 0] = np.nan
    path = tmp_path / f"scan{suffix}"
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(path))
    exact = load_inputs([path], (1, 16, 12, 8))
    assert exact.x.shape == (1, 1, 16, 12, 8) and exact.names == ["scan"]
    expected = torch.from_numpy(np.nan_to_num(data, nan=0.0))
    assert torch.equal(exact.x[0, 0], expected)
    assert exact.notes == [f"scan{suffix}: 3D volume 16x12x8 given a channel axis; 1 NaN/infinite voxels set to 0"]
    resized = load_inputs([path], (1, 8, 6, 4))
    assert resized.x.shape == (1, 1, 8, 6, 4) and "resized 16x12x8 -> 8x6x4 voxels" in resized.notes[0]
    # antialiased: white noise shrunk 2x per axis is averaged over many voxels (point sampling would keep its spread)
    assert resized.x.std().item() < 0.3 * float(np.nanstd(data))
    assert resized.x.mean().item() == pytest.approx(float(expected.mean()), abs=0.01)
    # the same volume as a .npy without channel axis is treated alike
    np.save(tmp_path / "scan.npy", np.nan_to_num(data, nan=0.0))
    raw = load_inputs([tmp_path / "scan.npy"], (1, 8, 6, 4))
    assert raw.x.shape == (1, 1, 8, 6, 4)
    assert torch.allclose(raw.x, resized.x, atol=1e-6) and "volume 16x12x8 given a channel axis" in raw.notes[0]


def test_volume_resize_keeps_each_axis(tmp_path):
    """A ramp along one axis stays that ramp at the new voxel centres (interior), for each of D, H, W."""
    for axis in range(3):
        view = [1, 1, 1]
        view[axis] = 16
        ramp = np.broadcast_to(np.arange(16, dtype=np.float32).reshape(view), (16, 16, 16)).copy()
        np.save(tmp_path / "ramp.npy", ramp)
        x = load_inputs([tmp_path / "ramp.npy"], (1, 8, 8, 8)).x[0, 0]
        profile = x.movedim(axis, 0)[:, 4, 4]
        assert torch.allclose(profile[1:-1], torch.arange(1, 7) * 2 + 0.5), (axis, profile)


def test_missing_nibabel_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "scan.nii").write_bytes(b"\0" * 400)
    monkeypatch.setitem(sys.modules, "nibabel", None)
    message = str(_error(lambda: load_inputs([tmp_path / "scan.nii"], (1, 8, 8, 8))))
    assert "pip install unified-xai[nifti]" in message


# --------------------------------------------------------------------------- refusals
def test_unknown_missing_and_wrong_modality_files(tmp_path):
    (tmp_path / "table.csv").write_text("1,2,3")
    message = str(_error(lambda: load_inputs([tmp_path / "table.csv"], (3, 32, 32))))
    assert "'.csv'" in message
    for accepted in (".png", ".jpg", ".wav", ".flac", ".nii.gz", ".npy", ".pt"):
        assert accepted in message
    assert "does not exist" in str(_error(lambda: load_inputs([tmp_path / "nope.png"], (3, 32, 32))))
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    message = str(_error(lambda: load_inputs([tmp_path / "photo.png"], (1, 8192))))
    assert "image file" in message and ".wav" in message and ".npy" in message
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert "cannot read image" in str(_error(lambda: load_inputs([tmp_path / "broken.png"], (3, 32, 32))))
    (tmp_path / "broken.wav").write_bytes(b"RIFF nothing")
    assert "cannot read audio" in str(_error(lambda: load_inputs([tmp_path / "broken.wav"], (1, 64))))
    assert "no input files" in str(_error(lambda: load_inputs([], (3, 32, 32))))
    Image.new("RGB", (8, 8)).save(tmp_path / "small.png")
    Image.new("RGB", (9, 8)).save(tmp_path / "other.png")
    assert "different shapes" in str(_error(lambda: load_inputs([tmp_path / "small.png", tmp_path / "other.png"],
                                                                 (3, None, None))))
    assert isinstance(_error(lambda: load_inputs([tmp_path / "small.png"], (3, 8, 8), sample_rate=-1)),
                      ux.UXAIError)
