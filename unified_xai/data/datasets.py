"""Dataset containers returned by :func:`unified_xai.data.load_dataset`."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..core.errors import InputError


class ArrayDataset:
    """A labelled set of inputs held in memory.

    Parameters
    ----------
    name : dataset id (e.g. ``"digits"``).
    split : ``"train"`` or ``"test"``.
    inputs : ``(N, C, *spatial)`` float32.
    targets : ``(N,)`` long class indices.
    class_names : names of the classes, indexed by target.
    metadata : free-form description (sample rate, value range, provenance...).
    names : optional name of each item (e.g. ``"china"``), used in figure and file names.
    notes : optional free-text note on each item (e.g. what was done to it, why its target is -1).

    Indexing with an int or a slice gives ``(inputs, targets)``, like a torch ``TensorDataset``.
    A target of -1 means the item belongs to none of the classes (e.g. a photo of an object the
    classifier has no class for).
    """

    def __init__(self, name: str, split: str, inputs: torch.Tensor, targets: torch.Tensor,
                 class_names: Sequence[str], metadata: dict[str, Any] | None = None, *,
                 names: Sequence[str] | None = None, notes: Sequence[str] | None = None):
        if inputs.shape[0] != targets.shape[0]:
            raise InputError(f"{inputs.shape[0]} inputs but {targets.shape[0]} targets")
        for label, values in (("names", names), ("notes", notes)):
            if values is not None and len(values) != inputs.shape[0]:
                raise InputError(f"{len(values)} {label} for {inputs.shape[0]} inputs; give one per input")
        self.name = name
        self.split = split
        self.inputs = inputs.float().contiguous()
        self.targets = targets.long().contiguous()
        self.class_names = list(class_names)
        self.metadata = dict(metadata or {})
        self.names = None if names is None else [str(n) for n in names]
        self.notes = None if notes is None else [str(n) for n in notes]

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __getitem__(self, index):
        return self.inputs[index], self.targets[index]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of one item."""
        return tuple(self.inputs.shape[1:])

    def truth(self, i: int) -> dict[str, Any]:
        """What is known about item ``i``: its target and class name (None for target -1), and its
        ``name`` and ``note`` when the dataset has them."""
        target = int(self.targets[i])
        out = {"index": int(i), "target": target, "class_name": self.class_names[target] if target >= 0 else None}
        if self.names is not None:
            out["name"] = self.names[i]
        if self.notes is not None:
            out["note"] = self.notes[i]
        return out

    def __repr__(self) -> str:
        classes = (self.class_names if len(self.class_names) <= 12
                   else f"{len(self.class_names)} ({', '.join(self.class_names[:3])}, ...)")
        return (f"{type(self).__name__}({self.name!r}, split={self.split!r}, n={len(self)},"
                f" input_shape={self.input_shape}, classes={classes})")


class PlantedDataset(ArrayDataset):
    """A procedural dataset whose class evidence is planted at a known place, scale and concept.

    Extra attributes (one entry per item):

    masks : ``(N, *spatial)`` bool, where the class evidence lies (all False without evidence).
    scales : ``(N,)`` long, the wavelet scale of the evidence as an index in pywt order
        (0 = approximation, 1 = coarsest detail level J, ..., J = finest level 1); -1 without evidence.
    concepts : ``(N,)`` long, the pattern variant within the class (see ``concept_names``); -1 without evidence.
    has_evidence : ``(N,)`` bool.

    and for the whole set: ``wavelet`` (``"haar"``), ``levels`` (J), ``concept_names``
    (``{class name: [concept names]}``) and ``class_scales`` (``{class name: scale index or None}``).
    """

    def __init__(self, name: str, split: str, inputs: torch.Tensor, targets: torch.Tensor,
                 class_names: Sequence[str], masks: torch.Tensor, scales: torch.Tensor,
                 concepts: torch.Tensor, wavelet: str, levels: int,
                 concept_names: dict[str, list[str]], metadata: dict[str, Any] | None = None):
        super().__init__(name, split, inputs, targets, class_names, metadata)
        self.masks = masks.bool().contiguous()
        self.scales = scales.long().contiguous()
        self.concepts = concepts.long().contiguous()
        self.has_evidence = self.scales >= 0
        self.wavelet = wavelet
        self.levels = int(levels)
        self.concept_names = {k: list(v) for k, v in concept_names.items()}
        self.class_scales = dict(self.metadata.get("class_scales", {}))

    def truth(self, i: int) -> dict[str, Any]:
        """Ground truth of item ``i``.

        Returns
        -------
        dict with ``index``, ``target``, ``class_name``, ``has_evidence``, ``mask`` (bool tensor of
        the spatial shape), ``scale`` (index in pywt order, -1 if none), ``haar_level`` (1 = finest,
        None if none), ``concept`` (id within the class, -1 if none), ``concept_name``, ``wavelet``
        and ``levels``.
        """
        out = super().truth(i)
        scale = int(self.scales[i])
        concept = int(self.concepts[i])
        names = self.concept_names.get(out["class_name"], [])
        out.update(
            has_evidence=bool(self.has_evidence[i]),
            mask=self.masks[i],
            scale=scale,
            haar_level=(self.levels - scale + 1) if scale > 0 else None,
            concept=concept,
            concept_name=names[concept] if 0 <= concept < len(names) else None,
            wavelet=self.wavelet,
            levels=self.levels,
        )
        return out


