"""Figures of Explanations (kept apart from the math).

:func:`plot_explanation` draws one item of an :class:`~unified_xai.Explanation`:

* a title naming the explained class, the method and its key parameters;
* the input (image, waveform or three orthogonal slices of a volume);
* the ``where`` map with its colour bar (a curve under the waveform for signals);
* with ``scale_maps``: the map of every wavelet level on one shared colour scale (so a level holding
  0 % of the importance looks dark), each titled with its level name and its share;
* with ``scales``: the share of each level as a bar chart whose labels say what the level means
  (approximation = coarse shape ... finest level = fine texture) in physical units (pixels, voxels,
  Hz when the sample rate is known, samples otherwise).

:func:`plot_concept_bank` draws a CRAFT concept bank: per concept (most important first) its importance,
its top crops and its wavelet scale profile.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from .core.errors import InputError

_SEQUENTIAL = "inferno"
_DIVERGING = "RdBu_r"
_SLICE_AXES = ("depth", "height", "width")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


# --------------------------------------------------------------------------------------------------
# what each wavelet level means
# --------------------------------------------------------------------------------------------------
@dataclass
class LevelInfo:
    """One entry of ``scales`` / ``scale_maps``: its name, what it captures and its share (or None)."""

    name: str
    meaning: str
    extent: str
    share: float | None

    @property
    def share_text(self) -> str:
        if self.share is None:
            return ""
        return "< 1 %" if 0 < abs(self.share) < 0.5 else f"{self.share:.0f} %"


def _hz(value: float) -> str:
    return f"{value / 1000:.3g} kHz" if value >= 1000 else f"{value:.3g} Hz"


def _band(lo: float, hi: float) -> str:
    if hi >= 1000 and lo >= 1000:
        return f"{lo / 1000:.3g}–{hi / 1000:.3g} kHz"
    return f"{lo:.3g}–{_hz(hi)}" if hi < 1000 else f"{_hz(lo)}–{_hz(hi)}"


def level_infos(explanation, index: int, ndim: int) -> list[LevelInfo]:
    """Names, meanings, physical extents and shares (in %) of the levels of item ``index``.

    Level ``j`` detail coefficients respond to structures of about ``2**j`` pixels (voxels); for a
    signal sampled at ``sr`` Hz they cover the band ``[sr / 2**(j+1), sr / 2**j]`` Hz and the
    approximation of ``J`` levels everything below ``sr / 2**(J+1)`` Hz.
    """
    if explanation.scales is not None:
        n = int(explanation.scales.shape[1])
    elif explanation.scale_maps is not None:
        n = int(explanation.scale_maps.shape[1])
    else:
        return []
    deepest = n - 1
    names = list(explanation.level_names or [])
    if len(names) != n:
        names = ["approximation"] + [f"level {j}" for j in range(deepest, 0, -1)]
    levels: list[int | None] = []
    for k, name in enumerate(names):
        found = re.search(r"level\s+(\d+)", name)
        if "approx" in name.lower():
            levels.append(None)
        elif found:
            levels.append(int(found.group(1)))
        else:  # unknown naming: assume pywt order (approximation first, then J, ..., 1)
            levels.append(None if k == 0 else deepest - k + 1)
    deepest = max([j for j in levels if j is not None], default=deepest)

    shares: list[float | None] = [None] * n
    if explanation.scales is not None:
        raw = _np(explanation.scales[index]).astype(np.float64)
        total = np.abs(raw).sum()
        shares = [float(100 * v / total) if total > 0 else 0.0 for v in raw]

    unit = {2: "px", 3: "voxels"}.get(ndim, "samples")
    rate = explanation.sample_rate if ndim == 1 else None
    infos = []
    for name, j, share in zip(names, levels, shares):
        if j is None:
            meaning = "coarse shape" if ndim != 1 else "slow trend"
            if rate:
                extent = f"< {_hz(rate / 2 ** (deepest + 1))}"
            elif ndim == 1:
                extent = f"periods > {2 ** (deepest + 1)} samples"
            else:
                extent = f"≥ {2 ** (deepest + 1)} {unit}"
        else:
            if j == 1:
                meaning = "fine texture" if ndim != 1 else "highest frequencies"
            elif j == deepest:
                meaning = "coarse details" if ndim != 1 else "low frequencies"
            else:
                meaning = "mid-size details" if ndim != 1 else "mid frequencies"
            if rate:
                extent = _band(rate / 2 ** (j + 1), rate / 2 ** j)
            elif ndim == 1:
                extent = f"periods {2 ** j}–{2 ** (j + 1)} samples"
            else:
                extent = f"~{2 ** j} {unit}"
        infos.append(LevelInfo(name, meaning, extent, share))
    return infos


# --------------------------------------------------------------------------------------------------
# small drawing helpers
# --------------------------------------------------------------------------------------------------
def level_time_maps(fig, ax, maps: np.ndarray, extent_x, labels: list[str], title: str, colorbar_label: str):
    """A signal's per-level maps ``(levels + 1, T)`` as rows over time, on one colour scale."""
    cmap, lo, hi = _color_scale(list(maps))
    im = ax.imshow(_peak_pool(maps, 1200), aspect="auto", interpolation="nearest", cmap=cmap, vmin=lo, vmax=hi,
                   extent=(extent_x[0], extent_x[1], maps.shape[0] - 0.5, -0.5))
    ax.set_yticks(range(maps.shape[0]))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_title(title, fontsize=9)
    _colorbar(fig, im, ax, colorbar_label)


