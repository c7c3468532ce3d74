"""``batch_size="auto"``: choose the rows per model call by a short, cached probe.

:func:`choose_batch_size` times the adapter's own passes (``"grad"``: forward + backward w.r.t. the
input, parameters frozen, as :meth:`ModelAdapter.target_gradient`; ``"nograd"``: a forward under
``torch.no_grad``, as :meth:`ModelAdapter.scores`) on random inputs for chunk sizes 1, 2, 4, ... and
keeps the smallest size whose time per row is within :data:`TOLERANCE` of the best one measured (the
largest size measured when the time cap cut the growth off while that size was still the best).
Each size is warmed up, then fast passes are timed over windows of :data:`WINDOW_SECONDS` so that a
busy machine slows every size alike; the best window counts.

Growth stops when the per-row time is more than :data:`TOLERANCE` worse than the best twice in a row
(counting only sizes whose pass lasts at least a window: shorter ones are cheap and overhead-bound), at :data:`MAX_BATCH_SIZE`, when the next size is predicted to exceed the memory budget, or when the
probe would run past :data:`PROBE_SECONDS` (a model whose one-row pass is slower than
:data:`SLOW_PASS_SECONDS` is timed with one pass per size, so it gets its choice from fewer probes).
A size that looks slower gets up to two more windows before it counts as slower.

Memory budget: on CUDA, :data:`CUDA_FREE_FRACTION` of the free device memory, measured per size with
``torch.cuda.max_memory_allocated`` (the probe resets the device's peak statistics; an out-of-memory
error steps back to the last size that fit). On
the CPU, :data:`MEMORY_BUDGET` bytes, else the environment variable ``UXAI_MEMORY_BUDGET`` (``"512M"``,
``"2GiB"``, ``"1e9"``), else min(2 GiB, RAM / 8); activation memory per row is estimated from one
instrumented one-row pass (tensors saved for backward for ``"grad"``, the largest layer output for
``"nograd"``). An explicit budget also caps the CUDA one.

The choice is cached per (model, preprocessing, sample shape, kind, device, dtype, budget setting),
weakly keyed on the model so the cache keeps no model alive; :func:`clear_cache` empties it,
:func:`cached_choice` / :func:`cached_choices` show what was chosen and from which timings, and each
probe logs one debug line (logger ``unified_xai.core.autobatch``). The probe runs in eval mode like
every real pass and leaves the model as it came: train/eval mode, ``requires_grad`` flags, hooks,
buffers and the global random state are unchanged, so no explanation depends on it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from . import hooks
from .errors import ParameterError, UXAIError

logger = logging.getLogger(__name__)

#: Memory budget in bytes for the CPU (and a cap on CUDA); ``None``: ``UXAI_MEMORY_BUDGET`` or the default.
MEMORY_BUDGET: int | None = None
#: Fraction of the free CUDA memory a chunk may use.
CUDA_FREE_FRACTION = 0.5
#: Largest chunk the probe tries.
MAX_BATCH_SIZE = 1024
#: Wall-clock cap of one probe, in seconds.
PROBE_SECONDS = 1.5
#: A one-row pass slower than this is timed once per size (no repeats).
SLOW_PASS_SECONDS = 0.5
#: Sizes whose per-row time is within this fraction of the best are "equal": the smallest is kept.
TOLERANCE = 0.03
#: Passes faster than this are timed in windows this long (see :func:`_time_size`).
WINDOW_SECONDS = 0.03
_WINDOWS = 2
_DEFAULT_CPU_BUDGET = 2 << 30
_clock = time.perf_counter  # the probe's clock (tests replace it to simulate slow models)
KINDS = ("grad", "nograd")


class BatchProbeError(UXAIError, RuntimeError):
    """The model failed while ``batch_size="auto"`` probed it."""


@dataclass
class Choice:
    """One probe's outcome: the chosen ``size`` and what it was chosen from."""

    size: int
    seconds_per_row: dict[int, float]
    probe_seconds: float
    bytes_per_row: float
    budget: int
    stopped: str
    model: str = ""
    key: tuple = field(default=(), repr=False)

    def describe(self) -> str:
        times = ", ".join(f"{b}: {1e3 * t:.3g}" for b, t in self.seconds_per_row.items())
        return (f"batch_size='auto' for {self.model} {self.key[:4]}: chose {self.size} from ms/row {{{times}}};"
                f" stopped by {self.stopped}; probe {self.probe_seconds:.2f} s; ~{self.bytes_per_row / 2**20:.3g}"
                f" MiB/row, budget {self.budget / 2**20:.0f} MiB")


