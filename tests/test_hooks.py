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
    """TinyNet whose forward raises between the features and the head while FAIL["on"]."""

    def __init__(self):
        super().__init__()
        self.net = TinyNet(2)

    def forward(self, x):
        feats = self.net.pool(self.net.features(x)).flatten(1)
        return self.net.head(fail_if_asked(feats))


class FaultyUntraceable(Faulty):
    def forward(self, x):
        if x.sum() > 1e9:  # data-dependent branch: forces the hook-based split
            x = x * 0
        return super().forward(x)


def _split_call(layer):
    def run(adapter, x):
        split = adapter.split(layer)
        return split.h(split.g(x))

    return run


def _explainer_call(name, **params):
    def run(adapter, x):
        return ux.create(name, adapter, **params).explain(x, targets=0)

    return run


HOOK_ENTRY_POINTS = {
    "capture": lambda a, x, layer="net.features.1": a.capture(x, layer),
    "capture_many": lambda a, x, layer="net.features.1": a.capture(x, [layer, "net.head"]),
    "capture_grad": lambda a, x, layer="net.features.1": a.capture(x, layer, with_grad=True),
    "layer_handle": lambda a, x, layer="net.features.1": a.layer(layer).capture(x),
    "split_fx": lambda a, x, layer="net.features": _split_call(layer)(a, x),
    "layer_shapes": lambda a, x, layer=None: a.layer_shapes(x),
    "gradcam": lambda a, x, layer="net.features.1": _explainer_call("gradcam", layer=layer)(a, x),
}


def register_hook_entry_point(name, fn):
    HOOK_ENTRY_POINTS[name] = fn


SITUATIONS = ["normal", "bad_layer", "forward_raises"]


@pytest.mark.parametrize("situation", SITUATIONS)
@pytest.mark.parametrize("model_cls", [Faulty, FaultyUntraceable], ids=["traceable", "untraceable"])
@pytest.mark.parametrize("entry", sorted(HOOK_ENTRY_POINTS))
def test_no_hook_survives(entry, model_cls, situation):
    torch.manual_seed(0)
    model = model_cls()
    adapter = ux.ModelAdapter(model, (3, 8, 8), device="cpu", progress=False)
    x = torch.randn(2, 3, 8, 8)
    call = HOOK_ENTRY_POINTS[entry]
    if situation == "normal":
        call(adapter, x)
    elif situation == "bad_layer":
        if entry == "layer_shapes":
            with pytest.raises(ux.InputError):
                call(adapter, x[:, :1])
        else:
            with pytest.raises(ux.LayerError):
                call(adapter, x, layer="net.nope")
    else:
        FAIL["on"] = True
        try:
            with pytest.raises(RuntimeError, match="boom"):
                # hooks on the head: registered, then the forward dies before reaching it
                call(adapter, x) if entry in ("split_fx", "layer_shapes") else call(adapter, x, layer="net.head")
        finally:
            FAIL["on"] = False
    assert hooks.count_hooks(model) == 0


def test_hook_split_with_forward_failure_in_h_leaves_no_hook():
    torch.manual_seed(0)
    model = FaultyUntraceable()
    adapter = ux.ModelAdapter(model, (3, 8, 8), device="cpu")
    split = adapter.split("net.features")
    assert split.method == "hooks"
    acts = split.g(torch.randn(2, 3, 8, 8))
    FAIL["on"] = True
    try:
        with pytest.raises(RuntimeError):
            split.h(acts)
    finally:
        FAIL["on"] = False
    assert hooks.count_hooks(model) == 0
