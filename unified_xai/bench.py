"""Every method's speed over the bare model passes it needs, in one run: the engine of ``uxai bench``.

A method's **floor** is the least its work can cost: the model passes it needs, run bare, at the same
batch size (rows per model call), on already-built inputs:

* gradient methods (``wam`` and its variants, ``saliency``, ``input_x_gradient``, ``smoothgrad``,
  ``integrated_gradients``, ``gradcam``): one forward+backward per row, the model's parameters frozen and
  only the input gradient computed (``ModelAdapter.frozen``), the target logits summed;
* ``maco``: one optimisation step against one forward+backward of that step's batch of crops (same);
* ``sobol``, ``sobol_wavelet`` (WCAM) and the metrics ``deletion``, ``insertion``, ``mu_fidelity``: one
  forward per row under ``torch.no_grad()``, chunked as the method chunks;
* ``nmf`` (CRAFT's factorisation): not an overhead but a speed-up, scikit-learn's ``NMF(solver="cd")``
  with its defaults against the torch HALS solver stopped at the same reconstruction error (as
  ``experiments/bench_nmf.py``), on a matrix of real activations (pooled crop activations of the built-in
  ``digits`` model at its post-ReLU ``features`` block).

The harness is one loop for every row: a warm-up run of the floor and of the method, then ``repeats``
pairs (method, floor), the order alternating from pair to pair so that neither always runs second, and
more pairs (up to ``3 * repeats``) until the row's pairs have taken :data:`MIN_ROW_SECONDS` (not with
``--quick``): pairs of a few seconds spread by 10-20 % on a shared machine. A pair's ratio is method
time / floor time (for a speed-up: floor time / method time); a row shows the median times, the median
of its pair ratios and their range. The range says how much to trust a ratio, and ratios (not times)
are what compares across machines.

Targets are the ones the issues state: WAM (``smoothgrad``, ``integrated``) and Sobol ≤ 1.05, MACO ≤ 1.6,
the metrics ≤ 1.1, NMF ≥ 2.5 (speed-up at ranks 10 and 20); other rows have none.

>>> from unified_xai import bench
>>> report = bench.run(quick=True, only=["saliency"], repeats=1)   # doctest: +SKIP
>>> print(bench.markdown(report, "uxai bench --quick --only saliency --repeats 1"))   # doctest: +SKIP
"""
from __future__ import annotations

import datetime
import gc
import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch

from .core.errors import ParameterError, UnknownNameError, suggest
from .core.storage import atomic_write

#: the model of every model-based row by default, and of ``--quick``
DEFAULT_MODEL, QUICK_MODEL = "timm:resnet18", "planted-image"
#: rows per model call when none is given (the CLI's documented default chunk)
DEFAULT_BATCH_SIZE = 16
DEFAULT_REPEATS = 3
#: a row gets more pairs than --repeats (up to 3x) until its pairs have taken this long
MIN_ROW_SECONDS = 40.0
#: where the saved table goes: in a checkout of the repository (a full default run) and elsewhere
REPO_OUT, INSTALLED_OUT, QUICK_OUT = Path("docs/bench.md"), Path("uxai-out/bench.md"), Path("uxai-out/bench-quick.md")
#: the built-in model whose activations make the NMF matrix (real activations, as bench_nmf)
NMF_MODEL, NMF_LAYER, NMF_PATCH, NMF_STRIDE = "digits", "features", 16, 4
#: HALS iteration cap and the relative tolerance of "equal error" (bench_nmf's)
NMF_MAX_ITER, NMF_EQUAL_RTOL = 1000, 1e-4


@dataclass(frozen=True)
class Sizes:
    """How much work each row does: small enough that the full run takes minutes on a laptop CPU."""

    single_inputs: int       # inputs of the one-pass gradient methods (saliency, ..., wam gradient)
    sampled_inputs: int      # inputs of the sampled gradient methods (smoothgrad, integrated, ...)
    samples: int             # their samples / path points per input
    sobol_inputs: int
    sobol_grid: int
    sobol_designs: int
    wcam_grid: int
    wcam_designs: int
    maco_crops: int
    maco_steps: int
    metric_inputs: int
    metric_steps: int        # deletion / insertion steps
    mu_subsets: int          # µ-Fidelity subsets
    nmf_rows: int
    nmf_ranks: tuple


FULL = Sizes(single_inputs=4, sampled_inputs=2, samples=16, sobol_inputs=1, sobol_grid=4, sobol_designs=8,
             wcam_grid=2, wcam_designs=8, maco_crops=6, maco_steps=8, metric_inputs=1, metric_steps=32,
             mu_subsets=64, nmf_rows=20000, nmf_ranks=(10, 20))
