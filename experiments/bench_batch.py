"""batch_size="auto" against a full scan of fixed chunk sizes, on realistic jobs.

For each model and pass kind: the probe's choice and its own time (cache cleared each round), then
the time of one realistic job at the auto choice and at every fixed size 1, 2, 4, ... 128 whose
estimated memory fits the budget. Jobs: WAM smoothgrad (32 samples) for kind ``grad``, Sobol
(grid 4, 16 designs; 8 for ResNet-18, to keep its scan short) for kind ``nograd``. Rounds are
interleaved (every size once per round, in a shuffled order) and figures are medians over rounds:
the machine is shared with other processes, so single timings are noisy. ratio = median job time at
auto / best median job time at a fixed size; "+probe" adds the probe's own median time.

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/bench_batch.py [--threads 1] [--repeats 5] [--quick]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import timm
import torch

import unified_xai as ux
from unified_xai.core import autobatch

def describe_job(kind: str, n_designs: int) -> str:
    return "WAM smoothgrad, 32 samples" if kind == "grad" else f"Sobol, grid 4, {n_designs} designs"


def make_job(kind: str, adapter: ux.ModelAdapter, x: torch.Tensor, targets: torch.Tensor, n_designs: int):
    """A function running the realistic job of ``kind`` at a given chunk size, returning its seconds."""

    def run(batch_size: int) -> float:
        if kind == "grad":
            explainer = ux.create("wam", adapter, variant="smoothgrad", n_samples=32, batch_size=batch_size)
        else:
            explainer = ux.create("sobol", adapter, grid_size=4, n_designs=n_designs, batch_size=batch_size)
        start = time.perf_counter()
        explainer.explain(x, targets)
        return time.perf_counter() - start

    return run


def rows_of(kind: str, x: torch.Tensor, n_designs: int) -> int:
    if kind == "grad":
        return 32 * x.shape[0]
    return x.shape[0] * n_designs * (4 ** (x.ndim - 2) + 2)


def bench(name: str, fixed: ux.ModelAdapter, x: torch.Tensor, kind: str, repeats: int, n_designs: int = 16) -> dict:
    """Probe and job timings for one model and kind; prints a block and returns the summary row."""
    # the probing adapter shares the model; jobs run on ``fixed`` with an explicit batch_size per run
    auto = ux.ModelAdapter(fixed.model, fixed.input_shape, preprocess=fixed.preprocess,
                           class_names=fixed.class_names, device=fixed.device, batch_size="auto",
                           progress=False, name=name)
    targets = fixed.predict(x, batch_size=1).argmax(1)
    job = make_job(kind, fixed, x, targets, n_designs)
    autobatch.clear_cache()
    auto.chunk_size(x, kind)
    choice = autobatch.cached_choice(auto, x.shape[1:], kind)
    sizes = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b == 1 or b * choice.bytes_per_row <= choice.budget]
    job(sizes[min(2, len(sizes) - 1)])  # warm-up
    probes, choices, auto_times = [], [], []
    fixed_times: dict[int, list[float]] = {b: [] for b in sizes}
    order = random.Random(0)
    for _ in range(repeats):
        runs = ["auto", *sizes]
        order.shuffle(runs)
        for run in runs:
            if run == "auto":
                autobatch.clear_cache()
                start = time.perf_counter()
                size = auto.chunk_size(x, kind)
                probes.append(time.perf_counter() - start)
                choices.append(size)
                auto_times.append(job(size))
            else:
                fixed_times[run].append(job(run))
    medians = {b: statistics.median(t) for b, t in fixed_times.items()}
    mins = {b: min(t) for b, t in fixed_times.items()}
    best_size, best_min_size = min(medians, key=medians.get), min(mins, key=mins.get)
    auto_median, probe_median = statistics.median(auto_times), statistics.median(probes)
    last = autobatch.cached_choice(auto, x.shape[1:], kind)
    print(f"\n== {name} {tuple(x.shape[1:])}, kind {kind}: {describe_job(kind, n_designs)} on {x.shape[0]} input(s)"
          f" = {rows_of(kind, x, n_designs)} rows")
    print(f"  auto choice per round {choices}; probe {probe_median:.2f} s (median);"
          f" last probe ms/row {{{', '.join(f'{b}: {1e3 * t:.3g}' for b, t in last.seconds_per_row.items())}}},")
    print(f"  stopped by {last.stopped}, ~{last.bytes_per_row / 2**20:.3g} MiB/row,"
          f" budget {last.budget / 2**30:.2f} GiB")
    print("  " + f"{'chunk':>10s}" + "".join(f"{b:>8d}" for b in sizes) + f"{'auto':>8s}")
    print("  " + f"{'median s':>10s}" + "".join(f"{medians[b]:8.3f}" for b in sizes) + f"{auto_median:8.3f}")
    print("  " + f"{'min s':>10s}" + "".join(f"{mins[b]:8.3f}" for b in sizes) + f"{min(auto_times):8.3f}")
    ratio, ratio_min = auto_median / medians[best_size], min(auto_times) / mins[best_min_size]
    with_probe = (auto_median + probe_median) / medians[best_size]
    print(f"  best fixed {best_size} by median ({medians[best_size]:.3f} s), {best_min_size} by min"
          f" ({mins[best_min_size]:.3f} s); auto/best = {ratio:.3f} (medians), {ratio_min:.3f} (mins);"
          f" (auto + probe)/best = {with_probe:.3f}")
    return {"model": name, "kind": kind, "auto": "/".join(map(str, choices)), "probe": probe_median,
            "auto_s": auto_median, "best": best_size, "best_s": medians[best_size], "ratio": ratio,
            "ratio_min": ratio_min, "with_probe": with_probe}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="rounds for the built-in models")
    parser.add_argument("--resnet-repeats", type=int, default=3, help="rounds for ResNet-18 (slow jobs)")
    parser.add_argument("--quick", action="store_true", help="skip ResNet-18 at 224")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own); 1 avoids OpenMP stalls when the CPUs are shared")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, device cpu;"
          f" load average {os.getloadavg()[0]:.2f} at start. The machine is shared with other running processes:"
          f" timings are noisy, so sizes are interleaved over rounds and medians (and minima) are reported.")
    rows = []
    for name in ("planted-audio", "planted-image"):
        adapter = ux.data.load_model(name, device="cpu", progress=False)
        x, _ = ux.data.load_dataset(name, split="test")[:4]
        rows.append(bench(name, adapter, x, "grad", args.repeats))
        rows.append(bench(name, adapter, x[:2], "nograd", args.repeats))
    if not args.quick:
        model = timm.create_model("resnet18", pretrained=False).eval()
        adapter = ux.ModelAdapter(model, (3, 224, 224), device="cpu", progress=False, name="resnet18")
        x = torch.randn(1, 3, 224, 224)
        rows.append(bench("resnet18", adapter, x, "grad", args.resnet_repeats))
        rows.append(bench("resnet18", adapter, x, "nograd", args.resnet_repeats, n_designs=8))  # 144 rows

    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    print(f"\n{'model':14s} {'kind':7s} {'auto per round':>18s} {'probe s':>8s} {'auto s':>8s} {'best':>5s}"
          f" {'best s':>8s} {'auto/best':>9s} {'by min':>7s} {'+probe':>7s}")
    for r in rows:
        print(f"{r['model']:14s} {r['kind']:7s} {r['auto']:>18s} {r['probe']:8.2f} {r['auto_s']:8.3f} {r['best']:5d}"
              f" {r['best_s']:8.3f} {r['ratio']:9.3f} {r['ratio_min']:7.3f} {r['with_probe']:7.3f}")
    print("auto/best: median job time at the probe's choice over the best median at a fixed size; by min: the same"
          " with the fastest round of each (contention only adds time); +probe: the probe's time included.")


if __name__ == "__main__":
    main()
