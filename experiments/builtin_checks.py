"""Training diagnostics: are a built-in model's decisions on a planted set recoverable from its gradients?

Used by ``train_builtin.py`` to accept a trained model and by the data tests.

For Haar at sizes divisible by ``2**J`` the DWT is orthonormal, so the gradient of the target
logit w.r.t. the wavelet coefficients (what WAM differentiates) equals the Haar DWT of the
ordinary input gradient. These checks use PyWavelets directly so they stay independent of the
library's own wavelet code, which they help to validate.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pywt
import torch

from unified_xai.data.datasets import PlantedDataset


def input_gradients(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor,
                    batch_size: int = 64) -> torch.Tensor:
    """Gradient of each item's target logit w.r.t. its input, ``(N, C, *spatial)``."""
    grads = []
    for start in range(0, inputs.shape[0], batch_size):
        x = inputs[start:start + batch_size].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            score = model(x).gather(1, targets[start:start + batch_size].view(-1, 1)).sum()
            grads.append(torch.autograd.grad(score, x)[0].detach())
    return torch.cat(grads)


def haar_level_maps(signal: np.ndarray, levels: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-level |Haar coefficients| of ``(N, C, *spatial)`` arrays.

    Returns
    -------
    shares : ``(N, levels + 1)`` share of the total |coefficient| mass per level, pywt order
        (0 = approximation, 1 = coarsest detail, ..., ``levels`` = finest).
    maps : per detail level in pywt order, ``(N, *spatial)`` |coefficients| summed over channels
        and orientations, upsampled (nearest) back to the input grid.
    """
    ndim = signal.ndim - 2
    axes = tuple(range(-ndim, 0))
    coeffs = pywt.wavedecn(signal, "haar", mode="periodization", level=levels, axes=axes)
    mass = [np.abs(coeffs[0]).reshape(signal.shape[0], -1).sum(1)]
    maps = []
    for k, detail in enumerate(coeffs[1:], start=1):
        level_map = sum(np.abs(band).sum(axis=1) for band in detail.values())
        mass.append(level_map.reshape(signal.shape[0], -1).sum(1))
        factor = 2 ** (levels - k + 1)
        for axis in range(1, ndim + 1):
            level_map = np.repeat(level_map, factor, axis=axis)
        maps.append(level_map)
    mass = np.stack(mass, axis=1)
    return mass / np.maximum(mass.sum(1, keepdims=True), 1e-30), maps


def gradient_recoverability(model: Callable[[torch.Tensor], torch.Tensor], dataset: PlantedDataset,
                            batch_size: int = 64, max_items: int | None = None) -> dict:
    """How often the input gradient of the target logit points at the planted scale and place.

    On every item with class evidence: the Haar level with the largest share of |coefficient
    gradient| must be the planted scale (``scale_hits``), and the where-map (sum over detail
    levels of the upsampled |coefficient gradient| maps) must peak inside the planted mask
    (``where_hits``). ``mass_ratio`` is the where-map mass inside the mask divided by the mask's
    area share (1 = no better than chance).

    Returns
    -------
    dict with ``scale_accuracy``, ``where_accuracy``, ``mass_ratio`` (median), per-class
    ``by_class`` figures, ``mean_shares`` per class ``(levels + 1,)`` and the per-item arrays.
    """
    index = torch.nonzero(dataset.has_evidence).flatten()
    if max_items is not None:
        index = index[:max_items]
    targets = dataset.targets[index]
    grads = input_gradients(model, dataset.inputs[index], targets, batch_size).double().numpy()
    shares, maps = haar_level_maps(grads, dataset.levels)
    where = sum(maps)
    masks = dataset.masks[index].numpy()
    flat_where, flat_mask = where.reshape(len(index), -1), masks.reshape(len(index), -1)
    scale_hits = shares.argmax(1) == dataset.scales[index].numpy()
    where_hits = flat_mask[np.arange(len(index)), flat_where.argmax(1)]
    inside = (flat_where * flat_mask).sum(1) / np.maximum(flat_where.sum(1), 1e-30)
    mass_ratio = inside / flat_mask.mean(1)
    by_class, mean_shares = {}, {}
    for c, name in enumerate(dataset.class_names):
        sel = targets.numpy() == c
        if sel.any():
            by_class[name] = {"n": int(sel.sum()), "scale_accuracy": float(scale_hits[sel].mean()),
                              "where_accuracy": float(where_hits[sel].mean()),
                              "mass_ratio": float(np.median(mass_ratio[sel]))}
            mean_shares[name] = shares[sel].mean(0)
    return {"n": int(len(index)), "scale_accuracy": float(scale_hits.mean()),
            "where_accuracy": float(where_hits.mean()), "mass_ratio": float(np.median(mass_ratio)),
            "by_class": by_class, "mean_shares": mean_shares, "shares": shares, "scale_hits": scale_hits,
            "where_hits": where_hits, "index": index.numpy()}


@torch.no_grad()
def level_ablation_recoverability(model: Callable[[torch.Tensor], torch.Tensor], dataset: PlantedDataset,
                                  max_items: int | None = None) -> dict:
    """How often removing the planted Haar level lowers the target logit most.

    A cheap proxy of Sobol indices over whole wavelet levels: each level (approximation
    included) is zeroed in turn and the drop of the target logit is recorded.
    """
    index = torch.nonzero(dataset.has_evidence).flatten()
    if max_items is not None:
        index = index[:max_items]
    x, targets = dataset.inputs[index], dataset.targets[index]
    ndim = x.ndim - 2
    axes = tuple(range(-ndim, 0))
    coeffs = pywt.wavedecn(x.double().numpy(), "haar", mode="periodization", level=dataset.levels, axes=axes)
    base = model(x).gather(1, targets.view(-1, 1)).squeeze(1)
    drops = []
    for k in range(dataset.levels + 1):
        parts = [c if j != k else (np.zeros_like(c) if j == 0 else {b: np.zeros_like(v) for b, v in c.items()})
                 for j, c in enumerate(coeffs)]
        xk = torch.from_numpy(pywt.waverecn(parts, "haar", mode="periodization", axes=axes)).float()
        drops.append(base - model(xk).gather(1, targets.view(-1, 1)).squeeze(1))
    drops = torch.stack(drops, 1)
    hits = (drops.argmax(1) == dataset.scales[index]).numpy()
    return {"n": int(len(index)), "accuracy": float(hits.mean()), "hits": hits, "drops": drops.numpy()}


@torch.no_grad()
def occlusion_recoverability(model: Callable[[torch.Tensor], torch.Tensor], dataset: PlantedDataset,
                             cells: int = 8, max_items: int | None = 40, batch_size: int = 128) -> dict:
    """How often zeroing one cell of a ``cells``-per-axis grid lowers the target logit most inside the mask.

    A cheap proxy of Sobol attribution with region masks.
    """
    index = torch.nonzero(dataset.has_evidence).flatten()
    if max_items is not None:
        index = index[:max_items]
    spatial = dataset.inputs.shape[2:]
    ndim = len(spatial)
    step = [s // cells for s in spatial]
    grid = np.stack(np.meshgrid(*[np.arange(cells)] * ndim, indexing="ij"), -1).reshape(-1, ndim)
    hits = []
    for i in index.tolist():
        x, target = dataset.inputs[i], int(dataset.targets[i])
        base = model(x[None])[0, target]
        drops = []
        for start in range(0, len(grid), batch_size):
            batch = x[None].repeat(min(batch_size, len(grid) - start), *([1] * (ndim + 1)))
            for b, cell in enumerate(grid[start:start + batch_size]):
                region = tuple(slice(int(c) * s, (int(c) + 1) * s) for c, s in zip(cell, step))
                batch[(b, slice(None)) + region] = 0.0
            drops.append(base - model(batch)[:, target])
        best = grid[int(torch.cat(drops).argmax())]
        region = tuple(slice(int(c) * s, (int(c) + 1) * s) for c, s in zip(best, step))
        hits.append(bool(dataset.masks[i][region].any()))
    hits = np.array(hits)
    return {"n": int(len(hits)), "accuracy": float(hits.mean()), "hits": hits}
