"""Explainers recover the planted ground truth of the built-in datasets (class-evidence test items).

WAM (every variant): the largest-share level is the planted scale and the where-map maximum lies in
the planted region. Sobol: where-map maximum in the region. WCAM (sobol_wavelet): largest share is
the planted scale. Each on >= 90 % of the items checked. experiments/planted_recovery.py prints the
same figures on more items.
"""
from __future__ import annotations

import pytest
import torch

import unified_xai as ux
from unified_xai.metrics import explanation_recovery

PLANTED = ["planted-image", "planted-audio", "planted-volume"]


def _explain(model_name, method, items, **params):
    adapter = ux.data.load_model(model_name, progress=False)
    dataset = ux.data.load_dataset(model_name, split="test")
    index = torch.nonzero(dataset.has_evidence).flatten()[:items]
    if method in ("wam", "sobol_wavelet"):
        params.update(wavelet=dataset.wavelet, levels=dataset.levels)
    explanation = ux.create(method, adapter, **params).explain(dataset.inputs[index], dataset.targets[index])
    return explanation_recovery(explanation, dataset, index)


@pytest.mark.parametrize("variant", ["gradient", "smoothgrad", "integrated"])
@pytest.mark.parametrize("model_name", PLANTED)
def test_wam_recovers_planted_scale_and_place(model_name, variant):
    result = _explain(model_name, "wam", 48, variant=variant, n_samples=16)
    assert result["n"] == 48
    assert result["scale_accuracy"] >= 0.9, result
    assert result["where_accuracy"] >= 0.9, result
    assert result["mass_ratio"] > 3, result


@pytest.mark.parametrize("model_name", PLANTED)
def test_sobol_puts_maximum_in_planted_region(model_name):
    # 8^3 cells cost 514 x N forwards per volume: fewer items and designs keep the suite short
    items, designs = (10, 16) if model_name == "planted-volume" else (16, 32)
    result = _explain(model_name, "sobol", items, grid_size=8, n_designs=designs, batch_size=256)
    assert result["where_accuracy"] >= 0.9, result


@pytest.mark.parametrize("model_name", PLANTED)
def test_wavelet_sobol_finds_planted_scale(model_name):
    result = _explain(model_name, "sobol_wavelet", 16, grid_size=2, n_designs=16, batch_size=256)
    assert result["scale_accuracy"] >= 0.9, result
    assert result["mass_ratio"] > 1.5, result


def test_wam_beats_chance_on_digits_sanity():
    """No ground truth on digits, but WAM's where-map should favour the strokes over the empty border."""
    adapter = ux.data.load_model("digits", progress=False)
    x, y = ux.data.load_dataset("digits", split="test")[:32]
    e = ux.create("wam", adapter, variant="integrated", n_samples=16).explain(x, y)
    ink = (x[:, 0] > 0.2).float()
    share_on_ink = (e.where * ink).flatten(1).sum(1) / e.where.flatten(1).sum(1)
    assert (share_on_ink > ink.flatten(1).mean(1)).float().mean() >= 0.9
