"""batch_size="auto": the probe's choice, its cache, and that it leaves the model as it came.

No wall-clock assertions: the stopping rule is checked with synthetic pass times.
"""
from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import unified_xai as ux
from unified_xai.core import autobatch
from unified_xai.core.hooks import count_hooks

from conftest import TinyNet, random_inputs, tiny_adapter


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    """Each test starts from an empty cache, with a short probe and no budget override."""
    monkeypatch.setattr(autobatch, "PROBE_SECONDS", 0.3)
    monkeypatch.setattr(autobatch, "MEMORY_BUDGET", None)
    monkeypatch.delenv("UXAI_MEMORY_BUDGET", raising=False)
    autobatch.clear_cache()
    yield
    autobatch.clear_cache()


class CallCounter:
    """Counts the model's forward calls and their batch sizes through a pre-hook (removed by ``close``)."""

    def __init__(self, model: nn.Module):
        self.sizes: list[int] = []
        self.shapes: set[tuple] = set()
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module, inputs):
        self.sizes.append(inputs[0].shape[0])
        self.shapes.add(tuple(inputs[0].shape[1:]))

    def close(self):
        self.handle.remove()


def auto_adapter(ndim: int = 2, **kwargs) -> ux.ModelAdapter:
    return tiny_adapter(ndim, batch_size="auto", **kwargs)


def state(model: nn.Module):
    """Everything the probe must not change: modes, requires_grad flags, hooks, parameter and buffer values."""
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            count_hooks(model), {k: v.clone() for k, v in model.state_dict().items()})


def assert_same_state(before, after):
    assert before[:3] == after[:3]
    assert before[3].keys() == after[3].keys()
    for key, value in before[3].items():
        assert torch.equal(value, after[3][key]), key


def test_choice_is_a_positive_int_within_cap_and_budget(adapter_nd):
    adapter = ux.ModelAdapter(adapter_nd.model, adapter_nd.input_shape, device="cpu", batch_size="auto", progress=False)
    x = random_inputs(adapter)
    for kind in ("grad", "nograd"):
        size = adapter.chunk_size(x, kind)
        assert isinstance(size, int) and 1 <= size <= autobatch.MAX_BATCH_SIZE
        choice = autobatch.cached_choice(adapter, x.shape[1:], kind)
        assert choice.size == size and size in choice.seconds_per_row
        assert choice.bytes_per_row > 0
        assert size == 1 or size * choice.bytes_per_row <= choice.budget
        assert "chose" in choice.describe()


def test_cap_bounds_the_probed_sizes(monkeypatch):
    monkeypatch.setattr(autobatch, "MAX_BATCH_SIZE", 4)
    monkeypatch.setattr(autobatch, "PROBE_SECONDS", 30.0)
    adapter = auto_adapter()
    counter = CallCounter(adapter.model)
    try:
        size = adapter.chunk_size(random_inputs(adapter), "nograd")
    finally:
        counter.close()
    assert 1 <= size <= 4 and max(counter.sizes) <= 4


def test_choice_is_cached_and_clear_cache_forgets_it():
    adapter = auto_adapter()
    x = random_inputs(adapter)
    counter = CallCounter(adapter.model)
    try:
        first = adapter.chunk_size(x, "grad")
        probes = len(counter.sizes)
        assert probes > 0
        assert adapter.chunk_size(x, "grad") == first
        assert adapter.chunk_size(x[:1], "grad") == first  # same sample shape, other batch
        assert len(counter.sizes) == probes  # served from the cache: no model call
        autobatch.clear_cache()
        adapter.chunk_size(x, "grad")
        assert len(counter.sizes) > probes
    finally:
        counter.close()
    assert count_hooks(adapter.model) == 0


def test_separate_entries_per_kind_and_sample_shape():
    torch.manual_seed(0)
    adapter = ux.ModelAdapter(TinyNet(2), (3, None, None), device="cpu", batch_size="auto", progress=False)
    small, large = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 16, 12)
    counter = CallCounter(adapter.model)
    try:
        for x in (small, large):
            for kind in ("grad", "nograd"):
                calls = len(counter.sizes)
                adapter.chunk_size(x, kind)
                assert len(counter.sizes) > calls  # a new (shape, kind) probes
    finally:
        counter.close()
    assert counter.shapes == {(3, 8, 8), (3, 16, 12)}
    keys = {c.key[:2] for c in autobatch.cached_choices()}
    assert keys == {((3, 8, 8), "grad"), ((3, 8, 8), "nograd"), ((3, 16, 12), "grad"), ((3, 16, 12), "nograd")}
    for x in (small, large):
        for kind in ("grad", "nograd"):
            assert autobatch.cached_choice(adapter, x.shape[1:], kind).size == adapter.chunk_size(x, kind)


