"""ModelAdapter: devices, eval mode, input validation, gradients, layer access and the g/h split."""
from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import unified_xai as ux
from unified_xai.core import hooks

from conftest import TinyNet, random_inputs, tiny_adapter


def test_modality_and_device(adapter_nd):
    assert adapter_nd.modality in {"signal", "image", "volume"}
    assert adapter_nd.device.type == "cpu"
    auto = ux.ModelAdapter(TinyNet(2), (3, 8, 8), device="auto")
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_predict_is_chunk_invariant(adapter_nd):
    x = random_inputs(adapter_nd, batch=7)
    full = adapter_nd.predict(x, batch_size=7)
    chunked = adapter_nd.predict(x, batch_size=2)
    torch.testing.assert_close(full, chunked)
    torch.testing.assert_close(full, adapter_nd.model(x))


def test_preprocess_is_applied():
    torch.manual_seed(0)
    model = TinyNet(2)
    adapter = ux.ModelAdapter(model, (3, 8, 8), preprocess=lambda t: 2 * t - 1, device="cpu")
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(adapter.predict(x), model(2 * x - 1))


def test_target_gradient_matches_autograd_and_freezes_params(adapter2d):
    x = random_inputs(adapter2d, batch=4)
    targets = torch.tensor([0, 1, 2, 3])
    scores, (grad,) = adapter2d.target_gradient(x, targets)
    for i in range(4):
        xi = x[i : i + 1].clone().requires_grad_(True)
        adapter2d.model(xi)[0, targets[i]].backward()
        torch.testing.assert_close(grad[i], xi.grad[0])
    assert all(p.grad is None or p.grad.abs().sum() > 0 for p in adapter2d.model.parameters())
    assert all(p.requires_grad for p in adapter2d.model.parameters())  # restored after the call
    adapter2d.model.zero_grad(set_to_none=True)
    adapter2d.target_gradient(x, targets)
    assert all(p.grad is None for p in adapter2d.model.parameters())  # no parameter gradients computed


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(2, 3, 16, 25), "dimension 3 is 25, not 24"),
        (torch.zeros(2, 1, 16, 24), "dimension 1 is 1, not 3"),
        (torch.zeros(2, 16, 24), "(B, 3, 16, 24)"),
        (torch.zeros(2, 3, 16, 24, dtype=torch.uint8), "floating point"),
        (torch.full((1, 3, 16, 24), float("nan")), "NaN or infinite"),
        (torch.full((1, 3, 16, 24), float("inf")), "NaN or infinite"),
        ("not a tensor", "torch.Tensor or numpy"),
    ],
)
def test_bad_inputs_raise_clear_errors(adapter2d, bad, message):
    with pytest.raises(ux.InputError, match=_re(message)):
        adapter2d.check_input(bad)


def test_single_sample_and_free_sizes():
    adapter = ux.ModelAdapter(TinyNet(2), (3, None, None), device="cpu")
    assert adapter.check_input(torch.zeros(3, 9, 13)).shape == (1, 3, 9, 13)
    assert adapter.check_input(torch.zeros(2, 3, 31, 17)).shape == (2, 3, 31, 17)


def test_bad_targets(adapter2d):
    x = random_inputs(adapter2d, batch=2)
    with pytest.raises(ux.InputError, match="class indices are in \\[0, 4\\)"):
        adapter2d.check_targets([0, 9], x)
    with pytest.raises(ux.InputError, match="one per input"):
        adapter2d.check_targets([0, 1, 2], x)


def test_wrong_layer_name_lists_closest(adapter2d):
    with pytest.raises(ux.LayerError) as info:
        adapter2d.layer("features.00")
    assert "'features.0'" in str(info.value) and "layer_names()" in str(info.value)
    with pytest.raises(ux.LayerError, match="closest valid names"):
        adapter2d.capture(random_inputs(adapter2d), ["features.1", "head2"])
    with pytest.raises(ux.LayerError):
        adapter2d.split("nope")


def test_capture_several_layers_in_one_forward(adapter2d):
    x = random_inputs(adapter2d)
    calls = []
    handle = adapter2d.model.register_forward_pre_hook(lambda m, i: calls.append(1))
    try:
        acts = adapter2d.capture(x, ["features.1", "features.3", "head"])
    finally:
        handle.remove()
    assert len(calls) == 1
    torch.testing.assert_close(acts["head"], adapter2d.predict(x))
    torch.testing.assert_close(acts["features.1"], adapter2d.model.features[:2](x))
    assert acts["features.3"].shape == (3, 8, 8, 12)


