"""Reading user input files into a model-ready batch: images, audio, NIfTI volumes, .npy/.pt tensors.

:func:`load_inputs` returns a :class:`LoadedInputs`: the batch ``x`` (float32, CPU, shaped
``(B, *input_shape)`` for fixed sizes), one name per sample and a list of notes stating every
conversion made on the way (resampling, channel mixdown, cropping, resizing...). Nothing is changed
silently: a caller (e.g. the ``uxai`` command line) should show the notes.

Rules by file type
------------------
* **Audio** (.wav, .flac, .ogg, .mp3, .aif/.aiff, read with soundfile): resampled to the model's
  sample rate with a band-limited polyphase filter (``scipy.signal.resample_poly``); several channels
  are averaged to mono for a 1-channel model (a mono file is copied to every channel of a
  multi-channel model); then cropped (the start is kept) or zero-padded at the end to the model's
  length. When the model's sample rate is unknown the file is used at its own rate and a note says so.
* **Images** (PNG, JPEG, BMP, GIF, TIFF, WebP): EXIF orientation applied; palette, 1-bit, CMYK,
  YCbCr, LAB, HSV, 16-bit and 32-bit modes converted; transparency composited on white; grayscale
  copied to RGB or RGB turned to grayscale (ITU-R 601 luma) to match the model's channels; then
  centre-cropped to the model's aspect ratio and resized (antialiased bilinear) so that shapes are
  never stretched. Values in [0, 1].
* **NIfTI volumes** (.nii, .nii.gz, needs ``pip install unified-xai[nifti]``): voxel values with the
  header's scaling applied, axes as stored (``nibabel.load(path).get_fdata()``, no reorientation);
  a 3D volume gets a channel axis; a 4D volume gives its first volume to a 1-channel model, or its
  4th axis as channels when that axis has exactly the model's channel count; NaN voxels become 0;
  resized (trilinear, antialiased) to a fixed model grid. Intensities are not normalised.
* **Tensors** (.npy, .pt, .pth): taken as they are, one sample ``(C, *spatial)`` or a batch
  ``(B, C, *spatial)``; a 1-channel model also accepts a sample without its channel axis. Integer and
  boolean arrays are refused with the same message as :meth:`ModelAdapter.check_input` (convert and
  scale them first); non-native byte order is converted; float16/float64 become float32. A tensor
  without channel axis given to a volume model (``(D, H, W)``) is a raw volume and is treated like a
  3D NIfTI volume (resized to the model's grid, noted).

Every refusal is an :class:`~unified_xai.core.errors.InputError` naming the file, what is wrong and
what is accepted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .core.errors import InputError, ParameterError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
VOLUME_SUFFIXES = (".nii", ".nii.gz")
TENSOR_SUFFIXES = (".npy", ".pt", ".pth")

_KINDS = {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES, "volume": VOLUME_SUFFIXES, "tensor": TENSOR_SUFFIXES}
#: file kinds a model of each modality (number of spatial dims) accepts, besides tensors
_MODALITY_KIND = {1: "audio", 2: "image", 3: "volume"}
_MODALITY_NAME = {1: "signal (audio)", 2: "image", 3: "volume"}


@dataclass
class LoadedInputs:
    """A batch read from files.

    x : ``(B, *input_shape)`` float32 on the CPU.
    names : one per sample: the file stem, or ``"stem[i]"`` for the i-th sample of a batch file.
    notes : human-readable statements of every conversion, one per converted file, e.g.
        ``"house.wav: resampled 16000 Hz -> 8000 Hz; stereo mixed down to mono; cropped 113,000 -> 8,192 samples"``.
    """

    x: torch.Tensor
    names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])


# --------------------------------------------------------------------------- entry points
def load_inputs(paths: str | Path | Sequence[str | Path], adapter_or_shape, sample_rate: float | None = None) -> LoadedInputs:
    """Read files into one float32 batch for a model.

    Parameters
    ----------
    paths : one path or a sequence of paths (images, audio, NIfTI volumes, .npy/.pt tensors).
    adapter_or_shape : a :class:`~unified_xai.core.model.ModelAdapter` (its ``input_shape`` and
        ``sample_rate`` are used) or an input shape ``(C, *spatial)``.
    sample_rate : the model's sample rate in Hz, for audio files; overrides the adapter's.

    Returns
    -------
    LoadedInputs with ``x`` ``(B, *input_shape)`` float32 on the CPU, ``names`` and ``notes``.
    """
    shape, rate, general = _resolve_target(adapter_or_shape, sample_rate)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(f"no input files given; give at least one file ({_accepted(len(shape) - 1)})")
    samples, names, notes = [], [], list(general)
    for path in paths:
        x, steps = _load_one(path, shape, rate)
        samples.append(x)
        names.extend([_stem(path)] if x.shape[0] == 1 and not steps.batch_file else
                     [f"{_stem(path)}[{i}]" for i in range(x.shape[0])])
        if steps:
            notes.append(f"{path.name}: " + "; ".join(steps))
    sizes = {tuple(s.shape[1:]) for s in samples}
    if len(sizes) > 1:
        listing = ", ".join(f"{p.name} {tuple(s.shape[1:])}" for p, s in zip(paths, samples))
        raise InputError(f"the inputs have different shapes ({listing}); the model accepts free sizes but a batch"
                         f" needs one shape: load and explain them one at a time")
    x = samples[0] if len(samples) == 1 else torch.cat(samples)
    return LoadedInputs(x.contiguous(), names, notes)


def load_input(path: str | Path, adapter_or_shape, sample_rate: float | None = None) -> LoadedInputs:
    """:func:`load_inputs` for one file (which may itself hold a batch)."""
    return load_inputs([path], adapter_or_shape, sample_rate)


def file_kind(path: str | Path) -> str | None:
    """``"image"``, ``"audio"``, ``"volume"``, ``"tensor"`` or ``None`` from a file name's suffix."""
    name = Path(path).name.lower()
    for kind, suffixes in _KINDS.items():
        if any(name.endswith(s) for s in suffixes):
            return kind
    return None


