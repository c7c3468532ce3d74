"""What a combined report holds, and its HDF5 form: :class:`Report` (one file, ``report.h5``).

A report is a list of :class:`InputResult` (one per input, in input order; a failed input keeps its
name and error), a dict of :class:`ClassConcepts` (the concept bank of every predicted class) and the
run's settings. Everything numeric is in the HDF5 file; the static site (``site.py``) only draws it.
Each input's result is also written alone, atomically, to ``parts/`` while the run goes: a rerun
reads finished inputs back from there instead of recomputing them (``run.py``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch

from .._version import __version__
from ..core.errors import InputError
from ..core.explanation import Explanation
from ..core.storage import atomic_h5

FORMAT = "unified_xai.Report"
FORMAT_VERSION = 1


@dataclass
class InputConcepts:
    """The top concepts of the predicted class in one input (``k`` of the class bank's ``K``)."""

    class_id: int
    ids: torch.Tensor  # (k,) indices into the class bank, most important for this input first
    importances: torch.Tensor  # (k,) total Sobol index of each concept for this input
    coefficients: torch.Tensor  # (k,) pooled concept coefficient of the input
    maps: torch.Tensor  # (k, *spatial) where each concept lies, on the input grid
    scales: torch.Tensor  # (k, levels + 1) each concept's own scale profile in this input (wam on the concept)


@dataclass
class InputResult:
    """Everything the report computed for one input."""

    index: int
    name: str
    ok: bool = True
    error: str = ""  # why the input failed (unreadable file, ...): shown in the index
    label: int | None = None  # the known class, when the input comes with one
    input: torch.Tensor | None = None  # (C, *spatial), what the model saw
    top_ids: torch.Tensor | None = None  # (5,) top classes, most probable first
    top_probs: torch.Tensor | None = None  # (5,)
    explanations: dict[str, Explanation] = field(default_factory=dict)  # explainer name -> one-input run
    agreement: dict[str, Any] = field(default_factory=dict)  # white-box vs black-box answers (see run.py)
    concepts: InputConcepts | None = None
    rebuilt: torch.Tensor | None = None  # (C, *spatial) the input from its most important coefficients only
    rebuilt_info: dict[str, Any] = field(default_factory=dict)  # kept fraction, scores of input and rebuilt
    faithfulness: dict[str, dict[str, float]] = field(default_factory=dict)  # explainer -> metric -> score
    elapsed: float = 0.0
    key: str = ""  # digest of the input and the settings: a rerun reuses the result when it matches

    @property
    def predicted(self) -> int | None:
        return None if self.top_ids is None else int(self.top_ids[0])


@dataclass
class ClassConcepts:
    """The concept bank of one class as the class page shows it."""

    class_id: int
    name: str
    layer: str
    bank_path: str  # the ConceptBank file (relative to the report folder when inside it)
    importances: torch.Tensor  # (K,) class-level Sobol importance, most important first
    crops: torch.Tensor  # (K, n, C, *patch) each concept's top crops
    scales: torch.Tensor | None = None  # (K, levels + 1) each concept's scale profile over the class images
    maco: torch.Tensor | None = None  # (m, C, H, W) MACO images of the first m concepts (m <= K)
    n_images: int = 0  # images the bank was fitted on
    source: str = ""  # where those images came from


@dataclass
class Report:
    """A combined report: per-input answers (where, what scale, which concept) and per-class concept banks.

    ``Report.load(path)`` reads ``report.h5``; ``predictions`` gives the top classes, ``explanations``
    one :class:`~unified_xai.Explanation` per explainer run (the inputs that succeeded, in order).
    """

    model_id: str
    class_names: list[str]
    spatial_ndim: int
    sample_rate: float | None
    explainers: list[str]
    settings: dict[str, Any]
    inputs: list[InputResult]
    classes: dict[int, ClassConcepts] = field(default_factory=dict)
    level_names: list[str] | None = None
    version: str = __version__
    reused: int = 0  # inputs read back from an earlier run's parts/ (not stored)

    # ------------------------------------------------------------------ views
    @property
    def ok_inputs(self) -> list[InputResult]:
        return [r for r in self.inputs if r.ok]

    @property
    def predictions(self) -> dict[str, Any]:
        """Names, predicted class ids and names, and top-5 ids / probabilities of the inputs that succeeded."""
        ok = self.ok_inputs
        return {
            "names": [r.name for r in ok],
            "predicted": [r.predicted for r in ok],
            "predicted_names": [self.class_name(r.predicted) for r in ok],
            "top_ids": torch.stack([r.top_ids for r in ok]) if ok else torch.zeros(0, 5, dtype=torch.long),
            "top_probs": torch.stack([r.top_probs for r in ok]) if ok else torch.zeros(0, 5),
        }

    @property
    def explanations(self) -> list[Explanation]:
        """One Explanation per explainer, over the inputs that succeeded (in input order)."""
        ok = self.ok_inputs
        return [Explanation.concatenate([r.explanations[name] for r in ok]) for name in self.explainers
                if ok and all(name in r.explanations for r in ok)]

    def explanation(self, name: str) -> Explanation:
        for e in self.explanations:
            if e.method == name:
                return e
        raise InputError(f"this report has no {name!r} explanation; it ran {', '.join(self.explainers)}")

    def class_name(self, class_id: int | None) -> str:
        if class_id is None:
            return ""
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)

    # ------------------------------------------------------------------ storage
    def save(self, path: str | os.PathLike) -> str:
        """Write ``report.h5`` atomically; returns the path."""
        with atomic_h5(path) as h5:
            h5.attrs["format"] = FORMAT
            h5.attrs["format_version"] = FORMAT_VERSION
            h5.attrs["model_id"] = self.model_id
            h5.attrs["class_names"] = json.dumps([str(c) for c in self.class_names])
            h5.attrs["spatial_ndim"] = int(self.spatial_ndim)
            if self.sample_rate is not None:
                h5.attrs["sample_rate"] = float(self.sample_rate)
            h5.attrs["explainers"] = json.dumps(self.explainers)
            h5.attrs["settings"] = json.dumps(self.settings, sort_keys=True, default=str)
            h5.attrs["level_names"] = json.dumps(self.level_names)
            h5.attrs["version"] = self.version
            inputs = h5.create_group("inputs")
            for result in self.inputs:
                write_input(inputs.create_group(f"{result.index:06d}"), result)
            classes = h5.create_group("classes")
            for class_id, concepts in sorted(self.classes.items()):
                _write_class(classes.create_group(str(class_id)), concepts)
        return str(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Report":
        """Read a report written by :meth:`save` (``<out>/report.h5``), tensors on the CPU."""
        shown = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "report.h5")
        if not os.path.exists(path):
            raise InputError(f"no such file: {shown!r}; give the report.h5 that `ux.report` / `uxai report` wrote")
        try:
            h5 = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"cannot read {shown!r}: not an HDF5 file, or truncated ({err}); run the report "
                             f"again") from None
        with h5:
            if h5.attrs.get("format") != FORMAT:
                raise InputError(f"{shown!r} is not a unified_xai report (no 'format' attribute {FORMAT!r})")
            if int(h5.attrs["format_version"]) > FORMAT_VERSION:
                raise InputError(f"{shown!r} uses report format {int(h5.attrs['format_version'])}, newer than "
                                 f"this unified_xai reads; upgrade unified_xai")
            attrs = h5.attrs
            return cls(
                model_id=str(attrs["model_id"]),
                class_names=json.loads(attrs["class_names"]),
                spatial_ndim=int(attrs["spatial_ndim"]),
                sample_rate=float(attrs["sample_rate"]) if "sample_rate" in attrs else None,
                explainers=json.loads(attrs["explainers"]),
                settings=json.loads(attrs["settings"]),
                inputs=[read_input(h5["inputs"][key]) for key in sorted(h5["inputs"])],
                classes={int(key): _read_class(group) for key, group in h5["classes"].items()},
                level_names=json.loads(attrs["level_names"]),
                version=str(attrs["version"]),
            )


