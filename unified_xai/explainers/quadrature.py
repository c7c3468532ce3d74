"""Quadrature rules on [0, 1] for path integrals (Integrated Gradients and its wavelet variant)."""
from __future__ import annotations

import numpy as np
import torch

from ..core.errors import ParameterError

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(rule: str, n: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``alphas`` and weights (summing to 1) of an ``n``-point rule on [0, 1].

    Gauss-Legendre is exact for polynomials of degree 2n-1, so it reaches a given completeness
    error with the fewest model passes on smooth paths (Captum's default too).
    """
    if n < 1:
        raise ParameterError(f"a quadrature needs at least 1 point, got {n}")
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.tensor((nodes + 1) / 2, dtype=dtype), torch.tensor(weights / 2, dtype=dtype)
    k = torch.arange(n, dtype=dtype)
    if rule == "riemann_left":
        return k / n, torch.full((n,), 1.0 / n, dtype=dtype)
    if rule == "riemann_right":
        return (k + 1) / n, torch.full((n,), 1.0 / n, dtype=dtype)
    if rule == "riemann_middle":
        return (k + 0.5) / n, torch.full((n,), 1.0 / n, dtype=dtype)
    if rule == "riemann_trapezoid":
        if n < 2:
            raise ParameterError("the trapezoid rule needs at least 2 points")
        weights = torch.full((n,), 1.0 / (n - 1), dtype=dtype)
        weights[0] = weights[-1] = 0.5 / (n - 1)
        return k / (n - 1), weights
    raise ParameterError(f"unknown quadrature {rule!r}; choose one of {', '.join(RULES)}")
