"""Procedural datasets with planted ground truth: a known place, Haar scale and concept per item.

Every evidence pattern is a +-1 pattern whose sign flips every ``2**(level-1)`` samples along an
axis, laid on the dyadic grid, so its whole Haar energy sits in ONE detail level. Everything
else in the input is nuisance that carries no class information and spans all scales: a random
offset and contrast (the approximation is uninformative), smooth random fields (coarse scales),
white noise of random strength (every scale), and the evidence lands at a random aligned
position. Items are generated in batches from a ``torch.Generator``: a split is a pure function
of its seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .datasets import PlantedDataset

_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


@dataclass(frozen=True)
class PlantedSpec:
    """Description of one planted dataset.

    ``class_levels`` maps each class to the Haar level of its evidence (1 = finest) or None for
    the class without evidence; scale indices (pywt order) are ``levels - level + 1``.
    """

    name: str
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    class_levels: tuple[int | None, ...]
    concept_names: tuple[tuple[str, ...], ...]
    levels: int
    generate: Callable[["PlantedSpec", int, torch.Generator, bool], dict]
    sizes: dict = field(default_factory=lambda: {"train": 4000, "test": 400})
    seeds: dict = field(default_factory=lambda: {"train": 1, "test": 0})
    extra: dict = field(default_factory=dict)
    wavelet: str = "haar"

    def scale_index(self, level: int | None) -> int:
        return -1 if level is None else self.levels - level + 1

    @property
    def metadata(self) -> dict:
        return {
            "wavelet": self.wavelet,
            "levels": self.levels,
            "scale_convention": "pywt order: 0 = approximation, 1 = coarsest detail level J, ..., J = finest level 1",
            "class_scales": {c: (None if lv is None else self.scale_index(lv))
                             for c, lv in zip(self.class_names, self.class_levels)},
            "class_haar_levels": dict(zip(self.class_names, self.class_levels)),
            **self.extra,
        }


# --------------------------------------------------------------------------- shared pieces
def _square_wave(length: int, level: int, device=None) -> torch.Tensor:
    """+-1 sequence whose sign flips every ``2**(level-1)`` samples: pure Haar detail of ``level``."""
    half = 2 ** (level - 1)
    return 1.0 - 2.0 * ((torch.arange(length, device=device) // half) % 2).float()


def _balanced_labels(n: int, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    labels = torch.arange(n) % n_classes
    return labels[torch.randperm(n, generator=gen)]


def _uniform(n: int, low: float, high: float, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, *shape, generator=gen)


def _smooth_field(n: int, channels: int, spatial: tuple[int, ...], cells: int, gen: torch.Generator) -> torch.Tensor:
    """Unit-variance random field interpolated from a ``cells``-per-axis grid (smooth, coarse scales)."""
    low = torch.randn(n, channels, *([cells] * len(spatial)), generator=gen)
    return F.interpolate(low, size=spatial, mode=_INTERP[len(spatial)], align_corners=False)


def _nuisance(n: int, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Offset + two smooth fields + white noise, each with a random per-item strength (possibly ~0).

    Strengths that go down to zero keep clean inputs (e.g. with a whole wavelet level removed)
    inside the training distribution.
    """
    channels, spatial = shape[0], tuple(shape[1:])
    ones = [1] * len(spatial)
    x = _uniform(n, 0.3, 0.7, gen, channels, *ones)
    x = x + _uniform(n, 0.0, 0.15, gen, 1, *ones) * _smooth_field(n, channels, spatial, 4, gen)
    x = x + _uniform(n, 0.0, 0.05, gen, 1, *ones) * _smooth_field(n, channels, spatial, 8, gen)
    x = x + _uniform(n, 0.0, 0.05, gen, 1, *ones) * torch.randn(n, *shape, generator=gen)
    return x