def level_image_maps(fig, maps: np.ndarray, titles: list[str], colorbar_label: str, interpolation=None):
    """Per-level 2-D maps ``(levels + 1, H, W)`` side by side in ``fig``, on one colour scale and one colour bar."""
    cmap, lo, hi = _color_scale(list(maps))
    axes = fig.subplots(1, maps.shape[0], squeeze=False)[0]
    for ax, level, title in zip(axes, maps, titles):
        im = ax.imshow(level, cmap=cmap, vmin=lo, vmax=hi, interpolation=interpolation)
        ax.set_title(title, fontsize=8)
        _bare(ax)
    _colorbar(fig, im, list(axes), colorbar_label)


def _color_scale(arrays) -> tuple[str, float, float]:
    """(colormap, vmin, vmax) shared by ``arrays``: 0..max for non-negative maps, symmetric otherwise."""
    arrays = [np.asarray(a) for a in arrays]
    lo = min(float(np.nanmin(a)) for a in arrays)
    hi = max(float(np.nanmax(a)) for a in arrays)
    if lo < 0:
        bound = max(-lo, hi) or 1.0
        return _DIVERGING, -bound, bound
    return _SEQUENTIAL, 0.0, hi if hi > 0 else 1.0


def _image(x: np.ndarray) -> tuple[np.ndarray, dict, str]:
    """(C, H, W) input -> (array for imshow, imshow kwargs, note for the title)."""
    channels = x.shape[0]
    if channels == 3:
        rgb = np.moveaxis(x, 0, -1)
        lo, hi = float(rgb.min()), float(rgb.max())
        if lo >= -0.1 and hi <= 1.1:  # a [0, 1] image, perhaps with a little noise past the ends
            clipped = lo < 0 or hi > 1
            return np.clip(rgb, 0, 1), {}, "clipped to [0, 1]" if clipped else ""
        return (rgb - lo) / (hi - lo or 1.0), {}, f"min-max scaled, range {lo:.2g}..{hi:.2g}"
    gray = x[0] if channels == 1 else x.mean(0)
    note = "" if channels == 1 else f"mean of {channels} channels"
    return gray, {"cmap": "gray"}, note


def _colorbar(container, im, axes, label: str = ""):
    """A colour bar for ``im`` beside ``axes`` (one axes or a list sharing it), with small ticks."""
    bar = container.colorbar(im, ax=axes, shrink=0.85, pad=0.02)
    bar.ax.tick_params(labelsize=7)
    if label:
        bar.set_label(label, fontsize=8)
    return bar


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _title(explanation, index: int) -> str:
    names = explanation.target_names
    name = names[index] if names else ""
    if len(name) > 40 and "," in name:  # ImageNet-style "giant panda, panda, panda bear, ...": the first synonym
        name = name.split(",")[0]
    target = f"“{name}”" if names else "no target recorded"
    method = explanation.method or "explanation"
    params = explanation.key_params()
    line = f"{target} — {method}" + (f" ({params})" if params else "")
    details = [f"item {index} of {len(explanation)}"]
    if explanation.model_id:
        details.insert(0, f"model {explanation.model_id}")
    if explanation.targets is not None:
        details.append(f"class index {int(explanation.targets[index])}")
    return line + "\n" + " · ".join(details)


