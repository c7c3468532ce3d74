"""Sobol engine: analytic indices (Ishigami, linear), agreement with SALib, convergence, designs, edge cases."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from unified_xai.sampling import (
    ESTIMATORS, SAMPLERS, HaltonSampler, JansenEstimator, ReplicatedDesign, SobolSampler, estimate,
    replicated_design, sobol_indices,
)

# ---------------------------------------------------------------------------------------------------
# Ishigami: f(x) = sin x1 + a sin^2 x2 + b x3^4 sin x1, x_i ~ U(-pi, pi)
# Closed-form partial variances (Ishigami & Homma 1990; Sobol & Levitan 1999):
#   V1  = 1/2 (1 + b pi^4 / 5)^2           (main effect of x1)
#   V2  = a^2 / 8                          (main effect of x2)
#   V3  = 0                                (x3 acts only through its interaction with x1)
#   V13 = b^2 pi^8 (1/18 - 1/50) = 8 b^2 pi^8 / 225
#   V   = V1 + V2 + V13 = a^2/8 + b pi^4/5 + b^2 pi^8/18 + 1/2
#   S  = (V1, V2, 0) / V                   ST = (V1 + V13, V2, V13) / V
# With a = 7, b = 0.1: S = (0.3139, 0.4424, 0), ST = (0.5576, 0.4424, 0.2437).
# ---------------------------------------------------------------------------------------------------
A_ISH, B_ISH = 7.0, 0.1
_V1 = 0.5 * (1 + B_ISH * math.pi ** 4 / 5) ** 2
_V2 = A_ISH ** 2 / 8
_V13 = 8 * B_ISH ** 2 * math.pi ** 8 / 225
_V = _V1 + _V2 + _V13
ISHIGAMI_FIRST = torch.tensor([_V1 / _V, _V2 / _V, 0.0], dtype=torch.float64)
ISHIGAMI_TOTAL = torch.tensor([(_V1 + _V13) / _V, _V2 / _V, _V13 / _V], dtype=torch.float64)

N_ANALYTIC = 2 ** 12  # 4096 designs -> 20,480 evaluations; measured max errors ~1e-3 (tolerance 0.02)


def ishigami(x: torch.Tensor) -> torch.Tensor:
    """Ishigami on unit-cube inputs ``(n, 3)``, rescaled to ``[-pi, pi]``; float64 output ``(n,)``."""
    z = (x.double() * 2 - 1) * math.pi
    return torch.sin(z[:, 0]) + A_ISH * torch.sin(z[:, 1]) ** 2 + B_ISH * z[:, 2] ** 4 * torch.sin(z[:, 0])


def test_ishigami_closed_form_variance_is_consistent():
    assert _V == pytest.approx(A_ISH ** 2 / 8 + B_ISH * math.pi ** 4 / 5 + B_ISH ** 2 * math.pi ** 8 / 18 + 0.5)
    assert ISHIGAMI_TOTAL.tolist() == pytest.approx([0.5576, 0.4424, 0.2437], abs=1e-4)
    assert ISHIGAMI_FIRST.tolist() == pytest.approx([0.3139, 0.4424, 0.0], abs=1e-4)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_ishigami_analytic_indices(estimator):
    res = sobol_indices(ishigami, d=3, n_designs=N_ANALYTIC, estimator=estimator, seed=0)
    assert res.n_evaluations == N_ANALYTIC * 5 and res.estimator == estimator and res.sampler == "sobol"
    assert res.total.shape == (3,) and res.first.shape == (3,)
    assert res.variance == pytest.approx(_V, rel=0.01)
    total_err = (res.total.double() - ISHIGAMI_TOTAL).abs().max().item()
    first_err = (res.first.double() - ISHIGAMI_FIRST).abs().max().item()
    assert total_err < 0.02, (estimator, res.total)
    assert first_err < 0.02, (estimator, res.first)


def test_ishigami_jansen_default_and_saltelli_first_order_are_tight():
    # the headline checks: Jansen total (default estimator) and Saltelli 2010 first order
    total = sobol_indices(ishigami, d=3, n_designs=N_ANALYTIC).total.double()
    first = sobol_indices(ishigami, d=3, n_designs=N_ANALYTIC, estimator="saltelli").first.double()
    assert (total - ISHIGAMI_TOTAL).abs().max() < 0.005
    assert (first - ISHIGAMI_FIRST).abs().max() < 0.005


@pytest.mark.parametrize("estimator", ["jansen", "saltelli"])
def test_linear_model_analytic_indices(estimator):
    # f = sum a_i x_i, x_i ~ U(0, 1) independent: no interactions, S_i = ST_i = a_i^2 / sum a_j^2
    a = torch.tensor([1.0, -2.0, 3.0, 0.5, 0.0], dtype=torch.float64)
    res = sobol_indices(lambda x: x.double() @ a, d=5, n_designs=2 ** 10, estimator=estimator, seed=3)
    expected = a ** 2 / (a ** 2).sum()
    assert (res.total.double() - expected).abs().max() < 0.02
    assert (res.first.double() - expected).abs().max() < 0.02
    assert res.total[4].abs() < 1e-6  # a variable f ignores gets exactly 0 from Jansen


# ---------------------------------------------------------------------------------------------------
# SALib: same model outputs in SALib's layout, same estimator (Saltelli 2010 / Jansen, pooled variance)
# ---------------------------------------------------------------------------------------------------

SALib_sobol = pytest.importorskip("SALib.analyze.sobol")
from SALib.sample import sobol as salib_sample  # noqa: E402

PROBLEM = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[0.0, 1.0]] * 3}


def _to_salib_layout(y: torch.Tensor, d: int, n: int) -> np.ndarray:
    """Our ``[f_A; f_B; f_C1..f_Cd]`` -> SALib's per-design rows ``[A, AB_1..AB_d, B]`` (no second order)."""
    f_a, f_b, f_c = y[:n], y[n:2 * n], y[2 * n:].reshape(d, n)
    return torch.cat([f_a[:, None], f_c.T, f_b[:, None]], dim=1).reshape(-1).numpy()


