"""ConceptBank: one class's CRAFT concepts at one layer, stored in HDF5 and found again by its key.

A bank is identified by its key: a digest of the model id and weights, the layer, the class, the
extraction parameters and the fit images. :meth:`Craft.fit` with a ``bank_dir`` loads the bank of
the same key from that folder instead of refitting; files are written atomically (a killed fit
leaves at most a temporary that the next run removes, never a truncated bank).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .._version import __version__
from ..core.errors import InputError
from ..core.storage import atomic_h5

FORMAT = "unified_xai.ConceptBank"
FORMAT_VERSION = 1
#: the learned arrays, saved as datasets
ARRAYS = ("concepts_", "importances_", "importances_per_image_", "crop_boxes_", "crop_coefficients_", "top_crops_",
          "top_crop_images_")


@dataclass
class ConceptBank:
    """The learned state of :class:`~unified_xai.concepts.Craft` for one (model, layer, class, config).

    ``concepts_`` (K, D) non-negative concept vectors sorted by decreasing ``importances_`` (K,);
    ``importances_per_image_`` (n_images, K); ``crop_boxes_`` (n_crops, 1 + ndim) image index and window
    starts; ``crop_coefficients_`` (n_crops, K); ``top_crops_`` (K, n_top) crop indices per concept,
    most activating first; ``top_crop_images_`` (K, n_top, C, *patch); ``children`` maps a concept
    to the bank of its sub-concepts (recursion at an earlier layer).
    """

    concepts_: torch.Tensor
    importances_: torch.Tensor
    layer: str
    class_id: int
    class_name: str | None = None
    model_id: str = ""
    config: dict = field(default_factory=dict)
    key: str = ""
    version: str = __version__
    importances_per_image_: torch.Tensor | None = None
    crop_boxes_: torch.Tensor | None = None
    crop_coefficients_: torch.Tensor | None = None
    top_crops_: torch.Tensor | None = None
    top_crop_images_: torch.Tensor | None = None
    reconstruction_error_: float | None = None
    children: dict[int, "ConceptBank"] = field(default_factory=dict)

    @property
    def n_concepts(self) -> int:
        return int(self.concepts_.shape[0])

    def __repr__(self) -> str:
        name = self.class_name or f"class {self.class_id}"
        return (f"ConceptBank({name!r}, layer={self.layer!r}, {self.n_concepts} concepts, model={self.model_id!r},"
                f" key={self.key!r}{', children: ' + str(sorted(self.children)) if self.children else ''})")

    # ---------------------------------------------------------------- storage
    def save(self, path: str | os.PathLike) -> str:
        """Write the bank (and its children) to HDF5 atomically; returns the path."""
        with atomic_h5(path) as h5:
            h5.attrs["format"] = FORMAT
            h5.attrs["format_version"] = FORMAT_VERSION
            self._write(h5)
        return str(path)

    def _write(self, group: h5py.Group) -> None:
        meta = {"layer": self.layer, "class_id": int(self.class_id), "class_name": self.class_name,
                "model_id": self.model_id, "config": self.config, "key": self.key, "version": self.version,
                "reconstruction_error": self.reconstruction_error_}
        group.attrs["meta"] = json.dumps(meta, sort_keys=True)
        for name in ARRAYS:
            value = getattr(self, name)
            if value is not None:
                group.create_dataset(name, data=value.detach().cpu().numpy(), compression="gzip")
        for concept, child in self.children.items():
            child._write(group.create_group(f"children/{int(concept)}"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConceptBank":
        """Read a bank written by :meth:`save` (tensors on the CPU); bad files raise :class:`InputError`."""
        shown = os.fspath(path)
        if not os.path.isfile(path):
            raise InputError(f"no concept bank file at {shown!r}; fit one with ux.concepts.Craft(...).fit(images,"
                             f" class_id, bank_dir=...) or `uxai concepts`")
        try:
            h5 = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"cannot read {shown!r}: not an HDF5 file, or truncated ({err})") from None
        with h5:
            if h5.attrs.get("format") != FORMAT:
                raise InputError(f"{shown!r} is not a unified_xai concept bank (no format attribute {FORMAT!r})")
            if int(h5.attrs.get("format_version", 0)) > FORMAT_VERSION:
                raise InputError(f"{shown!r} uses concept bank format {h5.attrs['format_version']}, newer than this"
                                 f" unified_xai reads ({FORMAT_VERSION}); upgrade unified_xai")
            try:
                return cls._read(h5)
            except (KeyError, ValueError, OSError) as err:
                raise InputError(f"cannot read {shown!r}: the bank file is damaged ({type(err).__name__}: {err})")

    @classmethod
    def _read(cls, group: h5py.Group) -> "ConceptBank":
        meta = json.loads(group.attrs["meta"])
        arrays: dict[str, Any] = {n: torch.from_numpy(np.asarray(group[n])) for n in ARRAYS if n in group}
        children = {}
        if "children" in group:
            children = {int(k): cls._read(g) for k, g in group["children"].items()}
        return cls(layer=meta["layer"], class_id=int(meta["class_id"]), class_name=meta["class_name"],
                   model_id=meta["model_id"], config=meta["config"], key=meta["key"], version=meta["version"],
                   reconstruction_error_=meta.get("reconstruction_error"), children=children, **arrays)


def bank_filename(model_id: str, layer: str, class_id: int, key: str) -> str:
    """``<model>_<layer>_class<id>_<key>.h5``: readable, and unique per key."""
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9.-]+", "-", str(text)).strip("-")[:48] or "model"

    return f"{slug(model_id)}_{slug(layer)}_class{int(class_id)}_{key}.h5"


def find_bank(folder: str | os.PathLike, key: str) -> Path | None:
    """The bank with ``key`` in ``folder``, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    matches = sorted(folder.glob(f"*_{key}.h5"))
    return matches[0] if matches else None


def tensor_digest(x: torch.Tensor) -> str:
    """SHA-256 of a tensor's float32 values and shape (the same data gives the same key on any device)."""
    data = x.detach().to("cpu", torch.float32).contiguous().numpy()
    digest = hashlib.sha256(str(tuple(data.shape)).encode())
    digest.update(data.tobytes())
    return digest.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, shapes, values): retrained weights, new key."""
    digest = hashlib.sha256()
    for name, value in list(model.named_parameters()) + list(model.named_buffers()):
        digest.update(name.encode())
        tensor = value.detach().to("cpu")
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def class_banks(folder: str | os.PathLike, class_id: int, model_id: str | None = None,
                layer: str | None = None) -> list[tuple[Path, "ConceptBank"]]:
    """The banks of ``class_id`` in ``folder`` (of ``model_id`` and ``layer`` when given), newest file first.

    Unreadable files are skipped (a bank folder may hold other files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob(f"*_class{int(class_id)}_*.h5"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            bank = ConceptBank.load(path)
        except (OSError, InputError, KeyError, ValueError):
            continue
        if bank.class_id == int(class_id) and (model_id is None or bank.model_id == model_id) \
                and (layer is None or bank.layer == layer):
            found.append((path, bank))
    return found
