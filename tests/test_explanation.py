"""Explanation: lossless HDF5 round trip, atomic writes, plotting."""
from __future__ import annotations

import os

import matplotlib
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
    )


def _assert_same(a: ux.Explanation, b: ux.Explanation):
    for name in ("where", "targets", "scales", "scale_maps", "concept_ids", "concept_importances", "concept_maps", "inputs"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None) == (vb is None), name
        if va is not None:
            assert va.dtype == vb.dtype and torch.equal(va, vb), name
    ra, rb = a.raw_attributions(), b.raw_attributions()
    assert list(ra) == list(rb) and all(torch.equal(ra[k], rb[k]) for k in ra)
    assert (a.method, a.params, a.seed, a.model_id, a.elapsed, a.level_names) == (
        b.method, b.params, b.seed, b.model_id, b.elapsed, b.level_names)


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


def test_load_rejects_other_files(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="not a unified_xai Explanation"):
        ux.Explanation.load(tmp_path / "x.h5")


@pytest.mark.parametrize("spatial", [(32,), (8, 12), (4, 6, 8)], ids=["1d", "2d", "3d"])
def test_plot_returns_figure(spatial):
    import matplotlib.figure

    exp = ux.Explanation(where=torch.rand(1, *spatial), method="m", scales=torch.tensor([[0.1, 0.2, 0.7]]),
                         scale_maps=torch.rand(1, 3, *spatial), inputs=torch.rand(1, 1, *spatial),
                         level_names=["approximation", "level 2", "level 1"])
    fig = exp.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) >= 4


def test_atomic_write_helper(tmp_path):
    target = tmp_path / "f.bin"
    with storage.atomic_write(target) as handle:
        handle.write(b"abc")
    assert target.read_bytes() == b"abc"