# --------------------------------------------------------------------------- helpers
class _Steps(list):
    """The conversions made on one file (a list of strings), and whether it held a batch."""

    batch_file = False


def _resolve_target(adapter_or_shape, sample_rate):
    general = []
    if hasattr(adapter_or_shape, "input_shape"):
        shape = adapter_or_shape.input_shape
        own_rate = getattr(adapter_or_shape, "sample_rate", None)
    else:
        shape, own_rate = adapter_or_shape, None
    try:
        shape = tuple(None if s is None else int(s) for s in shape)
    except (TypeError, ValueError):
        raise ParameterError(f"adapter_or_shape must be a ModelAdapter or an input shape (C, *spatial) such as"
                             f" (3, 224, 224), got {adapter_or_shape!r}") from None
    if len(shape) not in (2, 3, 4) or shape[0] is None or any(s is not None and s < 1 for s in shape):
        raise ParameterError(f"the input shape must be (C, *spatial) with 1 to 3 spatial dims and a fixed channel"
                             f" count, got {shape}; e.g. (3, 224, 224), (1, 16000) or (1, 32, 32, 32)")
    if sample_rate is not None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0 \
                or not math.isfinite(sample_rate):
            raise ParameterError(f"sample_rate must be a positive number of samples per second, got {sample_rate!r}")
        if own_rate is not None and float(own_rate) != float(sample_rate):
            general.append(f"sample_rate={_hz(sample_rate)} Hz given overrides the model adapter's {_hz(own_rate)} Hz")
        rate = float(sample_rate)
    else:
        rate = None if own_rate is None else float(own_rate)
    return shape, rate, general


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted((s for suffixes in _KINDS.values() for s in suffixes), key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.stem


def _accepted(spatial_ndim: int) -> str:
    kind = _MODALITY_KIND[spatial_ndim]
    return (f"this {_MODALITY_NAME[spatial_ndim]} model reads {kind} files ({', '.join(_KINDS[kind])})"
            f" or tensors ({', '.join(TENSOR_SUFFIXES)})")


def _hz(rate: float) -> str:
    return str(int(rate)) if float(rate).is_integer() else f"{rate:.6g}"


def _n(count: int) -> str:
    return f"{count:,}"


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _shape_text(shape) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


def _load_one(path: Path, shape: tuple, rate: float | None):
    spatial_ndim = len(shape) - 1
    if not path.exists():
        raise InputError(f"input file {path} does not exist; {_accepted(spatial_ndim)}")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give the files inside it ({_accepted(spatial_ndim)})")
    kind = file_kind(path)
    if kind is None:
        suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".gz") else path.suffix
        raise InputError(
            f"cannot read {path}: unknown file type {suffix.lower() or '(no suffix)'!r}; accepted: images"
            f" ({', '.join(IMAGE_SUFFIXES)}), audio ({', '.join(AUDIO_SUFFIXES)}), NIfTI volumes"
            f" ({', '.join(VOLUME_SUFFIXES)}) or tensors ({', '.join(TENSOR_SUFFIXES)})")
    if kind != "tensor" and kind != _MODALITY_KIND[spatial_ndim]:
        raise InputError(f"{path} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} file but the model takes"
                         f" {_MODALITY_NAME[spatial_ndim]} inputs of shape {_shape_text(shape)}; {_accepted(spatial_ndim)}")
    steps = _Steps()
    if kind == "image":
        x = _load_image(path, shape, steps)
    elif kind == "audio":
        x = _load_audio(path, shape, rate, steps)
    elif kind == "volume":
        x = _load_nifti(path, shape, steps)
    else:
        x = _load_tensor(path, shape, steps)
    _api_check(x, shape, path)
    return x.to(dtype=torch.float32, device="cpu").contiguous(), steps


