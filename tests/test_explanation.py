"""Explanation: lossless HDF5 round trip, atomic writes, plotting."""
from __future__ import annotations

import os

import matplotlib
import matplotlib.pyplot
import pytest
import torch

import unified_xai as ux
from unified_xai.core import storage

matplotlib.use("Agg")


def _full_explanation():
    gen = torch.Generator().manual_seed(0)
    return ux.Explanation(
        where=torch.rand(2, 8, 12, generator=gen),
        method="demo",
        targets=torch.tensor([1, 3]),
        scales=torch.rand(2, 4, generator=gen),
        scale_maps=torch.rand(2, 4, 8, 12, generator=gen),
        concept_ids=torch.tensor([[0, 2], [1, 0]]),
        concept_importances=torch.rand(2, 2, generator=gen, dtype=torch.float64),
        concept_maps=torch.rand(2, 2, 8, 12, generator=gen),
        attributions={"approx": torch.randn(2, 3, 1, 2, generator=gen), "detail_1": torch.randn(2, 3, 3, 4, 6, generator=gen)},
        inputs=torch.rand(2, 3, 8, 12, generator=gen),
        params={"n_samples": 25, "wavelet": "haar", "nested": {"a": [1, 2]}},
        seed=7,
        model_id="tiny",
        elapsed=1.25,
        level_names=["approximation", "level 2 (coarsest)", "level 1 (finest)"],
        class_names=["cat", "dog", "giant panda", "zebra"],
        sample_rate=16000.0,
    )


def _assert_same(a: ux.Explanation, b: ux.Explanation):
    for name in ("where", "targets", "scales", "scale_maps", "concept_ids", "concept_importances", "concept_maps", "inputs"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None) == (vb is None), name
        if va is not None:
            assert va.dtype == vb.dtype and torch.equal(va, vb), name
    ra, rb = a.raw_attributions(), b.raw_attributions()
    assert list(ra) == list(rb) and all(torch.equal(ra[k], rb[k]) for k in ra)
    assert (a.method, a.params, a.seed, a.model_id, a.elapsed, a.level_names, a.class_names, a.sample_rate) == (
        b.method, b.params, b.seed, b.model_id, b.elapsed, b.level_names, b.class_names, b.sample_rate)


def test_round_trip_is_lossless(tmp_path):
    original = _full_explanation()
    path = original.save(tmp_path / "sub" / "e.h5")
    _assert_same(original, ux.Explanation.load(path))


def test_round_trip_minimal_and_plain_tensor_attributions(tmp_path):
    original = ux.Explanation(where=torch.rand(1, 5), method="m", attributions=torch.randn(1, 1, 5))
    loaded = ux.Explanation.load(original.save(tmp_path / "m.h5"))
    _assert_same(original, loaded)
    assert isinstance(loaded.attributions, torch.Tensor) and loaded.seed is None


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "e.h5"
    _full_explanation().save(path)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    broken = _full_explanation()
    monkeypatch.setattr(torch.Tensor, "numpy", explode)
    with pytest.raises(OSError, match="disk full"):
        broken.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # old file untouched
    assert sorted(os.listdir(tmp_path)) == ["e.h5"]  # no temporary left behind


def test_round_trip_keeps_new_fields(tmp_path):
    original = _full_explanation()
    loaded = ux.Explanation.load(original.save(tmp_path / "e.h5"))
    assert loaded.class_names == ["cat", "dog", "giant panda", "zebra"] and loaded.sample_rate == 16000.0
    assert loaded.target_names == ["dog", "zebra"]


def test_old_format_file_without_new_fields_loads(tmp_path):
    import h5py

    path = _full_explanation().save(tmp_path / "old.h5")
    with h5py.File(path, "a") as h5:  # make it what format version 1 wrote
        del h5.attrs["class_names"], h5.attrs["sample_rate"]
        h5.attrs["format_version"] = 1
    loaded = ux.Explanation.load(path)
    assert loaded.class_names is None and loaded.sample_rate is None
    assert loaded.target_names == ["class 1", "class 3"]
    assert torch.equal(loaded.where, _full_explanation().where)


