"""The fixed Fourier magnitude of MACO: a natural-image spectrum, estimated offline and shipped.

MACO optimises only the phase of an image's Fourier transform; its magnitude is the mean magnitude
spectrum of natural photos. :func:`estimate_spectrum` computes that mean from any images;
``scripts/estimate_spectrum.py`` runs it on the built-in photos (or a folder) and writes the file
that ships with the library (``natural_spectrum.npz``: ``rgb`` (3, 256, 129) in the decorrelated
colour space of :data:`COLOR_CORRELATION`, ``grey`` (1, 256, 129)). :func:`natural_spectrum` loads
it, or a user's own file, resized to any image size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import InputError, ParameterError

#: The ImageNet colour correlation (square root of its covariance, normalised), Lucid/Xplique's matrix:
#: an image in the decorrelated space, pixels as row vectors, times this matrix is an RGB image.
COLOR_CORRELATION = torch.tensor([[0.5628, 0.5845, 0.5845],
                                  [0.1948, 0.0000, -0.1948],
                                  [0.0433, -0.1082, 0.0649]])

SPECTRUM_FILE = Path(__file__).with_name("natural_spectrum.npz")
ESTIMATE_SIZE = 256


def spectrum_shape(channels: int, size: tuple[int, int]) -> tuple[int, int, int]:
    """The shape of a real-FFT magnitude spectrum of a ``channels`` x H x W image."""
    return (channels, size[0], size[1] // 2 + 1)


def decorrelate(images: torch.Tensor) -> torch.Tensor:
    """RGB ``(..., 3, H, W)`` -> the decorrelated colour space (inverse of the recorrelation)."""
    inverse = torch.linalg.inv(COLOR_CORRELATION.double()).to(images)
    return torch.einsum("...chw,cd->...dhw", images, inverse)


def recorrelate(images: torch.Tensor) -> torch.Tensor:
    """The decorrelated colour space ``(..., 3, H, W)`` -> RGB."""
    return torch.einsum("...chw,cd->...dhw", images, COLOR_CORRELATION.to(images))


def _square_crops(image: torch.Tensor, size: int, crops_per_image: int, generator: torch.Generator) -> torch.Tensor:
    """The centred square of ``image`` plus random squares (at least half the short side), each
    resized to ``size`` with an antialiased filter."""
    _, height, width = image.shape
    side = min(height, width)
    boxes = [((height - side) // 2, (width - side) // 2, side)]
    for _ in range(crops_per_image - 1):
        s = int(torch.randint(side // 2, side + 1, (1,), generator=generator))
        top = int(torch.randint(0, height - s + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - s + 1, (1,), generator=generator))
        boxes.append((top, left, s))
    out = [F.interpolate(image[None, :, t:t + s, l:l + s], size=(size, size), mode="bilinear",
                         antialias=True, align_corners=False)[0] for t, l, s in boxes]
    return torch.stack(out)


def estimate_spectrum(images: Iterable[torch.Tensor], size: int = ESTIMATE_SIZE, crops_per_image: int = 8,
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """Mean Fourier magnitude of natural images: ``{"rgb": (3, size, size // 2 + 1), "grey": (1, ...)}``.

    Each image (``(C, H, W)`` in [0, 1], C = 1 or 3, any size >= 16) gives its centred square and
    ``crops_per_image - 1`` random squares, resized to ``size``; each crop's channel means are
    removed (the DC term carries no structure: MACO standardises its images), colour crops are moved
    to the decorrelated space (:func:`decorrelate`) for ``rgb``, every crop's luminance (channel
    mean) feeds ``grey``. The magnitudes ``|rfft2|`` are averaged over all crops.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ParameterError(f"size must be an int of at least 8 pixels, got {size!r}")
    generator = torch.Generator().manual_seed(int(seed))
    rgb_sum = torch.zeros(spectrum_shape(3, (size, size)), dtype=torch.float64)
    grey_sum = torch.zeros(spectrum_shape(1, (size, size)), dtype=torch.float64)
    n_rgb = n_grey = 0
    for index, image in enumerate(images):
        image = torch.as_tensor(image, dtype=torch.float32)
        if image.ndim != 3 or image.shape[0] not in (1, 3) or min(image.shape[1:]) < 16:
            raise InputError(f"image {index}: expected (1|3, H, W) with H, W >= 16, got {tuple(image.shape)}")
        if not torch.isfinite(image).all():
            raise InputError(f"image {index} contains NaN or infinite values")
        crops = _square_crops(image, size, crops_per_image, generator).double()
        crops = crops - crops.mean(dim=(2, 3), keepdim=True)
        grey_sum += torch.fft.rfft2(crops.mean(1, keepdim=True)).abs().sum(0)
        n_grey += crops.shape[0]
        is_colour = image.shape[0] == 3 and not torch.allclose(image[0], image[1]) and not torch.allclose(image[1], image[2])
        if is_colour:  # greyscale photos repeated to RGB would bias the colour spectrum to no chroma
            rgb_sum += torch.fft.rfft2(decorrelate(crops)).abs().sum(0)
            n_rgb += crops.shape[0]
    if n_grey == 0:
        raise InputError("estimate_spectrum needs at least one image")
    result = {"grey": (grey_sum / n_grey).float()}
    if n_rgb:
        result["rgb"] = (rgb_sum / n_rgb).float()
    return result


def save_spectrum(spectra: dict[str, torch.Tensor], path: str | Path, source: str = "") -> Path:
    """Write spectra to ``.npz`` (float32 arrays and a ``source`` note), atomically."""
    from ..core.storage import atomic_write

    path = Path(path)
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in spectra.items()}
    with atomic_write(path) as handle:
        np.savez_compressed(handle, source=np.array(source), **arrays)
    return path


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"spectrum file {str(path)!r} does not exist; write one with scripts/estimate_spectrum.py")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in data.files
                        if k in ("rgb", "grey")}
        if path.suffix == ".npy":
            return {"spectrum": torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))}
        if path.suffix in (".pt", ".pth"):
            value = torch.load(path, map_location="cpu", weights_only=True)
            return value if isinstance(value, dict) else {"spectrum": value}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read spectrum file {str(path)!r}: {exc}") from None
    raise InputError(f"spectrum file {str(path)!r}: expected .npz (from scripts/estimate_spectrum.py), .npy or .pt")