@lru_cache(maxsize=8)
def _reference_adapter(shape: tuple):
    """A model-free adapter with this input shape: its ``check_input`` is the API's input rule."""
    from torch import nn

    from .core.model import ModelAdapter

    return ModelAdapter(nn.Identity().eval(), shape, device="cpu", progress=False, name="input-check")


def _api_check(x: torch.Tensor, shape: tuple, path: Path) -> None:
    """Apply exactly the rule of ``ModelAdapter.check_input`` (dtype, shape, finite values)."""
    try:
        _reference_adapter(shape).check_input(x)
    except InputError as exc:
        hint = ""
        if not torch.is_floating_point(x) and path.suffix.lower() == ".npy":
            hint = "; for this file: np.save(path, x.astype('float32') / 255) for 0-255 data"
        raise InputError(f"{path}: {exc}{hint}") from None


def _refuse_non_float(x: torch.Tensor, shape: tuple, path: Path) -> None:
    """Integer/boolean tensors: the API's own message, with the file named."""
    if torch.is_floating_point(x):
        return
    # a probe of the right shape, so that the API's dtype rule (not its shape rule) decides
    probe = torch.zeros((1,) + tuple(1 if s is None else s for s in shape), dtype=x.dtype)
    _api_check(probe, shape, path)


# --------------------------------------------------------------------------- audio
def _load_audio(path: Path, shape: tuple, rate: float | None, steps: list) -> torch.Tensor:
    import soundfile

    channels, length = shape
    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError on bad files
        raise InputError(f"cannot read audio file {path}: {_cause(exc)}; give a valid"
                         f" {', '.join(AUDIO_SUFFIXES)} file or a .npy/.pt tensor") from None
    frames, file_channels = data.shape
    if frames == 0:
        raise InputError(f"audio file {path} holds no samples; give a non-empty recording")
    # channels first: fewer rows to resample
    if file_channels != channels:
        if channels == 1:
            data = data.mean(axis=1, keepdims=True)
            steps.append("stereo mixed down to mono" if file_channels == 2
                         else f"{file_channels} channels mixed down to mono (mean)")
        elif file_channels == 1:
            data = np.repeat(data, channels, axis=1)
            steps.append(f"mono copied to the model's {channels} channels")
        else:
            raise InputError(f"{path} has {file_channels} audio channels but the model takes {channels}; give a mono"
                             f" or {channels}-channel file, or a .npy tensor of shape {_shape_text(shape)}")
    if rate is None:
        steps.append(f"model sample rate unknown; using the file's {_hz(file_rate)} Hz as is"
                     f" — pass sample_rate= (the rate the model was trained at) to resample")
    elif float(file_rate) != rate:
        before = data.shape[0]
        data = _resample(data, float(file_rate), rate)
        steps.append(f"resampled {_hz(file_rate)} Hz -> {_hz(rate)} Hz ({_n(before)} -> {_n(data.shape[0])} samples)")
    wave = torch.from_numpy(np.ascontiguousarray(data.T, dtype=np.float32))
    if length is not None and wave.shape[1] != length:
        got = wave.shape[1]
        if got > length:
            wave = wave[:, :length]
            kept = f"the first {length / rate:.3g} s" if rate else "the start"
            steps.append(f"cropped {_n(got)} -> {_n(length)} samples (kept {kept})")
        else:
            wave = F.pad(wave, (0, length - got))
            steps.append(f"zero-padded {_n(got)} -> {_n(length)} samples (silence added at the end)")
    return wave.unsqueeze(0)


