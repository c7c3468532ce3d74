"""Registry: decorator, create, listing, parameter validation, third-party entry points."""
from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest
import torch

import unified_xai as ux
from unified_xai.core import registry
from unified_xai.explainers.base import Explainer

from conftest import random_inputs


def test_saliency_is_registered_and_created(adapter2d):
    assert "saliency" in ux.list_explainers()
    assert ux.list_explainers("sal*") == ["saliency"]
    explainer = ux.create("saliency", adapter2d, absolute=False)
    assert explainer.config == {"absolute": False, "objective": None, "batch_size": None}


def test_unknown_explainer_lists_names(adapter2d):
    with pytest.raises(ux.UnknownNameError, match="closest: 'saliency'"):
        ux.create("salincy", adapter2d)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"absolut": True}, "unknown parameter 'absolut'.*closest: 'absolute'"),
        ({"batch_size": 0}, "parameter 'batch_size' got 0; allowed: int >= 1"),
        ({"batch_size": 2.5}, "parameter 'batch_size' got 2.5"),
        ({"absolute": "yes"}, "parameter 'absolute' got 'yes'; allowed: bool"),
    ],
)
def test_parameters_validated_up_front(adapter2d, params, message):
    with pytest.raises(ux.ParameterError, match=message):
        ux.create("saliency", adapter2d, **params)


def test_param_choices_message():
    spec = {"variant": registry.Param("a", choices=("a", "b"))}
    with pytest.raises(ux.ParameterError, match="allowed: one of 'a', 'b'"):
        registry.validate_params("demo", spec, {"variant": "c"})


def test_register_custom_explainer(adapter2d):
    @ux.register_explainer("test_input_norm")
    class InputNorm(Explainer):
        params = {"power": registry.Param(2.0, types=(float, int), low=0, low_inclusive=False)}

        def _explain(self, x, targets):
            return ux.Explanation(where=x.abs().pow(self.config["power"]).sum(1), method=self.name)

    try:
        x = random_inputs(adapter2d, 2)
        out = ux.create("test_input_norm", adapter2d, power=1).explain(x)
        torch.testing.assert_close(out.where, x.abs().sum(1))
        assert out.method == "test_input_norm" and out.params == {"power": 1}
    finally:
        registry._REGISTRY.pop("test_input_norm")


def test_entry_point_plugin(monkeypatch, adapter2d):
    """A third-party distribution exposes a module in the group ``unified_xai.explainers``."""
    module = types.ModuleType("uxai_plugin_demo")
    exec(
        "import unified_xai as ux\n"
        "from unified_xai.explainers.base import Explainer\n"
        "@ux.register_explainer('plugin_constant')\n"
        "class Constant(Explainer):\n"
        "    params = {}\n"
        "    def _explain(self, x, targets):\n"
        "        return ux.Explanation(where=x.new_ones(x.shape[0], *x.shape[2:]), method=self.name)\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, "uxai_plugin_demo", module)
    entry = importlib.metadata.EntryPoint("plugin_constant", "uxai_plugin_demo", registry.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points

    def fake_entry_points(**kwargs):
        if kwargs.get("group") == registry.ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints([entry])
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    try:
        assert "plugin_constant" in ux.list_explainers()
        out = ux.create("plugin_constant", adapter2d).explain(random_inputs(adapter2d, 2))
        assert out.where.shape == (2, 16, 24)
    finally:
        registry._REGISTRY.pop("plugin_constant", None)


def test_broken_plugin_warns_instead_of_breaking(monkeypatch):
    entry = importlib.metadata.EntryPoint("broken", "no_such_module_xyz", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: importlib.metadata.EntryPoints([entry]) if kw.get("group") else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with pytest.warns(UserWarning, match="could not load explainer plugin 'broken'"):
        names = ux.list_explainers()
    assert "saliency" in names
