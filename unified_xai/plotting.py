"""Figures of Explanations (kept apart from the math)."""
from __future__ import annotations

import numpy as np
import torch


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _image_view(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) -> something imshow can show (RGB scaled to [0,1], or one channel in gray)."""
    if x.shape[0] == 3:
        rgb = np.moveaxis(x, 0, -1)
        lo, hi = rgb.min(), rgb.max()
        return (rgb - lo) / (hi - lo + 1e-12), None
    return x.mean(0), "gray"


def _volume_slice(v: np.ndarray, index: int | None) -> np.ndarray:
    """Middle axial slice of a (..., D, H, W) array, or the given depth index."""
    depth = v.shape[-3]
    return v[..., depth // 2 if index is None else index, :, :]


def plot_explanation(explanation, index: int = 0, inputs: torch.Tensor | None = None):
    """Input, where map, per-level maps and the per-level share bar chart of one item.

    1D signals are drawn as curves, 2D maps as images, 3D volumes as the axial slice through
    the maximum of the where map.
    """
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where = _np(explanation.where[index])
    ndim = where.ndim
    x = inputs if inputs is not None else explanation.inputs
    x = _np(x[index]) if x is not None else None
    maps = _np(explanation.scale_maps[index]) if explanation.scale_maps is not None else None
    names = explanation.level_names or ([f"level {i}" for i in range(maps.shape[0])] if maps is not None else [])
    depth = None
    if ndim == 3:
        depth = int(np.unravel_index(np.argmax(where), where.shape)[0])

    panels = (x is not None) + 1 + (0 if maps is None else maps.shape[0]) + (explanation.scales is not None)
    cols = min(panels, 4)
    rows = int(np.ceil(panels / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    axes = list(axes.ravel())
    target = int(explanation.targets[index]) if explanation.targets is not None else None
    fig.suptitle(f"{explanation.method} — {explanation.model_id} — target {target}", fontsize=10)

    def show(ax, data, title, cmap="inferno"):
        if ndim == 1:
            ax.plot(data if data.ndim == 1 else data.T)
        else:
            data = _volume_slice(data, depth) if ndim == 3 else data
            if data.ndim == 3:
                data, gray = _image_view(data)
                ax.imshow(data, cmap=gray)
            else:
                ax.imshow(data, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(title + (f" (slice {depth})" if depth is not None else ""), fontsize=9)

    panel = iter(axes)
    if x is not None:
        show(next(panel), x if ndim != 1 else x.mean(0), "input")
    show(next(panel), where, "where")
    if maps is not None:
        for level, name in enumerate(names[: maps.shape[0]]):
            show(next(panel), maps[level], name)
    if explanation.scales is not None:
        ax = next(panel)
        shares = _np(explanation.scales[index])
        ax.bar(range(len(shares)), shares, color="tab:blue")
        ax.set_xticks(range(len(shares)))
        ax.set_xticklabels([n.split(" (")[0].replace("approximation", "approx") for n in names[: len(shares)]],
                           rotation=30, fontsize=7)
        ax.set_title("share per scale", fontsize=9)
    for ax in panel:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY"))