_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, Choice]]" = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()


def clear_cache() -> None:
    """Forget every cached choice (the next ``chunk_size`` call probes again)."""
    with _LOCK:
        _CACHE.clear()


def cached_choices() -> list[Choice]:
    """Every cached :class:`Choice` of the models still alive (``Choice.describe()`` for a summary)."""
    with _LOCK:
        return [choice for entries in list(_CACHE.values()) for choice in entries.values()]


def cached_choice(adapter, sample_shape: Sequence[int], kind: str) -> Choice | None:
    """The cached :class:`Choice` for this adapter, sample shape and kind, or ``None`` (never probes)."""
    key = _key(adapter, _check_shape(sample_shape), _check_kind(kind))
    with _LOCK:
        return _CACHE.get(adapter.model, {}).get(key)


def choose_batch_size(adapter, sample_shape: Sequence[int], kind: str = "grad") -> int:
    """Rows per model call for samples shaped ``sample_shape`` = ``(C, *spatial)``: cached, else probed.

    Raises :class:`BatchProbeError` (a :class:`UXAIError`) when the model fails on a one-row probe.
    """
    shape = _check_shape(sample_shape)
    kind = _check_kind(kind)
    key = _key(adapter, shape, kind)
    with _LOCK:
        choice = _CACHE.get(adapter.model, {}).get(key)
        if choice is None:
            choice = _probe(adapter, shape, kind)
            choice.key = key
            _CACHE.setdefault(adapter.model, {})[key] = choice
            logger.debug(choice.describe())
    return choice.size