def _scale_bars(ax, infos: list[LevelInfo]) -> None:
    """Horizontal bars of the share of every level, top = approximation, labelled with their meaning."""
    shares = [0.0 if i.share is None else i.share for i in infos]
    ypos = np.arange(len(infos))
    bars = ax.barh(ypos, shares, color="tab:blue", height=0.6)
    ax.set_yticks(ypos)
    ax.set_yticklabels([f"{i.name}\n{i.meaning}, {i.extent}" for i in infos], fontsize=8)
    ax.invert_yaxis()
    top = max(shares + [1.0])
    low = min(shares + [0.0])
    ax.set_xlim(min(0.0, low * 1.3), min(100.0, top * 1.3) if top < 77 else 100.0)
    _signed_bar_labels(ax, bars, infos, 8)
    ax.set_xlabel("share of the importance (%)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title("importance per scale", fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _signed_bar_labels(ax, bars, infos: list[LevelInfo], fontsize: int) -> None:
    """Each bar's share at its end (left of a negative bar), and a zero line when a share is negative:
    a level whose presence lowers the score (measured scale profiles are signed)."""
    for bar, info in zip(bars, infos):  # a negative bar's label goes right of zero, clear of the tick labels
        ax.text(max(bar.get_x() + bar.get_width(), 0.0), bar.get_y() + bar.get_height() / 2, " " + info.share_text,
                va="center", ha="left", fontsize=fontsize)
    if any((i.share or 0) < 0 for i in infos):
        ax.axvline(0, color="black", linewidth=0.6)


def _level_title(info: LevelInfo) -> str:
    share = f" — {info.share_text}" if info.share_text else ""
    return f"{info.name}{share}\n{info.meaning}, {info.extent}"


# --------------------------------------------------------------------------------------------------
# per-modality layouts
# --------------------------------------------------------------------------------------------------
def _plot_image(fig, where, x, maps, infos):
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.05]) if maps is not None else (fig, None)
    widths = ([1.0] if x is not None else []) + [1.2] + ([2.0] if infos else [])
    grid = top.add_gridspec(1, len(widths), width_ratios=widths)
    col = 0
    if x is not None:
        ax = top.add_subplot(grid[0, col])
        data, kwargs, note = _image(x)
        ax.imshow(data, **kwargs)
        ax.set_title("input" + (f"\n({note})" if note else ""), fontsize=9)
        _bare(ax)
        col += 1
    ax = top.add_subplot(grid[0, col])
    cmap, lo, hi = _color_scale([where])
    im = ax.imshow(where, cmap=cmap, vmin=lo, vmax=hi)
    ax.set_title("where (importance)", fontsize=9)
    _bare(ax)
    _colorbar(top, im, ax)
    col += 1
    if infos:
        _scale_bars(top.add_subplot(grid[0, col]), infos)
    if maps is not None:
        level_image_maps(bottom, maps, [_level_title(info) for info in infos], "importance\n(one scale for all levels)")


def _slices(volume: np.ndarray, point: tuple[int, int, int]) -> list[np.ndarray]:
    """Three orthogonal slices of ``(..., D, H, W)`` through ``point``: fixed depth, height, width."""
    d, h, w = point
    return [volume[..., d, :, :], volume[..., :, h, :], volume[..., :, :, w]]


def _slice_labels(point) -> list[tuple[str, str, str, tuple[int, int]]]:
    """(title, x label, y label, (x, y) of the point) of each slice of :func:`_slices`."""
    d, h, w = point
    return [(f"depth slice, d = {d}", "width", "height", (w, h)),
            (f"height slice, h = {h}", "width", "depth", (w, d)),
            (f"width slice, w = {w}", "height", "depth", (h, d))]


def _slice_axes(ax, xlabel, ylabel):
    _bare(ax)
    ax.set_xlabel(xlabel + " →", fontsize=7, labelpad=1)
    ax.set_ylabel("← " + ylabel, fontsize=7, labelpad=1)


