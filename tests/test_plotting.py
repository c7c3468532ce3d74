"""Figures a person reads: titles with class names, shared colour scales, physical units, slices."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import unified_xai as ux  # noqa: E402
from unified_xai.plotting import level_infos  # noqa: E402

from conftest import random_inputs, tiny_adapter  # noqa: E402

LEVELS = ["approximation", "level 3 (coarsest)", "level 2", "level 1 (finest)"]


def _explanation(spatial, channels=1, sample_rate=None, scales=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    maps = torch.rand(2, 4, *spatial, generator=gen)
    maps[:, 0] *= 0.01  # a nearly empty level: must look dark on the shared scale
    return ux.Explanation(
        where=maps.sum(1), method="wam", targets=torch.tensor([2, 0]),
        scales=torch.tensor([[0.0, 0.1, 0.2, 0.7], [0.25, 0.25, 0.25, 0.25]]) if scales else None,
        scale_maps=maps if scales else None, inputs=torch.rand(2, channels, *spatial, generator=gen),
        params={"variant": "smoothgrad", "wavelet": "haar", "levels": 3}, model_id="tiny",
        level_names=list(LEVELS) if scales else None, class_names=["cat", "dog", "giant panda"],
        sample_rate=sample_rate,
    )


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _titled(fig, text):
    return [ax for ax in fig.axes if text in ax.get_title()]


def _level_images(fig):
    """The image of every level-map axes (titled with a level name)."""
    found = []
    for name in LEVELS:
        axes = [ax for ax in fig.axes if ax.get_title().startswith(name)]
        assert len(axes) == 1, (name, [ax.get_title() for ax in fig.axes])
        found.append(axes[0].images[0])
    return found


def test_image_figure_panels_title_and_shared_scale():
    exp = _explanation((16, 24), channels=3)
    fig = exp.plot(0)
    title = fig._suptitle.get_text()
    assert "giant panda" in title and "wam" in title and "variant=smoothgrad" in title and "target" not in title
    assert _titled(fig, "input") and _titled(fig, "where")
    images = _level_images(fig)
    clims = {im.get_clim() for im in images}
    assert len(clims) == 1  # one colour scale for every level
    maps = exp.scale_maps[0].numpy()
    assert clims.pop() == pytest.approx((0.0, float(maps.max())))
    bars = [im.colorbar for im in images if im.colorbar is not None]
    assert len(bars) == 1 and bars[0].ax in fig.axes  # one colour bar serves every level
    where_im = _titled(fig, "where")[0].images[0]
    assert where_im.colorbar is not None
    # each level map is titled with its share and what it means
    titles = [im.axes.get_title() for im in images]
    assert "0 %" in titles[0] and "70 %" in titles[3] and "fine texture" in titles[3] and "coarse shape" in titles[0]
    # the scale bar chart names the levels with their physical size
    bars = _titled(fig, "importance per scale")[0]
    labels = [t.get_text() for t in bars.get_yticklabels()]
    assert labels[0].startswith("approximation") and "~2 px" in labels[3] and "~8 px" in labels[1]


def test_image_inputs_in_unit_range_are_shown_as_is_others_min_max_scaled():
    exp = _explanation((8, 8), channels=3)
    fig = exp.plot(0)
    shown = _titled(fig, "input")[0].images[0].get_array()
    assert np.allclose(shown, exp.inputs[0].permute(1, 2, 0).numpy())
    exp.inputs = exp.inputs * 50 - 10
    fig = exp.plot(0)
    ax = _titled(fig, "input")[0]
    assert "min-max scaled" in ax.get_title()
    shown = np.asarray(ax.images[0].get_array())
    assert shown.min() == pytest.approx(0.0) and shown.max() == pytest.approx(1.0)
    gray = _explanation((8, 8), channels=1)
    assert _titled(gray.plot(0), "input")[0].images[0].get_cmap().name == "gray"


def test_audio_figure_uses_seconds_and_hz():
    exp = _explanation((256,), sample_rate=8000.0)
    fig = exp.plot(1)
    assert "giant panda" not in fig._suptitle.get_text() and "cat" in fig._suptitle.get_text()
    xlabels = [ax.get_xlabel() for ax in fig.axes]
    assert any("(s)" in label for label in xlabels)
    assert _titled(fig, "input waveform") and _titled(fig, "where")
    levels_ax = _titled(fig, "per level")[0]
    ticks = [t.get_text() for t in levels_ax.get_yticklabels()]
    assert [t.split(" — ")[0] for t in ticks] == LEVELS and "25 %" in ticks[0]
    assert levels_ax.images[0].colorbar is not None
    bars = _titled(fig, "importance per scale")[0]
    labels = [t.get_text() for t in bars.get_yticklabels()]
    # level j covers [sr / 2^(j+1), sr / 2^j]: level 1 = 2-4 kHz, level 3 = 500 Hz-1 kHz, approximation < 500 Hz
    assert "2–4 kHz" in labels[3] and "500 Hz–1 kHz" in labels[1] and "< 500 Hz" in labels[0]
    # the waveform and the where curve share the time axis, in seconds
    wave = _titled(fig, "input waveform")[0].lines[0].get_xdata()
    assert wave[-1] == pytest.approx(255 / 8000)


def test_audio_without_sample_rate_is_in_samples():
    fig = _explanation((256,)).plot(0)
    assert any(ax.get_xlabel() == "time (samples)" for ax in fig.axes)
    labels = [t.get_text() for t in _titled(fig, "importance per scale")[0].get_yticklabels()]
    assert "periods 2–4 samples" in labels[3]


def test_level_peaks_survive_downsampling_for_display():
    exp = _explanation((20000,), sample_rate=16000.0)
    exp.scale_maps = torch.zeros_like(exp.scale_maps)
    exp.scale_maps[0, 3, 12345] = 1.0  # a one-sample peak
    fig = exp.plot(0)
    shown = np.asarray(_titled(fig, "per level")[0].images[0].get_array())
    assert shown.shape[1] < 20000 and shown[3].max() == 1.0


def test_volume_figure_three_slices_through_the_maximum():
    exp = _explanation((6, 8, 10))
    where = exp.where[0].numpy()
    d, h, w = np.unravel_index(np.argmax(where), where.shape)
    fig = exp.plot(0)
    for axis, pos, plane in (("depth", d, where[d]), ("height", h, where[:, h]), ("width", w, where[:, :, w])):
        [inp] = _titled(fig, f"input: {axis} slice")
        [wax] = _titled(fig, f"where: {axis} slice")
        assert f"= {pos}" in wax.get_title()
        assert np.allclose(wax.images[0].get_array(), plane)
        assert inp.get_xlabel() and inp.get_ylabel()  # the slice axes are named
    assert sum(ax.images[0].colorbar is not None for ax in _titled(fig, "where:")) == 1
    images = _level_images(fig)
    assert len({im.get_clim() for im in images}) == 1 and any(im.colorbar is not None for im in images)
    assert np.allclose(images[3].get_array(), exp.scale_maps[0, 3, d].numpy())  # same point as the where slices
    assert "giant panda" in fig._suptitle.get_text() and f"({d}, {h}, {w})" in fig._suptitle.get_text()


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_explanations_without_scales_plot_input_and_where(ndim):
    adapter = tiny_adapter(ndim)
    x = random_inputs(adapter, batch=2)
    exp = ux.create("saliency", adapter).explain(x)
    assert exp.scales is None
    fig = plot = exp.plot(1, inputs=x)
    assert plot is fig and _titled(fig, "input") and _titled(fig, "where")
    assert not _titled(fig, "importance per scale")
    # one item works as well as the batch
    fig = exp.plot(1, inputs=x[1])
    assert _titled(fig, "input")


def test_wam_on_a_tiny_model_plots_every_level():
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    exp = ux.create("wam", adapter, n_samples=2, levels=2).explain(x)
    fig = exp.plot(0, inputs=x)
    for name in exp.level_names:
        assert any(ax.get_title().startswith(name) for ax in fig.axes), name
    assert "class " in fig._suptitle.get_text()  # an unnamed class is still named by its index


def test_bad_index_and_mismatched_inputs_are_uxai_errors():
    exp = _explanation((8, 8))
    with pytest.raises(ux.UXAIError, match="index"):
        exp.plot(5)
    with pytest.raises(ux.UXAIError, match="spatial shape"):
        exp.plot(0, inputs=torch.rand(2, 1, 8, 9))
    with pytest.raises(ux.UXAIError, match="2 items"):
        exp.plot(0, inputs=torch.rand(3, 1, 8, 8))


def test_level_infos_for_images_and_volumes():
    infos = level_infos(_explanation((8, 8)), 0, 2)
    assert [i.name for i in infos] == LEVELS
    assert [i.extent for i in infos] == ["≥ 16 px", "~8 px", "~4 px", "~2 px"]
    assert [round(i.share) for i in infos] == [0, 10, 20, 70]
    infos = level_infos(_explanation((4, 4, 4)), 1, 3)
    assert infos[3].extent == "~2 voxels" and infos[0].meaning == "coarse shape"


def test_long_imagenet_style_name_is_shortened_to_its_first_synonym_in_the_title():
    exp = ux.Explanation(where=torch.rand(1, 8, 8), method="saliency", targets=torch.tensor([1]),
                         class_names=["x", "giant panda, panda, panda bear, coon bear, Ailuropoda melanoleuca"])
    title = exp.plot(0)._suptitle.get_text()
    assert title.startswith("“giant panda” — saliency") and "melanoleuca" not in title