def _resize(magnitude: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an rfft2 magnitude ``(C, h, w // 2 + 1)`` to the spectrum of an H x W image.

    The vertical frequencies run 0, 1, ..., -1 (wrapped): shifted to be monotone before the
    antialiased bilinear resize and shifted back, so low and high frequencies do not blend.
    """
    target = (size[0], size[1] // 2 + 1)
    if tuple(magnitude.shape[1:]) == target:
        return magnitude
    shifted = torch.fft.fftshift(magnitude, dim=1)
    resized = F.interpolate(shifted[None], size=target, mode="bilinear", antialias=True, align_corners=False)[0]
    return torch.fft.ifftshift(resized, dim=1).clamp_min(0)


def natural_spectrum(channels: int, size: tuple[int, int], spectrum=None) -> torch.Tensor:
    """The magnitude spectrum ``(channels, H, W // 2 + 1)`` for an H x W image.

    ``spectrum``: None (the shipped estimate from natural photos: the decorrelated colour spectrum
    for 3 channels, the luminance spectrum repeated otherwise), a path (``.npz`` / ``.npy`` / ``.pt``)
    or a tensor, ``(channels or 1, h, w // 2 + 1)`` for some image size h x w (resized).
    """
    if isinstance(spectrum, (str, Path)):
        loaded = _load_file(Path(spectrum))
        key = "rgb" if channels == 3 and "rgb" in loaded else "grey" if "grey" in loaded else "spectrum"
        if key not in loaded:
            raise InputError(f"spectrum file {str(spectrum)!r} has none of the arrays 'rgb', 'grey' or a"
                             f" single array; write it with scripts/estimate_spectrum.py")
        magnitude = loaded[key]
    elif spectrum is None:
        loaded = _load_file(SPECTRUM_FILE)
        magnitude = loaded["rgb"] if channels == 3 else loaded["grey"]
    else:
        magnitude = torch.as_tensor(spectrum).detach().float().cpu()
    if magnitude.ndim == 2:
        magnitude = magnitude[None]
    if (magnitude.ndim != 3 or magnitude.shape[0] not in (1, channels) or magnitude.shape[1] < 2
            or magnitude.shape[2] < 2):
        raise InputError(
            f"spectrum must have shape ({channels} or 1, h, w // 2 + 1) — the rfft2 magnitude of a"
            f" {channels}-channel image — got {tuple(magnitude.shape)}")
    if not torch.isfinite(magnitude).all() or (magnitude < 0).any():
        raise InputError("spectrum must be finite and non-negative (a Fourier magnitude)")
    if float(magnitude.sum()) == 0:
        raise InputError("spectrum is all zeros")
    magnitude = _resize(magnitude, size)
    return magnitude.expand(channels, -1, -1).contiguous()
