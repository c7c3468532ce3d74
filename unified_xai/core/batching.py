"""Chunked iteration with optional progress bars, shared by every method."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from .errors import ParameterError


def progress_enabled(progress: bool | None) -> bool:
    """``None`` means: show a bar only when stderr is a terminal."""
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool):
    """Yield an ``advance(n)`` callable; draws a rich progress bar when enabled."""
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def chunks(total: int, batch_size: int) -> Iterator[slice]:
    """Slices ``[0, total)`` into consecutive chunks of at most ``batch_size`` items."""
    if batch_size < 1:
        raise ParameterError(f"batch_size must be a positive integer, got {batch_size}")
    for start in range(0, total, batch_size):
        yield slice(start, min(start + batch_size, total))


def sample_blocks(start: int, stop: int, batch: int) -> Iterator[tuple[int, int, int]]:
    """``(k, i0, i1)`` blocks covering rows ``[start, stop)`` of the layout ``row = k * batch + i``.

    Methods that evaluate ``n`` perturbed copies (noise samples, path points) of a batch of inputs
    lay rows out sample-major, so each block is one sample ``k`` for a contiguous range of inputs.
    """
    row = start
    while row < stop:
        k, i0 = divmod(row, batch)
        i1 = min(batch, i0 + stop - row)
        yield k, i0, i1
        row += i1 - i0
