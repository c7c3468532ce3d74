"""MACO images of a concept bank's concepts, cached beside the bank file.

A concept's image maximises its direction at the bank's layer (``<a, w_k> * max(cos, 0.1)^2``, Fel et
al.'s CRAFT visualisation). Results are stored as ``<bank stem>.maco/concept<k>-<settings digest>.npz``
(plus the two PNGs), so a second call with the same bank and settings reads them instead of
optimising again.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from ..core.errors import ParameterError
from ..core.objectives import Direction
from .maco import MacoResult, maco


def concept_direction(bank, concept: int, cossim_pow: float = 2.0) -> Direction:
    """Concept ``concept`` of ``bank`` (a ConceptBank or fitted Craft) as the direction MACO maximises."""
    bank = getattr(bank, "bank_", bank)
    K = bank.n_concepts
    if isinstance(concept, bool) or not isinstance(concept, int) or not 0 <= concept < K:
        raise ParameterError(f"concept must be an index in [0, {K}) (concepts are sorted by importance), got"
                             f" {concept!r}")
    name = f"concept {concept} of {bank.class_name or f'class {bank.class_id}'}"
    return Direction(bank.layer, bank.concepts_[concept], cossim_pow=cossim_pow, name=name)


def _settings_digest(bank, settings: dict) -> str:
    text = json.dumps({"bank": bank.key, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def concept_images(adapter, bank, concepts: Sequence[int] | int = 3, bank_path=None, cossim_pow: float = 2.0,
                   **maco_kwargs) -> list[MacoResult]:
    """MACO images of ``concepts`` of ``bank`` (indices, or an int n: the n most important).

    ``bank_path``: the bank's file; when given, each result is cached in ``<bank stem>.maco/`` and reused
    on the next call with the same bank key and settings. ``maco_kwargs`` go to :func:`maco`.
    """
    bank = getattr(bank, "bank_", bank)
    if isinstance(concepts, int) and not isinstance(concepts, bool):
        concepts = list(range(min(concepts, bank.n_concepts)))
    results = []
    folder = None if bank_path is None else Path(bank_path).with_suffix(".maco")
    for k in concepts:
        objective = concept_direction(bank, k, cossim_pow)
        if folder is None:
            results.append(maco(adapter, objective, **maco_kwargs))
            continue
        settings = {"concept": int(k), "cossim_pow": float(cossim_pow),
                    **{key: value for key, value in maco_kwargs.items() if key not in ("progress", "batch_size")}}
        path = folder / f"concept{k}-{_settings_digest(bank, settings)}.npz"
        if path.is_file():
            try:
                results.append(MacoResult.load(path))
                continue
            except (OSError, ValueError, KeyError):
                pass  # unreadable: optimise again and overwrite
        result = maco(adapter, objective, **maco_kwargs)
        folder.mkdir(parents=True, exist_ok=True)
        result.save_npz(path)
        result.save(path.with_suffix(""))
        results.append(result)
    return results
