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

from ..core.errors import ParameterError
from .datasets import ConceptDataset, PlantedDataset

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


# --------------------------------------------------------------------------- concepts (parts)
def _part_pattern(kind: str, level: int, patch: int, ndim: int) -> torch.Tensor:
    """A ``(patch,) * ndim`` +-1 pattern of one Haar level: ``"v"`` bars (the sign flips along the last
    axis), ``"h"`` bars (along the first spatial axis) or ``"checker"`` (along every axis)."""
    wave = _square_wave(patch, level)
    axes = {"v": [ndim - 1], "h": [0], "checker": list(range(ndim))}[kind]
    pattern = torch.ones(*([patch] * ndim))
    for axis in axes:
        pattern = pattern * wave.reshape(*[patch if a == axis else 1 for a in range(ndim)])
    return pattern


def part_subsets(spec: PlantedSpec) -> tuple[tuple[tuple[bool, ...], ...], tuple[float, ...]]:
    """The sets of slots (main, second, third) an object item shows and their probabilities.

    An object shows TWO OR THREE of its three parts, never one (a part alone is background, see
    :func:`is_object`), so every part is needed in some items. ``rates`` are the marginal probabilities
    ``(p_main, p_second, p_third)`` of each slot; "two or three" fixes the four sets: all three
    ``p_m + p_s + p_t - 2``, main + second ``1 - p_t``, main + third ``1 - p_s``, second + third
    ``1 - p_m``. With (0.9, 0.7, 0.5): 10 %, 50 %, 30 %, 10 %; the main part is then needed (one of exactly
    two) in 80 % of the items, the second in 60 %, the third in 40 %.
    """
    pm, ps, pt = spec.extra["rates"]
    subsets = ((True, True, True), (True, True, False), (True, False, True), (False, True, True))
    probs = (pm + ps + pt - 2, 1 - pt, 1 - ps, 1 - pm)
    if min(probs) < -1e-12 or max(pm, ps, pt) > 1:
        raise ParameterError(f"rates {spec.extra['rates']} cannot show two or three parts in every object"
                             f" (they must lie in [0, 1] and sum to at least 2)")
    return subsets, tuple(max(0.0, float(q)) for q in probs)


def is_object(spec: PlantedSpec, parts) -> bool:
    """Whether a set of part ids makes an object: two or more parts of one class."""
    shown = {int(p) for p in parts}
    return any(len(shown & set(own)) >= 2 for own in spec.extra["class_parts"].values())


def part_rates(spec: PlantedSpec) -> torch.Tensor:
    """``(n_classes, P)`` probability that an item of each class shows each part, by construction."""
    extra = spec.extra
    rates = torch.zeros(len(spec.class_names), len(extra["parts"]), dtype=torch.float64)
    for c, cls in enumerate(spec.class_names):
        for p, rate in zip(extra["class_parts"].get(cls, ()), extra["rates"]):
            rates[c, p] += rate
    _, one, two = extra["background"]
    background = spec.class_names.index("background")
    rates[background] += one / len(extra["parts"])
    pairs = background_pairs(spec)
    for pair in pairs:
        rates[background, list(pair)] += two / len(pairs)
    return rates


def background_pairs(spec: PlantedSpec) -> list[tuple[int, int]]:
    """The pairs of parts that make no object (:func:`is_object`): what a background item may show.

    With them, every two parts of a class are CONTRASTED: for parts ``p, q`` of class ``c`` there is a
    part ``s`` such that one of ``{p, s}``, ``{q, s}`` is an object and the other is background, and both
    occur. A classifier then has to tell ``p`` from ``q``; without such a contrast nothing in the labels
    separates them, and a CNN may encode both as one feature.
    """
    n_parts = len(spec.extra["parts"])
    return [(p, q) for p in range(n_parts) for q in range(p + 1, n_parts) if not is_object(spec, (p, q))]