def _resample(data: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """Band-limited polyphase resampling along axis 0 (Kaiser-windowed sinc, scipy)."""
    from scipy.signal import resample_poly

    ratio = (Fraction(to_rate).limit_denominator(1000) / Fraction(from_rate).limit_denominator(1000))
    ratio = ratio.limit_denominator(10_000)
    up, down = ratio.numerator, ratio.denominator
    out = resample_poly(data.astype(np.float64), up, down, axis=0)
    expected = int(round(data.shape[0] * to_rate / from_rate))
    return out[:expected].astype(np.float32) if out.shape[0] > expected else out.astype(np.float32)


# --------------------------------------------------------------------------- images
_ALPHA_MODES = {"RGBA": "RGB", "LA": "L", "RGBa": "RGB", "La": "L"}


def _load_image(path: Path, shape: tuple, steps: list) -> torch.Tensor:
    from PIL import Image, ImageOps

    channels, height, width = shape
    if channels not in (1, 3):
        raise InputError(f"{path} is an image but the model takes {channels} channels; images give 1 (grayscale)"
                         f" or 3 (RGB): save the input as a .npy float array of shape {_shape_text(shape)} instead")
    try:
        with Image.open(path) as opened:
            frames = getattr(opened, "n_frames", 1)
            orientation = opened.getexif().get(0x0112, 1)
            opened.load()
            image = ImageOps.exif_transpose(opened) if orientation not in (None, 1) else opened.copy()
    except Exception as exc:  # UnidentifiedImageError, truncated files, decompression bombs...
        raise InputError(f"cannot read image {path}: {_cause(exc)}; give a valid"
                         f" {', '.join(IMAGE_SUFFIXES)} file") from None
    if frames > 1:
        steps.append(f"kept the first of {frames} frames")
    if orientation not in (None, 1):
        steps.append(f"rotated/flipped upright per its EXIF orientation ({orientation})")
    array = _image_array(image, steps)  # (H, W, k) float32 in [0, 1], k in 1..4
    array = _drop_alpha(array, steps)
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if x.shape[0] == 1 and channels == 3:
        x = x.repeat(3, 1, 1)
        steps.append("grayscale copied to 3 channels (RGB)")
    elif x.shape[0] == 3 and channels == 1:
        x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
        steps.append("RGB converted to grayscale (ITU-R 601 luma)")
    return fit_image(x, height, width, steps).clamp(0.0, 1.0).unsqueeze(0)


def _image_array(image, steps: list) -> np.ndarray:
    """Pixels as float32 ``(H, W, k)`` in [0, 1] in mode L, LA, RGB or RGBA; conversions noted."""
    mode = image.mode
    if mode == "P" or mode == "PA":
        alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "RGB")
        steps.append(f"palette image converted to {image.mode}")
    elif mode == "1":
        image = image.convert("L")
        steps.append("1-bit image converted to 8-bit grayscale")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
        steps.append(f"{mode} image converted to RGB")
    elif mode in ("RGBa", "La"):
        image = image.convert(mode.upper())
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image).astype(np.float32)
        if image.mode.startswith("I;16"):
            steps.append("16-bit grayscale scaled to [0, 1] (divided by 65535)")
            values = values / 65535.0
        elif image.mode == "I" and values.min() >= 0 and values.max() <= 65535:
            steps.append("16-bit grayscale scaled to [0, 1] (divided by 65535)")
            values = values / 65535.0
        elif values.min() < 0 or values.max() > 1:
            lo, hi = float(values.min()), float(values.max())
            values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
            steps.append(f"{'32-bit integer' if image.mode == 'I' else 'float'} image with values in"
                         f" [{lo:g}, {hi:g}] rescaled to [0, 1] (min-max)")
        return values[..., None]
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        before = image.mode
        image = image.convert("RGB")
        steps.append(f"{before} image converted to RGB")
    values = np.asarray(image, dtype=np.float32) / 255.0
    return values[..., None] if values.ndim == 2 else values


