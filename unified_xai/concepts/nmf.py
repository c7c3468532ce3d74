"""Non-negative matrix factorisation and non-negative least squares in torch, for CRAFT concepts.

:func:`nmf` factorises non-negative activations ``A (N, D) ~ U (N, r) @ W (r, D)``: the rows of ``W``
are the concept bank, ``U`` the concept coefficients of each crop. :func:`nnls` gives the coefficients
``U >= 0`` of new activations on a FIXED bank ``W``. Both are built on HALS sweeps -- exact
minimisation over one component at a time, vectorised over all rows -- in torch, on the input's device;
``nmf`` accelerates them (Gram reuse, extrapolation), ``nnls`` finishes them exactly by batched block
principal pivoting.

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
#: nmf init: up to this smaller side of A, the SVD comes from the Gram matrix on that side
_GRAM_SVD_MAX = 256
#: magnitudes of A (and W) outside this range are rescaled first: their squares would under/overflow
_SAFE_RANGE = (1e-10, 1e10)
#: nmf: the stopping test averages the error decrease over this many iterations
_WINDOW = 5
#: nmf: HALS sweeps over U, then over W, per iteration (see _hals)
_SWEEPS = (4, 3)
#: nnls: coordinate-descent sweeps that pick the starting support of the exact solve
_CD_SWEEPS = 10


# --------------------------------------------------------------------------- validation
def _as_matrix(A, name: str, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``A`` as a finite, non-empty 2-D float tensor (float64 stays float64, anything else -> float32)."""
    A = torch.as_tensor(A, device=device).detach()
    if A.ndim != 2:
        raise InputError(f"{name} must be a 2-D matrix (N rows, D features), got shape {tuple(A.shape)}"
                         f"{f'; for one row pass {name}[None]' if A.ndim == 1 else ''}")
    if A.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(A.shape)})")
    if dtype is None:
        dtype = torch.float64 if A.dtype == torch.float64 else torch.float32
    A = A.to(dtype)
    if not A.isfinite().all():
        n_nan, n_inf = int(A.isnan().sum()), int(A.isinf().sum())
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
def _scaled(num: torch.Tensor, gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``num / diag(gram)`` and ``gram / diag(gram)`` with a zero diagonal, the coefficients of a sweep."""
    diag = gram.diagonal()
    inv = torch.where(diag > 0, 1 / diag, torch.zeros_like(diag))[:, None]  # a zero row of Y: x_k stays at floor
    cross = gram * inv
    cross.fill_diagonal_(0)
    return num * inv, cross


def _sweep(X: torch.Tensor, num: torch.Tensor, cross: torch.Tensor, floor: float) -> None:
    """One pass of exact coordinate minimisation over the rows of ``X`` (K, M), in place.

    Minimises ``||A - Xᵀ Y||²`` over ``X_k >= floor`` for k = 0..K-1 in turn, the others fixed:
    ``x_k <- max(floor, (num_k - sum_{j != k} gram_kj x_j) / gram_kk)`` with ``num = Y Aᵀ`` (K, M) and
    ``gram = Y Yᵀ`` (K, K), scaled by :func:`_scaled`. Factors are stored (K, M) so that a component is
    a contiguous row: its update is one matrix-vector product over all M rows.
    """
    buffer = torch.empty_like(X[0])
    for x, n, c in zip(X.unbind(0), num.unbind(0), cross.unbind(0)):
        torch.addmv(n, X.T, c, alpha=-1, out=buffer)
        torch.clamp(buffer, min=floor, out=x)


def _hals(A: torch.Tensor, Ut: torch.Tensor, W: torch.Tensor, max_iter: int, tol: float,
          target_error: float | None, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """HALS on ``A ~ Utᵀ W`` (Ut (r, N), W (r, D)) from the given start; returns the final ``(Ut, W)``.

    Two accelerations: each Gram product is reused for several sweeps (Gillis & Glineur 2012), and
    the iterates are extrapolated, ``X + beta (X - X_prev)``, with ``beta`` grown while the error
    falls and cut when it rises (Ang & Gillis 2019). The error is read off the Gram matrices an
    iteration computes anyway, ``||A - UW||² = ||A||² - 2<Uᵀ A, W> + <UᵀU, W Wᵀ>``: no N×D residual.
    """
    # Sweeps per update, measured (experiments/bench_nmf.py --suite): on 6 matrices of built-in activations
    # x ranks 5-20, (4, 3) reached scikit-learn's error fastest (geometric mean) of (2-8, 2-5); the cost
    # rule of Gillis & Glineur (1 + D / 2r sweeps over U) did fewer and needed twice the iterations.
    sweeps_u, sweeps_w = _SWEEPS
    norm2 = float(torch.linalg.vector_norm(A, dtype=torch.float64)) ** 2
    beta, beta_max, errors = 0.5, 1.0, []
    U_hat, W_hat = Ut, W  # the (extrapolated) points the next sweeps start from
    U_prev, W_prev = Ut.clone(), W.clone()
    for iteration in range(max_iter):
        step = beta if iteration else 0.0  # no extrapolation away from the (poor) starting point
        U, (num, cross) = U_hat, _scaled(W_hat @ A.T, W_hat @ W_hat.T)
        for _ in range(sweeps_u):
            _sweep(U, num, cross, floor)
        U_hat, U_prev = _extrapolate(U, U_prev, step, floor), U
        R, S = U_hat @ A, U_hat @ U_hat.T
        W, (num, cross) = W_hat, _scaled(R, S)
        for _ in range(sweeps_w):
            _sweep(W, num, cross, floor)
        err2 = norm2 - 2 * float((R * W).sum(dtype=torch.float64)) + float((S * (W @ W.T)).sum(dtype=torch.float64))
        errors.append(math.sqrt(max(err2, 0.0) / norm2))  # relative error of the pair (U_hat, W)
        if (target_error is not None and errors[-1] <= target_error) or _stalled(errors, tol):
            break
        if len(errors) > 1 and errors[-1] > errors[-2]:
            # the extrapolation overshot: restart from the plain iterate, with smaller steps
            beta, beta_max = beta / 1.5, beta
            W_hat = W.clone()
        else:
            W_hat = _extrapolate(W, W_prev, step, floor)
            beta, beta_max = min(beta_max, 1.01 * beta), min(1.0, 1.005 * beta_max)
        W_prev = W
    return U_hat, W


def _stalled(errors: list[float], tol: float) -> bool:
    """Whether the error fell by less than ``tol`` (relative) per iteration on average over the last
    ``_WINDOW`` iterations -- extrapolated steps are uneven -- and did not just rise (an overshoot, which
    the next iteration undoes)."""
    return (len(errors) > _WINDOW and errors[-1] <= errors[-2]
            and errors[-_WINDOW - 1] - errors[-1] <= _WINDOW * tol * errors[-1])


def _extrapolate(X: torch.Tensor, X_prev: torch.Tensor, beta: float, floor: float) -> torch.Tensor:
    """``max(floor, X + beta (X - X_prev))``, a new tensor."""
    return torch.lerp(X_prev, X, 1 + beta).clamp_(min=floor)


# --------------------------------------------------------------------------- initialisation
def _top_svd(A: torch.Tensor, rank: int, generator: torch.Generator):
    """Leading ``rank`` singular triplets ``(U (N, r), S (r,), V (r, D))`` of ``A``.

    When ``A`` has a small side, from the eigenvectors of its Gram matrix on that side (one product;
    the squared condition number only blurs singular values below ~1e-3 of the largest in float32,
    harmless for an initialisation); otherwise by a seeded randomised range finder (Halko et al. 2011)
    with scikit-learn's oversampling and number of power iterations.
    """
    N, D = A.shape
    if min(N, D) <= _GRAM_SVD_MAX:
        B = A if D <= N else A.T  # (long side, small side)
        values, vectors = torch.linalg.eigh(B.T @ B)  # ascending
        S, small = values.flip(0)[:rank].clamp(min=0).sqrt(), vectors.flip(1)[:, :rank]
        large = B @ small / S.clamp(min=torch.finfo(A.dtype).tiny)
        return (large, S, small.T) if D <= N else (small, S, large.T)
    q = min(rank + 10, N, D)
    n_iter = 7 if rank < 0.1 * min(N, D) else 4
    omega = torch.randn(D, q, generator=generator, dtype=A.dtype).to(A.device)  # drawn on the CPU: same on any device
    Y = A @ omega
    for _ in range(n_iter):  # power iterations, re-orthonormalised so small singular values survive
        Y = A @ torch.linalg.qr(A.T @ torch.linalg.qr(Y).Q).Q
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
    x, S, y = _top_svd(A, rank, generator)
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
    fill = mean if init == "nndsvda" else 0.0  # as scikit-learn: entries below 1e-6 are 0, or the mean of A
    return torch.where(U < 1e-6, fill, U), torch.where(W < 1e-6, fill, W)


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
    seed : seeds the initialisation (``"random"``, and the randomised SVD of ``"nndsvd*"`` when both N and
        D exceed 256; below, the SVD comes from a Gram matrix); the result is deterministic for a seed (on
        one device and thread count).
    solver : ``"hals"`` (torch HALS, Cichocki & Phan 2009, with Gram reuse and extrapolation, Gillis &
        Glineur 2012, Ang & Gillis 2019) or ``"sklearn"`` (scikit-learn's ``NMF(solver="cd")`` on the CPU,
        the reference).
    init : ``"nndsvda"`` (NNDSVD, zeros filled with the mean of A), ``"nndsvd"`` or ``"random"``, as in
        scikit-learn.
    max_iter : maximum number of iterations (one iteration updates U, then W, by a few HALS sweeps each).
    tol : HALS stops when the relative error fell by less than ``tol`` times its value per iteration,
        on average over the last 5 iterations; ``"sklearn"`` passes it to scikit-learn (a
        projected-gradient criterion).
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
        ``U``, ``W`` all zero (an exact factorisation); an ``A`` whose largest entry is outside
        ``[1e-10, 1e10]`` is factorised as ``A / max(A)`` (a copy), ``U`` scaled back.

    Raises
    ------
    InputError : A not 2-D, empty, not finite, or negative (see :func:`check_nonnegative`); fewer rows or
        features than ``rank``.
    ParameterError : unknown solver or init, ``rank < 1``, ``max_iter < 1``, ``tol < 0``, ``target_error``
        negative or with ``solver="sklearn"``.
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
    peak = float(A.max())
    if peak == 0:
        return A.new_zeros(N, rank), A.new_zeros(rank, D)
    if not _SAFE_RANGE[0] <= peak <= _SAFE_RANGE[1]:  # products of such values under/overflow: rescale (a copy)
        U, W = nmf(A / peak, rank, seed=seed, solver=solver, init=init, max_iter=max_iter, tol=tol,
                   target_error=target_error)
        return U * peak, W
    if solver == "sklearn":
        from sklearn.decomposition import NMF

        model = NMF(n_components=rank, init=init, solver="cd", max_iter=max_iter, tol=tol, random_state=seed)
        U = model.fit_transform(A.cpu().numpy())
        U, W = torch.from_numpy(U).to(A), torch.from_numpy(model.components_).to(A)
        return _order(U, W)
    U, W = _initialize(A, rank, init, seed)
    floor = 1e-12 * math.sqrt(float(A.mean()))
    Ut, W = U.T.clamp(min=floor).contiguous(), W.clamp(min=floor)
    Ut, W = _hals(A, Ut, W, max_iter, tol, target_error, floor)
    # HALS updates are scale-equivariant (U_k·c, W_k/c), so the split does not drift; return it balanced
    scale = torch.sqrt(torch.linalg.vector_norm(W, dim=1) / torch.linalg.vector_norm(Ut, dim=1))
    return _order(Ut.T * scale, W / scale[:, None])


def nnls(A, W, *, max_iter: int = 200, tol: float = 1e-6, U0=None, chunk_rows: int | None = None) -> torch.Tensor:
    """Non-negative least squares coefficients ``argmin_{U >= 0} ||A - U W||_F²`` for a fixed ``W``.

    Rows are independent problems, solved all at once in chunks of rows. A few coordinate-descent
    (HALS) sweeps on the Gram matrices ``W Wᵀ`` and ``A Wᵀ``, from ``relu(A Wᵀ (W Wᵀ)^+)`` or ``U0``, give
    each row a starting support ``F = {j : u_j > 0}``; block principal pivoting then solves the least
    squares problem on the support, ``u_F = a W_Fᵀ (W_F W_Fᵀ)^-1``, and swaps the coefficients that break
    the KKT conditions until none does: ``u_F >= 0`` and, off the support, the gradient
    ``(u W Wᵀ - a Wᵀ)_j >= -tol · max_k |a W_kᵀ|``. The result is the NNLS solution to rounding, with
    coefficients off the support exactly 0 (its active set is ``U > 0``). A row whose support system is
    singular (linearly dependent rows of W, where the minimiser is not unique) or that is not done after
    ``max_iter`` rounds gets coordinate descent instead, until no coefficient moves by more than ``tol``
    times the row's largest (at most ``max_iter`` sweeps).

    Parameters
    ----------
    A : tensor or array (N, D), finite (may be negative). One row is ``A[None]``.
    W : tensor or array (K, D), non-negative and finite, e.g. the concept bank returned by :func:`nmf`.
    max_iter : maximum number of pivoting rounds (a few are typical), and of fallback sweeps.
    tol : relative tolerance of the KKT and fallback stopping tests (see above).
    U0 : optional warm start (N, K), e.g. a previous solution; negative entries are clipped to 0.
    chunk_rows : rows per chunk; by default as many as fit in about 100 MB of working memory.

    Returns
    -------
    U : tensor (N, K) >= 0 on A's device, float64 if A is float64, else float32. When the largest
        ``|A|`` or ``W`` is outside ``[1e-10, 1e10]``, both are rescaled first (copies).

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
    if chunk_rows is None:  # per row: the K×K system of the support solve and its factorisation, ~10 K-vectors
        chunk_rows = max(1, _CHUNK_BYTES // ((2 * K * K + 10 * K) * A.element_size()))
    a, w = float(A.abs().max()), float(W.max())
    if a > 0 and w > 0 and not all(_SAFE_RANGE[0] <= v <= _SAFE_RANGE[1] for v in (a, w)):
        # products of such values under/overflow: solve A/a ~ U' W/w (copies), U = U' a / w
        return nnls(A / a, W / w, max_iter=max_iter, tol=tol, U0=None if U0 is None else U0 * (w / a),
                    chunk_rows=chunk_rows) * (a / w)
    Q = W @ W.T
    pinv = torch.linalg.pinv(Q, hermitian=True)
    U = A.new_empty(N, K)
    for start in range(0, N, chunk_rows):
        rows = slice(start, start + chunk_rows)
        P = A[rows] @ W.T
        start_U = (P @ pinv).clamp_(min=0) if U0 is None else U0[rows].clamp(min=0)
        U[rows] = _nnls_rows(P, Q, start_U, max_iter, tol)
    return U


def _nnls_rows(P: torch.Tensor, Q: torch.Tensor, U: torch.Tensor, max_iter: int, tol: float) -> torch.Tensor:
    """NNLS of the rows of one chunk (``P = A Wᵀ`` (n, K), ``Q = W Wᵀ``) from ``U`` (n, K) >= 0.

    Block principal pivoting (Kim & Park 2011), batched: each round solves every unfinished row on its
    current support ``F`` and swaps in/out the coefficients that break the KKT conditions (all of them
    while the number of violations keeps falling, else, after 3 tries, only the last one, which
    guarantees termination). A finished row leaves the working set, so each row's result does not depend
    on the others (nor on the chunking).
    """
    Ut = U.T.contiguous()  # coordinate descent first, for a good starting support
    num, cross = _scaled(P.T, Q)
    for _ in range(_CD_SWEEPS):
        _sweep(Ut, num, cross, 0.0)
    out = Ut.T.contiguous()
    n, K = out.shape
    todo, support = torch.arange(n, device=P.device), out > 0
    bound = tol * P.abs().amax(1, keepdim=True)  # gradient tolerance, relative to the gradient at U = 0
    best = torch.full((n,), K + 1, device=P.device)  # fewest violations seen, and the full swaps left
    tries = torch.full((n,), 3, device=P.device)
    unsolved = [todo[:0]]
    for _ in range(max_iter):
        u, solvable = _solve_on_support(P[todo], Q, support)
        violated = (support & (u < 0)) | (~support & (u @ Q - P[todo] < -bound[todo]))
        count = violated.sum(1)
        done = solvable & (count == 0)
        out[todo[done]] = u[done]
        unsolved.append(todo[~solvable])
        keep = solvable & ~done
        todo, support, violated, count, best, tries = (t[keep] for t in (todo, support, violated, count, best, tries))
        if not todo.numel():
            break
        improved = count < best
        swap_all = improved | (tries > 0)
        best = torch.where(improved, count, best)
        tries = torch.where(improved, 3, tries - swap_all.long())
        last = violated * torch.arange(1, K + 1, device=P.device)  # backup rule: only the last violated index
        only_last = torch.zeros_like(violated).scatter_(1, last.argmax(1, keepdim=True), True)
        support = support ^ torch.where(swap_all[:, None], violated, only_last)
    # no certificate: a singular support system (linearly dependent rows of W, where the minimiser is not
    # unique) or max_iter rounds ran out. Coordinate descent still converges to a minimiser.
    rows = torch.cat(unsolved + [todo])
    if rows.numel():
        Ut, num = out[rows].T.contiguous(), num[:, rows]
        for _ in range(max_iter):
            previous = Ut.clone()
            _sweep(Ut, num, cross, 0.0)
            if ((Ut - previous).abs().amax(0) <= tol * Ut.amax(0)).all():
                break
        out[rows] = Ut.T
    return out


def _solve_on_support(P: torch.Tensor, Q: torch.Tensor, support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the least squares solution on its support, ``u_F = p_F Q_FF^-1`` and 0 elsewhere (one
    batched K×K Cholesky solve; the identity stands in off the support), and whether ``Q_FF`` was
    positive definite."""
    mask = support.to(P.dtype)
    system = Q * mask[:, :, None] * mask[:, None, :]
    system.diagonal(dim1=1, dim2=2).add_(1 - mask)
    factor, info = torch.linalg.cholesky_ex(system)
    u = torch.cholesky_solve((P * mask)[:, :, None], factor)[:, :, 0]
    return u, (info == 0) & u.isfinite().all(1)
