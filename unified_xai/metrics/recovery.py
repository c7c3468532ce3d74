"""Recovery of planted ground truth: does an explanation find where and at what scale the evidence is?

The planted datasets (``ux.data.load_dataset("planted-*")``) know, for every item with class
evidence, its region (``masks``) and its Haar scale (``scales``, pywt level order).
"""
from __future__ import annotations

import torch

from ..core.errors import InputError


def _flat(where: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    where, masks = torch.as_tensor(where).detach().cpu(), torch.as_tensor(masks).cpu()
    if where.shape != masks.shape:
        raise InputError(f"where maps {tuple(where.shape)} and masks {tuple(masks.shape)} must have the same shape")
    return where.flatten(1).double(), masks.flatten(1).bool()


def pointing_game(where: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: the maximum of each where map ``(B, *spatial)`` lies inside its mask."""
    where, masks = _flat(where, masks)
    return masks[torch.arange(where.shape[0]), where.argmax(1)]


def mass_ratio(where: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(B,)``: share of the positive where mass inside the mask over the mask's area share (1 = chance)."""
    where, masks = _flat(where, masks)
    positive = where.clamp_min(0)
    inside = (positive * masks).sum(1) / positive.sum(1).clamp_min(1e-30)
    return inside / masks.double().mean(1).clamp_min(1e-30)


def top_scale_hits(scales: torch.Tensor, true_scales: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: the level with the largest share of ``scales`` ``(B, L)`` is the planted one."""
    return torch.as_tensor(scales).detach().cpu().argmax(1) == torch.as_tensor(true_scales).cpu()


def explanation_recovery(explanation, dataset, index) -> dict:
    """How well an Explanation of planted items recovers their ground truth.

    Parameters
    ----------
    explanation : explanation of ``dataset.inputs[index]`` for ``dataset.targets[index]``.
    dataset : a planted dataset (with ``masks``, ``scales``, ``has_evidence``).
    index : the dataset items that were explained (items without evidence are skipped).

    Returns
    -------
    dict with ``n``; ``where_accuracy`` (pointing game); ``mass_ratio`` (median); ``scale_accuracy``
    (top scale == planted scale; None when the explanation has no ``scales``).
    """
    index = torch.as_tensor(index)
    keep = dataset.has_evidence[index]
    where = explanation.where.detach().cpu()[keep]
    masks = dataset.masks[index][keep]
    result = {"n": int(keep.sum()), "where_accuracy": float(pointing_game(where, masks).double().mean()),
              "mass_ratio": float(mass_ratio(where, masks).median()), "scale_accuracy": None}
    if explanation.scales is not None:
        hits = top_scale_hits(explanation.scales.detach().cpu()[keep], dataset.scales[index][keep])
        result["scale_accuracy"] = float(hits.double().mean())
    return result
