"""Checks run over EVERY registered explainer (like scikit-learn's estimator checks).

Shapes, device, dtype, seed => identical result, batch-size invariance, bookkeeping fields,
and an HDF5 round trip. FAST_PARAMS keeps each explainer cheap on tiny models; an explainer
missing from it runs with its defaults.
"""
from __future__ import annotations

import tempfile

import pytest
import torch

import unified_xai as ux
from unified_xai.core import hooks

from conftest import random_inputs, tiny_adapter

FAST_PARAMS = {
    "wam": {"n_samples": 4, "levels": 1},
    "smoothgrad": {"n_samples": 4},
    "integrated_gradients": {"n_samples": 4},
    "gradcam": {"layer": "features.3"},
    "sobol": {"grid_size": 2, "n_designs": 4},
    "sobol_wavelet": {"n_designs": 4, "levels": 1},
}


def _class_images(adapter, per_class: int = 2) -> ux.data.ArrayDataset:
    """Random inputs labelled 0..3 in turn: the images craft fits its concept banks on."""
    x = random_inputs(adapter, batch=4 * per_class, seed=5)
    return ux.data.ArrayDataset("random", "test", x, torch.arange(x.shape[0]) % 4, ["a", "b", "c", "d"])


def _params(name, adapter=None, **extra):
    params = dict(FAST_PARAMS.get(name, {}))
    if name == "craft":
        # banks fitted on demand on random class images, cheap settings; the bank folder makes later
        # calls reuse them (NMF may amplify the rounding differences of another chunk size in a refit)
        params.update(n_concepts=2, n_designs=4, wam_samples=2, levels=1,
                      dataset=_class_images(adapter or tiny_adapter(2)), bank=BANKS)
    params.update(extra)
    return params


def _supports(name, adapter):
    cls = ux.core.registry.get_explainer_class(name)
    return adapter.modality in getattr(cls, "modalities", ("signal", "image", "volume"))


ALL = ux.list_explainers()
BANKS = tempfile.mkdtemp(prefix="uxai-generic-banks-")