def _salib(y_salib: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SALib_sobol.analyze(PROBLEM, y_salib, calc_second_order=False, num_resamples=2, seed=1)


@pytest.mark.parametrize("n", [64, 1024])
def test_agrees_with_salib_on_our_design(n):
    d = 3
    design = ReplicatedDesign.generate(d, n, "sobol", seed=5, dtype=torch.float64)
    y = ishigami(design.full())
    ours = estimate(y, d, n, "saltelli")
    ref = _salib(_to_salib_layout(y, d, n))
    # SALib divides by the biased variance of [f_A; f_B] (2N), ours by the unbiased one (2N - 1); it also
    # standardises Y by the grand mean and std first, which neither estimator depends on.
    factor = (2 * n - 1) / (2 * n)
    np.testing.assert_allclose(ours.total.double().numpy(), ref["ST"] * factor, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.first.double().numpy(), ref["S1"] * factor, rtol=1e-9, atol=1e-12)
    # Jansen (default) has the same total formula
    np.testing.assert_allclose(estimate(y, d, n).total.double().numpy(), ref["ST"] * factor, rtol=1e-9)


def test_agrees_with_salib_on_salib_design():
    d, n, seed = 3, 256, 11
    x_salib = salib_sample.sample(PROBLEM, n, calc_second_order=False, seed=seed)  # (N (d + 2), d)
    step = d + 2
    a, b = torch.from_numpy(x_salib[0::step]), torch.from_numpy(x_salib[step - 1::step])
    design = ReplicatedDesign(a, b)
    # SALib's AB_j rows are our C_j rows: A with column j from B
    for j in range(d):
        assert torch.equal(design.rows((2 + j) * n, (3 + j) * n), torch.from_numpy(x_salib[1 + j::step]))
    # same seed -> our scrambled Sobol sampler draws exactly SALib's base sequence
    ours_design = ReplicatedDesign.generate(d, n, "sobol", seed=seed, dtype=torch.float64)
    assert torch.equal(ours_design.A, a) and torch.equal(ours_design.B, b)

    ours = estimate(ishigami(design.full()), d, n)
    ref = _salib(ishigami(torch.from_numpy(x_salib)).numpy())
    np.testing.assert_allclose(ours.total.double().numpy(), ref["ST"] * (2 * n - 1) / (2 * n), rtol=1e-9)


# ---------------------------------------------------------------------------------------------------
# Convergence and the variance choice
# ---------------------------------------------------------------------------------------------------

def _mean_abs_error(n: int, seeds=range(4), sampler="sobol") -> float:
    errs = [(sobol_indices(ishigami, 3, n, sampler=sampler, seed=s).total.double() - ISHIGAMI_TOTAL).abs().mean()
            for s in seeds]
    return float(torch.stack(errs).mean())


def test_error_falls_as_n_designs_grows():
    small, large = _mean_abs_error(2 ** 6), _mean_abs_error(2 ** 12)
    assert large < small / 10, (small, large)  # measured ~0.05 -> ~2e-4
    assert large < 0.005


def test_pooled_variance_is_not_worse_than_variance_of_a_at_small_n():
    # Design choice of JansenEstimator: V pooled over A and B (2N outputs) vs over A only (reference code).
    torch.manual_seed(0)
    d = 8
    w1, w2 = torch.randn(d, 16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)

    def net(x):
        return torch.tanh(x.double() @ w1 / 2) @ w2

    truth = sobol_indices(net, d, 2 ** 13, seed=99).total.double()
    rmse = {}
    for pooled in (True, False):
        errs = [((sobol_indices(net, d, 16, sampler="mc", seed=s, estimator=JansenEstimator(pooled)).total.double()
                  - truth) ** 2).mean() for s in range(60)]
        rmse[pooled] = float(torch.stack(errs).mean().sqrt())
    assert rmse[True] < rmse[False], rmse


# ---------------------------------------------------------------------------------------------------
# Invariances
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_affine_invariance(estimator):
    base = sobol_indices(ishigami, 3, 256, estimator=estimator, seed=2)
    moved = sobol_indices(lambda x: 3.0 * ishigami(x) + 1000.0, 3, 256, estimator=estimator, seed=2)
    torch.testing.assert_close(moved.total, base.total, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.first, base.first, atol=1e-5, rtol=0)


def test_permuting_inputs_permutes_indices():
    perm = [2, 0, 1]
    base = sobol_indices(ishigami, 3, 2 ** 11, seed=4).total
    permuted = sobol_indices(lambda x: ishigami(x[:, perm]), 3, 2 ** 11, seed=4).total
    # Ishigami's variable k receives variable perm[k] of the permuted function
    torch.testing.assert_close(permuted[perm], base, atol=0.02, rtol=0)


def test_seed_determinism_and_batch_size_invariance():
    first = sobol_indices(ishigami, 3, 64, seed=7)
    again = sobol_indices(ishigami, 3, 64, seed=7)
    chunked = sobol_indices(ishigami, 3, 64, seed=7, batch_size=7)
    other = sobol_indices(ishigami, 3, 64, seed=8)
    assert torch.equal(first.total, again.total) and torch.equal(first.first, again.first)
    assert torch.equal(first.total, chunked.total) and torch.equal(first.first, chunked.first)
    assert not torch.equal(first.total, other.total)


def test_chunks_are_bounded_by_batch_size():
    sizes = []

    def f(x):
        sizes.append(x.shape[0])
        return x.sum(1)

    sobol_indices(f, 4, 32, batch_size=50)
    assert sum(sizes) == 32 * 6 and max(sizes) == 50


def test_numpy_function_and_dtype():
    as_torch = sobol_indices(lambda x: x[:, 0] * x[:, 1] + x[:, 2], 3, 128, seed=1)
    as_numpy = sobol_indices(lambda x: (x[:, 0] * x[:, 1] + x[:, 2]).numpy(), 3, 128, seed=1)
    as_numpy_f64 = sobol_indices(lambda x: np.asarray(x, dtype=np.float64) @ np.array([1.0, 0.0, 1.0]), 3, 128)
    torch.testing.assert_close(as_numpy.total, as_torch.total)
    assert as_torch.total.dtype == torch.float32 and as_numpy_f64.total[1] == 0

    seen = {}

    def f64(x):
        seen["dtype"] = x.dtype
        return x.sum(1)

    res = sobol_indices(f64, 3, 16, dtype=torch.float64)
    assert seen["dtype"] == torch.float64 and res.total.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device():  # pragma: no cover - no GPU on CI
    res = sobol_indices(ishigami, 3, 64, device="cuda")
    assert res.total.device.type == "cuda"
    torch.testing.assert_close(res.total.cpu(), sobol_indices(ishigami, 3, 64).total, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------
# Samplers and designs
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_design_shape_range_and_block_structure(sampler):
    d, n = 5, 32
    x = replicated_design(d, n, sampler=sampler, seed=3)
    assert x.shape == (n * (d + 2), d) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    a, b = x[:n], x[n:2 * n]
    assert not torch.equal(a, b)
    for i in range(d):
        c = x[(2 + i) * n:(3 + i) * n]
        others = [j for j in range(d) if j != i]
        assert torch.equal(c[:, i], b[:, i])  # column i from B
        assert torch.equal(c[:, others], a[:, others])  # every other column from A
    # seeded: same seed identical, different seed different
    assert torch.equal(x, replicated_design(d, n, sampler=sampler, seed=3))
    assert not torch.equal(x, replicated_design(d, n, sampler=sampler, seed=4))


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sampler_interface(sampler):
    pts = SAMPLERS[sampler]().sample(16, 6, seed=0)
    assert isinstance(pts, torch.Tensor) and pts.shape == (16, 6) and pts.dtype == torch.float64
    assert ((pts >= 0) & (pts <= 1)).all()


def test_design_rows_in_chunks_equal_full_design():
    design = ReplicatedDesign.generate(4, 16, "halton", seed=1, dtype=torch.float64)
    full = design.full()
    assert len(design) == full.shape[0] == 16 * 6 and design.d == 4 and design.n_designs == 16
    parts = [design.rows(s, s + 13) for s in range(0, len(design), 13)]
    assert torch.equal(torch.cat(parts), full)


def test_unscrambled_samplers_are_deterministic_and_start_at_zero():
    for sampler in (SobolSampler(scramble=False), HaltonSampler(scramble=False)):
        x = replicated_design(3, 8, sampler=sampler, seed=1)
        assert torch.equal(x, replicated_design(3, 8, sampler=sampler, seed=2))
        assert torch.equal(x[0], torch.zeros(3))  # first point of A: the fully masked input


def test_sobol_needs_a_power_of_two():
    with pytest.raises(ValueError, match="power of two.*got 48; use 32 or 64"):
        sobol_indices(ishigami, 3, n_designs=48)
    res = sobol_indices(ishigami, 3, n_designs=48, sampler="halton")  # other samplers take any N
    assert res.n_designs == 48 and torch.isfinite(res.total).all()


def test_sobol_dimension_limit():
    with pytest.raises(ValueError, match="at most 21201 dimensions.*d <= 10600"):
        replicated_design(10601, 2)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="unknown sampler 'sobl'.*'sobol', 'halton', 'lhs', 'mc'"):
        sobol_indices(ishigami, 3, sampler="sobl")
    with pytest.raises(ValueError, match="unknown estimator 'jansn'.*'jansen', 'saltelli', 'homma', 'janon', 'glen'"):
        sobol_indices(ishigami, 3, estimator="jansn")


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_designs must be an integer >= 2"):
        replicated_design(3, 1)
    with pytest.raises(ValueError, match="d .* must be a positive integer"):
        replicated_design(0, 8)
    with pytest.raises(ValueError, match="batch_size"):
        sobol_indices(ishigami, 3, 8, batch_size=0)


# ---------------------------------------------------------------------------------------------------
# Edge cases: constant output, non-finite output, wrong shapes
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("value", [0.0, 3.5, -1e4])
def test_constant_function_gives_zeros_and_warns(estimator, value):
    with pytest.warns(RuntimeWarning, match="did not vary"):
        res = sobol_indices(lambda x: torch.full((x.shape[0],), value), 4, 16, estimator=estimator)
    assert torch.equal(res.total, torch.zeros(4)) and torch.equal(res.first, torch.zeros(4))
    assert res.variance == 0.0


def test_constant_up_to_rounding_is_constant():
    # float32 outputs near 1e4 that differ by one unit in the last place (~1e-3): rounding noise, not signal
    def f(x):
        return (1e4 + torch.where(x[:, 1] > 0.5, 1e-3, 0.0)).float()

    assert f(torch.tensor([[0.0, 0.0], [0.0, 1.0]])).unique().numel() == 2
    with pytest.warns(RuntimeWarning, match="did not vary"):
        res = sobol_indices(f, 2, 16)
    assert torch.equal(res.total, torch.zeros(2))


def test_tiny_but_real_variation_is_not_flagged():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = sobol_indices(lambda x: 1e-4 * x[:, 0].double(), 2, 64)
    assert res.total[0] == pytest.approx(1.0, abs=0.05) and res.total[1] == 0


def test_estimate_constant_outputs():
    with pytest.warns(RuntimeWarning, match="did not vary"):
        res = estimate(torch.ones(8 * 5), d=3, n_designs=8)
    assert torch.equal(res.total, torch.zeros(3)) and res.sampler is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_output_is_a_clear_error(bad):
    def f(x):
        out = x.sum(1)
        out[x[:, 0] > 0.9] = bad
        return out

    with pytest.raises(ValueError, match=r"NaN or inf for \d+ of 96 design rows.*\(A\).*nan_to_num"):
        sobol_indices(f, 4, 16, batch_size=10)
    y = torch.arange(96.0)
    y[40] = bad  # row 40 = block 2 = C_0
    with pytest.raises(ValueError, match=r"for 1 of 96 design rows.*40 \(C_0\)"):
        estimate(y, 4, 16)


def test_wrong_output_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"1-D output of length 80.*got shape \(80, 1\).*squeeze"):
        sobol_indices(lambda x: x[:, :1], 3, 16)
    with pytest.raises(ValueError, match="length n_designs \\* \\(d \\+ 2\\) = 16 \\* 5 = 80"):
        estimate(torch.zeros(79), 3, 16)


def test_progress_bar_runs():
    res = sobol_indices(ishigami, 3, 16, progress=True, batch_size=16)
    assert torch.isfinite(res.total).all()
