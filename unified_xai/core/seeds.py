"""Seeded randomness that depends neither on the batch nor on how work is chunked."""
from __future__ import annotations

from typing import Sequence

import torch


def noise_samples(seed: int, n: int, sample_shape: Sequence[int], device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise ``(n, *sample_shape)``; sample ``k`` is a function of ``(seed, k)`` only.

    Every input of a batch shares sample ``k`` (scaled by its own sigma), so an input's result does
    not depend on the rest of its batch, on the chunk size, nor on ``n`` for the first samples.
    Drawn once per call, before any chunk loop.
    """
    out = torch.empty(n, *sample_shape, device=device, dtype=dtype)
    gen = torch.Generator(device=out.device)
    for k in range(n):
        gen.manual_seed(int(seed) * 1_000_003 + k)
        out[k].normal_(generator=gen)
    return out
