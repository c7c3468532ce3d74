"""Maps on grids: resizing onto the input grid, shared by explainers and concept maps."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import ParameterError

_SMOOTH_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}
_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def resize(values: torch.Tensor, size, mode: str = "smooth") -> torch.Tensor:
    """``(N, C, *s) -> (N, C, *size)``: ``"nearest"`` (masks), ``"smooth"`` (linear / bicubic /
    trilinear by the number of spatial dims, ``align_corners=False``; maps onto the input grid) or
    ``"linear"`` (linear / bilinear / trilinear: keeps non-negative maps non-negative)."""
    size = tuple(int(s) for s in size)
    if tuple(values.shape[2:]) == size:
        return values
    if mode == "nearest":
        return F.interpolate(values, size=size, mode="nearest")
    modes = _LINEAR_MODES if mode == "linear" else _SMOOTH_MODES
    return F.interpolate(values, size=size, mode=modes[len(size)], align_corners=False)


def to_input_grid(maps: torch.Tensor, size, what: str = "maps", mode: str = "smooth") -> torch.Tensor:
    """``(N, C, *grid) -> (N, C, *size)`` for maps over a layer's grid.

    A signal model's ``(frequency, time)`` layer (one more grid axis than the input) is averaged
    over frequency first, so its maps become time curves; then the grid is resized smoothly.
    """
    size = tuple(size)
    if maps.ndim == 2 + len(size) + 1 and len(size) == 1:
        maps = maps.mean(2)
    if maps.ndim != 2 + len(size):
        raise ParameterError(f"{what}: the layer's activations {tuple(maps.shape[2:])} have no spatial grid matching"
                             f" the {len(size)}-D input; pick a convolutional (or ViT token) layer")
    return resize(maps, size, mode)
