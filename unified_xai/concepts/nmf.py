"""Non-negative matrix factorisation and non-negative least squares in torch, for CRAFT concepts.

:func:`nmf` factorises non-negative activations ``A (N, D) ~ U (N, r) @ W (r, D)``: the rows of ``W``
are the concept bank, ``U`` the concept coefficients of each crop. :func:`nnls` gives the coefficients
``U >= 0`` of new activations on a FIXED bank ``W``. Both use HALS -- exact minimisation over one
component at a time, vectorised over all rows -- in torch, on the input's device.

>>> U, W = nmf(A, rank=10)           # A (N, D) >= 0
>>> U_new = nnls(A_new, W)           # (M, 10), argmin_{U >= 0} ||A_new - U W||^2
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..core.errors import InputError, ParameterError
from ..core.model import resolve_device

SOLVERS = ("hals", "sklearn")
INITS = ("nndsvda", "nndsvd", "random")
#: memory budget of one nnls row chunk
_CHUNK_BYTES = 100 * 2**20


# --------------------------------------------------------------------------- validation
def _as_matrix(A, name: str, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``A`` as a finite, non-empty 2-D float tensor (float64 stays float64, anything else -> float32)."""
    A = torch.as_tensor(A, device=device)
    if A.ndim != 2:
        raise InputError(f"{name} must be a 2-D matrix (N rows, D features), got shape {tuple(A.shape)}")
    if A.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(A.shape)})")
    if dtype is None:
        dtype = torch.float64 if A.dtype == torch.float64 else torch.float32
    A = A.to(dtype)
    n_nan, n_inf = int(torch.isnan(A).sum()), int(torch.isinf(A).sum())
    if n_nan or n_inf:
        raise InputError(f"{name} has {n_nan:,} NaN and {n_inf:,} inf entries (of {_shape(A)}); all must be finite")
    return A


def _shape(A: torch.Tensor) -> str:
    return "×".join(str(s) for s in A.shape)


def check_nonnegative(A, what: str = "activations") -> None:
    """Raise :class:`InputError` when ``A`` (tensor or array, any shape) has a negative entry.

    The message gives the minimum and how many entries are negative; callers that know where ``A``
    comes from (e.g. the layer names) catch it and add that.
    """
    A = torch.as_tensor(A)
    negative = A < 0
    n_negative = int(negative.sum())
    if n_negative:
        raise InputError(f"NMF needs non-negative {what}; got min {float(A.min()):.3g} in {n_negative:,} of"
                         f" {_shape(A)} entries; pick a layer after a ReLU (or another non-negative"
                         f" activation), or clip the {what} at 0")


def _check_iterations(max_iter, tol) -> None:
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ParameterError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not tol >= 0:  # also refuses NaN
        raise ParameterError(f"tol must be >= 0, got {tol!r}")


# --------------------------------------------------------------------------- HALS core
def _hals_sweep(X: torch.Tensor, num: torch.Tensor, gram: torch.Tensor, floor: float) -> None:
    """One pass of exact coordinate minimisation over the rows of ``X`` (K, M), in place.

    Minimises ``||A - Xᵀ Y||²`` over ``X_k >= floor`` for k = 0..K-1 in turn, the others fixed, given
    ``num = Y Aᵀ`` (K, M) and ``gram = Y Yᵀ`` (K, K). Factors are stored (K, M) so that a component
    is a contiguous row: its update is one matrix-vector product over all M rows.
    """
    diag = gram.diagonal()
    inv = torch.where(diag > 0, 1 / diag, torch.zeros_like(diag))[:, None]  # a zero row of Y leaves X_k at floor
    num = num * inv
    cross = gram * inv
    cross.fill_diagonal_(0)  # x_k <- (num_k - sum_{j != k} gram_kj x_j) / gram_kk
    buffer = torch.empty_like(X[0])
    for k in range(X.shape[0]):
        torch.addmv(num[k], X.T, cross[k], alpha=-1, out=buffer)
        torch.clamp(buffer, min=floor, out=X[k])


