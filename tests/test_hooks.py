"""No hook survives any hook-using entry point: normal call, bad argument, or a forward that raises.

One table of entry points, crossed with three situations (like Captum's generated hook tests).
Explainers that use hooks add their entry points to HOOK_ENTRY_POINTS.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import unified_xai as ux
from unified_xai.core import hooks

from conftest import TinyNet


FAIL = {"on": False}


def fail_if_asked(x):
    """Raises while FAIL["on"]; wrapped for torch.fx so traced graphs keep the runtime check."""
    if FAIL["on"]:
        raise RuntimeError("boom")
    return x


torch.fx.wrap("fail_if_asked")


class Faulty(nn.Module):
    """TinyNet whose forward raises between the features and the head while FAIL["on"];
    ``unused`` is a layer the forward never calls."""

    def __init__(self):
        super().__init__()
        self.net = TinyNet(2)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        feats = self.net.pool(self.net.features(x)).flatten(1)
        return self.net.head(fail_if_asked(feats))


def _split_call(layer):
    def run(adapter, x):
        split = adapter.split(layer)
        return split.h(split.g(x))

    return run


def _explainer_call(name, **params):
    def run(adapter, x):
        return ux.create(name, adapter, **params).explain(x, targets=0)

    return run


def _report_call(layer):
    def run(adapter, x):
        import tempfile

        with tempfile.TemporaryDirectory() as out:
            return ux.report(adapter, x, explainers=["wam", "gradcam"], concept_layer=layer, n_concepts=2,
                             top_concepts=1, maco=0, out=out, explainer_params={"wam": {"n_samples": 2},
                                                                             "gradcam": {"layer": layer}},
                             site=False, progress=False)

    return run


HOOK_ENTRY_POINTS = {
    "capture": lambda a, x, layer="net.features.1": a.capture(x, layer),
    "capture_many": lambda a, x, layer="net.features.1": a.capture(x, [layer, "net.head"]),
    "capture_grad": lambda a, x, layer="net.features.1": a.capture(x, layer, with_grad=True),
    "layer_handle": lambda a, x, layer="net.features.1": a.layer(layer).capture(x),
    "split_fx": lambda a, x, layer="net.features": _split_call(layer)(a, x),
    "layer_shapes": lambda a, x, layer=None: a.layer_shapes(x),
    "gradcam": lambda a, x, layer="net.features.1": _explainer_call("gradcam", layer=layer)(a, x),
    "report": lambda a, x, layer="net.features.1": _report_call(layer)(a, x),
}


def register_hook_entry_point(name, fn):
    HOOK_ENTRY_POINTS[name] = fn


SITUATIONS = ["normal", "unused_layer", "forward_raises", "train_mode"]


@pytest.mark.parametrize("situation", SITUATIONS)
@pytest.mark.parametrize("entry", sorted(HOOK_ENTRY_POINTS))
def test_no_hook_survives_and_model_is_restored(entry, situation):
    """Hooks are registered, then the call succeeds or fails after them; nothing of ours stays."""
    torch.manual_seed(0)
    model = Faulty().eval()
    model.net.features[0].weight.requires_grad_(False)  # a user's frozen layer stays frozen
    if situation == "train_mode":
        model.train()
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    adapter = ux.ModelAdapter(model, (3, 8, 8), device="cpu", progress=False)
    x = torch.randn(2, 3, 8, 8)
    call = HOOK_ENTRY_POINTS[entry]
    if situation in ("normal", "train_mode"):
        call(adapter, x)
    elif situation == "unused_layer":
        if entry in ("split_fx", "layer_shapes"):
            pytest.skip("takes no layer that the forward could skip")
        with pytest.raises(ux.UXAIError, match="not called"):
            call(adapter, x, layer="unused")
    else:
        FAIL["on"] = True
        try:
            with pytest.raises(RuntimeError, match="boom"):
                # hooks on the head: registered, then the forward dies before reaching it
                call(adapter, x) if entry in ("split_fx", "layer_shapes") else call(adapter, x, layer="net.head")
        finally:
            FAIL["on"] = False
    assert hooks.count_hooks(model) == 0
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags


class SwallowsExceptions(nn.Module):
    """A model whose forward catches every Exception (as some wrappers do)."""

    def __init__(self):
        super().__init__()
        self.net = TinyNet(2)
        self.calls = 0

    def forward(self, x):
        try:
            feats = self.net.features(x)
        except Exception:
            feats = torch.zeros(x.shape[0], 8, 4, 4)
        self.calls += 1
        return self.net.head(self.net.pool(feats).flatten(1))


def test_stop_forward_cannot_be_swallowed_by_the_model():
    torch.manual_seed(0)
    model = SwallowsExceptions().eval()
    adapter = ux.ModelAdapter(model, (3, 8, 8), device="cpu", progress=False)
    x = torch.randn(2, 3, 8, 8)
    acts = adapter.capture(x, "net.features.1")
    assert model.calls == 0, "the capture's early stop was swallowed: the forward went on"
    torch.testing.assert_close(acts, model.net.features[:2](x))


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.block(self.block(x)).mean((2, 3)))


def test_capture_of_a_module_called_twice_is_its_first_call_with_and_without_grad():
    torch.manual_seed(0)
    model = CalledTwice().eval()
    adapter = ux.ModelAdapter(model, (3, 8, 8), device="cpu", progress=False)
    x = torch.randn(2, 3, 8, 8)
    first = model.block(x).detach()
    torch.testing.assert_close(adapter.capture(x, "block"), first)
    torch.testing.assert_close(adapter.capture(x, "block", with_grad=True).detach(), first)
    with pytest.raises(ux.SplitError, match="called 2 times"):
        adapter.split("block")