# ---------------------------------------------------------------------- per-input groups
_INPUT_TENSORS = ("input", "top_ids", "top_probs", "rebuilt")
_CONCEPT_TENSORS = ("ids", "importances", "coefficients", "maps", "scales")


def _put(group: h5py.Group, name: str, value: torch.Tensor | None) -> None:
    if value is not None:
        group.create_dataset(name, data=value.detach().cpu().numpy(), compression="gzip")


def _get(group: h5py.Group, name: str) -> torch.Tensor | None:
    return torch.from_numpy(np.asarray(group[name])) if name in group else None


def write_input(group: h5py.Group, result: InputResult) -> None:
    """One input's result into an HDF5 group (the same layout in ``report.h5`` and in ``parts/``)."""
    group.attrs["index"] = int(result.index)
    group.attrs["name"] = result.name
    group.attrs["ok"] = bool(result.ok)
    group.attrs["error"] = result.error
    group.attrs["label"] = -1 if result.label is None else int(result.label)
    group.attrs["agreement"] = json.dumps(result.agreement, sort_keys=True)
    group.attrs["rebuilt_info"] = json.dumps(result.rebuilt_info, sort_keys=True)
    group.attrs["faithfulness"] = json.dumps(result.faithfulness, sort_keys=True)
    group.attrs["elapsed"] = float(result.elapsed)
    group.attrs["key"] = result.key
    for name in _INPUT_TENSORS:
        _put(group, name, getattr(result, name))
    explanations = group.create_group("explanations")
    explanations.attrs["order"] = json.dumps(list(result.explanations))
    for i, (name, explanation) in enumerate(result.explanations.items()):
        explanation.write(explanations.create_group(str(i)))
    if result.concepts is not None:
        concepts = group.create_group("concepts")
        concepts.attrs["class_id"] = int(result.concepts.class_id)
        for name in _CONCEPT_TENSORS:
            _put(concepts, name, getattr(result.concepts, name))


