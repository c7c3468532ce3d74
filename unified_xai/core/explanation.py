"""The one result type of every explainer: where, what scale, which concept."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

import h5py
import numpy as np
import torch

from .errors import InputError
from .storage import atomic_h5

#: 2 added the optional ``class_names`` and ``sample_rate`` attributes; 3 ``concept_scales`` (older files still load)
FORMAT_VERSION = 3
_TENSOR_FIELDS = (
    "where", "scales", "scale_maps", "concept_ids", "concept_importances", "concept_maps", "concept_scales", "targets",
    "inputs",
)
#: parameters named in titles and summaries, in this order, when an explainer has them
KEY_PARAMS = ("variant", "wavelet", "levels", "perturbation", "layer", "n_samples", "n_steps", "n_designs")


class ExplanationFileMissingError(InputError, FileNotFoundError):
    """:meth:`Explanation.load` was given a path where no file exists."""


@dataclass
class Explanation:
    """Explanations of a batch of B decisions.

    Attributes
    ----------
    where : (B, *spatial) importance of each input position.
    scales : (B, levels + 1) importance share per wavelet level, ordered like pywt:
        approximation first, then the coarsest detail level, ..., the finest last.
    scale_maps : (B, levels + 1, *spatial) per-level importance on the input grid.
    concept_ids : (B, K) the concepts explained for each input (indices into its class's concept bank).
    concept_importances : (B, K) importance of each of them for this input (e.g. CRAFT's Sobol indices).
    concept_maps : (B, K, *spatial) where each concept lies in the input.
    concept_scales : (B, K, levels + 1) each concept's own wavelet scale profile in this input
        (share per level, ordered like ``scales``).
    attributions : the method's raw signed attributions: a tensor or a dict of named tensors
        (e.g. one entry per wavelet sub-band).
    targets : (B,) the explained class of each input.  inputs : optional copy of the inputs.
    level_names : names of the levels of ``scales`` / ``scale_maps`` (see ``wavelets.WaveletCoeffs.level_names``).
    class_names : names of all the model's classes (``class_names[targets[i]]`` names item i's target).
    sample_rate : samples per second of audio inputs (plots then use seconds and Hz).
    """

    where: torch.Tensor
    method: str
    targets: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    scale_maps: torch.Tensor | None = None
    concept_ids: torch.Tensor | None = None
    concept_importances: torch.Tensor | None = None
    concept_maps: torch.Tensor | None = None
    concept_scales: torch.Tensor | None = None
    attributions: torch.Tensor | dict[str, torch.Tensor] | None = None
    inputs: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    model_id: str = ""
    elapsed: float = 0.0
    level_names: list[str] | None = None
    class_names: list[str] | None = None
    sample_rate: float | None = None

    def __len__(self) -> int:
        return int(self.where.shape[0])

    @property
    def device(self) -> torch.device:
        return self.where.device

    @property
    def target_names(self) -> list[str]:
        """Name of each item's target: its class name, or ``"class 3"`` when the class is unnamed.

        Empty when the explanation records no targets.
        """
        if self.targets is None:
            return []
        return [self.class_name(int(t)) for t in self.targets.detach().cpu().reshape(-1).tolist()]

    def class_name(self, index: int) -> str:
        """Name of class ``index`` (``"class <index>"`` without ``class_names`` or out of their range)."""
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return str(self.class_names[index])
        return f"class {index}"

    def key_params(self, limit: int = 4) -> str:
        """The few parameters that identify the variant of the method, e.g. ``"variant=integrated, wavelet=haar"``."""
        items = [f"{k}={_short(self.params[k], 24)}" for k in KEY_PARAMS if self.params.get(k) is not None]
        return ", ".join(items[:limit])

    def __repr__(self) -> str:
        """A short summary whatever the batch size (tensors are described by shape, not printed)."""
        spatial = tuple(self.where.shape[1:])
        present = []
        for name in _TENSOR_FIELDS:
            value = getattr(self, name)
            if value is not None and name not in ("where", "targets"):
                present.append(f"{name}{tuple(value.shape)}")
        raw = self.raw_attributions()
        if raw:
            present.append("attributions" + (f"{tuple(raw['input'].shape)}" if list(raw) == ["input"]
                                             else f"[{len(raw)} bands]"))
        parts = [f"method={_short(self.method, 24)!r}"]
        params = self.key_params()
        if params:
            parts.append(params)
        if self.model_id:
            parts.append(f"model={_short(self.model_id, 32)!r}")
        parts.append(f"B={len(self)}, spatial={spatial}")
        if present:
            parts.append("fields: " + ", ".join(present))
        names = self.target_names
        if names:
            shown = ", ".join(_short(n, 20) for n in names[:3])
            parts.append(f"targets=[{shown}{', ...' if len(names) > 3 else ''}]")
        if self.sample_rate is not None:
            parts.append(f"sample_rate={self.sample_rate:g} Hz")
        parts.append(f"elapsed={self.elapsed:.3g} s")
        return "Explanation(" + "; ".join(parts) + ")"

    def to(self, device) -> "Explanation":
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device)
            elif isinstance(value, dict) and f.name != "params":  # attributions by sub-band
                moved[f.name] = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in value.items()}
        return replace(self, **moved)

    def cpu(self) -> "Explanation":
        return self.to("cpu")

    @classmethod
    def concatenate(cls, items: "list[Explanation]") -> "Explanation":
        """One Explanation of the inputs of ``items`` in order (same method, settings and shapes);
        ``elapsed`` is their sum. Used by ``ux.Report`` to join per-input runs."""
        if not items:
            raise InputError("Explanation.concatenate needs at least one Explanation")
        first = items[0]
        if any(e.method != first.method or e.params != first.params for e in items):
            raise InputError("Explanation.concatenate: the explanations differ in method or settings; join only "
                             "runs of one explainer with one configuration")
        joined = {}
        for f in fields(first):
            values = [getattr(e, f.name) for e in items]
            if isinstance(values[0], torch.Tensor):
                if any(v is None for v in values):
                    raise InputError(f"Explanation.concatenate: {f.name!r} is missing in some explanations")
                if len({tuple(v.shape[1:]) for v in values}) > 1:
                    raise InputError(f"Explanation.concatenate: {f.name!r} has several shapes "
                                     f"({sorted({tuple(v.shape[1:]) for v in values})}): inputs of several sizes "
                                     f"cannot be one batch; keep the explanations apart")
                joined[f.name] = torch.cat(values)
            elif isinstance(values[0], dict) and f.name == "attributions":
                joined[f.name] = {k: torch.cat([v[k] for v in values]) for k in values[0]}
        joined["elapsed"] = float(sum(e.elapsed for e in items))
        return replace(first, **joined)

    def raw_attributions(self) -> dict[str, torch.Tensor]:
        """``attributions`` as a dict (a plain tensor is returned under the key ``'input'``)."""
        if self.attributions is None:
            return {}
        if isinstance(self.attributions, torch.Tensor):
            return {"input": self.attributions}
        return dict(self.attributions)

    # ---------------------------------------------------------------- storage
    def save(self, path: str | os.PathLike) -> str:
        """Write to HDF5 atomically (a temporary file renamed when complete); returns the path."""
        with atomic_h5(path) as h5:
            self.write(h5)
        return str(path)

    def write(self, h5: h5py.Group) -> None:
        """Write into an open HDF5 file or group (:meth:`read` reads it back; ``ux.Report`` keeps several)."""
        h5.attrs["format"] = "unified_xai.Explanation"
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["method"] = self.method
        h5.attrs["model_id"] = self.model_id
        h5.attrs["elapsed"] = float(self.elapsed)
        h5.attrs["seed"] = -1 if self.seed is None else int(self.seed)
        h5.attrs["has_seed"] = self.seed is not None
        h5.attrs["params"] = json.dumps(self.params, default=_json_default, sort_keys=True)
        if self.level_names is not None:
            h5.attrs["level_names"] = json.dumps(self.level_names)
        if self.class_names is not None:
            h5.attrs["class_names"] = json.dumps([str(c) for c in self.class_names])
        if self.sample_rate is not None:
            h5.attrs["sample_rate"] = float(self.sample_rate)
        for name in _TENSOR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                h5.create_dataset(name, data=value.detach().cpu().numpy(), compression="gzip")
        if self.attributions is not None:
            group = h5.create_group("attributions")
            group.attrs["kind"] = "tensor" if isinstance(self.attributions, torch.Tensor) else "dict"
            for key, value in self.raw_attributions().items():
                group.create_dataset(key, data=value.detach().cpu().numpy(), compression="gzip")
            group.attrs["order"] = json.dumps(list(self.raw_attributions()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Explanation":
        """Read an Explanation written by :meth:`save` (tensors on the CPU).

        Files of every earlier format version load; fields they lack are None.

        Raises
        ------
        ExplanationFileMissingError : (an :class:`InputError` and a ``FileNotFoundError``) no file at ``path``.
        InputError : the file is not HDF5, is truncated or damaged, or was not written by :meth:`save`.
        """
        shown = os.fspath(path)
        if not os.path.exists(path):
            raise ExplanationFileMissingError(
                f"no such file: {shown!r}; check the path (Explanation.save(path) writes the file)")
        if os.path.isdir(path):
            raise InputError(f"{shown!r} is a directory, not an Explanation file; give the .h5 file written by"
                             f" Explanation.save")
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot read {shown!r}: permission denied; make the file readable (chmod u+r)")
        try:
            h5 = h5py.File(path, "r")
        except OSError as err:
            if not h5py.is_hdf5(path):
                raise InputError(f"{shown!r} is not an HDF5 file, so not an Explanation written by"
                                 f" Explanation.save; give the .h5 file it wrote") from None
            raise InputError(f"cannot read {shown!r}: the HDF5 file is truncated or damaged ({err});"
                             f" save the explanation again") from None
        with h5:
            if h5.attrs.get("format") != "unified_xai.Explanation":
                raise InputError(f"{shown!r} is an HDF5 file but not a unified_xai Explanation file (no"
                                 f" 'format' attribute 'unified_xai.Explanation'); give a file written by"
                                 f" Explanation.save")
            version = int(h5.attrs.get("format_version", 1))
            if version > FORMAT_VERSION:
                raise InputError(f"{shown!r} uses Explanation format version {version}, newer than this"
                                 f" unified_xai reads ({FORMAT_VERSION}); upgrade unified_xai to load it")
            try:
                return cls._read(h5)
            except (OSError, KeyError, ValueError, TypeError) as err:
                raise InputError(f"cannot read {shown!r}: the Explanation file is truncated or damaged"
                                 f" ({type(err).__name__}: {err}); save the explanation again") from None

    @classmethod
    def read(cls, h5: h5py.Group) -> "Explanation":
        """Read an Explanation written by :meth:`write` into an open HDF5 file or group."""
        return cls._read(h5)

    @classmethod
    def _read(cls, h5: h5py.Group) -> "Explanation":
        values: dict[str, Any] = {n: torch.from_numpy(np.asarray(h5[n])) for n in _TENSOR_FIELDS if n in h5}
        if "where" not in values:
            raise InputError("the 'where' dataset is missing")  # re-raised by load() with the path
        attributions = None
        if "attributions" in h5:
            group = h5["attributions"]
            order = json.loads(group.attrs["order"])
            items = {k: torch.from_numpy(np.asarray(group[k])) for k in order}
            attributions = items["input"] if group.attrs["kind"] == "tensor" else items
        attrs = h5.attrs

        def optional_json(name):
            return json.loads(attrs[name]) if name in attrs else None

        return cls(
            method=str(attrs["method"]),
            model_id=str(attrs["model_id"]),
            elapsed=float(attrs["elapsed"]),
            seed=int(attrs["seed"]) if bool(attrs["has_seed"]) else None,
            params=json.loads(attrs["params"]),
            attributions=attributions,
            level_names=optional_json("level_names"),
            class_names=optional_json("class_names"),
            sample_rate=float(attrs["sample_rate"]) if "sample_rate" in attrs else None,
            **values,
        )

    # ---------------------------------------------------------------- display
    def plot(self, index: int = 0, inputs: torch.Tensor | None = None):
        """Figure for item ``index``: input, where map, per-level maps and the scale bar chart."""
        from ..plotting import plot_explanation

        return plot_explanation(self, index=index, inputs=inputs)


def _short(value: Any, width: int) -> str:
    """``str(value)`` cut to ``width`` characters (with an ellipsis when cut)."""
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)
