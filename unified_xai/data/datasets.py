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