def _box_arrays(boxes, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, ndim + 1)`` (starts, one size) or ``(n, 2 * ndim)`` (starts, sizes) -> starts, ends ``(n, ndim)``."""
    boxes = torch.as_tensor(boxes).long()
    if boxes.ndim == 1:
        boxes = boxes.unsqueeze(0)
    if boxes.ndim != 2 or boxes.shape[1] not in (ndim + 1, 2 * ndim):
        raise InputError(f"boxes must be (n, {ndim + 1}) (start per axis, one size) or (n, {2 * ndim})"
                         f" (start per axis, size per axis); got shape {tuple(boxes.shape)}")
    starts = boxes[:, :ndim]
    sizes = boxes[:, ndim:].expand(-1, ndim) if boxes.shape[1] == ndim + 1 else boxes[:, ndim:]
    if (sizes <= 0).any():
        raise InputError("crop sizes must be positive")
    return starts, starts + sizes


class ConceptDataset(PlantedDataset):
    """A planted dataset whose class evidence is made of several PARTS (concepts), each with a known
    place, a known Haar level and a known share of the class evidence.

    Extra attributes (one entry per item; ``P`` = number of distinct parts over all classes):

    part_masks : ``(N, P, *spatial)`` bool, where each part lies (all False when absent).
    part_present : ``(N, P)`` bool.
    part_corners : ``(N, P, ndim)`` long, the first sample of each part's box (-1 when absent).

    and for the whole set: ``part_names`` (P names), ``part_levels`` ``(P,)`` Haar level of each part
    (1 = finest), ``part_scales`` ``(P,)`` the same as a scale index in pywt order
    (``levels - level + 1``), ``class_parts`` (``{class name: [part ids]}``), ``part_evidence``
    (``{class name: [part ids ordered by the class evidence they carry, most first]}``) and
    ``main_parts`` (``{class name: part id}``, the first of ``part_evidence``).

    The inherited fields stay meaningful: ``masks`` = union of the masks of the item's parts that
    belong to its class (empty for background items, whose distractor part is not class evidence);
    ``concepts`` = id (in ``part_names``) of the item's present class part carrying the most class
    evidence (its main part when present), -1 without one; ``scales`` = that part's scale index, -1
    without one. ``concept_names[class]`` is ``part_names`` for every object class, so concept ids
    index it.
    """

    def __init__(self, name: str, split: str, inputs: torch.Tensor, targets: torch.Tensor,
                 class_names: Sequence[str], masks: torch.Tensor, scales: torch.Tensor,
                 concepts: torch.Tensor, wavelet: str, levels: int,
                 concept_names: dict[str, list[str]], part_masks: torch.Tensor, part_present: torch.Tensor,
                 part_names: Sequence[str], part_levels: Sequence[int], class_parts: dict[str, Sequence[int]],
                 part_evidence: dict[str, Sequence[int]], part_corners: torch.Tensor | None = None,
                 metadata: dict[str, Any] | None = None):
        super().__init__(name, split, inputs, targets, class_names, masks, scales, concepts, wavelet, levels,
                         concept_names, metadata)
        n_parts = len(part_names)
        if part_masks.shape[:2] != (len(self), n_parts) or part_present.shape != (len(self), n_parts):
            raise InputError(f"part_masks {tuple(part_masks.shape)} / part_present {tuple(part_present.shape)}"
                             f" do not fit {len(self)} items and {n_parts} parts")
        self.part_masks = part_masks.bool().contiguous()
        self.part_present = part_present.bool().contiguous()
        self.part_corners = (torch.full((len(self), n_parts, self.masks.ndim - 1), -1, dtype=torch.long)
                             if part_corners is None else part_corners.long().contiguous())
        self.part_names = list(part_names)
        self.part_levels = torch.as_tensor(list(part_levels), dtype=torch.long)
        self.part_scales = self.levels - self.part_levels + 1
        self.class_parts = {k: [int(p) for p in v] for k, v in class_parts.items()}
        self.part_evidence = {k: [int(p) for p in v] for k, v in part_evidence.items()}
        self.main_parts = {k: v[0] for k, v in self.part_evidence.items() if v}

    @property
    def n_parts(self) -> int:
        return len(self.part_names)

    def truth(self, i: int) -> dict[str, Any]:
        """Ground truth of item ``i``: everything of :meth:`PlantedDataset.truth` (``concept`` is a part
        id, ``concept_name`` its name) plus ``part_masks`` ``(P, *spatial)``, ``part_present`` ``(P,)``,
        ``parts`` (ids of the present parts), ``part_names``, ``part_levels``, ``part_scales``,
        ``part_corners`` ``(P, ndim)``, ``class_parts`` (ids of the item's class parts, most evidence
        first) and ``main_part`` (the class's main part id, None for background)."""
        out = super().truth(i)
        concept = int(self.concepts[i])
        cls = out["class_name"]
        out.update(
            concept_name=self.part_names[concept] if concept >= 0 else None,
            part_masks=self.part_masks[i],
            part_present=self.part_present[i],
            parts=torch.nonzero(self.part_present[i]).flatten().tolist(),
            part_names=list(self.part_names),
            part_levels=self.part_levels.tolist(),
            part_scales=self.part_scales.tolist(),
            part_corners=self.part_corners[i],
            class_parts=list(self.part_evidence.get(cls, [])),
            main_part=self.main_parts.get(cls),
        )
        return out

    def crop_truth(self, item_indices, boxes, threshold: float | None = 0.5) -> torch.Tensor:
        """Which parts each crop window contains.

        Parameters
        ----------
        item_indices : ``(n,)`` the item each crop is taken from.
        boxes : ``(n, ndim + 1)`` = start on each spatial axis then one size (square / cubic crops), or
            ``(n, 2 * ndim)`` = starts then a size per axis. Boxes reaching outside the input are clipped.
        threshold : a crop CONTAINS a part when at least this fraction of the part's mask lies inside
            the box (default 0.5: half the part or more). ``None`` returns the fractions themselves.

        Returns
        -------
        ``(n, P)`` float: 1.0 / 0.0 indicators (or fractions in [0, 1] with ``threshold=None``); always
        0 for a part absent from the item.
        """
        items = torch.as_tensor(item_indices).long().flatten()
        spatial = tuple(self.part_masks.shape[2:])
        ndim = len(spatial)
        starts, ends = _box_arrays(boxes, ndim)
        if starts.shape[0] != items.shape[0]:
            raise InputError(f"{items.shape[0]} item indices but {starts.shape[0]} boxes")
        if items.numel() and (items.min() < 0 or items.max() >= len(self)):
            raise InputError(f"item indices must lie in [0, {len(self)})")
        limit = torch.tensor(spatial)
        starts, ends = starts.clamp(min=0), torch.minimum(ends, limit)
        ends = torch.maximum(ends, starts)
        unique, inverse = torch.unique(items, return_inverse=True)
        # summed-area table of the masks: a box sum is an inclusion-exclusion over its 2**ndim corners
        table = self.part_masks[unique].to(torch.int32)
        for axis in range(ndim):
            table = torch.nn.functional.pad(table.cumsum(dim=2 + axis), [0] * (2 * (ndim - 1 - axis)) + [1, 0])
        inside = torch.zeros(items.shape[0], self.n_parts, dtype=torch.float64)
        for corner in range(2 ** ndim):
            coords, sign = [], 1
            for axis in range(ndim):
                high = (corner >> axis) & 1
                coords.append(ends[:, axis] if high else starts[:, axis])
                sign = sign if high else -sign
            value = table[(inverse.view(-1, 1), torch.arange(self.n_parts).view(1, -1))
                          + tuple(c.view(-1, 1) for c in coords)]
            inside += sign * value.double()
        area = self.part_masks[items].flatten(2).sum(2).double()
        fraction = torch.where(area > 0, inside / area.clamp(min=1), torch.zeros_like(inside)).float()
        return fraction if threshold is None else (fraction >= threshold).float() * (area > 0).float()

    def without_parts(self, parts) -> "ConceptDataset":
        """The same items (same seed, same nuisance, same other parts) with ``parts`` removed.

        ``parts`` : part ids or names dropped from every item, or an ``(N, P)`` bool tensor of the
        parts to drop per item. The removed region then shows the background the item has under it.
        """
        from .planted import generate_planted  # planted imports this module

        seed = self.metadata.get("seed")
        if seed is None:
            raise InputError("this dataset does not record its seed, so its items cannot be regenerated")
        return generate_planted(self.name, len(self), seed, self.split, clean=bool(self.metadata.get("clean")),
                                drop_parts=parts)


def part_indicators(ds: ConceptDataset, crop_boxes, threshold: float | None = 0.5) -> torch.Tensor:
    """Ground-truth part indicators of crops given as rows ``(item index, *starts, size)``
    (or ``(item index, *starts, *sizes)``): see :meth:`ConceptDataset.crop_truth` (a crop contains a
    part when >= 50 % of the part's mask lies inside it). Returns ``(n_crops, P)`` float."""
    boxes = torch.as_tensor(crop_boxes).long()
    if boxes.ndim == 1:
        boxes = boxes.unsqueeze(0)
    return ds.crop_truth(boxes[:, 0], boxes[:, 1:], threshold=threshold)