# --------------------------------------------------------------------------- settings
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str | int | float) -> int:
    """``"512M"``, ``"2GiB"``, ``"1.5 GB"``, ``"1e9"`` or a number -> bytes (K/M/G alone are binary)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
        if not match or match.group(2) not in _UNITS:
            raise ParameterError(f"memory budget {text!r} is not a size; write e.g. 512M, 2GiB or 1e9 (bytes)")
        value, unit = float(match.group(1)), match.group(2)
    size = int(value * _UNITS[unit])
    if not math.isfinite(value) or size < 1:
        raise ParameterError(f"memory budget must be positive, got {text!r}")
    return size


def _explicit_budget() -> int | None:
    if MEMORY_BUDGET is not None:
        return parse_bytes(MEMORY_BUDGET)
    env = os.environ.get("UXAI_MEMORY_BUDGET", "").strip()
    return parse_bytes(env) if env else None


def memory_budget(device: torch.device) -> int:
    """Bytes one chunk's pass may use on ``device`` (see the module docstring)."""
    explicit = _explicit_budget()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        budget = int(CUDA_FREE_FRACTION * free)
        return budget if explicit is None else min(budget, explicit)
    if explicit is not None:
        return explicit
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return _DEFAULT_CPU_BUDGET
    return min(_DEFAULT_CPU_BUDGET, ram // 8)


def _check_shape(sample_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in sample_shape)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(s < 1 for s in shape) or len(shape) != len(tuple(sample_shape)):
        raise ParameterError(f"sample_shape must be (C, *spatial) of positive sizes, got {sample_shape!r}")
    return shape


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise ParameterError(f"kind must be 'grad' or 'nograd', got {kind!r}")
    return kind


def _key(adapter, shape: tuple[int, ...], kind: str) -> tuple:
    budget_setting = MEMORY_BUDGET if MEMORY_BUDGET is not None else os.environ.get("UXAI_MEMORY_BUDGET")
    preprocess = None if adapter.preprocess is None else id(adapter.preprocess)
    return (shape, kind, str(adapter.device), adapter.dtype, preprocess, budget_setting, MAX_BATCH_SIZE)


# --------------------------------------------------------------------------- probe
class _Pass:
    """One chunk's pass of the given kind on fixed random inputs (a seeded local generator)."""

    def __init__(self, adapter, shape: tuple[int, ...], kind: str):
        self.adapter, self.shape, self.kind = adapter, shape, kind
        self.cuda = adapter.device.type == "cuda"
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def inputs(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if size not in self._inputs:
            self._inputs.clear()  # one size's inputs alive at a time
            gen = torch.Generator(device=self.adapter.device).manual_seed(0)
            x = torch.randn(size, *self.shape, generator=gen, device=self.adapter.device, dtype=self.adapter.dtype)
            self._inputs[size] = (x, torch.zeros(size, dtype=torch.long, device=self.adapter.device))
        return self._inputs[size]

    def run(self, size: int) -> float:
        """Seconds of one pass of ``size`` rows."""
        x, targets = self.inputs(size)
        if self.cuda:
            torch.cuda.synchronize(self.adapter.device)
        start = time.perf_counter()
        if self.kind == "grad":
            self.adapter.target_gradient(x, targets)
        else:
            self.adapter.scores(x, targets)
        if self.cuda:
            torch.cuda.synchronize(self.adapter.device)
        return time.perf_counter() - start

    def bytes_per_row(self) -> float:
        """Activation bytes of a one-row pass (CPU estimate; see the module docstring)."""
        x, targets = self.inputs(1)
        network = self.adapter.network
        fixed = {t.untyped_storage().data_ptr() for t in list(network.parameters()) + list(network.buffers())}
        if self.kind == "grad":
            storages: dict[int, int] = {}

            def pack(t: torch.Tensor):
                try:
                    storage = t.untyped_storage()
                except (AttributeError, RuntimeError, NotImplementedError):  # sparse, nested, ...: size unknown
                    return t
                if storage.data_ptr() not in fixed:
                    storages[storage.data_ptr()] = storage.nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                self.adapter.target_gradient(x, targets)
            return sum(storages.values()) + 3 * x.nbytes  # saved activations + input, its copy and gradient
        largest = [0]

        def record(module, inputs, output):
            try:
                largest[0] = max(largest[0], hooks._first_tensor(output).nbytes)
            except UXAIError:
                pass

        with hooks.forward_hooks([m for _, m in network.named_modules()], record):
            self.adapter.scores(x, targets)
        return 3 * largest[0] + x.nbytes  # a layer's input and output plus a held skip connection

    def peak_bytes(self, size: int) -> tuple[float, int]:
        """(seconds, peak CUDA bytes above the baseline) of one pass."""
        device = self.adapter.device
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        seconds = self.run(size)
        return seconds, torch.cuda.max_memory_allocated(device) - base


def pick(seconds_per_row: dict[int, float], tolerance: float | None = None) -> int:
    """The smallest size whose per-row time is within ``tolerance`` (default :data:`TOLERANCE`) of the best."""
    tolerance = TOLERANCE if tolerance is None else tolerance
    best = min(seconds_per_row.values())
    return min(b for b, t in seconds_per_row.items() if t <= best * (1 + tolerance))


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate" in text)


def _probe(adapter, shape: tuple[int, ...], kind: str) -> Choice:
    """Time chunk sizes 1, 2, 4, ... and pick one; the model is left as it came."""
    network: nn.Module = adapter.network
    device = adapter.device
    cuda = device.type == "cuda"
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if cuda else None
    training = any(m.training for m in network.modules())
    buffers = [(b, b.detach().clone()) for b in network.buffers()] if training else []
    name = getattr(adapter, "name", type(adapter.model).__name__)
    evaluating = getattr(adapter, "evaluating", contextlib.nullcontext)  # the mode every real pass runs in
    try:
        with torch.inference_mode(False), evaluating():
            return _measure(adapter, _Pass(adapter, shape, kind), name)
    finally:
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)


def _measure(adapter, probe: _Pass, name: str) -> Choice:
    budget = memory_budget(adapter.device)
    start = _clock()
    try:  # warm-up, and on the CPU the memory estimate
        if probe.cuda:
            bytes_per_row = float(probe.peak_bytes(1)[1])
        else:
            bytes_per_row = probe.bytes_per_row()
    except Exception as exc:  # noqa: BLE001 - any failure of the user's model becomes one clear error
        raise BatchProbeError(
            f"batch_size='auto' could not run {name} on one random {probe.kind} input of shape"
            f" {(1, *probe.shape)} on {adapter.device}: {type(exc).__name__}: {exc}. Fix the model, or pass a fixed"
            f" batch_size to the ModelAdapter or the explainer"
        ) from exc

    per_row: dict[int, float] = {}
    last_pass, last_size, worse, stopped = 0.0, 1, 0, "max_batch_size"
    size = 1
    while size <= max(1, int(MAX_BATCH_SIZE)):
        if size > 1:
            if bytes_per_row * size > budget:
                stopped = "memory"
                break
            # next pass time: doubling the rows costs at most twice, less while the per-row time still falls
            trend = per_row[last_size] / per_row[last_size // 2] if last_size > 1 else 1.0
            predicted = last_pass * size / last_size * min(1.0, max(0.5, trend))
            if _clock() - start + _cost(predicted) > PROBE_SECONDS:
                stopped = "time"
                break
        try:
            seconds, peak = _time_size(probe, size, per_row, lambda: _clock() - start)
        except Exception as exc:  # noqa: BLE001
            if size == 1:
                raise BatchProbeError(
                    f"batch_size='auto': {name} failed on a one-row {probe.kind} pass of shape {(1, *probe.shape)}:"
                    f" {type(exc).__name__}: {exc}. Pass a fixed batch_size, or give the model more memory"
                ) from exc
            if probe.cuda:
                torch.cuda.empty_cache()
            logger.debug("batch_size='auto': %s failed at chunk %d (%s: %s); stepping back",
                         name, size, type(exc).__name__, exc)
            stopped = "out of memory" if _is_oom(exc) else f"error at {size}"
            break
        if probe.cuda:
            bytes_per_row = peak / size
            if peak > budget and size > 1:
                stopped = "memory"
                break
        per_row[size] = seconds / size
        last_pass, last_size = seconds, size
        # passes shorter than a window are cheap to probe and dominated by per-call overheads, which
        # bigger chunks amortise: they never stop the growth (the time cap still does)
        if seconds >= WINDOW_SECONDS:
            worse = worse + 1 if per_row[size] > min(per_row.values()) * (1 + TOLERANCE) else 0
        if worse >= 2:
            stopped = "slower twice"
            break
        size *= 2
    chosen = pick(per_row)
    if stopped == "time" and min(per_row, key=per_row.get) == max(per_row):
        chosen = max(per_row)  # cut off while still improving: the largest size measured is the best guess
    return Choice(chosen, per_row, _clock() - start, bytes_per_row, budget, stopped, name)


def _cost(pass_seconds: float) -> float:
    """Probe time :func:`_time_size` spends on a size whose pass takes ``pass_seconds``."""
    if pass_seconds > SLOW_PASS_SECONDS:
        return pass_seconds
    if pass_seconds >= WINDOW_SECONDS:
        return 2 * pass_seconds
    return pass_seconds + _WINDOWS * WINDOW_SECONDS


def _time_size(probe: _Pass, size: int, per_row: dict[int, float], elapsed) -> tuple[float, int]:
    """(seconds of one pass of ``size`` rows, peak CUDA bytes) on a possibly busy machine.

    The first pass is this size's warm-up. Fast passes are timed in windows of at least
    :data:`WINDOW_SECONDS` (their mean), so that every size is measured over a similar stretch of
    time and a busy machine slows small and large sizes alike; the best of ``_WINDOWS`` windows is
    kept. Passes longer than a window are timed twice (once when slower than ``SLOW_PASS_SECONDS``).
    A size that looks slower than the best so far gets up to two more windows before it counts.
    """
    peak = [0]

    def one() -> float:
        if probe.cuda:
            seconds, used = probe.peak_bytes(size)
            peak[0] = max(peak[0], used)
            return seconds
        return probe.run(size)

    def window() -> float:
        total, count = 0.0, 0
        while total < WINDOW_SECONDS:
            total += one()
            count += 1
        return total / count

    first = one()
    if first > SLOW_PASS_SECONDS:
        return first, peak[0]
    if first >= WINDOW_SECONDS:
        return min(first, one()), peak[0]
    samples = [window() for _ in range(_WINDOWS)]
    best = min(per_row.values()) if per_row else math.inf
    for _ in range(2):
        if min(samples) / size <= best * (1 + TOLERANCE) or elapsed() + WINDOW_SECONDS > PROBE_SECONDS:
            break
        samples.append(window())
    return min(samples), peak[0]
