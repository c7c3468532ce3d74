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


def concept_match(coefficients: torch.Tensor, indicators: torch.Tensor) -> dict:
    """Match learned concepts to planted ones: Hungarian assignment on the cosine between each concept's
    coefficients ``(n, K)`` and each planted concept's indicator ``(n, P)`` over the same n crops.

    Returns ``{"cosines": (P,) cosine of each planted concept with its matched concept (0 when K < P
    leaves it unmatched), "assignment": (P,) the matched concept index (-1 if none), "matrix": (K, P)}``.
    """
    from scipy.optimize import linear_sum_assignment

    u = torch.as_tensor(coefficients).detach().cpu().double()
    t = torch.as_tensor(indicators).detach().cpu().double()
    if u.ndim != 2 or t.ndim != 2 or u.shape[0] != t.shape[0]:
        raise InputError(f"coefficients (n, K) and indicators (n, P) must have the same n rows, got"
                         f" {tuple(u.shape)} and {tuple(t.shape)}")
    cos = (u / u.norm(dim=0).clamp_min(1e-30)).T @ (t / t.norm(dim=0).clamp_min(1e-30))  # (K, P)
    rows, cols = linear_sum_assignment(-cos.numpy())
    cosines = torch.zeros(t.shape[1], dtype=torch.float64)
    assignment = torch.full((t.shape[1],), -1, dtype=torch.long)
    for k, p in zip(rows.tolist(), cols.tolist()):
        cosines[p], assignment[p] = cos[k, p], k
    return {"cosines": cosines, "assignment": assignment, "matrix": cos}


def crop_overlap(masks: torch.Tensor, boxes: torch.Tensor, patch) -> torch.Tensor:
    """``(n,)``: the share of each crop's item mask that lies inside the crop.

    ``masks (N, *spatial)`` bool, ``boxes (n, 1 + ndim)`` as ``Craft.crop_boxes_`` (item index, then the
    window start per axis), ``patch`` the window size per axis.
    """
    masks = torch.as_tensor(masks).cpu().bool()
    boxes = torch.as_tensor(boxes).cpu().long()
    patch = tuple(int(p) for p in patch)
    selected = masks[boxes[:, 0]]
    inside = torch.zeros_like(selected)
    for i, box in enumerate(boxes.tolist()):  # cheap bookkeeping over boxes, not a model path
        region = (i,) + tuple(slice(s, s + p) for s, p in zip(box[1:], patch))
        inside[region] = selected[region]
    total = selected.flatten(1).sum(1).double()
    return inside.flatten(1).sum(1).double() / total.clamp_min(1)


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