def _count_calls(modules):
    counter = {"n": 0}

    def hook(*_):
        counter["n"] += 1

    return counter, [m.register_forward_hook(hook) for m in modules]


TIMM_SPLITS = [
    ("resnet18", "layer3", ["conv1", "layer1", "layer2"]),
    ("convnext_atto", "stages.2", ["stem", "stages.0", "stages.1"]),
    ("vit_tiny_patch16_224", "blocks.8", ["patch_embed", "blocks.0", "blocks.7"]),
]


@pytest.mark.parametrize("name, layer, prefix", TIMM_SPLITS, ids=[s[0] for s in TIMM_SPLITS])
def test_split_equals_model_and_h_skips_prefix(name, layer, prefix):
    torch.manual_seed(0)
    adapter = ux.ModelAdapter(timm.create_model(name, pretrained=False), (3, 224, 224), device="cpu")
    x = torch.randn(2, 3, 224, 224)
    split = adapter.split(layer)
    assert split.method == "fx"
    with torch.no_grad():
        acts = split.g(x)
        counter, handles = _count_calls([adapter.model.get_submodule(p) for p in prefix])
        try:
            logits = split.h(acts)
        finally:
            for h in handles:
                h.remove()
        reference = adapter.predict(x)
    assert counter["n"] == 0, "h recomputed layers before the split"
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(acts, adapter.capture(x, layer))
    assert hooks.count_hooks(adapter.model) == 0


def test_vit_tokens_as_grid():
    torch.manual_seed(0)
    adapter = ux.ModelAdapter(timm.create_model("vit_tiny_patch16_224", pretrained=False), (3, 224, 224), device="cpu")
    x = torch.randn(1, 3, 224, 224)
    tokens = adapter.capture(x, "blocks.3")
    grid = adapter.capture(x, "blocks.3", as_grid=True)
    assert tokens.shape == (1, 197, 192) and grid.shape == (1, 192, 14, 14)
    torch.testing.assert_close(grid[0, :, 0, 1], tokens[0, 2])  # token 1+1 (after the class token) is cell (0, 1)


def test_split_builtin_like_sequential(adapter_nd):
    x = random_inputs(adapter_nd)
    split = adapter_nd.split("features")
    with torch.no_grad():
        torch.testing.assert_close(split.h(split.g(x)), adapter_nd.predict(x))


def test_split_refuses_cut_inside_a_skip_connection():
    adapter = ux.ModelAdapter(timm.create_model("resnet18", pretrained=False), (3, 64, 64), device="cpu")
    with pytest.raises(ux.UXAIError, match="skip connection"):
        adapter.split("layer2.0.conv1")


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.body = TinyNet(2)

    def forward(self, x):
        if x.sum() > 1e9:
            x = x * 0
        return self.body(x)


def test_split_of_untraceable_model_is_refused_with_remedy():
    torch.manual_seed(0)
    adapter = ux.ModelAdapter(Untraceable().eval(), (3, 8, 8), device="cpu")
    with pytest.raises(ux.SplitError, match="cannot trace") as info:
        adapter.split("body.features")
    assert "ux.Split(" in str(info.value)
    assert hooks.count_hooks(adapter.model) == 0


def test_user_split_unpacks():
    adapter = tiny_adapter(2)
    g, h = adapter.split("features")
    x = random_inputs(adapter)
    with torch.no_grad():
        torch.testing.assert_close(h(g(x)), adapter.predict(x))
    manual = ux.Split("features", g=adapter.model.features, h=lambda a: adapter.model.head(adapter.model.pool(a).flatten(1)))
    assert manual.method == "user"
    with torch.no_grad():
        torch.testing.assert_close(manual.h(manual.g(x)), adapter.predict(x))


def test_layer_shapes(adapter2d):
    rows = dict((n, s) for n, _, s in adapter2d.layer_shapes())
    assert rows["features.3"] == (1, 8, 8, 12) and rows["head"] == (1, 4)


def _re(text: str) -> str:
    import re

    return re.escape(text)
