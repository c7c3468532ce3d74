"""The one result type of every explainer: where, what scale, which concept."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

import h5py
import numpy as np
import torch

from .storage import atomic_h5

FORMAT_VERSION = 1
_TENSOR_FIELDS = (
    "where", "scales", "scale_maps", "concept_ids", "concept_importances", "concept_maps", "targets", "inputs",
)


@dataclass
class Explanation:
    """Explanations of a batch of B decisions.

    Attributes
    ----------
    where : (B, *spatial) importance of each input position.
    scales : (B, levels + 1) importance share per wavelet level, ordered like pywt:
        approximation first, then the coarsest detail level, ..., the finest last.
    scale_maps : (B, levels + 1, *spatial) per-level importance on the input grid.
    concept_ids, concept_importances : (B, K) optional concept fields; concept_maps (B, K, *spatial).
    attributions : the method's raw signed attributions: a tensor or a dict of named tensors
        (e.g. one entry per wavelet sub-band).
    targets : (B,) the explained class of each input.  inputs : optional copy of the inputs.
    """

    where: torch.Tensor
    method: str
    targets: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    scale_maps: torch.Tensor | None = None
    concept_ids: torch.Tensor | None = None
    concept_importances: torch.Tensor | None = None
    concept_maps: torch.Tensor | None = None
    attributions: torch.Tensor | dict[str, torch.Tensor] | None = None
    inputs: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    model_id: str = ""
    elapsed: float = 0.0
    level_names: list[str] | None = None

    def __len__(self) -> int:
        return int(self.where.shape[0])

    @property
    def device(self) -> torch.device:
        return self.where.device

    def to(self, device) -> "Explanation":
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device)
            elif isinstance(value, dict):
                moved[f.name] = {k: v.to(device) for k, v in value.items()}
        return replace(self, **moved)

    def cpu(self) -> "Explanation":
        return self.to("cpu")

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
        return str(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Explanation":
        """Read an Explanation written by :meth:`save` (tensors on the CPU)."""
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != "unified_xai.Explanation":
                raise ValueError(f"{path} is not a unified_xai Explanation file")
            values: dict[str, Any] = {n: torch.from_numpy(np.asarray(h5[n])) for n in _TENSOR_FIELDS if n in h5}
            attributions = None
            if "attributions" in h5:
                group = h5["attributions"]
                order = json.loads(group.attrs["order"])
                items = {k: torch.from_numpy(np.asarray(group[k])) for k in order}
                attributions = items["input"] if group.attrs["kind"] == "tensor" else items
            level_names = json.loads(h5.attrs["level_names"]) if "level_names" in h5.attrs else None
            return cls(
                method=str(h5.attrs["method"]),
                model_id=str(h5.attrs["model_id"]),
                elapsed=float(h5.attrs["elapsed"]),
                seed=int(h5.attrs["seed"]) if bool(h5.attrs["has_seed"]) else None,
                params=json.loads(h5.attrs["params"]),
                attributions=attributions,
                level_names=level_names,
                **values,
            )

    # ---------------------------------------------------------------- display
    def plot(self, index: int = 0, inputs: torch.Tensor | None = None):
        """Figure for item ``index``: input, where map, per-level maps and the scale bar chart."""
        from ..plotting import plot_explanation

        return plot_explanation(self, index=index, inputs=inputs)


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)