class NormNet(nn.Module):
    """Conv, BatchNorm, Dropout: modes and buffers the probe could disturb."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.drop(self.norm(self.conv(x))).mean((2, 3)))


def test_probe_leaves_modes_flags_hooks_buffers_and_rng_unchanged():
    torch.manual_seed(0)
    model = NormNet().eval()
    adapter = ux.ModelAdapter(model, (3, 8, 8), device="cpu", batch_size="auto", progress=False)
    model.train()
    model.head.eval()  # mixed modes
    model.conv.bias.requires_grad_(False)  # mixed flags
    handle = model.norm.register_forward_hook(lambda *args: None)  # a user's own hook stays
    try:
        before = state(model)
        rng = torch.random.get_rng_state()
        for kind in ("grad", "nograd"):
            assert adapter.chunk_size(torch.zeros(1, 3, 8, 8), kind) >= 1
        assert_same_state(before, state(model))
        assert torch.equal(rng, torch.random.get_rng_state())
    finally:
        handle.remove()


def test_auto_does_not_change_results():
    fixed = tiny_adapter(2, seed=3)
    auto = tiny_adapter(2, seed=3, batch_size="auto")
    x = random_inputs(fixed, batch=5)
    torch.testing.assert_close(auto.predict(x), fixed.predict(x), rtol=1e-5, atol=1e-6)


def test_tiny_budget_gives_a_small_choice(monkeypatch):
    adapter = auto_adapter()
    x = random_inputs(adapter)
    monkeypatch.setattr(autobatch, "MEMORY_BUDGET", 1)
    assert adapter.chunk_size(x, "grad") == 1
    per_row = autobatch.cached_choice(adapter, x.shape[1:], "grad").bytes_per_row
    monkeypatch.setattr(autobatch, "MEMORY_BUDGET", int(4 * per_row))  # a new setting is a new cache entry
    assert 1 <= adapter.chunk_size(x, "grad") <= 4
    monkeypatch.setattr(autobatch, "MEMORY_BUDGET", None)
    monkeypatch.setenv("UXAI_MEMORY_BUDGET", "1K")
    assert adapter.chunk_size(x, "nograd") == 1
    assert autobatch.cached_choice(adapter, x.shape[1:], "nograd").budget == 1024


def test_parse_bytes():
    assert autobatch.parse_bytes("512M") == 512 * 2**20
    assert autobatch.parse_bytes("2GiB") == 2 * 2**30
    assert autobatch.parse_bytes("1.5 GB") == 1_500_000_000
    assert autobatch.parse_bytes("1e9") == 10**9
    assert autobatch.parse_bytes(4096) == 4096
    for bad in ("lots", "-1G", "0", "3 parsecs"):
        with pytest.raises(ux.ParameterError):
            autobatch.parse_bytes(bad)


def test_bad_env_budget_is_a_parameter_error(monkeypatch):
    adapter = auto_adapter()
    monkeypatch.setenv("UXAI_MEMORY_BUDGET", "plenty")
    with pytest.raises(ux.ParameterError, match="UXAI_MEMORY_BUDGET|memory budget"):
        adapter.chunk_size(random_inputs(adapter), "grad")


def test_bad_kind_or_shape_is_a_parameter_error():
    adapter = auto_adapter()
    with pytest.raises(ux.ParameterError, match="kind"):
        autobatch.choose_batch_size(adapter, (3, 16, 24), "backward")
    for shape in ((), (3, 0, 4), ("a", 2)):
        with pytest.raises(ux.ParameterError, match="sample_shape"):
            autobatch.choose_batch_size(adapter, shape, "grad")


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        self.conv(x)
        raise RuntimeError("boom inside forward")


def test_model_that_raises_gives_a_clear_error_and_changes_nothing():
    model = Broken().eval()
    adapter = ux.ModelAdapter(model, (3, 8, 8), device="cpu", batch_size="auto", progress=False)
    before = state(model)
    rng = torch.random.get_rng_state()
    for kind in ("grad", "nograd"):
        with pytest.raises(ux.UXAIError, match="boom inside forward") as info:
            adapter.chunk_size(torch.zeros(1, 3, 8, 8), kind)
        assert isinstance(info.value, autobatch.BatchProbeError)
        assert "batch_size" in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)
    assert_same_state(before, state(model))
    assert torch.equal(rng, torch.random.get_rng_state())
    assert autobatch.cached_choices() == []  # a failed probe is not cached


def test_cache_does_not_keep_the_model_alive():
    adapter = auto_adapter()
    adapter.chunk_size(random_inputs(adapter), "nograd")
    assert len(autobatch.cached_choices()) == 1
    model_ref = weakref.ref(adapter.model)
    del adapter
    gc.collect()
    assert model_ref() is None
    assert autobatch.cached_choices() == []


def test_pick_prefers_the_smallest_of_near_equal_sizes():
    assert autobatch.pick({1: 1.0, 2: 0.5, 4: 0.49, 8: 0.5}) == 2
    assert autobatch.pick({1: 1.0, 2: 0.8, 4: 0.5}) == 4
    assert autobatch.pick({1: 0.3, 2: 0.3, 4: 0.3}) == 1
    assert autobatch.pick({1: 1.0, 2: 0.5, 4: 0.49}, tolerance=0.0) == 4


def synthetic(monkeypatch, per_row: dict[int, float], bytes_per_row: float = 1.0):
    """Replace the timed pass by fixed per-row times (seconds); returns the list of sizes run."""
    runs: list[int] = []
    clock = [0.0]  # simulated: only the synthetic passes take time

    def run(self, size):
        runs.append(size)
        clock[0] += per_row[size] * size
        return per_row[size] * size

    def warm_up(self):
        clock[0] += per_row[1]
        return bytes_per_row

    monkeypatch.setattr(autobatch._Pass, "run", run)
    monkeypatch.setattr(autobatch._Pass, "bytes_per_row", warm_up)
    monkeypatch.setattr(autobatch, "_clock", lambda: clock[0])
    return runs


def test_growth_stops_after_two_slower_sizes(monkeypatch):
    monkeypatch.setattr(autobatch, "PROBE_SECONDS", 30.0)
    runs = synthetic(monkeypatch, {1: 0.04, 2: 0.024, 4: 0.02, 8: 0.022, 16: 0.024, 32: 0.004})
    choice = autobatch._probe(auto_adapter(), (3, 16, 24), "grad")
    assert choice.size == 4 and choice.stopped == "slower twice"
    assert 32 not in runs and set(choice.seconds_per_row) == {1, 2, 4, 8, 16}


def test_passes_shorter_than_a_window_do_not_stop_growth(monkeypatch):
    monkeypatch.setattr(autobatch, "PROBE_SECONDS", 30.0)
    monkeypatch.setattr(autobatch, "MAX_BATCH_SIZE", 8)
    synthetic(monkeypatch, {1: 1e-3, 2: 2e-3, 4: 2e-3, 8: 1e-4})  # slower twice, but cheap and overhead-bound
    choice = autobatch._probe(auto_adapter(), (3, 16, 24), "grad")
    assert choice.size == 8 and choice.stopped == "max_batch_size"


def test_plateau_keeps_the_smallest_size_and_stops_at_the_cap(monkeypatch):
    monkeypatch.setattr(autobatch, "MAX_BATCH_SIZE", 64)
    monkeypatch.setattr(autobatch, "PROBE_SECONDS", 30.0)
    runs = synthetic(monkeypatch, {1: 1e-3, 2: 5e-4, 4: 2.5e-4, 8: 2.01e-4, 16: 2e-4, 32: 2.02e-4, 64: 2.03e-4})
    choice = autobatch._probe(auto_adapter(), (3, 16, 24), "nograd")
    assert choice.size == 8 and choice.stopped == "max_batch_size"
    # fast passes are timed in windows: a warm-up pass, then two windows of >= WINDOW_SECONDS each
    assert runs.count(1) == 1 + 2 * round(autobatch.WINDOW_SECONDS / 1e-3)


def test_memory_budget_stops_growth(monkeypatch):
    monkeypatch.setattr(autobatch, "MEMORY_BUDGET", 10_000)
    runs = synthetic(monkeypatch, {b: 1e-3 / b for b in (1, 2, 4, 8, 16, 32)}, bytes_per_row=3_000)
    choice = autobatch._probe(auto_adapter(), (3, 16, 24), "grad")
    assert choice.size == 2 and choice.stopped == "memory" and max(runs) == 2  # 4 rows = 12 kB > 10 kB


def test_slow_model_gets_fewer_probes(monkeypatch):
    monkeypatch.setattr(autobatch, "PROBE_SECONDS", 1.5)
    runs = synthetic(monkeypatch, {1: 0.6, 2: 0.3})  # a 0.6 s one-row pass: warm-up and one timed pass
    choice = autobatch._probe(auto_adapter(), (3, 16, 24), "grad")
    assert runs == [1] and choice.size == 1 and choice.stopped == "time"  # no time left for two rows
    assert choice.probe_seconds == pytest.approx(1.2)
    runs = synthetic(monkeypatch, {1: 0.1, 2: 0.06, 4: 0.05, 8: 0.05})  # fast: two passes per size until the cap
    choice = autobatch._probe(auto_adapter(), (3, 16, 24), "grad")
    assert runs == [1, 1, 2, 2, 4, 4] and choice.size == 4 and choice.stopped == "time"


def test_cut_off_while_improving_takes_the_largest_size(monkeypatch):
    monkeypatch.setattr(autobatch, "PROBE_SECONDS", 1.5)
    synthetic(monkeypatch, {1: 0.2, 2: 0.196, 4: 0.19})  # within tolerance, but still falling when time ran out
    choice = autobatch._probe(auto_adapter(), (3, 16, 24), "grad")
    assert choice.stopped == "time" and set(choice.seconds_per_row) == {1, 2}
    assert choice.size == 2 and autobatch.pick(choice.seconds_per_row) == 1


def test_error_past_one_row_steps_back(monkeypatch):
    def run(self, size):
        if size > 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return 1e-3

    monkeypatch.setattr(autobatch._Pass, "run", run)
    monkeypatch.setattr(autobatch._Pass, "bytes_per_row", lambda self: 1.0)
    choice = autobatch._probe(auto_adapter(), (3, 16, 24), "grad")
    assert choice.size == 2 and choice.stopped == "out of memory"