def _drop_alpha(array: np.ndarray, steps: list) -> np.ndarray:
    if array.shape[2] not in (2, 4):
        return array
    colour, alpha = array[..., :-1], array[..., -1:]
    if alpha.min() >= 1.0:
        steps.append("alpha channel fully opaque: dropped")
        return colour
    share = float((alpha < 1.0).mean())
    steps.append(f"transparency composited on white ({share:.0%} of pixels not fully opaque)")
    return colour * alpha + (1.0 - alpha)


def fit_image(x: torch.Tensor, height: int | None, width: int | None, steps: list) -> torch.Tensor:
    """Centre-crop ``(k, h, w)`` to the model's aspect ratio, then resize (antialiased bilinear)."""
    h, w = x.shape[1:]
    if height is not None and width is not None:
        if w * height != h * width:  # aspect ratios differ: crop the longer side
            if w * height > h * width:
                new_h, new_w = h, max(1, round(h * width / height))
            else:
                new_h, new_w = max(1, round(w * height / width)), w
            if (new_h, new_w) != (h, w):
                top, left = (h - new_h) // 2, (w - new_w) // 2
                x = x[:, top:top + new_h, left:left + new_w]
                steps.append(f"centre-cropped {w}x{h} -> {new_w}x{new_h} px to the aspect ratio of the model's"
                             f" {width}x{height} input")
                h, w = new_h, new_w
        size = (height, width)
    elif height is None and width is None:
        return x
    elif height is None:
        size = (max(1, round(h * width / w)), width)
    else:
        size = (height, max(1, round(w * height / h)))
    if (h, w) != size:
        x = F.interpolate(x.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        steps.append(f"resized {w}x{h} -> {size[1]}x{size[0]} px (antialiased bilinear)")
    return x


# --------------------------------------------------------------------------- volumes
def _load_nifti(path: Path, shape: tuple, steps: list) -> torch.Tensor:
    try:
        import nibabel
    except ImportError:
        raise InputError(f"reading NIfTI volumes ({path}) needs nibabel: pip install unified-xai[nifti]"
                         f" (or save the volume as a .npy float array)") from None
    try:
        image = nibabel.load(str(path))
        stored = image.get_data_dtype()
        slope, inter = getattr(image.dataobj, "slope", 1.0), getattr(image.dataobj, "inter", 0.0)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors...
        raise InputError(f"cannot read NIfTI volume {path}: {_cause(exc)}; give a valid .nii or .nii.gz file") from None
    if stored != np.float32 or slope not in (1, None) or inter not in (0, None):
        scaled = slope not in (1, None) or inter not in (0, None)
        steps.append(f"{stored} voxels read as float32" + (f" (header scaling x{slope:g} + {inter:g} applied)"
                                                            if scaled else ""))
    channels = shape[0]
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    dims = "x".join(str(s) for s in data.shape)
    if data.ndim == 3:
        if channels != 1:
            raise InputError(f"{path} is a single 3D volume ({dims}) but the model takes {channels} channels; give a 4D"
                             f" NIfTI with {channels} volumes or a .npy array of shape {_shape_text(shape)}")
        x = torch.from_numpy(np.ascontiguousarray(data))[None]
        steps.append(f"3D volume {dims} given a channel axis")
    elif data.ndim == 4:
        count = data.shape[3]
        if count == channels and channels > 1:
            x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(data, 3, 0)))
            steps.append(f"4D volume {dims}: its {count} volumes taken as the model's {channels} channels")
        elif channels == 1:
            x = torch.from_numpy(np.ascontiguousarray(data[..., 0]))[None]
            steps.append(f"4D volume {dims}: kept the first of its {count} volumes")
        else:
            raise InputError(f"{path} holds {count} volumes ({dims}) but the model takes {channels} channels; give"
                             f" {channels} volumes (4th axis) or a .npy array of shape {_shape_text(shape)}")
    else:
        raise InputError(f"{path} holds a {data.ndim}D image ({dims}); the volume model takes a 3D volume"
                         f" (or 4D with volumes on the 4th axis) of shape {_shape_text(shape)}")
    bad = ~torch.isfinite(x)
    if bad.any():
        x = torch.where(bad, torch.zeros((), dtype=x.dtype), x)
        steps.append(f"{int(bad.sum()):,} NaN/infinite voxels set to 0")
    return _fit_volume(x, shape[1:], steps).unsqueeze(0)