def read_input(group: h5py.Group) -> InputResult:
    attrs = group.attrs
    order = json.loads(group["explanations"].attrs["order"])
    concepts = None
    if "concepts" in group:
        c = group["concepts"]
        concepts = InputConcepts(class_id=int(c.attrs["class_id"]), **{n: _get(c, n) for n in _CONCEPT_TENSORS})
    label = int(attrs["label"])
    return InputResult(
        index=int(attrs["index"]), name=str(attrs["name"]), ok=bool(attrs["ok"]), error=str(attrs["error"]),
        label=None if label < 0 else label,
        explanations={name: Explanation.read(group["explanations"][str(i)]) for i, name in enumerate(order)},
        agreement=json.loads(attrs["agreement"]), concepts=concepts,
        rebuilt_info=json.loads(attrs["rebuilt_info"]), faithfulness=json.loads(attrs["faithfulness"]),
        elapsed=float(attrs["elapsed"]), key=str(attrs.get("key", "")),
        **{n: _get(group, n) for n in _INPUT_TENSORS},
    )


_CLASS_TENSORS = ("importances", "crops", "scales", "maco")


#: pictures of the class pages kept in half precision (display only; the bank file keeps full precision)
_PICTURES = ("crops", "maco")


def _write_class(group: h5py.Group, concepts: ClassConcepts) -> None:
    for name in ("class_id", "n_images"):
        group.attrs[name] = int(getattr(concepts, name))
    for name in ("name", "layer", "bank_path", "source"):
        group.attrs[name] = str(getattr(concepts, name))
    for name in _CLASS_TENSORS:
        value = getattr(concepts, name)
        _put(group, name, value.half() if name in _PICTURES and value is not None else value)


def _read_class(group: h5py.Group) -> ClassConcepts:
    attrs = group.attrs
    return ClassConcepts(class_id=int(attrs["class_id"]), name=str(attrs["name"]), layer=str(attrs["layer"]),
                         bank_path=str(attrs["bank_path"]), n_images=int(attrs["n_images"]),
                         source=str(attrs["source"]),
                         **{n: None if (t := _get(group, n)) is None else t.float() for n in _CLASS_TENSORS})