@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("name", ALL)
def test_explainer_contract(name, ndim):
    adapter = tiny_adapter(ndim)
    if not _supports(name, adapter):
        pytest.skip(f"{name} does not explain {adapter.modality} models")
    x = random_inputs(adapter, batch=3)
    spatial = tuple(x.shape[2:])
    out = ux.create(name, adapter, **_params(name, adapter)).explain(x, targets=[0, 1, 2])
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
    first = ux.create(name, adapter, **_params(name, adapter, batch_size=64)).explain(x)
    again = ux.create(name, adapter, **_params(name, adapter, batch_size=64)).explain(x)
    torch.testing.assert_close(first.where, again.where, rtol=0, atol=0)
    for batch_size in (1, 7):
        other = ux.create(name, adapter, **_params(name, adapter, batch_size=batch_size)).explain(x)
        torch.testing.assert_close(first.where, other.where, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_predicted_class_is_default_target_and_round_trip(name, tmp_path):
    adapter = tiny_adapter(2)
    x = random_inputs(adapter, batch=2)
    out = ux.create(name, adapter, **_params(name, adapter)).explain(x)
    assert out.targets.tolist() == adapter.predict(x).argmax(1).tolist()
    loaded = ux.Explanation.load(out.save(tmp_path / f"{name}.h5"))
    torch.testing.assert_close(loaded.where, out.where.cpu())
    assert loaded.params == out.params


@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("name", ALL)
def test_an_input_alone_equals_the_same_input_in_a_batch(name, ndim):
    adapter = tiny_adapter(ndim)
    if not _supports(name, adapter):
        pytest.skip(f"{name} does not explain {adapter.modality} models")
    x = random_inputs(adapter, batch=5, seed=3)
    targets = [0, 1, 2, 3, 0]
    explainer = ux.create(name, adapter, **_params(name, adapter))
    batch = explainer.explain(x, targets=targets)
    for i in (0, 3):
        alone = explainer.explain(x[i : i + 1], targets=targets[i])
        torch.testing.assert_close(alone.where[0], batch.where[i], rtol=1e-4, atol=1e-6)
        for field in ("scales", "concept_importances", "concept_maps", "concept_scales"):
            if getattr(batch, field) is not None:
                torch.testing.assert_close(getattr(alone, field)[0], getattr(batch, field)[i], rtol=1e-4, atol=1e-6)


class Raising(torch.nn.Module):
    """TinyNet with Dropout whose forward raises from the ``fail_at``-th call on (0 = never)."""

    def __init__(self, fail_at: int = 0):
        super().__init__()
        from conftest import TinyNet

        self.net, self.drop = TinyNet(2), torch.nn.Dropout(0.5)
        self.bn = torch.nn.BatchNorm2d(3)
        self.fail_at, self.calls = fail_at, 0

    def forward(self, x):
        self.calls += 1
        if self.fail_at and self.calls >= self.fail_at:
            raise RuntimeError("boom")
        return self.drop(self.net(self.bn(x)))


@pytest.mark.parametrize("name", ALL)
def test_model_left_as_it_came_after_a_call_that_raises(name):
    """Hooks removed, requires_grad and the train/eval mode of every module restored."""
    torch.manual_seed(0)
    model = Raising(fail_at=3).train()
    model.net.head.bias.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.warns(UserWarning, match="train mode"):
        adapter = ux.ModelAdapter(model, (3, 16, 24), device="cpu", progress=False)
    params = _params(name, adapter, batch_size=2)
    if name == "gradcam":
        params["layer"] = "net.features.3"
    # craft cuts the model with torch.fx first: the trace meets the failure and says so in a SplitError
    with pytest.raises((RuntimeError, ux.SplitError), match="boom"):
        ux.create(name, adapter, **params).explain(random_inputs(adapter, batch=3), targets=0)
    assert hooks.count_hooks(model) == 0
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags


@pytest.mark.parametrize("name", ALL)
def test_train_mode_model_is_explained_in_eval_mode_and_left_unchanged(name):
    torch.manual_seed(0)
    model = Raising().train()
    with pytest.warns(UserWarning):
        adapter = ux.ModelAdapter(model, (3, 16, 24), device="cpu", progress=False)
    params = _params(name, adapter, **({"layer": "net.features.3"} if name == "gradcam" else {}))
    x = random_inputs(adapter, batch=2)
    stats = {k: v.clone() for k, v in model.bn.state_dict().items()}
    first = ux.create(name, adapter, **params).explain(x, targets=1)
    again = ux.create(name, adapter, **params).explain(x, targets=1)  # Dropout would make these differ
    torch.testing.assert_close(first.where, again.where, rtol=0, atol=0)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.bn.state_dict().items():  # BatchNorm statistics untouched
        torch.testing.assert_close(value, stats[key], rtol=0, atol=0)


def _bad_inputs(adapter):
    x = random_inputs(adapter, batch=2)
    return {
        "empty batch": (x[:0], None),
        "NaN input": (torch.full_like(x, float("nan")), None),
        "wrong shape": (x[:, :, :5], None),
        "integer input": (x.long(), None),
        "fractional target": (x, [1.7, 0]),
        "unknown class name": (x, ["zebra", "cat"]),
        "out of range target": (x, [0, 99]),
        "bool target": (x, [True, False]),
        "too many targets": (x, [0, 1, 2]),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(tiny_adapter(2))))
@pytest.mark.parametrize("name", ALL)
def test_every_bad_input_raises_a_uxai_error(name, case):
    adapter = tiny_adapter(2, class_names=["cat", "dog", "bird", "fish"])
    x, targets = _bad_inputs(adapter)[case]
    with pytest.raises(ux.UXAIError):
        ux.create(name, adapter, **_params(name, adapter)).explain(x, targets=targets)
    assert hooks.count_hooks(adapter.model) == 0


@pytest.mark.parametrize("name", ALL)
def test_targets_by_class_name(name):
    adapter = tiny_adapter(2, class_names=["cat", "dog", "bird", "fish"])
    x = random_inputs(adapter, batch=2)
    by_name = ux.create(name, adapter, **_params(name, adapter)).explain(x, targets=["Bird", "cat"])
    assert by_name.targets.tolist() == [2, 0]
    assert by_name.class_names == ["cat", "dog", "bird", "fish"]


@pytest.mark.parametrize("name", ALL)
def test_a_model_moved_after_the_adapter_was_built_is_refused(name):
    adapter = tiny_adapter(2)
    adapter.model.double()
    try:
        with pytest.raises(ux.UXAIError, match="model.to"):
            ux.create(name, adapter, **_params(name, adapter)).explain(random_inputs(adapter, batch=1))
    finally:
        adapter.model.float()