def _fit_volume(x: torch.Tensor, grid: tuple, steps: list) -> torch.Tensor:
    """Resize ``(C, D, H, W)`` to the model's grid: separable antialiased (tri)linear interpolation.

    The whole field of view is kept (no crop); the voxel aspect ratio follows the model's grid.
    """
    size = tuple(g if g is not None else s for g, s in zip(grid, x.shape[1:]))
    if size == tuple(x.shape[1:]):
        return x
    before = "x".join(str(s) for s in x.shape[1:])
    c, d, h, w = x.shape
    if (h, w) != size[1:]:  # in-plane: depth slices as channels
        x = F.interpolate(x, size=size[1:], mode="bilinear", align_corners=False, antialias=True)
    if d != size[0]:  # through-plane: resize (D, W) with W unchanged (identity at equal size)
        y = x.permute(0, 2, 1, 3)  # (C, H', D, W')
        y = F.interpolate(y, size=(size[0], size[2]), mode="bilinear", align_corners=False, antialias=True)
        x = y.permute(0, 2, 1, 3)
    steps.append(f"resized {before} -> {'x'.join(str(s) for s in size)} voxels (antialiased trilinear,"
                 f" whole field of view kept)")
    return x.contiguous()


# --------------------------------------------------------------------------- tensors
def _load_tensor(path: Path, shape: tuple, steps: list) -> torch.Tensor:
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # ValueError (pickled objects, bad header), OSError, EOFError
            raise InputError(f"cannot read {path} as a .npy array: {_cause(exc)}; save the input with"
                             f" np.save(path, x) where x is a float32 array") from None
        if not isinstance(array, np.ndarray) or array.dtype.fields is not None or array.dtype.kind not in "biufc":
            raise InputError(f"{path} holds a {array.dtype} array; save a plain float32 array of shape"
                             f" {_shape_text(shape)} (one sample) or (B, ...) (a batch)")
        if array.dtype.byteorder not in ("=", "|") and array.dtype.byteorder != ("<" if np.little_endian else ">"):
            steps.append(f"{'big' if array.dtype.byteorder == '>' else 'little'}-endian {array.dtype.str}"
                         f" converted to native byte order")
            array = array.astype(array.dtype.newbyteorder("="))
        if array.dtype.kind == "c":
            raise InputError(f"{path} holds complex values ({array.dtype}); save real float32 values"
                             f" (e.g. np.abs(x) or x.real) of shape {_shape_text(shape)}")
        x = torch.from_numpy(np.ascontiguousarray(array))
    else:
        try:
            x = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt zip, truncated pickle ("pop from empty list"), unsafe globals...
            raise InputError(f"cannot read {path} as a tensor file: {_torch_load_cause(exc, path)}; save the input with"
                             f" torch.save(x, path) where x is one float tensor") from None
        if not isinstance(x, torch.Tensor):
            what = f"a dict with keys {sorted(map(str, x))[:5]} (a checkpoint?)" if isinstance(x, dict) \
                else f"a {type(x).__name__}"
            raise InputError(f"{path} must hold one tensor, found {what}; save the input with torch.save(x, path)")
        if x.is_complex():
            raise InputError(f"{path} holds complex values ({x.dtype}); save real float32 values of shape"
                             f" {_shape_text(shape)}")
        x = x.detach().to_dense().cpu()
    _refuse_non_float(x, shape, path)
    if x.dtype != torch.float32:
        steps.append(f"{str(x.dtype).replace('torch.', '')} converted to float32")
        x = x.float()
    ndim = len(shape)
    if x.ndim == ndim - 1 and ndim == 4 and shape[0] == 1:  # a raw volume (D, H, W)
        dims = "x".join(str(s) for s in x.shape)
        steps.append(f"volume {dims} given a channel axis")
        return _fit_volume(x[None], shape[1:], steps).unsqueeze(0)
    if x.ndim == ndim - 1 and shape[0] == 1:
        steps.append("channel axis added")
        x = x[None]
    if x.ndim == ndim:
        x = x[None]
    elif x.ndim == ndim + 1:
        steps.batch_file = True
    else:
        raise InputError(_tensor_shape_message(path, tuple(x.shape), shape))
    if any(want is not None and got != want for got, want in zip(x.shape[1:], shape)) or x.shape[0] == 0:
        raise InputError(_tensor_shape_message(path, tuple(x.shape[1:]) if not steps.batch_file else tuple(x.shape),
                                               shape))
    return x


