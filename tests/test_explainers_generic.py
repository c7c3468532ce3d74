"""Checks run over EVERY registered explainer (like scikit-learn's estimator checks).

Shapes, device, dtype, seed => identical result, batch-size invariance, bookkeeping fields,
and an HDF5 round trip. FAST_PARAMS keeps each explainer cheap on tiny models; an explainer
missing from it runs with its defaults.
"""
from __future__ import annotations

import pytest
import torch

import unified_xai as ux
from unified_xai.core import hooks

from conftest import random_inputs, tiny_adapter

FAST_PARAMS = {
    "wam": {"n_samples": 4, "levels": 1},
    "smoothgrad": {"n_samples": 4},
    "integrated_gradients": {"n_steps": 4},
    "gradcam": {"layer": "features.3"},
    "sobol": {"grid_size": 2, "n_designs": 4},
    "sobol_wavelet": {"n_designs": 4, "levels": 1},
}


def _params(name, **extra):
    params = dict(FAST_PARAMS.get(name, {}))
    params.update(extra)
    return params


def _supports(name, adapter):
    cls = ux.core.registry.get_explainer_class(name)
    return adapter.modality in getattr(cls, "modalities", ("signal", "image", "volume"))


ALL = ux.list_explainers()


@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("name", ALL)
def test_explainer_contract(name, ndim):
    adapter = tiny_adapter(ndim)
    if not _supports(name, adapter):
        pytest.skip(f"{name} does not explain {adapter.modality} models")
    x = random_inputs(adapter, batch=3)
    spatial = tuple(x.shape[2:])
    out = ux.create(name, adapter, **_params(name)).explain(x, targets=[0, 1, 2])
    assert isinstance(out, ux.Explanation)
    assert out.where.shape == (3, *spatial)
    assert out.where.device == adapter.device and out.where.dtype == x.dtype
    assert torch.isfinite(out.where).all()
    assert out.targets.tolist() == [0, 1, 2]
    assert out.method == name and out.model_id == adapter.name and out.elapsed > 0
    if out.scales is not None:
        assert out.scales.shape[0] == 3 and torch.isfinite(out.scales).all()
        assert out.scale_maps.shape[:1] + out.scale_maps.shape[2:] == (3, *spatial)
        assert out.scale_maps.shape[1] == out.scales.shape[1]
    assert hooks.count_hooks(adapter.model) == 0


@pytest.mark.parametrize("name", ALL)
def test_seed_gives_identical_result_and_batch_size_invariance(name):
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=3)
    first = ux.create(name, adapter, **_params(name, batch_size=64)).explain(x)
    again = ux.create(name, adapter, **_params(name, batch_size=64)).explain(x)
    torch.testing.assert_close(first.where, again.where, rtol=0, atol=0)
    small = ux.create(name, adapter, **_params(name, batch_size=2)).explain(x)
    torch.testing.assert_close(first.where, small.where, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_predicted_class_is_default_target_and_round_trip(name, tmp_path):
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    out = ux.create(name, adapter, **_params(name)).explain(x)
    assert out.targets.tolist() == adapter.predict(x).argmax(1).tolist()
    loaded = ux.Explanation.load(out.save(tmp_path / f"{name}.h5"))
    torch.testing.assert_close(loaded.where, out.where.cpu())
    assert loaded.params == out.params
