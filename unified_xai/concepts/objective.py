"""A CRAFT concept coefficient as an objective of the shared objective layer.

``Concept(bank, k)`` is the coefficient ``u_k`` of concept ``k`` in the NNLS encoding of the input's
pooled activations at the bank's layer, ``u = argmin_{u >= 0} ||a - u W||``: the quantity
``craft.transform`` returns. Its gradient is the implicit one of the NNLS solution: on the active
set ``S = {j : u_j > 0}``, ``u_S = a W_S^T (W_S W_S^T)^-1`` (exact under strict complementarity),
so ``wam`` with this objective gives the wavelet scale profile of the concept in this input.
"""
from __future__ import annotations

import torch

from ..core.objectives import Objective, pooled_activations
from .nmf import nnls


def nnls_with_gradient(A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """NNLS coefficients ``(N, K)`` of ``A (N, D)`` on ``W (K, D)``, differentiable in ``A``.

    The active set comes from the NNLS solution (no gradient); the values are then recomputed on
    it in closed form, one batched K x K solve (inactive concepts are fixed at 0).
    """
    with torch.no_grad():
        active = nnls(A.detach(), W) > 0
    gram = W @ W.T
    mask = active.to(A.dtype)
    system = gram * mask[:, :, None] * mask[:, None, :] + torch.diag_embed(1.0 - mask)
    rhs = (A @ W.T) * mask
    return torch.linalg.solve(system, rhs.unsqueeze(-1)).squeeze(-1)


class Concept(Objective):
    """The coefficient of concept ``concept`` of a concept bank (a fitted ``Craft`` or a ``ConceptBank``)."""

    def __init__(self, bank, concept: int):
        from .craft import Craft

        craft_bank = bank.bank_ if isinstance(bank, Craft) else bank
        index = Craft._concept_index(bank, concept) if isinstance(bank, Craft) else int(concept)
        if not 0 <= index < craft_bank.n_concepts:
            from ..core.errors import ParameterError

            raise ParameterError(f"concept must be an index in [0, {craft_bank.n_concepts}), got {concept!r}")
        self.bank = craft_bank
        self.concept = index
        self.layer = craft_bank.layer
        self.layers = (self.layer,)
        self._W: torch.Tensor | None = None

    def value(self, adapter, logits, acts, targets):
        pooled = pooled_activations(adapter, acts[self.layer])
        if self._W is None or self._W.device != pooled.device or self._W.dtype != pooled.dtype:
            self._W = self.bank.concepts_.to(device=pooled.device, dtype=pooled.dtype)
        if pooled.shape[1] != self._W.shape[1]:
            from ..core.errors import LayerError

            raise LayerError(f"the concept bank has {self._W.shape[1]} channels but layer {self.layer!r} has"
                             f" {pooled.shape[1]}: the bank belongs to another model")
        return nnls_with_gradient(pooled, self._W)[:, self.concept]

    def _identity(self) -> tuple:
        return (self.describe(), self.bank.key)  # banks of one class and layer differ by their key

    def describe(self) -> str:
        name = self.bank.class_name or f"class {self.bank.class_id}"
        return f"concept({self.layer}, {name}, {self.concept})"
