"""The shared objective layer: values, gradients, algebra, every gradient explainer, errors, hooks."""
from __future__ import annotations

import pytest
import torch

import unified_xai as ux
from unified_xai.core import hooks
from unified_xai.core.objectives import pooled_activations

from conftest import random_inputs, tiny_adapter

O = ux.objectives
GRADIENT_EXPLAINERS = ["saliency", "input_x_gradient", "smoothgrad", "integrated_gradients", "wam"]


def _manual(adapter, x, fn):
    """Objective value and input gradient computed by hand with a forward hook on features.1 / features.3."""
    store = {}
    handles = [adapter.model.features[i].register_forward_hook(
        lambda m, i_, o, i=i: store.__setitem__(i, o)) for i in (1, 3)]
    try:
        x = x.clone().requires_grad_(True)
        logits = adapter.model(x)
        value = fn(logits, store)
        (grad,) = torch.autograd.grad(value.sum(), x)
    finally:
        for h in handles:
            h.remove()
    return value.detach(), grad


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_values_and_gradients_match_hand_computation(ndim):
    adapter = tiny_adapter(ndim)
    x = random_inputs(adapter, batch=3)
    targets = torch.tensor([0, 1, 2])
    cases = [
        (O.Logit(), lambda lg, s: lg.gather(1, targets.view(-1, 1)).squeeze(1)),
        (O.Logit(2), lambda lg, s: lg[:, 2]),
        (O.Channel("features.3", 5), lambda lg, s: s[3][:, 5].flatten(1).mean(1)),
        (O.Neuron("features.1", 2), lambda lg, s: s[1][(slice(None), 2) + tuple(d // 2 for d in s[1].shape[2:])]),
        (2 * O.Channel("features.1", 1) - O.Logit(3) / 4,
         lambda lg, s: 2 * s[1][:, 1].flatten(1).mean(1) - lg[:, 3] / 4),
    ]
    v = torch.linspace(-1, 1, 8)
    cases.append((O.Direction("features.3", v), lambda lg, s: s[3].flatten(2).mean(2) @ v))

    def cos_dir(lg, s):
        a = s[3].flatten(2).mean(2)
        dot = a @ v
        return dot * (dot / (a.norm(dim=1) * v.norm())).clamp_min(0.1) ** 2

    cases.append((O.Direction("features.3", v, cossim_pow=2), cos_dir))
    for objective, fn in cases:
        scores, (grad,) = adapter.target_gradient(x, targets, objective=objective)
        want_value, want_grad = _manual(adapter, x, fn)
        torch.testing.assert_close(scores, want_value, rtol=1e-5, atol=1e-6, msg=objective.describe())
        torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-6, msg=objective.describe())
        assert hooks.count_hooks(adapter.model) == 0


def test_default_objective_is_the_target_logit_in_every_explainer(adapter2d):
    x = random_inputs(adapter2d, batch=2)
    for name in GRADIENT_EXPLAINERS + ["gradcam"]:
        kw = {"n_samples": 4} if name in ("smoothgrad", "integrated_gradients", "wam") else {}
        plain = ux.create(name, adapter2d, **kw).explain(x, targets=1)
        explicit = ux.create(name, adapter2d, objective=O.Logit(), **kw).explain(x, targets=1)
        torch.testing.assert_close(plain.where, explicit.where, rtol=1e-5, atol=1e-7)
        assert explicit.params["objective"] == "logit(target)"


def test_objectives_are_linear_in_every_gradient_explainer(adapter2d):
    x = random_inputs(adapter2d, batch=2)
    a, b = O.Channel("features.3", 2), O.Logit(0)
    for name in ["saliency", "integrated_gradients", "wam", "smoothgrad"]:
        kw = {"n_samples": 4} if name != "saliency" else {}
        kw["absolute"] = False
        if name == "wam":
            kw = {"n_samples": 4, "variant": "integrated"}

        def attr(objective):
            e = ux.create(name, adapter2d, objective=objective, **kw).explain(x)
            raw = e.raw_attributions()
            return torch.cat([t.flatten() for t in raw.values()])

        torch.testing.assert_close(attr(2 * a - b), 2 * attr(a) - attr(b), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_complete_on_a_channel_objective(adapter_nd):
    x = random_inputs(adapter_nd, batch=2)
    objective = O.Channel("features.3", 4) + 0.5 * O.Logit(1)
    e = ux.create("integrated_gradients", adapter_nd, objective=objective, n_samples=64).explain(x)
    total = e.attributions.flatten(1).sum(1)
    t = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        f_x, _ = adapter_nd.objective_scores(x, objective, t)
        f_0, _ = adapter_nd.objective_scores(torch.zeros_like(x), objective, t)
    torch.testing.assert_close(total, f_x - f_0, rtol=2e-3, atol=2e-4)


def test_wam_integrated_on_an_objective_is_complete_in_the_wavelet_domain(adapter2d):
    x = random_inputs(adapter2d, batch=2)
    objective = O.Channel("features.3", 6)
    e = ux.create("wam", adapter2d, objective=objective, n_samples=64, levels=2).explain(x)
    total = sum(t.flatten(1).sum(1) for t in e.raw_attributions().values())
    with torch.no_grad():
        f_x, _ = adapter2d.objective_scores(x, objective, torch.zeros(2, dtype=torch.long))
        f_0, _ = adapter2d.objective_scores(torch.zeros_like(x), objective, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(total, f_x - f_0, rtol=2e-3, atol=2e-4)


def test_gradcam_on_a_channel_objective_of_its_own_layer(adapter2d):
    x = random_inputs(adapter2d, batch=2)
    # d mean(A_c) / dA = one-hot(c) / positions: the CAM is channel c's map scaled by 1/positions
    e = ux.create("gradcam", adapter2d, layer="features.3", objective=O.Channel("features.3", 3),
                  relu=False).explain(x)
    act = adapter2d.capture(x, "features.3")
    cam = act[:, 3] / act[0, 0].numel()
    want = torch.nn.functional.interpolate(cam[:, None], size=x.shape[2:], mode="bicubic", align_corners=False)[:, 0]
    torch.testing.assert_close(e.where, want, rtol=1e-4, atol=1e-6)


def test_pooled_activations_of_token_layers_use_patch_tokens_only():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=3, img_size=32).eval()
    adapter = ux.ModelAdapter(model, (3, 32, 32), device="cpu", batch_size=8, progress=False)
    x = torch.rand(2, 3, 32, 32)
    tokens = adapter.capture(x, "blocks.0")
    pooled = pooled_activations(adapter, tokens)
    prefix = tokens.shape[1] - (32 // 16) ** 2 if model.patch_embed.patch_size[0] == 16 else model.num_prefix_tokens
    torch.testing.assert_close(pooled, tokens[:, model.num_prefix_tokens:].mean(1))
    assert prefix >= 0
    scores, (grad,) = adapter.target_gradient(x, torch.zeros(2, dtype=torch.long),
                                              objective=O.Channel("blocks.0", 1))
    torch.testing.assert_close(scores, tokens[:, model.num_prefix_tokens:, 1].mean(1), rtol=1e-5, atol=1e-6)
    assert grad.abs().sum() > 0


def test_bad_objectives_are_clear_errors(adapter2d):
    x = random_inputs(adapter2d, batch=1)
    with pytest.raises(ux.LayerError, match="closest valid names"):
        ux.create("saliency", adapter2d, objective=O.Channel("featurs.3", 0))
    with pytest.raises(ux.UXAIError, match="has 8 channels"):
        ux.create("saliency", adapter2d, objective=O.Channel("features.3", 99)).explain(x)
    with pytest.raises(ux.UXAIError, match="outside layer"):
        ux.create("saliency", adapter2d, objective=O.Neuron("features.3", 0, (50, 0))).explain(x)
    with pytest.raises(ux.ParameterError, match="objective"):
        ux.create("wam", adapter2d, objective="channel 3")
    with pytest.raises(ux.ParameterError, match="all zeros"):
        O.Direction("features.3", torch.zeros(8))
    with pytest.raises(ux.UXAIError, match="8 channels"):
        ux.create("saliency", adapter2d, objective=O.Direction("features.3", torch.ones(5))).explain(x)
    with pytest.raises(ux.UXAIError, match="out of range"):
        ux.create("saliency", adapter2d, objective=O.Logit(17)).explain(x)
    with pytest.raises(ux.ParameterError):
        O.Channel("features.3", -1)
    assert hooks.count_hooks(adapter2d.model) == 0


def test_descriptions_and_equality():
    a = O.Channel("layer4", 3)
    assert (2 * a - O.Logit()).describe() == "2*channel(layer4, 3) - logit(target)"
    assert (-a).describe() == "-channel(layer4, 3)"
    assert O.Channel("layer4", 3) == a and O.Channel("layer4", 4) != a
    assert O.Direction("layer4", torch.ones(3)) != O.Direction("layer4", torch.tensor([1.0, 2.0, 3.0]))
    assert O.Direction("layer4", torch.ones(3)) == O.Direction("layer4", torch.ones(3))
    assert O.Logit("espresso").describe() == "logit('espresso')"