def test_target_names():
    exp = ux.Explanation(where=torch.rand(3, 4), method="m", targets=torch.tensor([0, 2, 9]),
                         class_names=["a", "b", "c"])
    assert exp.target_names == ["a", "c", "class 9"]  # out of the named range: the index
    assert ux.Explanation(where=torch.rand(1, 4), method="m").target_names == []


def test_repr_is_short_and_informative():
    big = ux.Explanation(
        where=torch.rand(512, 16, 16), method="wam", targets=torch.arange(512) % 1000,
        scales=torch.rand(512, 4), scale_maps=torch.rand(512, 4, 16, 16), inputs=torch.rand(512, 3, 16, 16),
        attributions={f"band{i}": torch.rand(512, 3, 8, 8) for i in range(10)},
        params={"variant": "integrated", "wavelet": "haar", "levels": 3, "n_samples": 25, "baseline": [0.0] * 1000},
        model_id="timm:" + "a_very_long_model_name_" * 10, elapsed=12.5,
        class_names=[f"class number {i} with a long descriptive name, and synonyms" for i in range(1000)],
    )
    text = repr(big)
    assert len(text) < 500, text
    assert "wam" in text and "B=512" in text and "(16, 16)" in text and "integrated" in text
    assert "scale_maps(512, 4, 16, 16)" in text and "class number 0" in text and "12.5 s" in text
    assert "tensor(" not in text
    assert len(repr(_full_explanation())) < 400


def test_load_rejects_other_files(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(ux.InputError, match="not a unified_xai Explanation") as info:
        ux.Explanation.load(tmp_path / "x.h5")
    assert str(tmp_path / "x.h5") in str(info.value)


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.95])
def test_load_truncated_file_is_a_uxai_error(tmp_path, keep):
    data = open(_full_explanation().save(tmp_path / "e.h5"), "rb").read()
    broken = tmp_path / "broken.h5"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ux.UXAIError, match="truncated or damaged") as info:
        ux.Explanation.load(broken)
    assert str(broken) in str(info.value)


def test_load_text_file_and_missing_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an explanation\n")
    with pytest.raises(ux.UXAIError, match="not an HDF5 file") as info:
        ux.Explanation.load(text)
    assert str(text) in str(info.value)
    missing = tmp_path / "missing.h5"
    with pytest.raises(ux.UXAIError, match="no such file") as info:
        ux.Explanation.load(missing)
    assert isinstance(info.value, FileNotFoundError) and str(missing) in str(info.value)
    with pytest.raises(ux.UXAIError, match="directory"):
        ux.Explanation.load(tmp_path)


def test_load_newer_format_version_says_upgrade(tmp_path):
    import h5py

    path = _full_explanation().save(tmp_path / "e.h5")
    with h5py.File(path, "a") as h5:
        h5.attrs["format_version"] = 99
    with pytest.raises(ux.UXAIError, match="upgrade unified_xai"):
        ux.Explanation.load(path)


@pytest.mark.parametrize("spatial", [(32,), (8, 12), (4, 6, 8)], ids=["1d", "2d", "3d"])
def test_plot_returns_figure(spatial):
    import matplotlib.figure

    exp = ux.Explanation(where=torch.rand(1, *spatial), method="m", scales=torch.tensor([[0.1, 0.2, 0.7]]),
                         scale_maps=torch.rand(1, 3, *spatial), inputs=torch.rand(1, 1, *spatial),
                         level_names=["approximation", "level 2", "level 1"])
    fig = exp.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) >= 4
    matplotlib.pyplot.close(fig)


def test_atomic_write_helper(tmp_path):
    target = tmp_path / "f.bin"
    with storage.atomic_write(target) as handle:
        handle.write(b"abc")
    assert target.read_bytes() == b"abc"
