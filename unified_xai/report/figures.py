"""The PNG figures of the report's static site (``site.py``), one per page section.

Each function draws one section of a page and writes it atomically as a small PNG (``DPI`` dots per
inch), with titles, colour bars, class names and level names so that a person can read it alone:

* :func:`thumbnail` — the small picture of an input in the index table (no matplotlib: PIL);
* :func:`input_picture` / :func:`input_figure` — the input as the model saw it (an image; a waveform and
  its spectrogram; three orthogonal slices of a volume);
* :func:`explanation_figure` — one explainer's answer: the where map with its colour bar (over the
  waveform and the spectrogram for audio, through the maximum of the map for volumes), the map of each
  wavelet level and the scale profile as signed bars labelled with the level names;
* :func:`concepts_figure` — the top concepts of the predicted class in this input: where each lies, its own
  scale profile here, the class's MACO image of it and its top crops;
* :func:`rebuilt_figure` — the input beside the input rebuilt from its most important wavelet coefficients;
* :func:`atlas_figure` — a class's concept atlas (:func:`unified_xai.plotting.plot_concept_bank`).

Figures are built on :class:`matplotlib.figure.Figure` (the Agg canvas, no pyplot state), except the atlas
which pyplot draws and which is closed after saving.
"""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch

from ..core.errors import InputError
from ..core.storage import atomic_write
from ..plotting import (
    _bare, _color_scale, _colorbar, _crop_range, _draw_crop, _peak_pool, _slice_labels, _slices, level_image_maps,
    level_infos, level_time_maps,
)