QUICK = Sizes(single_inputs=4, sampled_inputs=2, samples=8, sobol_inputs=1, sobol_grid=4, sobol_designs=8,
              wcam_grid=2, wcam_designs=8, maco_crops=6, maco_steps=4, metric_inputs=2, metric_steps=16,
              mu_subsets=32, nmf_rows=2000, nmf_ranks=(10,))


# ==================================================================================================
# the harness
# ==================================================================================================
@dataclass
class Case:
    """One row to measure: the method and its floor as callables (each one run of the whole job)."""

    method: str                        # e.g. "wam (smoothgrad)"
    setting: str                       # samples / designs / steps, inputs, chunk
    model: str
    floor: str                         # what the floor is, e.g. "16 f+b (input grad)"
    run_method: Callable[[], object]
    run_floor: Callable[[], object]
    speedup: bool = False              # ratio = floor / method (higher is better) instead of method / floor
    target: Optional[float] = None
    per: int = 1                       # divide both times by this (MACO: per step)
    note: Callable[[], str] = lambda: ""
    device: torch.device = torch.device("cpu")


@dataclass
class Row:
    """A measured row of the table."""

    name: str                          # the benchmark's name (``--only``)
    method: str
    setting: str
    model: str
    floor: str
    method_s: float                    # median seconds (per step for MACO)
    floor_s: float
    ratio: float                       # median of the pair ratios
    low: float                         # smallest and largest pair ratio
    high: float
    speedup: bool = False
    target: Optional[float] = None
    note: str = ""
    pairs: int = 0                     # interleaved (method, floor) pairs measured

    @property
    def met(self) -> Optional[bool]:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.speedup else self.ratio <= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "—"
        return f"≥ {self.target:g} (speed-up)" if self.speedup else f"≤ {self.target:g}"

    @property
    def ratio_text(self) -> str:
        return f"{self.ratio:.2f}×" if self.speedup else f"{self.ratio:.3f}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], device: torch.device = torch.device("cpu")) -> float:
    """Seconds of one call (the device synchronised around it)."""
    _sync(device)
    start = time.perf_counter()
    call()
    _sync(device)
    return time.perf_counter() - start


def measure(name: str, case: Case, repeats: int, min_seconds: float | None = None) -> Row:
    """Warm up the floor and the method once, then interleaved pairs; medians and pair ratios.

    At least ``repeats`` pairs, and more (up to ``3 * repeats``) until the pairs have taken ``min_seconds``
    (default :data:`MIN_ROW_SECONDS`): a pair of a few seconds spreads by 10-20 % on a shared machine, so
    short rows get more pairs for their median. The garbage collector runs once before and is paused while
    the row is measured (its pauses would land on whichever call happened to trigger them)."""
    min_seconds = MIN_ROW_SECONDS if min_seconds is None else min_seconds
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        timed(case.run_floor, case.device)
        timed(case.run_method, case.device)
        methods, floors, ratios = [], [], []
        spent, r = 0.0, 0
        while r < repeats or (spent < min_seconds and r < 3 * repeats):
            if r % 2 == 0:
                m = timed(case.run_method, case.device)
                f = timed(case.run_floor, case.device)
            else:
                f = timed(case.run_floor, case.device)
                m = timed(case.run_method, case.device)
            methods.append(m / case.per)
            floors.append(f / case.per)
            ratios.append(f / m if case.speedup else m / f)
            spent, r = spent + m + f, r + 1
    finally:
        if enabled:
            gc.enable()
    return Row(name, case.method, case.setting, case.model, case.floor, statistics.median(methods),
               statistics.median(floors), statistics.median(ratios), min(ratios), max(ratios), case.speedup,
               case.target, case.note(), len(ratios))


# ==================================================================================================
# floors: bare passes at the method's chunk sizes
# ==================================================================================================
def chunk_sizes(rows: int, batch_size: int) -> list[int]:
    """Sizes of the consecutive chunks of ``rows`` rows in calls of at most ``batch_size``."""
    return [min(batch_size, rows - s) for s in range(0, rows, batch_size)]


