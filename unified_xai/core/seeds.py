"""Seeded randomness that does not depend on how work is chunked."""
from __future__ import annotations

import torch


def sample_normal(seed: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``like`` for sample index ``k``.

    A function of ``(seed, k)`` only: chunked loops over noisy copies regenerate exactly the same
    noise whatever their batch size, so results are batch-size invariant and reproducible.
    """
    gen = torch.Generator(device=like.device).manual_seed(int(seed) * 1_000_003 + int(k))
    return torch.empty(like.shape, device=like.device, dtype=like.dtype).normal_(generator=gen)