# --------------------------------------------------------------------------- images and volumes
def _generate_texture(spec: PlantedSpec, n: int, gen: torch.Generator, clean: bool = False) -> dict:
    """Texture patches (stripes or checkerboards of a dyadic period) at a random aligned position."""
    shape = spec.input_shape
    channels, spatial = shape[0], tuple(shape[1:])
    ndim, size = len(spatial), spatial[0]
    patch, align = spec.extra["patch"], spec.extra["align"]
    targets = _balanced_labels(n, len(spec.class_names), gen)
    levels = torch.tensor([-1 if lv is None else lv for lv in spec.class_levels])[targets]
    concepts = torch.where(levels > 0, torch.randint(0, 2, (n,), generator=gen), torch.full((n,), -1))
    n_pos = (size - patch) // align + 1
    corners = torch.randint(0, n_pos, (n, ndim), generator=gen) * align
    amplitude = _uniform(n, 0.25, 0.45, gen) * (2 * torch.randint(0, 2, (n,), generator=gen) - 1)
    colour = _uniform(n, 0.6, 1.0, gen, channels)

    # one pattern per (level, concept): concept 0 = stripes across the last axis, 1 = checkerboard
    table = {}
    for level in {lv for lv in spec.class_levels if lv is not None}:
        wave = _square_wave(patch, level)
        stripes = wave.reshape(*([1] * (ndim - 1)), patch).expand(*([patch] * ndim))
        checker = torch.ones(*([patch] * ndim))
        for axis in range(ndim):
            checker = checker * wave.reshape(*[patch if a == axis else 1 for a in range(ndim)])
        table[level, 0], table[level, 1] = stripes, checker

    x = _nuisance(n, shape, gen)
    masks = torch.zeros(n, *spatial, dtype=torch.bool)
    contrast = _uniform(n, 0.7, 1.3, gen, *([1] * (ndim + 1)))
    # the nuisance is always drawn, so a clean draw has the same evidence as the noisy one
    x = torch.zeros_like(x) if clean else (x - 0.5) * contrast + 0.5
    for i in torch.nonzero(levels > 0).flatten().tolist():
        region = tuple(slice(int(c), int(c) + patch) for c in corners[i])
        pattern = table[int(levels[i]), int(concepts[i])] * amplitude[i]
        x[(i, slice(None)) + region] += colour[i].reshape(channels, *([1] * ndim)) * pattern
        masks[(i,) + region] = True
    return {"inputs": x, "targets": targets, "masks": masks, "levels": levels, "concepts": concepts}


