"""Architectures of the built-in models (small CNNs that train on a CPU in minutes)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


def _block(conv: type, c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    """A size-preserving convolution followed by ReLU."""
    return [conv(c_in, c_out, kernel, padding=kernel // 2), nn.ReLU()]


class DigitsCNN(nn.Module):
    """Three conv blocks + global average pooling for ``(B, 1, 32, 32)`` digits in [0, 1]."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_block(nn.Conv2d, 1, w, 3), nn.MaxPool2d(2),
            *_block(nn.Conv2d, w, 2 * w, 3), nn.MaxPool2d(2),
            *_block(nn.Conv2d, 2 * w, 4 * w, 3),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class ConceptCNN(nn.Module):
    """An ordinary CNN for ``(B, 3, 64, 64)`` images: four conv layers with ReLU, global average pooling
    and a linear head (the layout CRAFT assumes: non-negative ``features``, then GAP + linear).

    Layers (``width`` = w): ``features.0`` conv 3->w, ``.1`` ReLU, ``.2`` max-pool (32x32), ``.3`` conv
    w->2w, ``.4`` max-pool (16x16), ``.5`` ReLU (2w x 16 x 16; max-pool and ReLU commute, so this is
    the usual conv-ReLU-pool), ``.6`` conv 2w->2w, ``.7`` ReLU, ``.8`` conv 2w->4w, ``.9`` ReLU = the
    output of ``features`` (4w x 16 x 16). The receptive field of ``features`` is 26 px.
    """

    def __init__(self, num_classes: int = 4, width: int = 16, in_channels: int = 3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            *_block(nn.Conv2d, 2 * w, 2 * w, 3),
            *_block(nn.Conv2d, 2 * w, 4 * w, 3),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))  # no shape unpacking: fx-traceable


def haar_filters(ndim: int) -> torch.Tensor:
    """The ``2**ndim`` orthonormal separable Haar filters ``(2**ndim, 1, 2, ..., 2)``; index 0 is the low-pass."""
    low, high = torch.tensor([1.0, 1.0]) / math.sqrt(2.0), torch.tensor([1.0, -1.0]) / math.sqrt(2.0)
    filters = []
    for bits in range(2 ** ndim):
        f = torch.ones([])
        for axis in range(ndim):
            f = f.unsqueeze(-1) * (high if (bits >> (ndim - 1 - axis)) & 1 else low)
        filters.append(f)
    return torch.stack(filters).unsqueeze(1)


class HaarEnergyNet(nn.Module):
    """Texture classifier on local Haar detail energies (wavelet-scattering-like), any of 1D/2D/3D.

    A fixed orthonormal Haar analysis of ``levels`` levels gives the detail coefficients ``d_j``;
    their squares, average-pooled onto the grid of the coarsest level, are the features of a small
    CNN whose spatial max is read by a linear head. Energies are used *uncompressed* on purpose: the
    input gradient through level ``j`` is ``2 d_j`` times a smooth weight, so it is large where the
    planted evidence is and small over noise, and it lies in level ``j`` only (a learned first layer,
    or a log compression of the energies, lets noise at the finest level dominate the gradient).
    """

    def __init__(self, ndim: int = 2, in_channels: int = 3, num_classes: int = 4, levels: int = 3, width: int = 32):
        super().__init__()
        self.ndim, self.levels = ndim, levels
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]
        self.register_buffer("filters", haar_filters(ndim), persistent=False)
        n_features = levels * in_channels * (2 ** ndim - 1)
        self.norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim](n_features)
        self.features = nn.Sequential(*_block(conv, n_features, width, 3), *_block(conv, width, width, 3))
        self.head = nn.Linear(width, num_classes)
        self._conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[ndim]
        self._pool = {1: torch.nn.functional.avg_pool1d, 2: torch.nn.functional.avg_pool2d,
                      3: torch.nn.functional.avg_pool3d}[ndim]

    def energies(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Haar details of every level, pooled to the coarsest grid: ``(B, J * C * (2**n - 1), *S / 2**J)``."""
        # written without unpacking shapes so torch.fx can trace it (the adapter splits it with fx)
        batch, channels = x.shape[0], x.shape[1]
        approx = x.flatten(0, 1).unsqueeze(1)
        maps = []
        for j in range(1, self.levels + 1):
            bands = self._conv(approx, self.filters, stride=2)
            approx = bands[:, :1]
            energy = bands[:, 1:] ** 2
            if j < self.levels:
                energy = self._pool(energy, 2 ** (self.levels - j))
            maps.append(energy.unflatten(0, (batch, channels)).flatten(1, 2))
        return torch.cat(maps, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.norm(self.energies(x)))
        return self.head(h.flatten(2).amax(dim=2))


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular HTK-mel filterbank ``(n_mels, n_fft // 2 + 1)`` (area-normalised, like Slaney's)."""
    f_max = f_max or sample_rate / 2

    def hz_to_mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs - lower) / (centre - lower)
    down = (upper - freqs) / (upper - centre)
    bank = torch.clamp(torch.minimum(up, down), min=0.0)
    return bank * (2.0 / (upper - lower))


class LogMel(nn.Module):
    """Differentiable log-mel spectrogram: ``(B, 1, T)`` waveform -> ``(B, 1, n_mels, frames)``.

    Computes ``log(floor + mel power) - log(floor)``. The floor sits well above the noise power,
    so quiet bins are compressed nearly linearly: with a tiny floor, ``d log(P) / dP = 1 / P``
    makes near-silent bins dominate the input gradient.
    """

    def __init__(self, sample_rate: int = 8000, n_fft: int = 64, hop_length: int = 16, n_mels: int = 16,
                 f_min: float = 250.0, floor: float = 1e-2):
        super().__init__()
        self.n_fft, self.hop_length, self.floor = n_fft, hop_length, floor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("bank", mel_filterbank(n_fft, n_mels, sample_rate, f_min), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x.flatten(0, 1), self.n_fft, self.hop_length, window=self.window, center=True,
                          return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2
        logmel = torch.log(torch.einsum("mf,bft->bmt", self.bank, power) / self.floor + 1.0)
        return logmel.unflatten(0, (x.shape[0], x.shape[1]))  # no shape unpacking: fx-traceable


class AudioCNN(nn.Module):
    """Log-mel front end (inside the model, so gradients reach the waveform) + a small 2D CNN."""

    def __init__(self, num_classes: int = 4, sample_rate: int = 8000, width: int = 16, n_fft: int = 64,
                 hop_length: int = 16, n_mels: int = 16, f_min: float = 250.0):
        super().__init__()
        self.frontend = LogMel(sample_rate, n_fft, hop_length, n_mels, f_min)
        w = width
        self.features = nn.Sequential(
            *_block(nn.Conv2d, 1, w, 3),
            *_block(nn.Conv2d, w, 2 * w, 3), nn.MaxPool2d(2),
            *_block(nn.Conv2d, 2 * w, 2 * w, 3),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(self.frontend(x))).flatten(1))


#: architecture name -> factory(**arch_kwargs) -> nn.Module
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "digits-cnn": DigitsCNN,
    "haar-energy-2d": lambda **kw: HaarEnergyNet(ndim=2, **kw),
    "haar-energy-3d": lambda **kw: HaarEnergyNet(ndim=3, **kw),
    "audio-cnn": AudioCNN,
    "concept-cnn": ConceptCNN,
}
