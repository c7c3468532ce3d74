"""Reading user inputs for the command line: image files, .npy/.pt tensors, wav files."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .core.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
TENSOR_SUFFIXES = {".npy", ".pt", ".pth"}


def load_inputs(paths: Sequence[str | Path], input_shape: Sequence[int | None]) -> torch.Tensor:
    """Read files into one float batch ``(B, *input_shape)``.

    Images are converted to the model's channel count and resized to its spatial size, with values
    in [0, 1]; audio is made mono and cropped or zero-padded to the model's length; tensors are
    taken as they are (one sample, or a batch when they have one more dimension).
    """
    samples = [load_input(p, input_shape) for p in paths]
    return torch.cat(samples)


def load_input(path: str | Path, input_shape: Sequence[int | None]) -> torch.Tensor:
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _load_image(path, input_shape)
    if suffix in AUDIO_SUFFIXES:
        return _load_audio(path, input_shape)
    if suffix in TENSOR_SUFFIXES:
        if suffix == ".npy":
            data = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(data, torch.Tensor):
                raise InputError(f"{path} must hold one tensor, found {type(data).__name__}")
        data = data.float()
        return data.unsqueeze(0) if data.ndim == len(input_shape) else data
    raise InputError(
        f"cannot read {path}: unknown file type {suffix!r}; use an image ({', '.join(sorted(IMAGE_SUFFIXES))}),"
        f" audio ({', '.join(sorted(AUDIO_SUFFIXES))}) or a tensor ({', '.join(sorted(TENSOR_SUFFIXES))})"
    )


def _load_image(path: Path, input_shape) -> torch.Tensor:
    from PIL import Image

    if len(input_shape) != 3:
        raise InputError(f"{path} is an image but the model takes inputs of shape {tuple(input_shape)}")
    channels = input_shape[0]
    if channels not in (1, 3):
        raise InputError(f"cannot turn image {path} into {channels} channels; save it as a .npy tensor instead")
    image = Image.open(path).convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    x = torch.from_numpy(array).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1).unsqueeze(0)
    size = tuple(s if s is not None else x.shape[2 + i] for i, s in enumerate(input_shape[1:]))
    if tuple(x.shape[2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def _load_audio(path: Path, input_shape) -> torch.Tensor:
    import soundfile

    if len(input_shape) != 2:
        raise InputError(f"{path} is audio but the model takes inputs of shape {tuple(input_shape)}")
    data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    length = input_shape[1]
    if length is not None:
        wave = wave[:length] if wave.numel() >= length else F.pad(wave, (0, length - wave.numel()))
    return wave.reshape(1, 1, -1).expand(1, input_shape[0], -1).clone()
