"""NMF / NNLS solvers of the CRAFT concept extraction: recovery, agreement with scikit-learn and scipy,
KKT optimality, determinism, validation."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF

import unified_xai as ux
from unified_xai.concepts.nmf import _stalled, check_nonnegative, nmf, nnls


pytestmark = pytest.mark.usefixtures("one_thread")


def relative_error(A, U, W) -> float:
    A = torch.as_tensor(A, dtype=torch.float64)
    return float(torch.linalg.norm(A - U.double() @ W.double()) / torch.linalg.norm(A))


def planted(N=400, D=30, r=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    U = torch.rand(N, r, generator=g) * (torch.rand(N, r, generator=g) < 0.5)
    W = torch.rand(r, D, generator=g) * (torch.rand(r, D, generator=g) < 0.5)
    return (U @ W).to(dtype), U, W


def noisy(N=2000, D=64, r=8, seed=0) -> torch.Tensor:
    """|randn| factors times |randn| plus |randn| noise: non-negative, approximately low rank."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, r, generator=g).abs() @ torch.randn(r, D, generator=g).abs()
            + 0.5 * torch.randn(N, D, generator=g).abs())


# --------------------------------------------------------------------------- nmf
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_recovery_of_planted_factors(dtype):
    A, _, W_true = planted(dtype=dtype)
    U, W = nmf(A, 5)
    assert relative_error(A, U, W) < 1e-3
    cosine = (torch.nn.functional.normalize(W.double(), dim=1)
              @ torch.nn.functional.normalize(W_true.double(), dim=1).T).numpy()
    rows, cols = linear_sum_assignment(-cosine)
    assert cosine[rows, cols].min() >= 0.99


@pytest.mark.parametrize("rank", [5, 10, 30])
def test_hals_error_at_most_sklearn_cd(rank):
    A = noisy()
    hals = relative_error(A, *nmf(A, rank, max_iter=200, tol=1e-4))
    reference = relative_error(A, *nmf(A, rank, solver="sklearn", max_iter=200, tol=1e-4))
    assert hals <= reference * 1.01