def part_evidence(spec: PlantedSpec) -> dict[str, list[int]]:
    """Each class's parts ordered by the class evidence they carry, most first.

    The evidence of part ``p`` for class ``c`` is ``P(p present | c) - mean over the other classes c'
    of P(p present | c')`` (classes are balanced): the main part, shown in 90 % of its class's items,
    in no other object and in 2/9 of the background items, carries 0.83; a part the class shares with
    another class less (0.50, 0.23).
    """
    rates = part_rates(spec)
    n_classes = rates.shape[0]
    out = {}
    for c, cls in enumerate(spec.class_names):
        parts = list(spec.extra["class_parts"].get(cls, ()))
        if not parts:  # the background class has no parts
            continue
        others = (rates.sum(0) - rates[c]) / (n_classes - 1)
        score = {p: float(rates[c, p] - others[p]) for p in parts}
        out[cls] = sorted(parts, key=lambda p: -score[p])
    return out


def _drop_matrix(drop_parts, n: int, names: list[str]) -> torch.Tensor:
    """``drop_parts`` (ids, names, or an ``(n, P)`` bool tensor) -> ``(n, P)`` bool."""
    n_parts = len(names)
    if drop_parts is None:
        return torch.zeros(n, n_parts, dtype=torch.bool)
    if isinstance(drop_parts, torch.Tensor) and drop_parts.dtype == torch.bool:
        if tuple(drop_parts.shape) != (n, n_parts):
            raise ParameterError(f"a boolean drop_parts must be ({n}, {n_parts}), got {tuple(drop_parts.shape)}")
        return drop_parts.clone()
    items = [drop_parts] if isinstance(drop_parts, (int, str)) else list(
        drop_parts.tolist() if isinstance(drop_parts, torch.Tensor) else drop_parts)
    drop = torch.zeros(n_parts, dtype=torch.bool)
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise ParameterError(f"unknown part {item!r}; parts: {', '.join(names)}")
            item = names.index(item)
        if not 0 <= int(item) < n_parts:
            raise ParameterError(f"part id {item} out of range [0, {n_parts})")
        drop[int(item)] = True
    return drop.expand(n, n_parts).clone()


