"""Sobol attribution speed against its floor, and peak memory against n_designs.

Floor: the same number of bare forwards (``torch.no_grad``) at the same batch size on already-built
inputs; ratio = explainer time / floor, median over interleaved repeats of this one run. Peak memory
(peak RSS above the process's RSS before the call, Linux /proc) is measured in a fresh subprocess per
setting, after a warm-up chunk, so it shows what one explanation adds.

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/bench_sobol.py [--repeats 3] [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import timm
import torch

import unified_xai as ux


def build(model_name: str):
    if model_name == "resnet18":
        model = timm.create_model("resnet18", pretrained=False)
        adapter = ux.ModelAdapter(model, (3, 224, 224), device="cpu", progress=False, name="resnet18")
        return adapter, torch.randn(1, 3, 224, 224)
    adapter = ux.data.load_model(model_name, progress=False)
    x, _ = ux.data.load_dataset(model_name, split="test")[:1]
    return adapter, x


def floor_time(adapter, x, target, n_forwards: int, batch_size: int) -> float:
    batch = x.expand(batch_size, *x.shape[1:]).clone()
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, n_forwards, batch_size):
            n = min(batch_size, n_forwards - s)
            adapter.scores(batch[:n], target.expand(n))
    return time.perf_counter() - start


def speed(model_name: str, grid: int, n_designs: int, batch_size: int, repeats: int):
    adapter, x = build(model_name)
    target = adapter.predict(x).argmax(1)
    n_forwards = n_designs * (grid ** (x.ndim - 2) + 2)
    explainer = ux.create("sobol", adapter, grid_size=grid, n_designs=n_designs, batch_size=batch_size)
    floor_time(adapter, x, target, batch_size, batch_size)  # warm-up
    ratios, times, floors = [], [], []
    for _ in range(repeats):
        f = floor_time(adapter, x, target, n_forwards, batch_size)
        start = time.perf_counter()
        explainer.explain(x, target)
        t = time.perf_counter() - start
        ratios.append(t / f)
        times.append(t)
        floors.append(f)
    print(f"{model_name:14s} grid {grid}, {n_designs} designs = {n_forwards} forwards, chunk {batch_size}: "
          f"sobol {statistics.median(times):.2f}s floor {statistics.median(floors):.2f}s "
          f"ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f})")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_peak(model_name: str, grid: int, n_designs: int, batch_size: int) -> dict:
    """Peak resident memory of one explanation, above what the process held before it (Linux)."""
    adapter, x = build(model_name)
    target = adapter.predict(x).argmax(1)
    explainer = ux.create("sobol", adapter, grid_size=grid, n_designs=n_designs, batch_size=batch_size)
    floor_time(adapter, x, target, batch_size, batch_size)  # warm-up: allocator pools of one chunk
    before = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:  # reset the peak (VmHWM) to the current RSS
        refs.write("5")
    explainer.explain(x, target)
    return {"before_mb": before, "after_mb": _status_mb("VmHWM")}


def memory(model_name: str, grid: int, batch_size: int, designs=(16, 64)):
    rows = []
    for n in designs:
        out = subprocess.run([sys.executable, __file__, "--child", model_name, str(grid), str(n), str(batch_size)],
                             capture_output=True, text=True, check=True)
        peak = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(f"n_designs {n}: peak RSS {peak['after_mb']:.0f} MB "
                    f"(+{peak['after_mb'] - peak['before_mb']:.0f} MB during the explanation)")
    print(f"{model_name:14s} grid {grid}, chunk {batch_size}: " + "; ".join(rows))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        name, grid, n, bs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(child_peak(name, grid, n, bs)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip ResNet-18 at 224")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for name in ("planted-image", "planted-audio"):
        speed(name, 8, 32, 64, args.repeats)
        memory(name, 8, 64)
    if not args.quick:
        speed("resnet18", 8, 32, 32, args.repeats)
        memory("resnet18", 8, 32)


if __name__ == "__main__":
    main()