def _rows(x: torch.Tensor, targets: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows cycling through the inputs (built before timing: the floor does not build inputs)."""
    idx = torch.arange(n, device=x.device) % x.shape[0]
    return x[idx].contiguous(), targets[idx]


def gradient_floor(adapter, x: torch.Tensor, targets: torch.Tensor, sizes: Sequence[int]) -> Callable[[], None]:
    """Forward+backward of chunks of ``sizes`` rows: parameters frozen, input gradient only."""
    rows, rows_t = _rows(x, targets, max(sizes))

    def run() -> None:
        with adapter.evaluating(), adapter.frozen(), torch.enable_grad():
            for n in sizes:
                leaf = rows[:n].detach().requires_grad_(True)
                score = adapter.forward(leaf).gather(1, rows_t[:n, None]).sum()
                torch.autograd.grad(score, leaf)

    return run


def forward_floor(adapter, x: torch.Tensor, targets: torch.Tensor, sizes: Sequence[int]) -> Callable[[], None]:
    """Forwards of chunks of ``sizes`` rows under ``torch.no_grad()`` (target logits gathered)."""
    rows, rows_t = _rows(x, targets, max(sizes))

    def run() -> None:
        with adapter.evaluating(), torch.no_grad():
            for n in sizes:
                adapter.forward(rows[:n]).gather(1, rows_t[:n, None])

    return run


# ==================================================================================================
# the benchmarks: one entry per method, each stating its floor
# ==================================================================================================
@dataclass
class Context:
    """What the entries share: the model, its inputs and chunk sizes, the sizes of the work."""

    adapter: object
    model: str                         # label of the model column
    sizes: Sizes
    batch_size: object                 # int or "auto"
    seed: int = 0
    _chunks: dict = field(default_factory=dict)

    def inputs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` seeded uniform inputs in [0, 1] (free sizes: 224) and their predicted classes."""
        shape = [s if s is not None else 224 for s in self.adapter.input_shape]
        generator = torch.Generator().manual_seed(self.seed)
        x = torch.rand(n, *shape, generator=generator).to(self.adapter.device, self.adapter.dtype)
        targets = self.adapter.predict(x, batch_size=self.chunk("nograd"), progress=False).argmax(1)
        return x, targets

    def chunk(self, kind: str) -> int:
        """Rows per model call for ``kind`` ("grad" / "nograd"): the given size, or the adapter's probe."""
        if isinstance(self.batch_size, int):
            return self.batch_size
        if kind not in self._chunks:
            self._chunks[kind] = int(self.adapter.chunk_size(self.example(), kind))
        return self._chunks[kind]

    def example(self) -> torch.Tensor:
        """One input of zeros (free sizes: 224)."""
        shape = [s if s is not None else 224 for s in self.adapter.input_shape]
        return torch.zeros(1, *shape, device=self.adapter.device, dtype=self.adapter.dtype)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _explainer_case(ctx: Context, method: str, label: str, params: dict, n_inputs: int, rows_per_input: int,
                    target: Optional[float] = None, what: str = "") -> Case:
    """A gradient explainer against ``rows_per_input`` forward+backward passes per input."""
    from .core.registry import create

    bs = ctx.chunk("grad")
    x, targets = ctx.inputs(n_inputs)
    explainer = create(method, ctx.adapter, batch_size=bs, **params)
    rows = n_inputs * rows_per_input
    setting = ", ".join(filter(None, [what, _plural(n_inputs, "input")]))
    floor = gradient_floor(ctx.adapter, x, targets, chunk_sizes(rows, bs))
    label_floor = f"{rows} f+b"
    forwards = n_inputs * _measured_scale_forwards(explainer)
    if forwards:  # WAM's default scale answer is measured by forward passes: part of what it needs
        gradients, nograd = floor, forward_floor(ctx.adapter, x, targets, chunk_sizes(forwards, ctx.chunk("nograd")))

        def floor() -> None:
            gradients()
            nograd()

        label_floor += f" + {forwards} no-grad forwards"
    return Case(label, setting, ctx.model, label_floor, lambda: explainer.explain(x, targets), floor,
                target=target, device=ctx.adapter.device)


def _measured_scale_forwards(explainer) -> int:
    """Forwards per input of a scale profile measured by level removals (WAM's ``scale_profile``)."""
    config = getattr(explainer, "config", {})
    levels = config.get("levels", 0)
    return {"removal": levels + 2, "shapley": 2 ** (levels + 1)}.get(config.get("scale_profile"), 0)


def _wam(ctx: Context) -> list[Case]:
    s = ctx.sizes
    return [
        _explainer_case(ctx, "wam", "wam (gradient)", {"variant": "gradient"}, s.single_inputs, 1),
        _explainer_case(ctx, "wam", "wam (smoothgrad)", {"variant": "smoothgrad", "n_samples": s.samples},
                        s.sampled_inputs, s.samples, target=1.05, what=_plural(s.samples, "sample")),
        _explainer_case(ctx, "wam", "wam (integrated)", {"variant": "integrated", "n_samples": s.samples},
                        s.sampled_inputs, s.samples, target=1.05, what=_plural(s.samples, "path point")),
    ]


def _one_pass(method: str) -> Callable[[Context], list[Case]]:
    def cases(ctx: Context) -> list[Case]:
        return [_explainer_case(ctx, method, method, {}, ctx.sizes.single_inputs, 1)]

    return cases


def _sampled(method: str, unit: str) -> Callable[[Context], list[Case]]:
    def cases(ctx: Context) -> list[Case]:
        s = ctx.sizes
        return [_explainer_case(ctx, method, method, {"n_samples": s.samples}, s.sampled_inputs, s.samples,
                                what=_plural(s.samples, unit))]

    return cases


def _sobol_case(ctx: Context, method: str, params: dict, d: int, what: str, target: Optional[float]) -> Case:
    from .core.registry import create

    s = ctx.sizes
    bs = ctx.chunk("nograd")
    x, targets = ctx.inputs(s.sobol_inputs)
    explainer = create(method, ctx.adapter, batch_size=bs, **params)
    per_input = params["n_designs"] * (d + 2)
    sizes = chunk_sizes(per_input, bs) * s.sobol_inputs  # the explainers chunk each input's rows
    return Case(method, f"{what}, {_plural(params['n_designs'], 'design')}, {_plural(s.sobol_inputs, 'input')}",
                ctx.model, f"{per_input * s.sobol_inputs} no-grad forwards",
                lambda: explainer.explain(x, targets), forward_floor(ctx.adapter, x, targets, sizes), target=target,
                device=ctx.adapter.device)


def _sobol(ctx: Context) -> list[Case]:
    s = ctx.sizes
    nd = ctx.adapter.spatial_ndim
    return [_sobol_case(ctx, "sobol", {"grid_size": s.sobol_grid, "n_designs": s.sobol_designs},
                        s.sobol_grid ** nd, f"grid {s.sobol_grid}", target=1.05)]


def _sobol_wavelet(ctx: Context) -> list[Case]:
    from . import wavelets

    s = ctx.sizes
    coeffs = wavelets.dwt(ctx.example(), ctx.adapter.spatial_ndim, "haar", 3, "reflect")
    nd = ctx.adapter.spatial_ndim
    d = sum(math.prod(min(s.wcam_grid, n) for n in t.shape[-nd:]) for t in coeffs.tensors())
    params = {"grid_size": s.wcam_grid, "n_designs": s.wcam_designs, "wavelet": "haar", "levels": 3}
    return [_sobol_case(ctx, "sobol_wavelet", params, d, f"grid {s.wcam_grid} a sub-band, haar 3 levels, d {d}",
                        target=None)]


def _maco(ctx: Context) -> list[Case]:
    from .featviz import maco

    s = ctx.sizes
    bs = ctx.chunk("grad")
    shape = [v if v is not None else 224 for v in ctx.adapter.input_shape]
    generator = torch.Generator().manual_seed(ctx.seed)
    views = torch.rand(s.maco_crops, *shape, generator=generator).to(ctx.adapter.device, ctx.adapter.dtype)
    n_classes = ctx.adapter.num_classes(views[:1])
    target = 1 if n_classes > 1 else 0
    targets = torch.full((s.maco_crops,), target, dtype=torch.long, device=ctx.adapter.device)
    one_step = gradient_floor(ctx.adapter, views, targets, chunk_sizes(s.maco_crops, bs))

    def floor() -> None:
        for _ in range(s.maco_steps):
            one_step()

    return [Case("maco", f"{_plural(s.maco_crops, 'crop')} a step, {s.maco_steps} steps, logit {target}; times per"
                 f" step", ctx.model, f"{s.maco_crops} f+b a step",
                 lambda: maco(ctx.adapter, target, steps=s.maco_steps, crops=s.maco_crops, batch_size=bs,
                              progress=False),
                 floor, target=1.6, per=s.maco_steps, device=ctx.adapter.device)]


def _metric_explanation(ctx: Context, x: torch.Tensor, targets: torch.Tensor):
    """The explanation the metrics rank by: WAM's plain gradient (pixels map and wavelet attributions)."""
    from .core.registry import create

    return create("wam", ctx.adapter, variant="gradient", batch_size=ctx.chunk("grad")).explain(x, targets)


def _metric_cases(ctx: Context, metric: str) -> list[Case]:
    from . import metrics

    s = ctx.sizes
    bs = ctx.chunk("nograd")
    x, targets = ctx.inputs(s.metric_inputs)
    explanation = _metric_explanation(ctx, x, targets)
    function = getattr(metrics, metric)
    cases = []
    for domain in ("pixels", "wavelet"):
        if metric == "mu_fidelity":
            options = {"n_subsets": s.mu_subsets}
            per_input, what = s.mu_subsets + 1, _plural(s.mu_subsets, "subset")
        else:
            options = {"steps": s.metric_steps}
            per_input, what = s.metric_steps + 1, _plural(s.metric_steps, "step")
        rows = per_input * s.metric_inputs

        def run(domain=domain, options=options) -> None:
            function(ctx.adapter, x, explanation, targets, domain=domain, batch_size=bs, progress=False, **options)

        cases.append(Case(metric, f"{domain}, {what}, {_plural(s.metric_inputs, 'input')}", ctx.model,
                          f"{rows} no-grad forwards", run, forward_floor(ctx.adapter, x, targets, chunk_sizes(rows, bs)),
                          target=1.1, device=ctx.adapter.device))
    return cases


def _metric(metric: str) -> Callable[[Context], list[Case]]:
    return lambda ctx: _metric_cases(ctx, metric)


def nmf_matrix(n_rows: int) -> tuple[torch.Tensor, str]:
    """``(n_rows, D)``: pooled activations of the ``digits`` model's ``features`` block (after its ReLU) on
    sliding 16-pixel crops of its training images, each upsampled back to 32 px as CRAFT does."""
    import torch.nn.functional as F

    from .data import load_dataset, load_model

    adapter = load_model(NMF_MODEL, batch_size=256, device="cpu", progress=False)
    size = adapter.input_shape[-1]
    per_image = ((size - NMF_PATCH) // NMF_STRIDE + 1) ** 2
    images, _ = load_dataset(NMF_MODEL, split="train")[:-(-n_rows // per_image)]
    if len(images) * per_image < n_rows:
        raise ParameterError(f"nmf: {NMF_MODEL} has {len(images)} training images = {len(images) * per_image} crops,"
                             f" fewer than the {n_rows} rows asked for")
    step = max(1, 256 // per_image)
    parts = []
    with torch.no_grad():
        for i in range(0, len(images), step):
            batch = images[i:i + step]
            n, C, H, W = batch.shape
            windows = batch.unfold(2, NMF_PATCH, NMF_STRIDE).unfold(3, NMF_PATCH, NMF_STRIDE)
            windows = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, C, NMF_PATCH, NMF_PATCH)
            crops = F.interpolate(windows, size=(H, W), mode="bilinear", align_corners=False)
            parts.append(adapter.capture(crops, NMF_LAYER).mean((2, 3)))
    A = torch.cat(parts)[:n_rows].contiguous()
    return A, f"{NMF_MODEL} '{NMF_LAYER}' activations {A.shape[0]}×{A.shape[1]}"


def _relative_error(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor) -> float:
    return float(torch.linalg.norm(A - U.to(A.dtype) @ W.to(A.dtype)) / torch.linalg.norm(A))


def _nmf(ctx: Context) -> list[Case]:
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    from .concepts.nmf import nmf

    A, label = nmf_matrix(ctx.sizes.nmf_rows)
    A_np = A.numpy()
    cases = []
    for rank in ctx.sizes.nmf_ranks:
        state: dict = {}

        def reference(rank=rank, state=state) -> None:
            with warnings.catch_warnings():  # scikit-learn's default max_iter=200 is the reference
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = NMF(n_components=rank, init="nndsvda", solver="cd", random_state=0)
                state["sk"] = (model.fit_transform(A_np), model.components_)

        def torch_hals(rank=rank, state=state) -> None:
            if "err_sk" not in state:
                U, W = state["sk"]
                state["err_sk"] = _relative_error(A, torch.from_numpy(U), torch.from_numpy(W))
            state["hals"] = nmf(A, rank, tol=0, max_iter=NMF_MAX_ITER,
                                target_error=state["err_sk"] * (1 + NMF_EQUAL_RTOL))

        def note(rank=rank, state=state) -> str:
            err = _relative_error(A, *state["hals"])
            verdict = "" if err <= state["err_sk"] * (1 + NMF_EQUAL_RTOL) else " (HALS stopped ABOVE it)"
            return f"rank {rank}: error torch {err:.5f}, scikit-learn {state['err_sk']:.5f}{verdict}"

        nmf(A, rank, max_iter=2)  # first calls of the linalg kernels
        cases.append(Case("nmf (CRAFT, torch HALS)", f"rank {rank}, to scikit-learn's error", label,
                          "scikit-learn cd, same error", torch_hals, reference, speedup=True, target=2.5, note=note))
    return cases


@dataclass(frozen=True)
class Benchmark:
    name: str                          # for --only
    floor: str                         # what the floor is, in words (the legend of the saved table)
    cases: Callable[[Context], list[Case]]
    needs_model: bool = True
    image_only: bool = False


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("wam", "forward+backward passes, one per sample and input (parameters frozen, input gradient only), "
                     "plus the levels + 2 no-grad forwards per input of its default scale profile (level removal)",
              _wam),
    Benchmark("saliency", "one forward+backward per input (input gradient only)", _one_pass("saliency")),
    Benchmark("input_x_gradient", "one forward+backward per input (input gradient only)",
              _one_pass("input_x_gradient")),
    Benchmark("smoothgrad", "one forward+backward per noisy copy", _sampled("smoothgrad", "sample")),
    Benchmark("integrated_gradients", "one forward+backward per path point",
              _sampled("integrated_gradients", "path point")),
    Benchmark("gradcam", "one forward+backward per input to the input (Grad-CAM's backward stops at its layer, so"
              " it can be below 1)", _one_pass("gradcam")),
    Benchmark("sobol", "N (d + 2) no-grad forwards per input, d grid cells", _sobol),
    Benchmark("sobol_wavelet", "N (d + 2) no-grad forwards per input, d wavelet regions", _sobol_wavelet),
    Benchmark("maco", "one forward+backward of the step's crops (input gradient only), per step", _maco,
              image_only=True),
    Benchmark("deletion", "steps + 1 no-grad forwards per input", _metric("deletion")),
    Benchmark("insertion", "steps + 1 no-grad forwards per input", _metric("insertion")),
    Benchmark("mu_fidelity", "subsets + 1 no-grad forwards per input", _metric("mu_fidelity")),
    Benchmark("nmf", "scikit-learn's NMF (cd, defaults) to the error the torch solver must reach; a speed-up",
              _nmf, needs_model=False),
]}


def select(only: Optional[Iterable[str]]) -> list[str]:
    """The benchmark names to run (all when ``only`` is empty); names may be comma-separated."""
    if not only:
        return list(BENCHMARKS)
    names: list[str] = []
    for item in only:
        for name in (p.strip() for p in str(item).split(",")):
            if not name:
                continue
            if name not in BENCHMARKS:
                raise UnknownNameError(f"--only {name!r} is not a benchmark; the benchmarks are: {', '.join(BENCHMARKS)}"
                                       f" (closest: {suggest(name, BENCHMARKS)})")
            if name not in names:
                names.append(name)
    if not names:
        raise ParameterError(f"--only takes benchmark names: {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in names]


def check_options(repeats: int, threads: Optional[int]) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ParameterError(f"--repeats must be at least 1 (interleaved method/floor pairs per row), got {repeats!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ParameterError(f"--threads must be at least 1, got {threads!r}")


# ==================================================================================================
# a whole run
# ==================================================================================================
@dataclass
class Report:
    rows: list
    model: Optional[str]
    quick: bool
    repeats: int
    batch_size: object
    machine: dict
    skipped: list = field(default_factory=list)   # (name, why)
    seconds: float = 0.0
    date: str = ""
    chunks: dict = field(default_factory=dict)    # "auto": the probe's choice per pass kind

    @property
    def chunk_text(self) -> str:
        if self.batch_size != "auto":
            return f"{self.batch_size} rows"
        chosen = ", ".join(f"{'forward+backward' if k == 'grad' else 'no-grad forwards'} {v}"
                           for k, v in sorted(self.chunks.items()))
        return "auto, the adapter's probe" + (f" ({chosen})" if chosen else "")


def machine() -> dict:
    """Cores, torch version and threads, device, CPU name, load average: what the figures depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(terse=True), "load_start": load}


def _model_label(adapter, name: str) -> str:
    shape = "×".join("any" if s is None else str(s) for s in adapter.input_shape)
    weights = " (random weights)" if name.startswith("timm:") else ""
    return f"{name}{weights} {shape}"


def run(quick: bool = False, only: Optional[Iterable[str]] = None, repeats: int = DEFAULT_REPEATS,
        model: Optional[str] = None, batch_size=None, threads: Optional[int] = None,
        on_row: Optional[Callable[[Row], None]] = None, on_note: Optional[Callable[[str], None]] = None) -> Report:
    """Run the selected benchmarks; ``on_row`` sees each row as soon as it is measured.

    ``model``: a name :func:`~unified_xai.data.load_model` takes (default ``timm:resnet18`` with random
    weights, ``planted-image`` with ``quick``); ``batch_size``: rows per model call, an int or ``"auto"``
    (the adapter's probe); default 16. ``threads``: torch's (and scikit-learn's BLAS) threads for the run,
    restored after; default torch's own, 1 with ``quick``.
    """
    names = select(only)
    check_options(repeats, threads)
    if threads is None and quick:
        threads = 1  # tiny models gain nothing from more, and a shared machine's stalls would swamp them
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if batch_size != "auto" and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ParameterError(f"--batch-size takes a positive integer or 'auto', got {batch_size!r}")
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[]):  # seeded here (random weights), the caller's RNG left as it was
            torch.manual_seed(0)
            return _run(names, quick, repeats, model or (QUICK_MODEL if quick else DEFAULT_MODEL), batch_size,
                        on_row, on_note)
    finally:
        torch.set_num_threads(before)


def _run(names, quick, repeats, model, batch_size, on_row, on_note) -> Report:
    from threadpoolctl import threadpool_limits

    from .data import load_model

    sizes = QUICK if quick else FULL
    start = time.perf_counter()
    info = machine()
    report = Report([], None, quick, repeats, batch_size, info,
                    date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    ctx = None
    if any(BENCHMARKS[n].needs_model for n in names):
        options = {"pretrained": False} if model.startswith("timm:") else {}
        adapter = load_model(model, batch_size=batch_size, progress=False, **options)
        ctx = Context(adapter, _model_label(adapter, model), sizes, batch_size)
        report.model = ctx.model
        info["device"] = str(adapter.device)
    with threadpool_limits(torch.get_num_threads()):  # scikit-learn's BLAS: as many threads as torch
        for name in names:
            bench = BENCHMARKS[name]
            if bench.needs_model and bench.image_only and ctx.adapter.spatial_ndim != 2:
                why = f"it draws images, and {model} is a {ctx.adapter.modality} model"
                report.skipped.append((name, why))
                if on_note:
                    on_note(f"skipped {name}: {why}")
                continue
            for case in bench.cases(ctx if bench.needs_model else Context(None, "", sizes, batch_size)):
                row = measure(name, case, repeats, min_seconds=0.0 if quick else None)  # --quick: a smoke test
                report.rows.append(row)
                if on_row:
                    on_row(row)
    info.setdefault("device", "cpu")
    if ctx is not None:
        report.chunks = dict(ctx._chunks)
    info["load_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    report.seconds = time.perf_counter() - start
    return report


# ==================================================================================================
# output: the terminal table and the saved markdown
# ==================================================================================================
COLUMNS = ("method", "setting", "model", "method s", "floor", "floor s", "ratio", "range", "pairs", "target", "met")
#: the terminal table leaves out the model (printed above it) and folds "met" into the target
TERMINAL_COLUMNS = ("method", "setting", "method s", "floor", "floor s", "ratio", "range", "pairs", "target")


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def cells(row: Row) -> dict:
    """The row's table cells by column name."""
    met = {None: "—", True: "yes", False: "no"}[row.met]
    digits = 2 if row.speedup else 3
    return {"method": row.method, "setting": row.setting, "model": row.model, "method s": _seconds(row.method_s),
            "floor": row.floor, "floor s": _seconds(row.floor_s), "ratio": row.ratio_text,
            "range": f"{row.low:.{digits}f}–{row.high:.{digits}f}", "pairs": str(row.pairs), "target": row.target_text, "met": met}


def _right(column: str) -> bool:
    return column.endswith(" s") or column in ("ratio", "range", "pairs")


def rich_table(report: Report):
    """The terminal table (rich): one row per measured case."""
    from rich.table import Table

    table = Table(title="time over the floor (bare model passes); nmf: scikit-learn's time over torch's",
                  title_justify="left")
    for column in TERMINAL_COLUMNS:
        table.add_column(column, justify="right" if _right(column) else "left", overflow="fold")
    for row in report.rows:
        values = cells(row)
        values["target"] += {None: "", True: " met", False: " missed"}[row.met]
        table.add_row(*(values[c] for c in TERMINAL_COLUMNS))
    return table


def header(report: Report) -> list[str]:
    """What the figures depend on, as lines for the terminal and the saved page."""
    return [f"model: {report.model or '(none: only nmf)'}; rows per model call: {report.chunk_text}",
            f"machine: {_machine_line(report.machine)}",
            f"{_pairs_text(report.repeats)} per row after one warm-up run of each; {report.seconds / 60:.1f} min in all"]


def _pairs_text(repeats: int) -> str:
    return (f"at least {_plural(repeats, 'interleaved (method, floor) pair')} (more, up to {3 * repeats}, until"
            f" a row's pairs took {MIN_ROW_SECONDS:g} s; see the pairs column)")


def _machine_line(info: dict) -> str:
    cores = f"{info['cores']} CPU cores" + (f" ({info['usable_cores']} usable)" if info["usable_cores"] != info["cores"]
                                            else "")
    return (f"{info['cpu']}, {cores}; {info['platform']}, Python {info['python']}, torch {info['torch']} with"
            f" {_plural(info['threads'], 'thread')}, device {info.get('device', 'cpu')}; load average {info['load_start']:.2f}"
            f" at the start, {info.get('load_end', float('nan')):.2f} at the end")


def markdown(report: Report, command: str) -> str:
    """The saved page: the command, date, machine and the table, then what the columns mean."""
    lines = [
        "# Speed benchmarks",
        "",
        "Each method's time over the time of the bare model passes it needs (its *floor*), measured in one run"
        " by `uxai bench` ([command line](cli.md#uxai-bench)); regenerate this page with the command below, from"
        " the repository's root." + (" This is a `--quick` run (a small model, few samples): a smoke test, not"
                                     " the saved table." if report.quick else ""),
        "",
        f"- command: `{command}`",
        f"- date: {report.date}; the whole run took {report.seconds / 60:.1f} min",
        f"- machine: {_machine_line(report.machine)}",
        f"- model: {report.model or '(none: only nmf)'}; rows per model call: {report.chunk_text}; inputs: seeded"
        f" uniform noise in [0, 1], targets their predicted classes",
        f"- {_pairs_text(report.repeats)} per row after one warm-up run of each, the order alternating; times are"
        f" medians (MACO: per step), the ratio is the median"
        f" of the pair ratios and the range their smallest and largest",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" if _right(c) else "---" for c in COLUMNS) + "|",
    ]
    for row in report.rows:
        values = cells(row)
        lines.append("| " + " | ".join(values[c].replace("|", "\\|") for c in COLUMNS) + " |")
    lines += ["", "**Floors.** The ratio is method time / floor time, so 1.000 means the method costs exactly its"
              " model passes; for `nmf` it is a speed-up, scikit-learn's time / the torch solver's, higher is"
              " better. f+b: one forward and one backward pass per row, the parameters frozen and only the input"
              " gradient computed; no-grad forwards: forwards under `torch.no_grad()`; both at the method's chunk"
              " sizes, on inputs built before the clock starts.", ""]
    for name in dict.fromkeys(row.name for row in report.rows):
        lines.append(f"- `{name}`: {BENCHMARKS[name].floor}.")
    lines += ["", "**Targets** (the issues'): WAM `smoothgrad` / `integrated` and Sobol ≤ 1.05, MACO ≤ 1.6,"
              " Deletion / Insertion / µ-Fidelity ≤ 1.1, NMF ≥ 2.5× faster than scikit-learn at equal error (ranks"
              " 10 and 20); the other rows have none. The metrics rank by a WAM gradient explanation of the same"
              " inputs. On a small model a few milliseconds of fixed work per call (wavelet transforms, building the"
              " perturbed inputs) are a large share of the job; on a shared machine the pair ratios spread (see the"
              " range)."]
    notes = [row.note for row in report.rows if row.note]
    if notes:
        lines += ["", "**NMF errors** (relative, ‖A − UW‖ / ‖A‖): " + "; ".join(notes) + "."]
    for name, why in report.skipped:
        lines += ["", f"Skipped `{name}`: {why}."]
    return "\n".join(lines) + "\n"


def save(report: Report, path, command: str) -> Path:
    """Write :func:`markdown` to ``path`` atomically (its folder created when missing)."""
    path = Path(path)
    with atomic_write(path, binary=False) as handle:
        handle.write(markdown(report, command))
    return path


def in_checkout(folder: Path = Path(".")) -> bool:
    """Whether ``folder`` is the root of a checkout of this repository (its docs beside the package)."""
    return (folder / "mkdocs.yml").is_file() and (folder / "docs").is_dir() and (folder / "unified_xai").is_dir()


def default_out(quick: bool, every: bool, model: Optional[str]) -> Path:
    """``docs/bench.md`` for a full run of every benchmark on the default model from a checkout of the
    repository; ``uxai-out/bench.md`` otherwise (``uxai-out/bench-quick.md`` for ``--quick``), so a
    smoke test or a partial run never replaces the saved table."""
    if quick:
        return QUICK_OUT
    if every and model in (None, DEFAULT_MODEL) and in_checkout():
        return REPO_OUT
    return INSTALLED_OUT