def _generate_concepts(spec: PlantedSpec, n: int, gen: torch.Generator, clean: bool = False,
                       drop_parts=None) -> dict:
    """Objects showing two or three of their three parts (each a texture of one Haar level and colour)
    at non-overlapping aligned positions; background items show nothing, one part of any class, or two
    parts that make no object (:func:`background_pairs`).

    Every random draw is made whatever parts are dropped, so ``drop_parts`` gives the same items
    (nuisance, other parts, places) with those parts left out.
    """
    extra = spec.extra
    shape = spec.input_shape
    channels, spatial = shape[0], tuple(shape[1:])
    ndim, size = len(spatial), spatial[0]
    patch, align, gap = extra["patch"], extra["align"], extra["gap"]
    parts = extra["parts"]
    names = [p["name"] for p in parts]
    n_parts, n_slots = len(parts), 3
    background = spec.class_names.index("background")
    slot_parts = torch.full((len(spec.class_names), n_slots), -1, dtype=torch.long)
    for c, cls in enumerate(spec.class_names):
        ids = list(extra["class_parts"].get(cls, ()))
        slot_parts[c, :len(ids)] = torch.tensor(ids, dtype=torch.long)

    targets = _balanced_labels(n, len(spec.class_names), gen)
    u = torch.rand(n, n_slots, generator=gen)
    pairs = torch.tensor(background_pairs(spec), dtype=torch.long)
    single = torch.randint(0, n_parts, (n,), generator=gen)
    pair = pairs[torch.randint(0, pairs.shape[0], (n,), generator=gen)]
    n_pos = (size - patch) // align + 1
    candidates = torch.rand(n, n_slots, n_pos ** ndim, generator=gen).argsort(dim=2)
    # one sign: a negated part would show the complementary colour (red bars would look cyan), i.e. another concept
    amplitude = _uniform(n, 0.3, 0.5, gen, n_slots)
    x = _nuisance(n, shape, gen)
    contrast = _uniform(n, 0.7, 1.3, gen, *([1] * (ndim + 1)))
    x = torch.zeros_like(x) if clean else (x - 0.5) * contrast + 0.5

    # which part sits in which slot, and whether it is shown
    subsets, probs = part_subsets(spec)
    slot_part = slot_parts[targets]
    edges = torch.tensor(probs, dtype=torch.float64).cumsum(0)[:-1].float()
    which = torch.bucketize(u[:, 0].contiguous(), edges, right=True)  # the set of slots each item shows
    shown = torch.tensor(subsets, dtype=torch.bool)[which]
    # background: nothing, one part of any class, or two parts that make no object
    is_bg = targets == background
    none, one, _ = extra["background"]
    n_bg = torch.bucketize(u[:, 1].contiguous(), torch.tensor([none, none + one]), right=True)  # 0, 1 or 2 parts
    slot_part[is_bg, 0] = torch.where(n_bg == 1, single, pair[:, 0])[is_bg]
    slot_part[is_bg, 1] = pair[is_bg, 1]
    slot_part[is_bg, 2] = -1
    shown[is_bg] = False
    shown[is_bg, 0] = n_bg[is_bg] >= 1
    shown[is_bg, 1] = n_bg[is_bg] == 2
    shown &= slot_part >= 0

    # places: every slot gets the first candidate at least `gap` samples away from the earlier slots
    # (always possible: a 16-px box with an 8-px gap blocks at most one corner position of the grid)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n_pos)] * ndim, indexing="ij"), -1).reshape(-1, ndim) * align
    corners = torch.zeros(n, n_slots, ndim, dtype=torch.long)
    for slot in range(n_slots):
        cand = grid[candidates[:, slot]]  # (n, K, ndim)
        ok = torch.ones(cand.shape[:2], dtype=torch.bool)
        for earlier in range(slot):
            ok &= ((cand - corners[:, earlier:earlier + 1]).abs() >= patch + gap).any(dim=2)
        corners[:, slot] = cand[torch.arange(n), ok.float().argmax(dim=1)]

    drop = _drop_matrix(drop_parts, n, names)
    table = [_part_pattern(p["pattern"], p["level"], patch, ndim) for p in parts]
    colours = torch.tensor([p["colour"] for p in parts], dtype=torch.float32)
    colours = colours / colours.norm(dim=1, keepdim=True)
    part_masks = torch.zeros(n, n_parts, *spatial, dtype=torch.bool)
    part_present = torch.zeros(n, n_parts, dtype=torch.bool)
    part_corners = torch.full((n, n_parts, ndim), -1, dtype=torch.long)
    for i, slot in torch.nonzero(shown).tolist():
        p = int(slot_part[i, slot])
        if drop[i, p]:
            continue
        region = tuple(slice(int(c), int(c) + patch) for c in corners[i, slot])
        x[(i, slice(None)) + region] += (amplitude[i, slot] * colours[p]).reshape(channels, *([1] * ndim)) * table[p]
        part_masks[(i, p) + region] = True
        part_present[i, p] = True
        part_corners[i, p] = corners[i, slot]

    # the inherited fields: the item's present class part carrying the most evidence, and its class parts
    evidence = part_evidence(spec)
    levels_of = torch.tensor([p["level"] for p in parts])
    rank = torch.full((len(spec.class_names), n_parts), n_parts, dtype=torch.long)  # n_parts = not a class part
    for c, cls in enumerate(spec.class_names):
        for r, p in enumerate(evidence.get(cls, [])):
            rank[c, p] = r
    item_rank = torch.where(part_present, rank[targets], torch.full_like(part_present, n_parts, dtype=torch.long))
    best_rank, best = item_rank.min(dim=1)
    concepts = torch.where(best_rank < n_parts, best, torch.full_like(best, -1))
    own = item_rank < n_parts  # (n, P): present parts of the item's own class
    masks = (part_masks & own.view(n, n_parts, *([1] * ndim))).any(dim=1)
    levels = torch.where(concepts >= 0, levels_of[concepts.clamp(min=0)], torch.full_like(concepts, -1))
    return {"inputs": x, "targets": targets, "masks": masks, "levels": levels, "concepts": concepts,
            "part_masks": part_masks, "part_present": part_present, "part_corners": part_corners}