def _torch_load_cause(exc: BaseException, path: Path) -> str:
    """What went wrong in ``torch.load``, in one line (its own messages are long or cryptic)."""
    try:
        if path.stat().st_size == 0:
            return "the file is empty"
    except OSError:
        pass
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0].strip()
        if "Unsupported global" in detail:
            return f"it holds Python objects that safe loading (weights_only=True) refuses ({detail[:150]})"
        return f"not a torch.save file, or a corrupted one (unpickler: {detail[:150]})"
    if "zip archive" in text:
        return f"corrupted or truncated torch.save archive ({text.split('. ')[0][:150]})"
    if isinstance(exc, (EOFError, IndexError, KeyError, ValueError)) or type(exc).__name__ == "UnpicklingError":
        return f"corrupted or truncated file ({_cause(exc)})"
    return _cause(exc)


def _tensor_shape_message(path: Path, got: tuple, shape: tuple) -> str:
    sample = _shape_text(shape)
    batch = "(B, " + sample[1:]
    hint = ""
    tail = got[-len(shape):]
    if len(tail) == len(shape) and tail[-1] == shape[0] and all(
            want is None or g == want for g, want in zip(tail[:-1], shape[1:])):
        hint = f"; it looks channels-last: move the channel axis first with np.moveaxis(x, -1, {-len(shape)})"
    if 0 in got:
        hint = "; it is empty"
    return (f"{path} holds an array of shape {got} but the model expects one sample {sample} or a batch {batch}"
            f"{hint}; save an array of that shape")
