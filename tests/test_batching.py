"""Chunking and progress bars shared by every method."""
from __future__ import annotations

import io

import pytest

import unified_xai as ux
from unified_xai.core import batching


def test_chunks_cover_range():
    parts = list(batching.chunks(10, 4))
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ux.ParameterError, match="batch_size must be a positive integer"):
        list(batching.chunks(3, 0))


def test_sample_blocks_are_sample_major():
    blocks = list(batching.sample_blocks(3, 11, batch=4))  # rows 3..10 of row = k * 4 + i
    assert blocks == [(0, 3, 4), (1, 0, 4), (2, 0, 3)]
    assert sum(i1 - i0 for _, i0, i1 in blocks) == 8


def test_progress_silent_off_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert batching.progress_enabled(None) is False  # not a TTY
    assert batching.progress_enabled(False) is False
    assert batching.progress_enabled(True) is True