# Six parts: one main part per class, and three parts each SHARED by two classes (alpha+beta, beta+gamma,
# gamma+alpha). So the three parts of a class point to different classes (main: this class only; the two
# others: this class and one other each), and with the background's non-object pairs every two parts of a
# class are contrasted by the labels (background_pairs): a classifier has to tell them apart. Parts with
# one role (same classes, never contrasted) are interchangeable for the decision, and a CNN trained on the
# labels may encode them as one feature, which no concept extraction can undo. Within a class the parts
# also differ in Haar level and pattern (a Latin square); a main part and the shared part of the same level
# and pattern (in other classes) differ in colour.
_CONCEPT_PARTS = (
    {"name": "red-checker-L1", "level": 1, "pattern": "checker", "colour": (1.0, 0.15, 0.15)},  # alpha main
    {"name": "blue-hbars-L3", "level": 3, "pattern": "h", "colour": (0.15, 0.3, 1.0)},  # alpha 2nd, beta 3rd
    {"name": "yellow-vbars-L2", "level": 2, "pattern": "v", "colour": (1.0, 0.9, 0.1)},  # gamma 2nd, alpha 3rd
    {"name": "cyan-vbars-L2", "level": 2, "pattern": "v", "colour": (0.1, 0.9, 1.0)},  # beta main
    {"name": "green-checker-L1", "level": 1, "pattern": "checker", "colour": (0.15, 1.0, 0.15)},  # beta 2nd, gamma 3rd
    {"name": "white-hbars-L3", "level": 3, "pattern": "h", "colour": (1.0, 1.0, 1.0)},  # gamma main
)
_CONCEPT_PART_NAMES = tuple(p["name"] for p in _CONCEPT_PARTS)

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
    "planted-concepts": PlantedSpec(
        name="planted-concepts", input_shape=(3, 64, 64),
        class_names=("alpha", "beta", "gamma", "background"), class_levels=(1, 2, 3, None),
        concept_names=(_CONCEPT_PART_NAMES,) * 3 + ((),), levels=3,
        generate=_generate_concepts,
        extra={"patch": 16, "align": 8, "gap": 8, "parts": _CONCEPT_PARTS,
               # class -> its parts, most class evidence first (main part, second, third)
               "class_parts": {"alpha": (0, 1, 2), "beta": (3, 4, 1), "gamma": (5, 2, 4)},
               # P(main), P(second), P(third) shown; every object item shows two or three of its parts
               "rates": (0.9, 0.7, 0.5),
               # background: P(nothing), P(one part of any class), P(two parts that make no object)
               "background": (1 / 3, 1 / 3, 1 / 3),
               "description": "objects showing two or three of their three parts: 16x16 textures of one"
                              " Haar level and a colour each, at non-overlapping 8-aligned places over a"
                              " smooth noisy colour background; three parts are shared by two classes each;"
                              " the background class shows nothing, one part, or two parts of no common"
                              " class"},
    ),
}