def test_sklearn_solver_is_a_direct_sklearn_call():
    A = noisy(N=500, D=20)
    model = NMF(n_components=4, init="nndsvda", solver="cd", max_iter=300, tol=1e-4, random_state=3)
    U_ref = model.fit_transform(A.numpy())
    U, W = nmf(A, 4, solver="sklearn", max_iter=300, seed=3)
    # the same components, sorted by decreasing ||U_k|| ||W_k||
    order = np.argsort(-(np.linalg.norm(U_ref, axis=0) * np.linalg.norm(model.components_, axis=1)), kind="stable")
    np.testing.assert_allclose(U.numpy(), U_ref[:, order], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(W.numpy(), model.components_[order], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", ["hals", "sklearn"])
def test_components_sorted_by_energy(solver):
    U, W = nmf(noisy(N=500, D=20), 6, solver=solver)
    energy = torch.linalg.vector_norm(U, dim=0) * torch.linalg.vector_norm(W, dim=1)
    assert torch.all(energy[:-1] >= energy[1:])
    assert (U >= 0).all() and (W >= 0).all()


def test_hals_balances_the_factors():
    U, W = nmf(noisy(N=500, D=20), 4)
    torch.testing.assert_close(torch.linalg.vector_norm(U, dim=0), torch.linalg.vector_norm(W, dim=1))


@pytest.mark.parametrize("init", ["nndsvda", "nndsvd", "random"])
def test_same_seed_same_factors(init):
    A = noisy(N=500, D=20)
    U1, W1 = nmf(A, 5, init=init, seed=7)
    U2, W2 = nmf(A, 5, init=init, seed=7)
    assert torch.equal(U1, U2) and torch.equal(W1, W2)
    if init == "random":  # the seed is used
        assert not torch.equal(W1, nmf(A, 5, init=init, seed=8)[1])


def test_stopping_rule_averages_five_iterations_and_ignores_an_overshoot():
    slow = [1.0, 0.99999, 0.99998, 0.99997, 0.99996, 0.99995]  # 1e-5 per iteration
    assert _stalled(slow, tol=1e-4) and not _stalled(slow, tol=1e-6)
    assert not _stalled(slow[:-1], tol=1e-4)  # fewer than 5 iterations to average over
    uneven = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9]  # stalled now, but it fell by 10% within the window
    assert not _stalled(uneven, tol=1e-4)
    overshoot = [1.0, 0.9, 0.8, 0.7, 0.6, 1.2]  # the last step rose: the next iteration undoes it
    assert not _stalled(overshoot, tol=1e-4)


def test_target_error_stops_once_reached():
    A = noisy()
    full = relative_error(A, *nmf(A, 8, tol=0, max_iter=300))
    target = 1.02 * full
    reached = relative_error(A, *nmf(A, 8, tol=0, max_iter=300, target_error=target))
    assert full < reached <= target * (1 + 1e-6)


def test_zero_rows_and_columns_give_no_nan():
    A, _, _ = planted(N=100, D=20, r=3)
    A[5] = 0
    A[:, 7] = 0
    U, W = nmf(A, 3)
    assert torch.isfinite(U).all() and torch.isfinite(W).all()
    assert U[5].max() < 1e-6 and W[:, 7].max() < 1e-6
    U, W = nmf(torch.zeros(50, 10), 3)
    assert torch.equal(U, torch.zeros(50, 3)) and torch.equal(W, torch.zeros(3, 10))


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_extreme_scales_are_rescaled(scale):
    A = noisy(N=300, D=12)
    A /= A.max()  # what an extreme-scale A is factorised as
    error = relative_error(A, *nmf(A, 3))
    U, W = nmf(A * scale, 3)
    assert torch.isfinite(U).all() and torch.isfinite(W).all()
    assert relative_error(A * scale, U, W) == pytest.approx(error, rel=1e-3)
    A, W = nnls_problem(N=30, dtype=torch.float32)
    torch.testing.assert_close(nnls(A * scale, W) / scale, nnls(A, W), rtol=1e-4, atol=1e-5)


def test_dtype_and_device_follow_the_input():
    A64 = noisy(N=300, D=12).double()
    for solver in ("hals", "sklearn"):
        U, W = nmf(A64, 3, solver=solver)
        assert U.dtype == W.dtype == torch.float64 and U.shape == (300, 3) and W.shape == (3, 12)
    U, W = nmf(A64.float().numpy(), 3, device="cpu")  # an array gives CPU float32 tensors
    assert isinstance(U, torch.Tensor) and U.dtype == W.dtype == torch.float32 and U.device.type == "cpu"
    assert nnls(A64, W.double()).dtype == torch.float64
    assert nnls(A64.float(), W).dtype == torch.float32


# --------------------------------------------------------------------------- nnls
def kkt_violation(A, W, U) -> tuple[float, float]:
    """Largest |gradient| on the support and largest negative gradient off it, relative to max |A Wᵀ|."""
    A, W, U = A.double(), W.double(), U.double()
    gradient = U @ (W @ W.T) - A @ W.T
    scale = (A @ W.T).abs().amax(1, keepdim=True)
    active = U > 0
    return float((gradient.abs() * active / scale).max()), float((-gradient * ~active / scale).max())


def nnls_problem(N=300, K=8, D=20, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(K, D, generator=g)
    A = torch.randn(N, D, generator=g) + 0.5 * torch.rand(N, K, generator=g) @ W  # some optimal u_j are 0
    return A.to(dtype), W.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nnls_matches_scipy_row_by_row(dtype):
    A, W = nnls_problem(dtype=dtype)
    U = nnls(A, W)
    reference = np.stack([scipy.optimize.nnls(W.double().numpy().T, a)[0] for a in A.double().numpy()])
    assert (reference == 0).any(1).mean() > 0.5 and (reference > 0).any()  # both kinds of coefficients occur
    scale = np.abs(reference).max(1, keepdims=True)
    assert np.abs(U.double().numpy() - reference).max() / scale.min() < (1e-9 if dtype == torch.float64 else 1e-4)
    assert np.array_equal(U.numpy() > 0, reference > 0)


def test_nnls_satisfies_kkt_on_an_nmf_bank():
    A = noisy(N=3000, D=64, r=12)
    _, W = nmf(A, 12)
    U = nnls(A, W)
    stationarity, dual = kkt_violation(A, W, U)
    assert stationarity < 1e-5 and dual < 1e-5
    assert (U == 0).any() and (U >= 0).all()


def test_nnls_chunked_equals_unchunked():
    A, W = nnls_problem(N=1000)
    whole = nnls(A, W)
    torch.testing.assert_close(nnls(A, W, chunk_rows=37), whole, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(nnls(A, W, U0=whole), whole, rtol=1e-12, atol=1e-12)


def test_nnls_recovers_nonnegative_combinations_exactly():
    _, W = nnls_problem()
    g = torch.Generator().manual_seed(1)
    K = W.shape[0]
    U_true = torch.rand(50, K, generator=g, dtype=torch.float64) * (torch.rand(50, K, generator=g) < 0.6)
    torch.testing.assert_close(nnls(U_true @ W, W), U_true, rtol=0, atol=1e-10)


def test_nnls_with_duplicate_concepts_reaches_the_minimum():
    A, W = nnls_problem(N=200)
    W = torch.cat([W, W[:2]])  # a singular Gram: the minimiser is not unique, its objective is
    U = nnls(A, W)
    objective = ((A - U @ W) ** 2).sum(1).numpy()
    reference = np.array([scipy.optimize.nnls(W.numpy().T, a)[1] ** 2 for a in A.numpy()])
    assert (U >= 0).all() and np.abs(objective / reference - 1).max() < 1e-8


def test_nnls_zero_rows_and_zero_concepts():
    A, W = nnls_problem(N=20)
    A[3] = 0
    W[2] = 0
    U = nnls(A, W)
    assert torch.isfinite(U).all()
    assert (U[3] == 0).all() and (U[:, 2] == 0).all()


# --------------------------------------------------------------------------- validation
def negative_matrix():
    A = torch.rand(100, 30)
    A.view(-1)[:1234] = -0.1
    A[0, 0] = -0.31
    return A


@pytest.mark.parametrize("call, words", [
    (lambda: nmf(torch.rand(10), 2), ["2-D", "(10,)"]),
    (lambda: nmf(torch.rand(0, 5), 2), ["empty"]),
    (lambda: nmf(torch.tensor([[1.0, float("nan")], [float("inf"), float("nan")]]), 1), ["2 NaN", "1 inf"]),
    (lambda: nmf(negative_matrix(), 3), ["non-negative activations", "min -0.31", "1,234 of 100×30", "ReLU"]),
    (lambda: nmf(torch.rand(4, 30), 5), ["fewer rows than concepts", "4 crops for rank 5", "smaller patch stride"]),
    (lambda: nmf(torch.rand(40, 3), 5), ["rank 5", "3 features"]),
    (lambda: nmf(torch.rand(40, 8), 0), ["rank", ">= 1"]),
    (lambda: nmf(torch.rand(40, 8), 2, solver="mu"), ["'mu'", "hals", "sklearn"]),
    (lambda: nmf(torch.rand(40, 8), 2, init="svd"), ["'svd'", "nndsvda", "random"]),
    (lambda: nmf(torch.rand(40, 8), 2, max_iter=0), ["max_iter", ">= 1"]),
    (lambda: nmf(torch.rand(40, 8), 2, tol=-1.0), ["tol", ">= 0"]),
    (lambda: nmf(torch.rand(40, 8), 2, solver="sklearn", target_error=0.1), ["target_error", "hals"]),
    (lambda: nnls(torch.rand(8), torch.rand(3, 8)), ["2-D", "(8,)", "A[None]"]),
    (lambda: nnls(torch.rand(5, 8), -torch.rand(3, 8)), ["non-negative concept bank W", "min"]),
    (lambda: nnls(torch.rand(5, 8), torch.rand(3, 7)), ["8 features", "W has 7"]),
    (lambda: nnls(torch.rand(5, 8), torch.rand(3, 8), U0=torch.rand(5, 2)), ["U0", "(5, 3)"]),
    (lambda: nnls(torch.rand(5, 8), torch.rand(3, 8), chunk_rows=0), ["chunk_rows"]),
    (lambda: nnls(torch.rand(5, 8), torch.full((3, 8), float("nan"))), ["W has 24 NaN"]),
    (lambda: check_nonnegative(negative_matrix()), ["min -0.31", "1,234"]),
])
def test_invalid_input_raises_a_library_error(call, words):
    with pytest.raises(ux.UXAIError) as info:
        call()
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_nnls_allows_negative_data_and_nonnegative_check_passes():
    A, W = nnls_problem(N=10)
    assert (A < 0).any()
    check_nonnegative(W)  # no error
    assert (nnls(A, W) >= 0).all()