# --------------------------------------------------------------------------- audio
def _generate_audio(spec: PlantedSpec, n: int, gen: torch.Generator, clean: bool = False) -> dict:
    """Click trains and square-wave tone bursts in a random window over noisy backgrounds."""
    length = spec.input_shape[-1]
    window, align = spec.extra["window"], spec.extra["align"]
    targets = _balanced_labels(n, len(spec.class_names), gen)
    levels = torch.tensor([-1 if lv is None else lv for lv in spec.class_levels])[targets]
    concepts = torch.where(levels > 0, torch.randint(0, 2, (n,), generator=gen), torch.full((n,), -1))
    starts = torch.randint(0, (length - window) // align + 1, (n,), generator=gen) * align
    amplitude = _uniform(n, 0.15, 0.3, gen)
    sign = (2 * torch.randint(0, 2, (n,), generator=gen) - 1).float()
    click_slots = torch.rand(n, window // 2, generator=gen).argsort(dim=1)[:, :16] * 2
    gate = ((torch.arange(window) // spec.extra["gate"]) % 2 == 0).float()
    doublet_train = torch.zeros(window)
    doublet_train[0::64], doublet_train[1::64] = 1.0, -1.0

    # background: DC offset, brown noise (random walk), white noise, all of random strength
    walk = torch.randn(n, length, generator=gen).cumsum(dim=1)
    walk = (walk - walk.mean(dim=1, keepdim=True)) / walk.std(dim=1, keepdim=True)
    x = (_uniform(n, -0.1, 0.1, gen, 1) + _uniform(n, 0.0, 0.1, gen, 1) * walk
         + _uniform(n, 0.003, 0.03, gen, 1) * torch.randn(n, length, generator=gen))
    if clean:
        x = torch.zeros_like(x)
    masks = torch.zeros(n, length, dtype=torch.bool)
    for i in torch.nonzero(levels > 0).flatten().tolist():
        level, concept = int(levels[i]), int(concepts[i])
        if level == 1:  # transients: +-a doublets on even samples (pure finest level)
            if concept == 0:
                burst = doublet_train.clone()
            else:
                burst = torch.zeros(window)
                burst[click_slots[i]], burst[click_slots[i] + 1] = 1.0, -1.0
            burst = burst * 2.0
        else:  # tone burst: square wave of period 2**level, steady or gated on/off
            burst = _square_wave(window, level) * (gate if concept == 1 else 1.0)
        s = int(starts[i])
        x[i, s:s + window] += amplitude[i] * sign[i] * burst
        masks[i, s:s + window] = True
    gain = _uniform(n, 0.7, 1.4, gen, 1)
    return {"inputs": (x * gain).unsqueeze(1), "targets": targets, "masks": masks, "levels": levels,
            "concepts": concepts}


SPECS: dict[str, PlantedSpec] = {
    "planted-image": PlantedSpec(
        name="planted-image", input_shape=(3, 64, 64),
        class_names=("fine", "mid", "coarse", "background"), class_levels=(1, 2, 3, None),
        concept_names=(("stripes", "checkerboard"),) * 3 + ((),), levels=3,
        generate=_generate_texture,
        extra={"patch": 16, "align": 8,
               "description": "16x16 texture patch (period 2 / 4 / 8 stripes or checkerboard) at a random"
                              " 8-aligned position over a smooth noisy colour background"},
    ),
    "planted-audio": PlantedSpec(
        name="planted-audio", input_shape=(1, 8192),
        class_names=("click", "high-tone", "low-tone", "background"), class_levels=(1, 2, 3, None),
        concept_names=(("regular", "irregular"), ("steady", "gated"), ("steady", "gated"), ()), levels=3,
        generate=_generate_audio, sizes={"train": 4000, "test": 400},
        extra={"window": 1024, "align": 512, "gate": 256, "sample_rate": 8000,
               "description": "1024-sample window (random 512-aligned start) holding a train of +-1"
                              " doublets (clicks), a 2000 Hz (period 4) or a 1000 Hz (period 8)"
                              " square-wave burst, over DC,"
                              " brown and white noise; waveform at 8 kHz"},
    ),
    "planted-volume": PlantedSpec(
        name="planted-volume", input_shape=(1, 32, 32, 32),
        class_names=("fine", "coarse", "background"), class_levels=(1, 2, None),
        concept_names=(("stripes", "checkerboard"),) * 2 + ((),), levels=2,
        generate=_generate_texture, sizes={"train": 3000, "test": 300},
        extra={"patch": 8, "align": 4,
               "description": "8^3 texture cube (period 2 / 4 stripes or 3D checkerboard) at a random"
                              " 4-aligned position over a smooth noisy volume"},
    ),
}


def generate_planted(name: str, n: int, seed: int, split: str = "custom", clean: bool = False) -> PlantedDataset:
    """Draw ``n`` items of planted dataset ``name`` from ``seed`` (deterministic).

    ``clean=True`` gives the same items with the nuisance (background, noise, offset) removed:
    the evidence alone, e.g. to check where its Haar energy lies.
    """
    spec = SPECS[name]
    gen = torch.Generator().manual_seed(int(seed))
    out = spec.generate(spec, int(n), gen, clean)
    levels = out["levels"]
    scales = torch.where(levels > 0, spec.levels - levels + 1, torch.full_like(levels, -1))
    concept_names = dict(zip(spec.class_names, (list(c) for c in spec.concept_names)))
    return PlantedDataset(name, split, out["inputs"].float(), out["targets"], spec.class_names, out["masks"],
                          scales, out["concepts"], spec.wavelet, spec.levels, concept_names,
                          metadata={**spec.metadata, "seed": int(seed), "clean": bool(clean)})


def load_planted(name: str, split: str) -> PlantedDataset:
    """The fixed ``split`` of planted dataset ``name``."""
    spec = SPECS[name]
    return generate_planted(name, spec.sizes[split], spec.seeds[split], split)