def generate_planted(name: str, n: int, seed: int, split: str = "custom", clean: bool = False,
                     drop_parts=None) -> PlantedDataset:
    """Draw ``n`` items of planted dataset ``name`` from ``seed`` (deterministic).

    ``clean=True`` gives the same items with the nuisance (background, noise, offset) removed:
    the evidence alone, e.g. to check where its Haar energy lies. ``drop_parts`` (``planted-concepts``
    only: part ids or names, or an ``(n, P)`` bool tensor) gives the same items with those parts left
    out (their region shows the item's background), e.g. for input-space ablations.
    """
    spec = SPECS[name]
    gen = torch.Generator().manual_seed(int(seed))
    if drop_parts is not None and "parts" not in spec.extra:
        raise ParameterError(f"drop_parts applies to datasets made of parts (planted-concepts), not {name!r}")
    options = {} if drop_parts is None else {"drop_parts": drop_parts}
    out = spec.generate(spec, int(n), gen, clean, **options)
    levels = out["levels"]
    scales = torch.where(levels > 0, spec.levels - levels + 1, torch.full_like(levels, -1))
    concept_names = dict(zip(spec.class_names, (list(c) for c in spec.concept_names)))
    metadata = {**spec.metadata, "seed": int(seed), "clean": bool(clean)}
    common = (name, split, out["inputs"].float(), out["targets"], spec.class_names, out["masks"], scales,
              out["concepts"], spec.wavelet, spec.levels, concept_names)
    if "part_masks" not in out:
        return PlantedDataset(*common, metadata=metadata)
    parts = spec.extra["parts"]
    metadata.update(part_evidence=part_evidence(spec), class_part_rates=part_rates(spec).tolist(),
                    part_scales={p["name"]: spec.scale_index(p["level"]) for p in parts})
    return ConceptDataset(*common, part_masks=out["part_masks"], part_present=out["part_present"],
                          part_names=[p["name"] for p in parts], part_levels=[p["level"] for p in parts],
                          class_parts={c: list(v) for c, v in spec.extra["class_parts"].items()},
                          part_evidence=part_evidence(spec), part_corners=out["part_corners"], metadata=metadata)


def load_planted(name: str, split: str) -> PlantedDataset:
    """The fixed ``split`` of planted dataset ``name``."""
    spec = SPECS[name]
    return generate_planted(name, spec.sizes[split], spec.seeds[split], split)


@torch.no_grad()
def part_ablation(model: Callable[[torch.Tensor], torch.Tensor], dataset: ConceptDataset,
                  batch_size: int = 200) -> dict:
    """Input-space ablation of every part: how much each item's target logit drops when the part is
    removed (the same item regenerated without it, see :meth:`ConceptDataset.without_parts`).

    Returns
    -------
    dict with ``drops`` ``(N, P)`` (exactly 0 where the part is absent, since the item is unchanged),
    ``mean`` ``{class: {part name: mean drop over the class's items}}`` (absent counted as 0, so a
    part's frequency weighs in, like its class evidence), ``mean_present`` (mean over the class's
    items that show the part; NaN if none), ``n_present`` and ``order`` ``{class: [part ids of the
    class by decreasing mean drop]}``.
    """
    def target_logits(inputs: torch.Tensor) -> torch.Tensor:
        out = [model(inputs[i:i + batch_size]).gather(1, dataset.targets[i:i + batch_size].view(-1, 1)).squeeze(1)
               for i in range(0, len(dataset), batch_size)]
        return torch.cat(out).float()

    base = target_logits(dataset.inputs)
    drops = torch.zeros(len(dataset), dataset.n_parts)
    for p in range(dataset.n_parts):
        if dataset.part_present[:, p].any():
            drops[:, p] = base - target_logits(dataset.without_parts([p]).inputs)
    mean, mean_present, n_present, order = {}, {}, {}, {}
    for c, cls in enumerate(dataset.class_names):
        parts = dataset.part_evidence.get(cls, [])
        if not parts:
            continue
        sel = dataset.targets == c
        mean[cls], mean_present[cls], n_present[cls] = {}, {}, {}
        for p in parts:
            shown = sel & dataset.part_present[:, p]
            mean[cls][dataset.part_names[p]] = float(drops[sel, p].mean())
            mean_present[cls][dataset.part_names[p]] = float(drops[shown, p].mean()) if shown.any() else float("nan")
            n_present[cls][dataset.part_names[p]] = int(shown.sum())
        order[cls] = sorted(parts, key=lambda p: -mean[cls][dataset.part_names[p]])
    return {"drops": drops, "mean": mean, "mean_present": mean_present, "n_present": n_present, "order": order}
