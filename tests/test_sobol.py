"""Sobol attribution and WCAM on models whose ground truth is known analytically."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import unified_xai as ux
from unified_xai import wavelets

SIZES = {1: (1, 32), 2: (1, 16, 16), 3: (1, 8, 8, 8)}


class RegionSum(nn.Module):
    """Logit 0 = weighted sum of the input inside a region; logit 1 = its negative."""

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x):
        score = (x * self.weights).flatten(1).sum(1)
        return torch.stack([score, -score], 1)


def _region(ndim):
    shape = SIZES[ndim]
    weights = torch.zeros(shape)
    region = (slice(None),) + tuple(slice(s // 2, s // 2 + s // 4) for s in shape[1:])
    weights[region] = 1.0
    return weights, weights[0] > 0


@pytest.mark.parametrize("perturbation", ["inpainting", "blur", "amplitude"])
@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_where_maximum_in_planted_region(ndim, perturbation):
    weights, mask = _region(ndim)
    adapter = ux.ModelAdapter(RegionSum(weights), SIZES[ndim], device="cpu", progress=False)
    x = 1 + torch.rand(2, *SIZES[ndim], generator=torch.Generator().manual_seed(0))
    if perturbation == "blur":  # give the region texture, so that blurring it changes the score
        x = x + (weights > 0) * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).abs() * 3
    e = ux.create("sobol", adapter, grid_size=4, n_designs=32, perturbation=perturbation, blur_size=3).explain(x, 0)
    for where in e.where:
        assert mask.flatten()[where.flatten().argmax()]
        inside = where[mask].mean()
        assert inside > 3 * where[~mask].abs().mean()


def test_indices_match_analytic_linear_model():
    """Inpainting to 0 of a linear model: f = sum_c M_c s_c, so ST_c = s_c^2 / sum s^2."""
    weights = torch.tensor([[[1.0, 2.0], [3.0, 0.0]]]).repeat_interleave(4, 1).repeat_interleave(4, 2)
    adapter = ux.ModelAdapter(RegionSum(weights), (1, 8, 8), device="cpu", progress=False)
    x = torch.ones(1, 1, 8, 8)
    e = ux.create("sobol", adapter, grid_size=2, n_designs=1024).explain(x, 0)
    s = torch.tensor([1.0, 2.0, 3.0, 0.0]) ** 2
    torch.testing.assert_close(e.attributions.flatten(), s / s.sum(), atol=0.03, rtol=0)


class FineDetailEnergy(nn.Module):
    """Logit = energy of the finest Haar details (level 1) of the input: only the finest scale matters."""

    def __init__(self, ndim: int):
        super().__init__()
        self.ndim = ndim

    def forward(self, x):
        coeffs = wavelets.dwt(x, self.ndim, "haar", levels=2)
        energy = coeffs.details[-1].pow(2).flatten(1).sum(1)
        return torch.stack([energy, -energy], 1)


@pytest.mark.parametrize("ndim", [1, 2, 3], ids=["1d", "2d", "3d"])
def test_wavelet_sobol_finds_the_planted_scale(ndim):
    adapter = ux.ModelAdapter(FineDetailEnergy(ndim), SIZES[ndim], device="cpu", progress=False)
    x = torch.randn(2, *SIZES[ndim], generator=torch.Generator().manual_seed(0))
    e = ux.create("sobol_wavelet", adapter, levels=2, grid_size=2, n_designs=32).explain(x, 0)
    assert e.scales.shape == (2, 3) and e.scale_maps.shape == (2, 3, *SIZES[ndim][1:])
    assert e.scales.argmax(1).tolist() == [2, 2]  # approximation, level 2, level 1 (finest)
    assert (e.scales[:, :2] < 0.01).all()
    torch.testing.assert_close(e.scales.sum(1), torch.ones(2))
    torch.testing.assert_close(e.where, e.scale_maps.sum(1))


def test_bad_parameters():
    weights, _ = _region(2)
    adapter = ux.ModelAdapter(RegionSum(weights), SIZES[2], device="cpu")
    with pytest.raises(ValueError, match="power of two"):
        ux.create("sobol", adapter, n_designs=24)
    ux.create("sobol", adapter, n_designs=24, sampler="halton")
    with pytest.raises(ux.ParameterError, match="perturbation"):
        ux.create("sobol", adapter, perturbation="blurring")
    with pytest.raises(ux.ParameterError, match="grid_size"):
        ux.create("sobol", adapter, grid_size=0)
    with pytest.raises(ValueError, match="one entry per spatial dim"):
        ux.create("sobol", adapter, grid_size=(2, 2, 2)).explain(torch.rand(1, *SIZES[2]))