def _plot_volume(fig, where, x, maps, infos):
    point = tuple(int(i) for i in np.unravel_index(np.nanargmax(where), where.shape))
    labels = _slice_labels(point)
    n = maps.shape[0] if maps is not None else 0
    rows = (x is not None) + 1 + (maps is not None)
    ncols = max(3, n) + (1 if infos else 0)
    grid = fig.add_gridspec(rows, ncols)
    row = 0
    if x is not None:
        note = ""
        for k, (plane, (title, xl, yl, _)) in enumerate(zip(_slices(x, point), labels)):
            ax = fig.add_subplot(grid[row, k])
            data, kwargs, note = _image(plane)
            ax.imshow(data, **kwargs)
            ax.set_title(f"input: {title}", fontsize=8)
            _slice_axes(ax, xl, yl)
        if note:
            ax.text(1.02, 0.5, note, transform=ax.transAxes, rotation=90, va="center", fontsize=7)
        row += 1
    cmap, lo, hi = _color_scale([where])
    axes = []
    for k, (plane, (title, xl, yl, (px, py))) in enumerate(zip(_slices(where, point), labels)):
        ax = fig.add_subplot(grid[row, k])
        im = ax.imshow(plane, cmap=cmap, vmin=lo, vmax=hi)
        ax.plot(px, py, marker="+", color="cyan", markersize=10, markeredgewidth=1.5)
        ax.set_title(f"where: {title}", fontsize=8)
        _slice_axes(ax, xl, yl)
        axes.append(ax)
    _colorbar(fig, im, axes, "where (importance)")
    row += 1
    if maps is not None:
        cmap, lo, hi = _color_scale(list(maps))
        axes = []
        title, xl, yl, (px, py) = labels[0]
        for k in range(n):
            ax = fig.add_subplot(grid[row, k])
            im = ax.imshow(_slices(maps[k], point)[0], cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(_level_title(infos[k]), fontsize=8)
            _slice_axes(ax, xl, yl)
            axes.append(ax)
        _colorbar(fig, im, axes, f"importance, {title}\n(one scale for all levels)")
    if infos:
        _scale_bars(fig.add_subplot(grid[:min(rows, 2), ncols - 1]), infos)
    return f"slices through the maximum of the where map (+) at (depth, height, width) = {point}"


def _peak_pool(maps: np.ndarray, bins: int) -> np.ndarray:
    """``(levels, T)`` -> ``(levels, <= bins)``: each bin keeps its value of largest magnitude, so a
    one-sample peak stays visible when thousands of samples share a few hundred pixels."""
    length = maps.shape[-1]
    if length <= bins:
        return maps
    starts = np.linspace(0, length, bins + 1).astype(int)[:-1]
    high = np.maximum.reduceat(maps, starts, axis=-1)
    low = np.minimum.reduceat(maps, starts, axis=-1)
    return np.where(np.abs(low) > np.abs(high), low, high)


def _plot_signal(fig, where, x, maps, infos, sample_rate):
    length = where.shape[-1]
    if sample_rate:
        t = np.arange(length) / sample_rate
        xlabel = "time (s)"
        extent_x = (0.0, length / sample_rate)
    else:
        t = np.arange(length)
        xlabel = "time (samples)"
        extent_x = (0.0, float(length))
    heights = ([1.0] if x is not None else []) + [1.0] + ([0.3 + 0.25 * maps.shape[0]] if maps is not None else [])
    rows = len(heights)
    ncols = 2 if infos else 1
    grid = fig.add_gridspec(rows, ncols, height_ratios=heights, width_ratios=[3, 1] if infos else [1])
    axes = []
    row = 0
    if x is not None:
        ax = fig.add_subplot(grid[row, 0])
        channels = x.reshape(-1, length)
        shown = channels if channels.shape[0] <= 4 else channels.mean(0, keepdims=True)
        for c, wave in enumerate(shown):
            ax.plot(t, wave, lw=0.6, color="0.25" if shown.shape[0] == 1 else None,
                    label=f"channel {c}" if shown.shape[0] > 1 else None)
        if shown.shape[0] > 1:
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title("input waveform" + (f" (mean of {channels.shape[0]} channels)" if shown is not channels else ""),
                     fontsize=9)
        ax.set_ylabel("amplitude", fontsize=8)
        axes.append(ax)
        row += 1
    ax = fig.add_subplot(grid[row, 0], sharex=axes[0] if axes else None)
    if np.nanmin(where) >= 0:
        ax.fill_between(t, where, color="tab:orange", alpha=0.5, lw=0)
        ax.set_ylim(bottom=0)
    ax.plot(t, where, color="tab:red", lw=0.7)
    ax.set_title("where (importance over time)", fontsize=9)
    ax.set_ylabel("importance", fontsize=8)
    axes.append(ax)
    row += 1
    if maps is not None:
        ax = fig.add_subplot(grid[row, 0], sharex=axes[0])
        level_time_maps(fig, ax, maps, extent_x,
                        [f"{i.name}" + (f" — {i.share_text}" if i.share_text else "") + f"\n{i.extent}" for i in infos],
                        "importance per level over time (one colour scale)", "importance\n(one scale)")
        axes.append(ax)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    for ax in axes:
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel(xlabel, fontsize=8)
    if infos:
        _scale_bars(fig.add_subplot(grid[: max(rows - 1, 1), 1]), infos)


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
def _item_inputs(explanation, index: int, inputs) -> np.ndarray | None:
    source = inputs if inputs is not None else explanation.inputs
    if source is None:
        return None
    if isinstance(source, np.ndarray):
        source = torch.from_numpy(source)
    if not isinstance(source, torch.Tensor):
        raise InputError(f"inputs must be a tensor (B, C, *spatial) or (C, *spatial), got {type(source).__name__}")
    spatial = tuple(explanation.where.shape[1:])
    if source.ndim == len(spatial) + 2:
        if source.shape[0] != len(explanation):
            raise InputError(f"inputs hold {source.shape[0]} items but the explanation has {len(explanation)} items;"
                             f" pass the batch that was explained, or one item (C, *spatial)")
        source = source[index]
    elif source.ndim != len(spatial) + 1:
        raise InputError(f"inputs of shape {tuple(source.shape)} do not match the explanation's spatial shape"
                         f" {spatial}; pass (B, C, *spatial) or one item (C, *spatial)")
    if tuple(source.shape[1:]) != spatial:
        raise InputError(f"inputs of spatial shape {tuple(source.shape[1:])} differ from the explanation's {spatial};"
                         f" pass the inputs that were explained")
    return _np(source)


def plot_explanation(explanation, index: int = 0, inputs: torch.Tensor | None = None):
    """Figure of item ``index``: input, where map, per-level maps and the share of every scale.

    Parameters
    ----------
    explanation : an :class:`~unified_xai.Explanation`.
    index : which item of the batch.
    inputs : the explained inputs ``(B, C, *spatial)`` (or one item ``(C, *spatial)``) when the
        explanation does not store them in ``explanation.inputs``; the input panel is left out without them.

    Returns the :class:`matplotlib.figure.Figure` (not shown: call ``fig.savefig`` or ``plt.show()``).
    1D signals are drawn against time (seconds with ``explanation.sample_rate``), 2D maps as images,
    3D volumes as three orthogonal slices through the maximum of the where map.
    """
    import matplotlib.pyplot as plt

    size = len(explanation)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -size <= index < size:
        raise InputError(f"index must be an integer in [0, {size}) for an explanation of {size} items, got {index!r}")
    index = int(index) % size
    where = _np(explanation.where[index])
    ndim = where.ndim
    if ndim not in (1, 2, 3):
        raise InputError(f"cannot plot a where map with {ndim} spatial dimensions; 1 (signals), 2 (images)"
                         f" and 3 (volumes) are supported")
    x = _item_inputs(explanation, index, inputs)
    maps = _np(explanation.scale_maps[index]) if explanation.scale_maps is not None else None
    infos = level_infos(explanation, index, ndim)
    if maps is not None and len(infos) != maps.shape[0]:
        raise InputError(f"the explanation has {maps.shape[0]} scale maps but {len(infos)} scale shares;"
                         f" scales and scale_maps must describe the same levels")

    if ndim == 1:
        figsize = (12, 2.2 + 1.6 * (x is not None) + 1.6 + (0.9 + 0.3 * maps.shape[0] if maps is not None else 0))
    elif ndim == 2:
        cols = max(maps.shape[0], 4) if maps is not None else 1 + (x is not None) + bool(infos)
        figsize = (max(3.0 * cols, 7.0), 3.6 if maps is None else 7.0)
    else:
        cols = max(3, maps.shape[0] if maps is not None else 0) + bool(infos)
        rows = (x is not None) + 1 + (maps is not None)
        figsize = (3.0 * cols + 1.0, 2.9 * rows + 0.9)
    fig = plt.figure(figsize=figsize, layout="constrained")
    if ndim == 1:
        note = _plot_signal(fig, where, x, maps, infos, explanation.sample_rate)
    elif ndim == 2:
        note = _plot_image(fig, where, x, maps, infos)
    else:
        note = _plot_volume(fig, where, x, maps, infos)
    fig.suptitle(_title(explanation, index) + (f"\n{note}" if note else ""), fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------------
# concept banks (CRAFT)
# --------------------------------------------------------------------------------------------------
#: top crops shown per concept
CONCEPT_CROPS = 6


def _short_class(name: str | None) -> str:
    """``"tabby, tabby cat"`` -> ``"tabby"`` for long ImageNet-style names (the first synonym)."""
    if name and len(name) > 40 and "," in name:
        return name.split(",")[0]
    return name or ""


def _crop_range(crops: np.ndarray) -> tuple[float, float, str]:
    """One display range for all the crops of a figure, so that colours compare across crops: [0, 1]
    (clipped) when the bulk of the values lies there (images in [0, 1] with a little overshoot), else
    the common min..max."""
    lo, hi = np.percentile(crops, [1, 99])
    if lo >= -0.1 and hi <= 1.1:
        clipped = float(crops.min()) < 0 or float(crops.max()) > 1
        return 0.0, 1.0, "values clipped to [0, 1]" if clipped else ""
    lo, hi = float(crops.min()), float(crops.max())
    return lo, hi if hi > lo else lo + 1.0, f"values {lo:.2g}..{hi:.2g} scaled to the colour range"


def _draw_crop(ax, crop: np.ndarray, sample_rate: float | None, span: tuple[float, float] | None = None) -> None:
    """One crop ``(C, *patch)``: an image, a waveform (signals) or the middle depth slice (volumes);
    ``span`` is the value range shown: black..white (images and volumes), the amplitude axis (signals)."""
    ndim = crop.ndim - 1
    if ndim == 1:
        if span is not None:
            ax.set_ylim(*span)
        length = crop.shape[-1]
        t = np.arange(length) / sample_rate * 1000 if sample_rate else np.arange(length)
        waves = crop if crop.shape[0] <= 3 else crop.mean(0, keepdims=True)
        for wave in waves:
            ax.plot(t, wave, lw=0.5, color="0.2" if waves.shape[0] == 1 else None)
        ax.set_xlim(t[0], t[-1] if length > 1 else t[0] + 1)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
        ax.set_xlabel("ms" if sample_rate else "samples", fontsize=6, labelpad=0)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        return
    if ndim == 3:
        crop = crop[:, crop.shape[1] // 2]
    lo, hi = span if span is not None else (float(crop.min()), float(crop.max()) or 1.0)
    if crop.shape[0] == 3:
        ax.imshow(np.clip((np.moveaxis(crop, 0, -1) - lo) / (hi - lo), 0, 1), interpolation="nearest")
    else:
        gray = crop[0] if crop.shape[0] == 1 else crop.mean(0)
        ax.imshow(gray, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    _bare(ax)


def _profile_bars(ax, infos: list[LevelInfo], last: bool) -> None:
    """Compact horizontal bars of a scale profile (one line per level: name and extent)."""
    shares = [0.0 if i.share is None else i.share for i in infos]
    ypos = np.arange(len(infos))
    bars = ax.barh(ypos, shares, color="tab:blue", height=0.65)
    ax.set_yticks(ypos)
    ax.set_yticklabels([f"{i.name.replace(' (coarsest)', ' coarsest').replace(' (finest)', ' finest')}, {i.extent}"
                        for i in infos], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, min(shares + [0.0]) * 1.2), 100)
    _signed_bar_labels(ax, bars, infos, 7)
    ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
    if last:
        ax.set_xlabel("share of the concept's importance (%)", fontsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def plot_concept_bank(bank, scale_profiles=None, level_names=None, class_name: str | None = None,
                      sample_rate: float | None = None, n_crops: int = CONCEPT_CROPS, title: str | None = None,
                      maco_images=None):
    """Figure of a CRAFT concept bank: one row per concept, most important first.

    Each row shows the concept's importance (a bar, all rows on one scale, with its value), its top
    crops (the crops of the class images whose coefficient on the concept is largest; images as
    images, signals as waveforms, volumes as their middle depth slice) and, with ``scale_profiles``,
    its wavelet scale profile (share of WAM's importance per level, e.g. the mean over the class
    images of ``wam`` on ``craft.objective(k)``).

    Parameters
    ----------
    bank : a :class:`~unified_xai.concepts.ConceptBank` (or a fitted ``Craft``, whose ``bank_`` is used).
    scale_profiles : ``(K, levels + 1)`` per concept, in the order of ``scales`` (approximation first);
        None leaves the column out.
    level_names : the names of the levels (``explanation.level_names``); default approximation, level J ... 1.
    class_name : the class shown in the title (default ``bank.class_name``, else its index).
    sample_rate : Hz, for signal crops (their time axis in ms) and the frequency bands of the levels.
    n_crops : top crops shown per concept (at most those stored in the bank).
    title : a first title line replacing the default one (class, model, layer).
    maco_images : MACO visualisations of the first concepts (``MacoResult`` objects, most important first;
        fewer than K leaves the other rows empty), drawn with their transparency in a last column.

    Returns the :class:`matplotlib.figure.Figure` (not shown: call ``fig.savefig`` or ``plt.show()``).
    """
    import matplotlib.pyplot as plt
    from types import SimpleNamespace

    bank = getattr(bank, "bank_", bank)
    importances = _np(torch.as_tensor(bank.importances_)).reshape(-1)
    K = importances.shape[0]
    crops = bank.top_crop_images_
    if crops is not None:
        crops = _np(torch.as_tensor(crops))
        if crops.ndim < 4 or crops.shape[0] != K:
            raise InputError(f"top_crop_images_ must be (K, n_top, C, *patch) with K = {K} concepts, got"
                             f" {tuple(crops.shape)}")
        crops = crops[:, :max(0, int(n_crops))]
    shown = 0 if crops is None else crops.shape[1]
    ndim = crops.ndim - 3 if crops is not None else 2
    span, span_note = None, ""
    if shown and ndim != 1:
        *span, span_note = _crop_range(crops)
    elif shown:  # waveforms on one amplitude scale
        peak = float(np.abs(crops).max()) or 1.0
        span = (-1.05 * peak, 1.05 * peak)
    profiles = None
    if scale_profiles is not None:
        profiles = torch.as_tensor(scale_profiles, dtype=torch.float32).detach().cpu()
        if profiles.ndim != 2 or profiles.shape[0] != K:
            raise InputError(f"scale_profiles must be (K, levels + 1) with K = {K} concepts, got"
                             f" {tuple(profiles.shape)}")
        if level_names is not None and len(level_names) != profiles.shape[1]:
            raise InputError(f"{len(level_names)} level names for {profiles.shape[1]} levels in scale_profiles")
        holder = SimpleNamespace(scales=profiles, scale_maps=None, level_names=list(level_names or []),
                                 sample_rate=sample_rate)

    maco_images = list(maco_images or [])[:K]
    crop_width = 1.9 if ndim == 1 else 1.25
    widths = [1.5] + [crop_width] * shown + ([2.9] if profiles is not None else []) + ([1.4] if maco_images else [])
    height = 1.3 if profiles is None or profiles.shape[1] <= 5 else 1.5
    fig = plt.figure(figsize=(sum(widths) + 1.2, height * K + 1.1), layout="constrained")
    grid = fig.add_gridspec(K, len(widths), width_ratios=widths)
    top = float(importances.max()) if K and float(importances.max()) > 0 else 1.0
    for k in range(K):
        ax = fig.add_subplot(grid[k, 0])
        ax.barh([0], [importances[k]], color="tab:orange", height=0.5)
        ax.text(importances[k], 0, f" {importances[k]:.2f}", va="center", ha="left", fontsize=8)
        ax.set_xlim(0, top * 1.45)
        ax.set_ylim(-0.6, 0.6)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.set_title(f"concept {k}\n(importance {importances[k]:.2f})", fontsize=9, loc="left", fontweight="bold")
        if k == K - 1:
            ax.set_xlabel("importance\n(total Sobol index)", fontsize=7)  # two lines: the column is narrow
        for j in range(shown):
            cell = fig.add_subplot(grid[k, 1 + j])
            _draw_crop(cell, crops[k, j], sample_rate, span)
            if k == 0:
                cell.set_title(f"top crop {j + 1}", fontsize=8)
        if maco_images and k < len(maco_images):
            ax = fig.add_subplot(grid[k, len(widths) - 1])
            _bare(ax)
            ax.imshow(_np(maco_images[k].rgba()))
            if k == 0:
                ax.set_title("MACO (its direction)", fontsize=8)
        if profiles is not None:
            ax = fig.add_subplot(grid[k, 1 + shown])
            _profile_bars(ax, level_infos(holder, k, ndim), last=k == K - 1)
            if not float(profiles[k].abs().sum()) > 0:
                ax.text(50, (profiles.shape[1] - 1) / 2, "no profile: the concept's coefficient\nis 0 in these images"
                        " (no gradient)", ha="center", va="center", fontsize=7, color="0.35")
            if k == 0:
                ax.set_title("scale profile (WAM on the concept)", fontsize=8)
    name = class_name if class_name is not None else (bank.class_name or f"class {bank.class_id}")
    head = title or (f"concepts of “{_short_class(name)}” (class {bank.class_id}) — model {bank.model_id or '?'},"
                     f" layer {bank.layer}")
    n_total = None if bank.crop_boxes_ is None else int(bank.crop_boxes_.shape[0])
    detail = [f"{K} concepts, most important first"]
    if n_total is not None:
        n_items = None if bank.importances_per_image_ is None else int(bank.importances_per_image_.shape[0])
        what = ("image" if ndim == 2 else "input") + ("" if n_items == 1 else "s")
        detail.append(f"NMF of {n_total} crops" + (f" of {n_items} {what}" if n_items is not None else ""))
    if shown:
        notes = (["middle depth slice"] if ndim == 3 else []) + ([span_note] if span_note else [])
        detail.append("crops most expressing each concept" + (f" ({'; '.join(notes)})" if notes else ""))
    fig.suptitle(head + "\n" + " · ".join(detail), fontsize=10)
    return fig


def save_rgb_png(image, path) -> None:
    """Write ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA values in [0, 1] to a PNG file, atomically."""
    import matplotlib.image

    from .core.storage import atomic_write

    array = np.clip(_np(torch.as_tensor(image).float()), 0.0, 1.0)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"save_rgb_png expects (H, W, 3) or (H, W, 4) values, got {array.shape}")
    with atomic_write(path) as handle:
        matplotlib.image.imsave(handle, array, format="png")


def plot_maco(results, titles=None, columns: int | None = None, with_alpha: bool = True):
    """Figure of MACO visualisations: per result its image and, with ``with_alpha``, the image with its
    transparency (the accumulated |gradient|: where the objective reads the picture) over a checkerboard.

    ``results``: one :class:`~unified_xai.featviz.MacoResult` or a list; ``titles``: one per result
    (default: each objective's description). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    results = list(results) if isinstance(results, (list, tuple)) else [results]
    titles = list(titles) if titles is not None else [r.objective for r in results]
    if len(titles) != len(results):
        raise InputError(f"{len(titles)} titles for {len(results)} MACO results")
    per = 2 if with_alpha else 1
    columns = columns or min(len(results), 4)
    rows = -(-len(results) // columns)
    fig, axes = plt.subplots(rows, columns * per, figsize=(2.3 * columns * per, 2.5 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        _bare(ax)
    for ax in axes.flat[len(results) * per:]:
        ax.set_visible(False)
    for i, (result, title) in enumerate(zip(results, titles)):
        row, col = divmod(i, columns)
        ax = axes[row, col * per]
        display = _np(result.display())
        ax.imshow(display[..., 0] if display.shape[2] == 1 else display, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        if with_alpha:
            ax = axes[row, col * per + 1]
            height, width = display.shape[:2]
            checker = (np.add.outer(np.arange(height) // 8, np.arange(width) // 8) % 2) * 0.25 + 0.6
            ax.imshow(checker, cmap="gray", vmin=0, vmax=1)
            ax.imshow(_np(result.rgba()))
            ax.set_title("with transparency", fontsize=8)
    return fig
