"""Shared fixtures: tiny random-weight models for each modality (fast on the CPU)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the built-in models' training diagnostics live with the training script, in experiments/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))

import pytest
import torch
from torch import nn

import unified_xai as ux

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class TinyNet(nn.Module):
    """conv -> relu -> conv -> relu -> global pool -> linear, for 1, 2 or 3 spatial dims."""

    def __init__(self, ndim: int = 2, channels: int = 3, classes: int = 4, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            CONV[ndim](channels, width, 3, padding=1), nn.ReLU(),
            CONV[ndim](width, width, 3, padding=1, stride=2), nn.ReLU(),
        )
        self.pool = POOL[ndim](1)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


SHAPES = {1: (1, 64), 2: (3, 16, 24), 3: (1, 8, 8, 8)}


def tiny_adapter(ndim: int = 2, seed: int = 0, **kwargs) -> ux.ModelAdapter:
    # a fixed chunk: the "auto" probe (about 1 s per model) is tested in test_autobatch.py
    kwargs.setdefault("batch_size", 16)
    torch.manual_seed(seed)
    shape = SHAPES[ndim]
    return ux.ModelAdapter(TinyNet(ndim, shape[0]).eval(), shape, device="cpu", progress=False, name=f"tiny{ndim}d", **kwargs)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): its models are
    tiny, and on a busy machine two OpenMP threads on two shared cores make small operations many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=[1, 2, 3], ids=["1d", "2d", "3d"])
def adapter_nd(request):
    return tiny_adapter(request.param)


@pytest.fixture
def adapter2d():
    return tiny_adapter(2)


def random_inputs(adapter: ux.ModelAdapter, batch: int = 3, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *adapter.input_shape, generator=gen)