#: dots per inch of every figure (small PNGs, still readable at 100 % zoom)
DPI = 90
#: top crops shown per concept on an input page (the class page shows more)
INPUT_PAGE_CROPS = 4
_WHERE_COLOR = "tab:orange"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _np(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy()
    return np.nan_to_num(np.asarray(value, dtype=np.float64))


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically); pyplot figures are closed afterwards."""
    path = Path(path)
    try:
        with atomic_write(path) as handle:
            fig.savefig(handle, format="png", dpi=DPI)
    finally:
        if getattr(fig, "number", None) is not None:  # made by pyplot: release it
            import matplotlib.pyplot as plt

            plt.close(fig)
    return path


def short_name(name: str) -> str:
    """``"tabby, tabby cat"`` -> ``"tabby"`` for long ImageNet-style names (the first synonym)."""
    name = str(name)
    return name.split(",")[0] if len(name) > 30 and "," in name else name


def display_span(*arrays: np.ndarray) -> tuple[float, float]:
    """One value range for showing ``arrays`` as pictures: [0, 1] when the bulk of the values lies
    there (images in [0, 1] with a little noise past the ends), else their common min..max."""
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    lo, hi = np.percentile(values, [1, 99])
    if lo >= -0.1 and hi <= 1.1:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    return lo, hi if hi > lo else lo + 1.0


def to_rgb(x: np.ndarray, span: tuple[float, float] | None = None) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W, 3)`` in [0, 1]: RGB as is, one channel as grey, other counts their mean."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = span if span is not None else display_span(x)
    picture = np.moveaxis(x, 0, -1) if x.shape[0] == 3 else (x[0] if x.shape[0] == 1 else x.mean(0))[..., None]
    picture = np.clip((picture - lo) / (hi - lo or 1.0), 0.0, 1.0)
    return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture


def _share_text(share: float) -> str:
    if share == 0:
        return "0 %"
    if abs(share) < 0.05:
        return "≈ 0 %"
    text = f"{share:.0f} %" if abs(share) >= 10 else f"{share:.1f} %"
    return text.replace("-", "−")


def _level_label(name: str) -> str:
    return name.replace(" (coarsest)", ", coarsest").replace(" (finest)", ", finest")


def profile_infos(scales, level_names: Sequence[str] | None, ndim: int, sample_rate: float | None = None,
                  index: int = 0):
    """:func:`~unified_xai.plotting.level_infos` of row ``index`` of a ``(n, levels + 1)`` scale profile."""
    scales = torch.as_tensor(scales, dtype=torch.float32).detach().cpu()
    if scales.ndim == 1:
        scales = scales[None]
    holder = SimpleNamespace(scales=scales, scale_maps=None, level_names=list(level_names or []),
                             sample_rate=sample_rate)
    return level_infos(holder, index, ndim)


def scale_bars(ax, infos, compact: bool = False, title: str | None = "importance per scale") -> None:
    """Horizontal bars of the share of every level (top: the approximation), labelled with the level
    names and what they capture. Shares are signed: a level whose presence lowers the score has a
    negative share and draws as a red bar left of the zero line."""
    shares = [0.0 if i.share is None else float(i.share) for i in infos]
    ypos = np.arange(len(infos))
    colors = ["tab:blue" if s >= 0 else "tab:red" for s in shares]
    bars = ax.barh(ypos, shares, color=colors, height=0.62)
    size = 7 if compact else 8
    if compact:
        labels = [f"{_level_label(i.name)}\n{i.extent}" for i in infos]
    else:
        labels = [f"{_level_label(i.name)}\n{i.meaning}, {i.extent}" for i in infos]
    ax.set_yticks(ypos)
    ax.set_yticklabels(labels, fontsize=size)
    ax.invert_yaxis()
    low, high = min(shares + [0.0]), max(shares + [0.0])
    span = (high - low) or 1.0
    margin = 0.38 * span if compact else 0.28 * span  # room for the value labels beside the bars
    if not any(shares):
        ax.set_xlim(0, 100)
    else:
        ax.set_xlim(low - margin if low < -0.1 * span else min(0.0, low) - 0.02 * span,
                    high + margin if high > 0 else margin)
    for bar, share in zip(bars, shares):
        # the value beside the bar's end: right of a positive bar, left of a negative one; right of the zero
        # line when the bar is too short to see (so the text never runs into the level names)
        left = share < 0 and -share >= 0.1 * span
        ax.text(share if left else max(share, 0.0), bar.get_y() + bar.get_height() / 2,
                (_share_text(share) + " ") if left else (" " + _share_text(share)), va="center",
                ha="right" if left else "left", fontsize=size)
    ax.axvline(0, color="black", linewidth=0.7)
    ax.tick_params(axis="x", labelsize=size - 1)
    xlabel = "share of the importance (%)"
    if any(s < 0 for s in shares):
        xlabel += "\nred: the level lowers the score"
    ax.set_xlabel(xlabel, fontsize=size)
    if not any(shares):
        ax.text(0.5, 0.5, "no scale profile:\nevery share is 0", transform=ax.transAxes, ha="center",
                va="center", fontsize=size, color="0.35")
    if title:
        ax.set_title(title, fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def where_point(where: np.ndarray) -> tuple[int, ...]:
    """Position of the maximum of a map (the slices of a volume go through it)."""
    where = np.asarray(where)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(where)), where.shape))


def _time_axis(length: int, sample_rate: float | None) -> tuple[np.ndarray, str]:
    if sample_rate:
        return np.arange(length) / sample_rate, "time (s)"
    return np.arange(length, dtype=np.float64), "time (samples)"


def spectrogram(wave: np.ndarray, sample_rate: float | None) -> tuple[np.ndarray, tuple[float, ...], str]:
    """Power spectrogram in dB of a 1D signal: (array (freq, time), imshow extent, frequency axis label)."""
    from scipy.signal import spectrogram as _spectrogram

    rate = float(sample_rate) if sample_rate else 1.0
    length = wave.shape[-1]
    nperseg = int(min(256, max(16, 2 ** math.floor(math.log2(max(length // 8, 16))))))
    freqs, _, power = _spectrogram(wave, fs=rate, nperseg=nperseg, noverlap=nperseg * 3 // 4, mode="psd")
    db = 10 * np.log10(power + 1e-12)
    extent = (0.0, length / rate, float(freqs[0]), float(freqs[-1]))
    if sample_rate:
        if freqs[-1] >= 2000:
            extent = (extent[0], extent[1], extent[2] / 1000, extent[3] / 1000)
            return db, extent, "frequency (kHz)"
        return db, extent, "frequency (Hz)"
    return db, extent, "frequency (cycles / sample)"


def _draw_spectrogram(fig, ax, wave, sample_rate, vrange=None, colorbar: bool = True):
    db, extent, ylabel = spectrogram(wave, sample_rate)
    top = float(db.max()) if vrange is None else vrange[1]
    bottom = max(float(db.min()), top - 80.0) if vrange is None else vrange[0]
    im = ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=bottom, vmax=top,
                   interpolation="nearest")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if colorbar:
        _colorbar(fig, im, ax, "power (dB)")
    return (bottom, top)


def _mono(x: np.ndarray) -> np.ndarray:
    """``(C, T)`` -> ``(T,)``: the channel, or the mean of the channels."""
    x = np.asarray(x).reshape(-1, np.asarray(x).shape[-1])
    return x[0] if x.shape[0] == 1 else x.mean(0)


def _curve(ax, t, values, color=_WHERE_COLOR, label="importance"):
    """A where curve (peak-pooled to the pixels it gets), filled down to 0 when non-negative."""
    pooled = _peak_pool(values[None], 1500)[0]
    tt = np.linspace(t[0], t[-1], pooled.shape[0]) if pooled.shape[0] != t.shape[0] else t
    if pooled.min() >= 0:
        ax.fill_between(tt, pooled, color=color, alpha=0.35, lw=0)
        ax.set_ylim(0, float(pooled.max()) * 1.08 or 1.0)
    ax.plot(tt, pooled, color=color, lw=0.9)
    ax.set_ylabel(label, fontsize=8, color=color)
    ax.tick_params(axis="y", labelsize=7, colors=color)


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------
def _save_pil(rgb: np.ndarray, path: Path, min_side: int, max_side: int) -> Path:
    from PIL import Image

    image = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    height, width = rgb.shape[:2]
    longest = max(height, width)
    if longest < min_side:
        factor = math.ceil(min_side / longest)
        image = image.resize((width * factor, height * factor), Image.NEAREST)
    elif longest > max_side:
        scale = max_side / longest
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.LANCZOS)
    with atomic_write(path) as handle:
        image.save(handle, format="PNG", optimize=True)
    return Path(path)


def _volume_strip(x: np.ndarray, point: Sequence[int], span) -> np.ndarray:
    """Three orthogonal slices of ``(C, D, H, W)`` through ``point``, side by side (white gaps)."""
    planes = [to_rgb(p, span) for p in _slices(x, tuple(point))]
    height = max(p.shape[0] for p in planes)
    gap = np.ones((height, 2, 3))
    padded = []
    for p in planes:
        pad = np.ones((height - p.shape[0], p.shape[1], 3))
        padded += [np.concatenate([p, pad], 0), gap]
    return np.concatenate(padded[:-1], 1)


def thumbnail(x, ndim: int, path, sample_rate: float | None = None, point: Sequence[int] | None = None) -> Path:
    """Small picture of one input ``(C, *spatial)`` for the index table: the image, the waveform, or
    three orthogonal slices of a volume (through ``point``, default its centre)."""
    x = _np(x)
    path = Path(path)
    if ndim == 2:
        return _save_pil(to_rgb(x), path, min_side=96, max_side=128)
    if ndim == 3:
        point = point if point is not None else tuple(s // 2 for s in x.shape[1:])
        return _save_pil(_volume_strip(x, point, display_span(x)), path, min_side=150, max_side=240)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.8, 0.6))
    ax = fig.add_axes((0, 0, 1, 1))
    wave = _mono(x)
    pooled_hi = _peak_pool(np.maximum(wave, 0)[None], 300)[0]
    pooled_lo = _peak_pool(np.minimum(wave, 0)[None], 300)[0]
    t = np.arange(pooled_hi.shape[0])
    ax.fill_between(t, pooled_lo, pooled_hi, color="0.25", lw=0)
    ax.set_xlim(0, t[-1] if t.shape[0] > 1 else 1)
    peak = float(np.abs(wave).max()) or 1.0
    ax.set_ylim(-peak, peak)
    ax.axis("off")
    return save(fig, path)


def input_picture(x, path) -> Path:
    """An image input ``(C, H, W)`` as a PNG picture (enlarged when small, pixels kept sharp)."""
    return _save_pil(to_rgb(_np(x)), Path(path), min_side=256, max_side=512)


def input_figure(x, ndim: int, path, sample_rate: float | None = None, point: Sequence[int] | None = None,
                 title: str = "input") -> Path:
    """A signal as its waveform and spectrogram; a volume as three orthogonal slices (through ``point``)."""
    x = _np(x)
    if ndim == 2:
        return input_picture(x, path)
    if ndim == 1:
        fig = _figure(10, 3.6)
        grid = fig.add_gridspec(2, 1, height_ratios=[1, 1.3])
        t, xlabel = _time_axis(x.shape[-1], sample_rate)
        ax = fig.add_subplot(grid[0])
        channels = x.reshape(-1, x.shape[-1])
        for c, wave in enumerate(channels[:4]):
            ax.plot(t, wave, lw=0.5, color="0.25" if channels.shape[0] == 1 else None,
                    label=f"channel {c}" if channels.shape[0] > 1 else None)
        if channels.shape[0] > 1:
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xlim(t[0], t[-1])
        ax.set_ylabel("amplitude", fontsize=8)
        ax.tick_params(labelsize=7, labelbottom=False)
        ax.set_title(f"{title}: waveform", fontsize=9)
        ax = fig.add_subplot(grid[1])
        _draw_spectrogram(fig, ax, _mono(x), sample_rate)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title("spectrogram" + (" (mean of the channels)" if channels.shape[0] > 1 else ""), fontsize=9)
        return save(fig, path)
    point = tuple(point) if point is not None else tuple(s // 2 for s in x.shape[1:])
    fig = _figure(9, 3.1)
    span = display_span(x)
    axes = fig.subplots(1, 3)
    for ax, plane, (name, xl, yl, (px, py)) in zip(axes, _slices(x, point), _slice_labels(point)):
        ax.imshow(to_rgb(plane, span), interpolation="nearest")
        ax.plot(px, py, marker="+", color="cyan", markersize=9, markeredgewidth=1.4)
        ax.set_title(name, fontsize=9)
        _bare(ax)
        ax.set_xlabel(xl + " →", fontsize=8)
        ax.set_ylabel("← " + yl, fontsize=8)
    fig.suptitle(f"{title}: orthogonal slices through (depth, height, width) = {point} (+)", fontsize=10)
    return save(fig, path)


# --------------------------------------------------------------------------------------------------
# one explainer's answer
# --------------------------------------------------------------------------------------------------
def explanation_figure(explanation, x, ndim: int, path, sample_rate: float | None = None,
                       title: str = "") -> Path:
    """One explainer's answer for one input: the where map (colour bar), the per-level maps when the
    explanation has them, and its scale profile (signed bars, level names) when it has one."""
    where = _np(explanation.where[0])
    if where.ndim != ndim:
        raise InputError(f"the {explanation.method!r} where map has {where.ndim} spatial dimensions, the report "
                         f"{ndim}")
    x = None if x is None else _np(x)
    if x is not None and tuple(x.shape[1:]) != where.shape and ndim != 2:
        x = None  # a map on another grid: drawn alone (an image's map is stretched over the image)
    maps = _np(explanation.scale_maps[0]) if explanation.scale_maps is not None else None
    infos = level_infos(explanation, 0, ndim) if explanation.scales is not None else []
    if maps is not None and maps.shape[0] != len(infos):
        infos_maps = level_infos(SimpleNamespace(scales=None, scale_maps=explanation.scale_maps,
                                                 level_names=explanation.level_names,
                                                 sample_rate=sample_rate), 0, ndim)
    else:
        infos_maps = infos
    if ndim == 2:
        fig = _explanation_image(where, x, maps, infos, infos_maps)
    elif ndim == 1:
        fig = _explanation_signal(where, x, maps, infos, infos_maps, sample_rate)
    else:
        fig = _explanation_volume(where, x, maps, infos, infos_maps)
    note = getattr(fig, "note", "")
    if title or note:
        fig.suptitle("\n".join(t for t in (title, note) if t), fontsize=10)
    return save(fig, path)


def _level_title(info) -> str:
    share = f" — {_share_text(info.share)}" if info.share is not None else ""
    return f"{_level_label(info.name)}{share}\n{info.extent}"


def _explanation_image(where, x, maps, infos, infos_maps):
    widths = [1.15] + ([1.0] if x is not None else []) + ([1.55] if infos else [])
    height = 3.0 + (2.3 if maps is not None else 0.0)
    fig = _figure(max(3.4 * len(widths) + 0.6, 7.5), height)
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.0, 2.3]) if maps is not None else (fig, None)
    grid = top.add_gridspec(1, len(widths), width_ratios=widths)
    cmap, lo, hi = _color_scale([where])
    ax = top.add_subplot(grid[0, 0])
    im = ax.imshow(where, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title("where (importance)", fontsize=9)
    _bare(ax)
    _colorbar(top, im, ax, "importance")
    col = 1
    if x is not None:
        ax = top.add_subplot(grid[0, col])
        ax.imshow(to_rgb(x), interpolation="nearest")
        height, width = x.shape[1:]
        ax.imshow(where, cmap=cmap, vmin=lo, vmax=hi, alpha=0.55, interpolation="bilinear",
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        ax.set_title("where, over the input", fontsize=9)
        _bare(ax)
        col += 1
    if infos:
        scale_bars(top.add_subplot(grid[0, col]), infos)
    if maps is not None:
        level_image_maps(bottom, maps, [_level_title(info) for info in infos_maps],
                         "importance\n(one scale, all levels)", interpolation="nearest")
    return fig


def _explanation_signal(where, x, maps, infos, infos_maps, sample_rate):
    t, xlabel = _time_axis(where.shape[-1], sample_rate)
    heights = ([1.1, 1.4] if x is not None else [1.1]) + ([0.35 + 0.28 * maps.shape[0]] if maps is not None else [])
    fig = _figure(11, 1.0 + 1.25 * sum(heights))
    grid = fig.add_gridspec(len(heights), 2 if infos else 1, height_ratios=heights,
                            width_ratios=[3.3, 1] if infos else [1])
    axes = []
    row = 0
    ax = fig.add_subplot(grid[row, 0])
    if x is not None:
        wave = _mono(x)
        ax.plot(t, wave, lw=0.4, color="0.55")
        ax.set_ylabel("amplitude", fontsize=8)
        ax.tick_params(labelsize=7)
        twin = ax.twinx()
        _curve(twin, t, where)
        ax.set_title("where (importance over time, orange) over the waveform (grey)", fontsize=9)
    else:
        _curve(ax, t, where)
        ax.set_title("where (importance over time)", fontsize=9)
    axes.append(ax)
    row += 1
    if x is not None:
        ax = fig.add_subplot(grid[row, 0], sharex=axes[0])
        _draw_spectrogram(fig, ax, _mono(x), sample_rate)
        twin = ax.twinx()
        _curve(twin, t, where, color="cyan")
        twin.set_ylabel("importance", fontsize=8, color="tab:cyan")
        twin.tick_params(axis="y", colors="tab:cyan")
        ax.set_title("spectrogram, with the where curve (cyan)", fontsize=9)
        axes.append(ax)
        row += 1
    if maps is not None:
        ax = fig.add_subplot(grid[row, 0], sharex=axes[0])
        level_time_maps(fig, ax, maps, (t[0], t[-1]), [_level_title(i).replace("\n", ", ") for i in infos_maps],
                        "importance of each wavelet level over time (one colour scale)", "importance")
        axes.append(ax)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[0].set_xlim(t[0], t[-1])
    axes[-1].set_xlabel(xlabel, fontsize=8)
    axes[-1].tick_params(labelsize=7)
    if infos:
        scale_bars(fig.add_subplot(grid[:, 1]), infos)
    return fig


def _explanation_volume(where, x, maps, infos, infos_maps):
    point = where_point(where)
    labels = _slice_labels(point)
    slice_rows = 1 + (x is not None)
    fig = _figure(10.4 if infos else 7.6, 2.45 * slice_rows + (2.5 if maps is not None else 0.0) + 0.5)
    if maps is not None:
        top, bottom = fig.subfigures(2, 1, height_ratios=[2.45 * slice_rows, 2.5])
    else:
        top, bottom = fig, None
    grid = top.add_gridspec(slice_rows, 4 if infos else 3, width_ratios=[1, 1, 1, 1.45] if infos else [1, 1, 1])
    cmap, lo, hi = _color_scale([where])
    row = 0
    if x is not None:
        span = display_span(x)
        for k, (plane, w_plane, (name, xl, yl, _)) in enumerate(zip(_slices(x, point), _slices(where, point), labels)):
            ax = top.add_subplot(grid[row, k])
            ax.imshow(to_rgb(plane, span), interpolation="nearest")
            ax.imshow(w_plane, cmap=cmap, vmin=lo, vmax=hi, alpha=0.5, interpolation="bilinear")
            ax.set_title(f"input + where\n{name}", fontsize=8)
            _bare(ax)
            ax.set_xlabel(xl + " →", fontsize=7, labelpad=1)
            ax.set_ylabel("← " + yl, fontsize=7, labelpad=1)
        row += 1
    axes = []
    for k, (plane, (name, xl, yl, (px, py))) in enumerate(zip(_slices(where, point), labels)):
        ax = top.add_subplot(grid[row, k])
        im = ax.imshow(plane, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.plot(px, py, marker="+", color="cyan", markersize=9, markeredgewidth=1.4)
        ax.set_title(f"where\n{name}", fontsize=8)
        _bare(ax)
        ax.set_xlabel(xl + " →", fontsize=7, labelpad=1)
        ax.set_ylabel("← " + yl, fontsize=7, labelpad=1)
        axes.append(ax)
    _colorbar(top, im, axes, "importance")
    if infos:
        scale_bars(top.add_subplot(grid[:, 3]), infos)
    if maps is not None:
        cmap, lo, hi = _color_scale(list(maps))
        axes = bottom.subplots(1, maps.shape[0], squeeze=False)[0]
        for k, ax in enumerate(axes):
            im = ax.imshow(_slices(maps[k], point)[0], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(_level_title(infos_maps[k]), fontsize=8)
            _bare(ax)
        _colorbar(bottom, im, list(axes), f"importance, {labels[0][0]}\n(one scale, all levels)")
    fig.note = f"slices through the maximum of the where map (+) at (depth, height, width) = {point}"
    return fig


# --------------------------------------------------------------------------------------------------
# concepts
# --------------------------------------------------------------------------------------------------
def _maco_picture(maco, concept: int) -> np.ndarray | None:
    """The MACO image of ``concept`` as ``(H, W, 3)``, or None when the class has none for it."""
    if maco is None or concept >= maco.shape[0] or maco.ndim != 4:
        return None
    return to_rgb(_np(maco[concept]), (0.0, 1.0))


def concepts_figure(concepts, class_concepts, x, ndim: int, path, level_names: Sequence[str] | None = None,
                    sample_rate: float | None = None, class_name: str = "") -> Path:
    """The top concepts of the predicted class in one input, one row each (most important here first):
    where the concept lies in the input, its own scale profile in this input, the class's MACO image
    of the concept and the class images' crops that express it most."""
    ids = [int(i) for i in _np(concepts.ids).reshape(-1)]
    importances = _np(concepts.importances).reshape(-1)
    maps = _np(concepts.maps)
    x = _np(x) if x is not None else None
    has_scales = concepts.scales is not None and len(concepts.scales) == len(ids)
    crops = None
    if class_concepts is not None and class_concepts.crops is not None:
        crops = _np(class_concepts.crops)[:, :INPUT_PAGE_CROPS]
    n_crops = 0 if crops is None else crops.shape[1]
    maco = None if class_concepts is None else class_concepts.maco
    has_maco = maco is not None and any(_maco_picture(maco, k) is not None for k in ids)
    crop_width = 1.7 if ndim == 1 else 1.15
    widths = [3.4 if ndim == 1 else 1.7] + ([2.6] if has_scales else []) + ([1.2] if has_maco else []) \
        + [crop_width] * n_crops
    fig = _figure(sum(widths) + 0.9, 1.75 * len(ids) + 0.8)
    grid = fig.add_gridspec(len(ids), len(widths), width_ratios=widths)
    span = None
    if n_crops:
        if ndim == 1:
            peak = float(np.abs(crops).max()) or 1.0
            span = (-1.05 * peak, 1.05 * peak)
        else:
            span = _crop_range(crops)[:2]
    for row, (k, importance) in enumerate(zip(ids, importances)):
        col = 0
        ax = fig.add_subplot(grid[row, col])
        _concept_map(fig, ax, maps[row], x, ndim, sample_rate)
        ax.set_title(f"concept {k}: importance {importance:.2f} here", fontsize=9, loc="left", fontweight="bold")
        col += 1
        if has_scales:
            ax = fig.add_subplot(grid[row, col])
            infos = profile_infos(concepts.scales, level_names, ndim, sample_rate, index=row)
            scale_bars(ax, infos, compact=True, title="its scale profile in this input" if row == 0 else None)
            if row != len(ids) - 1:
                ax.set_xlabel("")
            col += 1
        if has_maco:
            ax = fig.add_subplot(grid[row, col])
            picture = _maco_picture(maco, k)
            _bare(ax)
            if picture is not None:
                ax.imshow(picture, interpolation="bilinear")
            else:
                ax.text(0.5, 0.5, "no MACO image\nof this concept", ha="center", va="center", fontsize=7,
                        color="0.35", transform=ax.transAxes)
                for side in ax.spines.values():
                    side.set_visible(False)
            if row == 0:
                ax.set_title("MACO image", fontsize=8)
            col += 1
        for j in range(n_crops):
            ax = fig.add_subplot(grid[row, col + j])
            if k < crops.shape[0]:
                _draw_crop(ax, crops[k, j], sample_rate, span)
            else:
                ax.axis("off")
            if row == 0:
                ax.set_title(f"top crop {j + 1}", fontsize=8)
    what = f"concepts of “{short_name(class_name)}”" if class_name else "concepts of the predicted class"
    fig.suptitle(f"{what} in this input, most important here first"
                 + (" · crops: middle depth slice" if ndim == 3 and n_crops else ""), fontsize=10)
    return save(fig, path)