def _hals(A: torch.Tensor, Ut: torch.Tensor, W: torch.Tensor, max_iter: int, tol: float,
          target_error: float | None, floor: float) -> None:
    """HALS iterations on ``A ~ Utᵀ W`` (Ut (r, N), W (r, D)), in place.

    The error is read off the Gram matrices an iteration computes anyway,
    ``||A - UW||² = ||A||² - 2<A Wᵀ, U> + <UᵀU, W Wᵀ>``, so no N×D residual is formed.
    """
    norm2 = float(torch.linalg.vector_norm(A, dtype=torch.float64)) ** 2
    previous = math.inf
    for _ in range(max_iter):
        P, Q = W @ A.T, W @ W.T  # (A Wᵀ)ᵀ, W Wᵀ: one O(N·D·r) product per half-step
        _hals_sweep(Ut, P, Q, floor)
        S = Ut @ Ut.T
        err2 = norm2 - 2 * float((P * Ut).sum(dtype=torch.float64)) + float((S * Q).sum(dtype=torch.float64))
        error = math.sqrt(max(err2, 0.0) / norm2)  # relative error of (Ut, W)
        if (target_error is not None and error <= target_error) or previous - error <= tol * error:
            return
        previous = error
        _hals_sweep(W, Ut @ A, S, floor)
        # HALS leaves the scale split U_k·c, W_k/c free; balance ||U_k|| = ||W_k|| so neither drifts
        # towards under/overflow
        scale = torch.sqrt(torch.linalg.vector_norm(W, dim=1) / torch.linalg.vector_norm(Ut, dim=1))
        Ut *= scale[:, None]
        W /= scale[:, None]


# --------------------------------------------------------------------------- initialisation
def _randomized_svd(A: torch.Tensor, rank: int, generator: torch.Generator):
    """Leading ``rank`` singular triplets of ``A`` by a seeded randomised range finder (Halko et al.),
    with scikit-learn's oversampling and number of power iterations."""
    N, D = A.shape
    q = min(rank + 10, N, D)
    n_iter = 7 if rank < 0.1 * min(N, D) else 4
    omega = torch.randn(D, q, generator=generator, dtype=A.dtype).to(A.device)  # drawn on the CPU: same on any device
    Y = A @ omega
    for _ in range(n_iter):  # power iterations, re-orthonormalised so small singular values survive
        Z = torch.linalg.qr(A.T @ torch.linalg.qr(Y).Q).Q
        Y = A @ Z
    basis = torch.linalg.qr(Y).Q
    Ub, S, Vh = torch.linalg.svd(basis.T @ A, full_matrices=False)
    return (basis @ Ub)[:, :rank], S[:rank], Vh[:rank]


