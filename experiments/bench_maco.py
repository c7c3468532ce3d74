"""MACO's cost per optimisation step over the model passes that step needs.

Per step MACO renders the image from its phase (inverse real FFT, colour recorrelation), crops and
resizes ``--crops`` views in one ``grid_sample``, adds noise, runs one forward+backward of the view
batch, sends the view gradients back through the crops and the FFT, and takes a NAdam step. The
floor is one forward+backward of a batch of the same size with frozen parameters (input gradient
only), the least any method that optimises an input through the model pays. Interleaved repeats;
ratio = median MACO time per step / median floor time.

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/bench_maco.py [--model timm:resnet18] [--crops 6]
        [--steps 16] [--repeats 3] [--threads N]

Default model: timm ResNet-18 (random weights: the cost does not depend on them) at 224 x 224.
Target: ratio <= 1.6 (Horama measured 2.7 here, 2.2-2.4 with frozen parameters).
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import torch

import unified_xai as ux


def floor_time(adapter, crops: int, steps: int) -> float:
    """Seconds per forward+backward of a (crops, C, H, W) batch, input gradient only."""
    shape = (crops, *(s or 224 for s in adapter.input_shape))
    x = torch.rand(shape, device=adapter.device)
    with adapter.evaluating(), adapter.frozen():
        start = time.perf_counter()
        for _ in range(steps):
            leaf = x.detach().requires_grad_(True)
            score = adapter.forward(leaf)[:, 1].sum()
            torch.autograd.grad(score, leaf)
        return (time.perf_counter() - start) / steps


def maco_time(adapter, crops: int, steps: int) -> float:
    start = time.perf_counter()
    ux.featviz.maco(adapter, 1, steps=steps, crops=crops, progress=False)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="timm:resnet18")
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"pretrained": False} if args.model.startswith("timm:") else {}
    adapter = ux.data.load_model(args.model, progress=False, **options)
    floor_time(adapter, args.crops, 2)  # warm-up
    maco_time(adapter, args.crops, 2)
    floors, macos = [], []
    for _ in range(args.repeats):
        floors.append(floor_time(adapter, args.crops, args.steps))
        macos.append(maco_time(adapter, args.crops, args.steps))
    floor, step = statistics.median(floors), statistics.median(macos)
    print("command:", "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"model {args.model} input {tuple(adapter.input_shape)}, {args.crops} crops per step, {args.steps} steps,"
          f" {args.repeats} repeats, {torch.get_num_threads()} threads")
    print(f"floor (forward+backward of the crop batch, frozen parameters): {floor * 1000:.1f} ms")
    print(f"MACO step: {step * 1000:.1f} ms")
    print(f"ratio MACO step / floor: {step / floor:.2f}  (target <= 1.6)")


if __name__ == "__main__":
    main()