def _concept_map(fig, ax, concept_map: np.ndarray, x, ndim: int, sample_rate):
    if ndim == 1:
        t, xlabel = _time_axis(concept_map.shape[-1], sample_rate)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(xlabel, fontsize=7, labelpad=1)
        ax.set_xlim(t[0], t[-1])
        if x is not None and x.shape[-1] == concept_map.shape[-1]:
            ax.plot(t, _mono(x), lw=0.3, color="0.6")
            ax.set_yticks([])
            ax = ax.twinx()
        _curve(ax, t, concept_map, color="tab:green", label="coefficient")
        return
    if ndim == 3:
        point = where_point(concept_map)
        concept_map = _slices(concept_map, point)[0]
        x = None if x is None else _slices(x, point)[0]
    cmap, lo, hi = _color_scale([concept_map])
    if x is not None and tuple(x.shape[1:]) == concept_map.shape:
        ax.imshow(to_rgb(x), interpolation="nearest")
        im = ax.imshow(concept_map, cmap=cmap, vmin=lo, vmax=hi, alpha=0.6, interpolation="bilinear")
    else:
        im = ax.imshow(concept_map, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    _bare(ax)
    if ndim == 3:
        ax.set_xlabel(f"depth slice d = {point[0]}", fontsize=7)
    _colorbar(fig, im, ax, "coefficient")


# --------------------------------------------------------------------------------------------------
# what the model keeps
# --------------------------------------------------------------------------------------------------
def rebuilt_figure(x, rebuilt, ndim: int, path, sample_rate: float | None = None, info: dict | None = None,
                   point: Sequence[int] | None = None, class_name: str = "") -> Path:
    """The input beside the input rebuilt from only its most important wavelet coefficients (one
    display range for both), titled with the kept fraction and the target's score of each."""
    x, rebuilt = _np(x), _np(rebuilt)
    info = dict(info or {})
    kept = info.get("kept_fraction")
    score, rebuilt_score = info.get("score"), info.get("rebuilt_score")
    target = f"score of “{short_name(class_name)}”" if class_name else "score"
    left = "input" + (f"\n{target} {score:.2f}" if isinstance(score, (int, float)) else "")
    kept_text = f"the top {100 * kept:.3g} % of its wavelet coefficients" if isinstance(kept, (int, float)) \
        else "its most important wavelet coefficients"
    right = f"rebuilt from {kept_text}" + (f"\n{target} {rebuilt_score:.2f}"
                                          if isinstance(rebuilt_score, (int, float)) else "")
    # the rebuilt input keeps few coefficients (often no approximation: values near 0): shown with its own
    # contrast, so that the structures it keeps are visible
    lo, hi = (float(v) for v in np.percentile(rebuilt, [0.5, 99.5]))
    spans = (display_span(x), (lo, hi if hi > lo else lo + 1.0))
    if ndim != 1:
        right += " (own contrast)"
    if ndim == 2:
        fig = _figure(7.2, 4.2)
        axes = fig.subplots(1, 2)
        for ax, picture, text, span in zip(axes, (x, rebuilt), (left, right), spans):
            ax.imshow(to_rgb(picture, span), interpolation="nearest")
            ax.set_title(text, fontsize=9)
            _bare(ax)
        return save(fig, path)
    if ndim == 1:
        fig = _figure(11, 4.6)
        grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.3])
        t, xlabel = _time_axis(x.shape[-1], sample_rate)
        ax = fig.add_subplot(grid[0, :])
        ax.plot(t, _mono(x), lw=0.5, color="0.6", label="input")
        ax.plot(t, _mono(rebuilt), lw=0.5, color="tab:red", label="rebuilt", alpha=0.85)
        ax.legend(fontsize=7, loc="upper right")
        ax.set_xlim(t[0], t[-1])
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("amplitude", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title("waveforms: input (grey) and rebuilt (red)", fontsize=9)
        vrange = None
        for col, (wave, text) in enumerate(((x, left), (rebuilt, right))):
            ax = fig.add_subplot(grid[1, col])
            vrange = _draw_spectrogram(fig, ax, _mono(wave), sample_rate, vrange=vrange, colorbar=col == 1)
            ax.set_title("spectrogram of the " + text.replace("\n", ", "), fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
        return save(fig, path)
    point = tuple(point) if point is not None else tuple(s // 2 for s in x.shape[1:])
    fig = _figure(8.6, 5.9)
    axes = fig.subplots(2, 3)
    for row, (volume, text, span) in enumerate(((x, left, spans[0]), (rebuilt, right, spans[1]))):
        for ax, plane, (name, xl, yl, _) in zip(axes[row], _slices(volume, point), _slice_labels(point)):
            ax.imshow(to_rgb(plane, span), interpolation="nearest")
            ax.set_title(name, fontsize=8)
            _bare(ax)
        axes[row, 0].set_ylabel(text.replace("rebuilt from ", "rebuilt from\n"), fontsize=8)
    fig.suptitle(f"orthogonal slices through (depth, height, width) = {point}", fontsize=9)
    return save(fig, path)


# --------------------------------------------------------------------------------------------------
# a class's concept atlas
# --------------------------------------------------------------------------------------------------
class _Picture:
    """A MACO image ``(C, H, W)`` in [0, 1] as :func:`plot_concept_bank` draws it (``rgba()``, opaque)."""

    def __init__(self, image: torch.Tensor):
        self.image = torch.as_tensor(image).detach().float().cpu()

    def rgba(self) -> torch.Tensor:
        rgb = torch.from_numpy(to_rgb(self.image.numpy(), (0.0, 1.0))).float()
        return torch.cat([rgb, torch.ones(*rgb.shape[:2], 1)], dim=2)


def atlas_figure(class_concepts, path, level_names: Sequence[str] | None = None, sample_rate: float | None = None,
                 model_id: str = "") -> Path:
    """The concept atlas of a class: per concept (most important first) its importance, its top crops,
    its scale profile over the class images and its MACO image."""
    from ..plotting import plot_concept_bank

    cc = class_concepts
    importances = torch.as_tensor(cc.importances).reshape(-1)
    bank = SimpleNamespace(importances_=importances, top_crop_images_=cc.crops, crop_boxes_=None,
                           importances_per_image_=None, class_name=cc.name, class_id=cc.class_id,
                           model_id=model_id, layer=cc.layer)
    scales = cc.scales
    if scales is not None and (scales.ndim != 2 or scales.shape[0] != importances.shape[0]):
        scales = None
    names = list(level_names) if level_names is not None and scales is not None \
        and len(level_names) == scales.shape[1] else None
    maco = []
    if cc.maco is not None and cc.maco.ndim == 4:
        maco = [_Picture(image) for image in cc.maco[:importances.shape[0]]]
    title = f"concept atlas of “{short_name(cc.name)}” (class {cc.class_id}) — layer {cc.layer}"
    fig = plot_concept_bank(bank, scale_profiles=scales, level_names=names, class_name=cc.name,
                            sample_rate=sample_rate, n_crops=6, title=title, maco_images=maco)
    return save(fig, path)