def _initialize(A: torch.Tensor, rank: int, init: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``U (N, r)``, ``W (r, D)``, as scikit-learn's ``_initialize_nmf`` computes them."""
    generator = torch.Generator().manual_seed(seed)
    N, D = A.shape
    mean = A.mean()
    if init == "random":
        avg = torch.sqrt(mean / rank)
        U = torch.randn(N, rank, generator=generator, dtype=A.dtype).to(A.device).abs_() * avg
        W = torch.randn(rank, D, generator=generator, dtype=A.dtype).to(A.device).abs_() * avg
        return U, W
    # NNDSVD (Boutsidis & Gallopoulos 2008): per singular pair, the dominant sign part of (u_j, v_j)
    x, S, y = _randomized_svd(A, rank, generator)
    xp, xn, yp, yn = x.clamp(min=0), (-x).clamp(min=0), y.clamp(min=0), (-y).clamp(min=0)
    m_p = torch.linalg.vector_norm(xp, dim=0) * torch.linalg.vector_norm(yp, dim=1)
    m_n = torch.linalg.vector_norm(xn, dim=0) * torch.linalg.vector_norm(yn, dim=1)
    positive = m_p > m_n
    u, v, sigma = torch.where(positive, xp, xn), torch.where(positive[:, None], yp, yn), torch.where(positive, m_p, m_n)
    u[:, 0], v[0], sigma[0] = x[:, 0].abs(), y[0].abs(), 1  # the leading pair is one-signed (Perron-Frobenius)
    tiny = torch.finfo(A.dtype).tiny
    lbd = torch.sqrt(S * sigma)
    U = lbd * u / torch.linalg.vector_norm(u, dim=0).clamp(min=tiny)
    W = lbd[:, None] * v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp(min=tiny)
    U[U < 1e-6], W[W < 1e-6] = 0, 0
    if init == "nndsvda":  # zeros would stay zeros under multiplicative updates; fill with the mean of A
        U[U == 0], W[W == 0] = mean, mean
    return U, W


def _order(U: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Components sorted by decreasing energy ``||U_k||·||W_k||`` (scale-free, so both solvers agree)."""
    energy = torch.linalg.vector_norm(U, dim=0) * torch.linalg.vector_norm(W, dim=1)
    order = torch.argsort(energy, descending=True, stable=True)
    return U[:, order].contiguous(), W[order].contiguous()


# --------------------------------------------------------------------------- public API
def nmf(A, rank: int, *, seed: int = 0, solver: str = "hals", init: str = "nndsvda", max_iter: int = 500,
        tol: float = 1e-4, device: str | torch.device | None = None,
        target_error: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative factorisation ``A ~ U @ W`` minimising ``||A - U W||_F``.

    Parameters
    ----------
    A : tensor or array (N, D), non-negative and finite, e.g. N crops × D channels of activations.
    rank : number of components r, ``1 <= r <= min(N, D)``.
    seed : seeds the initialisation (``"random"`` and the randomised SVD of ``"nndsvd*"``); the result is
        deterministic for a seed (on one device and thread count).
    solver : ``"hals"`` (torch HALS, Cichocki & Phan 2009; Gillis 2014) or ``"sklearn"`` (scikit-learn's
        ``NMF(solver="cd")`` on the CPU, the reference).
    init : ``"nndsvda"`` (NNDSVD, zeros filled with the mean of A), ``"nndsvd"`` or ``"random"``, as in
        scikit-learn.
    max_iter : maximum number of iterations (one iteration updates U then W).
    tol : HALS stops when an iteration lowers the relative error by less than ``tol`` times its value;
        ``"sklearn"`` passes it to scikit-learn (a projected-gradient criterion).
    device : where to compute and return; ``None`` is A's device (the CPU for an array), ``"auto"`` CUDA
        when present.
    target_error : HALS only: stop once the relative error ``||A - UW||_F / ||A||_F`` is at most this.

    Returns
    -------
    U : tensor (N, r) >= 0, coefficients.
    W : tensor (r, D) >= 0, components. float64 if A is float64, else float32. Components are sorted by
        decreasing ``||U_k||·||W_k||``; the factorisation is not normalised (HALS returns ``||U_k|| =
        ||W_k||``, scikit-learn its own split). HALS entries are floored at ``1e-12 · sqrt(mean(A))``
        rather than 0, so that a component that hits zero can come back. An all-zero ``A`` gives
        ``U``, ``W`` all zero (an exact factorisation).

    Raises
    ------
    InputError : A not 2-D, empty, not finite, or negative (see :func:`check_nonnegative`); fewer rows or
        features than ``rank``.
    ParameterError : unknown solver or init, ``rank < 1``, ``max_iter < 1``, ``tol < 0``.
    """
    if solver not in SOLVERS:
        raise ParameterError(f"unknown NMF solver {solver!r}; valid: {', '.join(SOLVERS)}")
    if init not in INITS:
        raise ParameterError(f"unknown NMF init {init!r}; valid: {', '.join(INITS)}")
    _check_iterations(max_iter, tol)
    if target_error is not None and (solver != "hals" or not target_error >= 0):
        raise ParameterError(f"target_error must be >= 0 and is for solver='hals' only, got {target_error!r}"
                             f" with solver={solver!r}")
    if not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ParameterError(f"rank must be an integer >= 1, got {rank!r}")
    if device is not None:
        device = resolve_device(device)
    A = _as_matrix(A, "A", device=device)
    check_nonnegative(A)
    N, D = A.shape
    if rank > N:
        raise InputError(f"fewer rows than concepts: {N} crops for rank {rank}; give more images or a smaller"
                         f" patch stride")
    if rank > D:
        raise InputError(f"rank {rank} exceeds the {D} features (channels) of A; use rank <= {D}")
    if not A.any():
        return A.new_zeros(N, rank), A.new_zeros(rank, D)
    if solver == "sklearn":
        from sklearn.decomposition import NMF

        model = NMF(n_components=rank, init=init, solver="cd", max_iter=max_iter, tol=tol, random_state=seed)
        U = model.fit_transform(A.cpu().numpy())
        U, W = torch.from_numpy(U).to(A), torch.from_numpy(model.components_).to(A)
        return _order(U, W)
    U, W = _initialize(A, rank, init, seed)
    floor = 1e-12 * math.sqrt(float(A.mean()))
    Ut, W = U.T.clamp(min=floor).contiguous(), W.clamp(min=floor)
    _hals(A, Ut, W, max_iter, tol, target_error, floor)
    return _order(Ut.T, W)


def nnls(A, W, *, max_iter: int = 200, tol: float = 1e-6, U0=None, chunk_rows: int | None = None) -> torch.Tensor:
    """Non-negative least squares coefficients ``argmin_{U >= 0} ||A - U W||_F²`` for a fixed ``W``.

    Rows are independent problems; all are solved at once by exact coordinate descent (HALS) on the
    Gram matrices ``W Wᵀ`` and ``A Wᵀ``, warm-started from ``relu(A Wᵀ (W Wᵀ)^+)``, in chunks of rows.
    A row stops when no coefficient moved by more than ``tol`` times the row's largest coefficient in
    one pass; zero coefficients are exactly 0, so the support is the active set of the solution.

    Parameters
    ----------
    A : tensor or array (N, D), finite (may be negative). One row is ``A[None]``.
    W : tensor or array (K, D), non-negative and finite, e.g. the concept bank returned by :func:`nmf`.
    max_iter : maximum number of passes over the K coefficients.
    tol : per-row relative stopping threshold (see above).
    U0 : optional warm start (N, K), e.g. a previous solution; negative entries are clipped to 0.
    chunk_rows : rows per chunk; by default as many as fit in about 100 MB of working memory.

    Returns
    -------
    U : tensor (N, K) >= 0 on A's device, float64 if A is float64, else float32.

    Raises
    ------
    InputError : A or W not 2-D, empty, not finite, W negative, mismatched D, U0 of the wrong shape.
    ParameterError : ``max_iter < 1``, ``tol < 0``, ``chunk_rows < 1``.
    """
    _check_iterations(max_iter, tol)
    if chunk_rows is not None and (not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1):
        raise ParameterError(f"chunk_rows must be an integer >= 1 or None, got {chunk_rows!r}")
    A = _as_matrix(A, "A")
    W = _as_matrix(W, "W", device=A.device, dtype=A.dtype)
    check_nonnegative(W, what="concept bank W")
    (N, D), K = A.shape, W.shape[0]
    if W.shape[1] != D:
        raise InputError(f"A has {D} features but W has {W.shape[1]}; W must be (K, {D})")
    if U0 is not None:
        U0 = _as_matrix(U0, "U0", device=A.device, dtype=A.dtype)
        if U0.shape != (N, K):
            raise InputError(f"U0 must be (N, K) = ({N}, {K}), got {tuple(U0.shape)}")
    if chunk_rows is None:  # per row: A Wᵀ, its scaled copy, U, the previous U and a buffer (K each)
        chunk_rows = max(1, _CHUNK_BYTES // (5 * K * A.element_size()))
    Q = W @ W.T
    diag = Q.diagonal()
    inv = torch.where(diag > 0, 1 / diag, torch.zeros_like(diag))[:, None]  # a zero row of W gets coefficient 0
    cross = Q * inv
    cross.fill_diagonal_(0)
    pinv = torch.linalg.pinv(Q, hermitian=True)
    U = A.new_empty(N, K)
    for start in range(0, N, chunk_rows):
        rows = slice(start, start + chunk_rows)
        Pt = W @ A[rows].T  # (K, n): coefficients stored per component, as in _hals_sweep
        Ut = (pinv @ Pt).clamp_(min=0) if U0 is None else U0[rows].T.clamp(min=0)
        U[rows] = _nnls_rows(Ut.contiguous(), Pt * inv, cross, max_iter, tol).T
    return U


def _nnls_rows(Ut: torch.Tensor, num: torch.Tensor, cross: torch.Tensor, max_iter: int, tol: float) -> torch.Tensor:
    """Coordinate descent on the rows of one chunk; a converged row is taken out, so each row's result does
    not depend on the others (nor on the chunking). ``num`` and ``cross`` are scaled by ``1 / diag(W Wᵀ)``."""
    out = torch.empty_like(Ut)
    todo = torch.arange(Ut.shape[1], device=Ut.device)
    buffer = torch.empty_like(Ut[0])
    for _ in range(max_iter):
        previous = Ut.clone()
        for k in range(Ut.shape[0]):
            torch.addmv(num[k], Ut.T, cross[k], alpha=-1, out=buffer)
            torch.clamp(buffer, min=0, out=Ut[k])
        done = (Ut - previous).abs().amax(0) <= tol * Ut.amax(0)
        if done.any():
            out[:, todo[done]] = Ut[:, done]
            todo, Ut, num = todo[~done], Ut[:, ~done].contiguous(), num[:, ~done].contiguous()
            if not todo.numel():
                return out
            buffer = buffer[:Ut.shape[1]]
    out[:, todo] = Ut
    return out
