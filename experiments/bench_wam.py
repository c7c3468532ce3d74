"""WAM speed against its floor, and IG completeness against model passes.

Floor: the same number of bare forward+backward passes, at the same batch size, parameters frozen
and only the input gradient computed. Each ratio is the median over interleaved repeats measured in
this one run (the machine is noisy). Run:

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/bench_wam.py [--repeats 3] [--only builtins resnet18 digits noise]

``noise``: how far SmoothGrad moves from the plain gradient at the official per-modality noise levels
(0.001 audio, 0.0001 volumes, 0.25 images) and at the library's single default 0.15 (docs/design-notes.md).
"""
from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch

import unified_xai as ux
from unified_xai.explainers.quadrature import RULES


def floor_time(adapter: ux.ModelAdapter, x: torch.Tensor, targets: torch.Tensor, n_samples: int, batch_size: int) -> float:
    """Bare f+b passes over n_samples copies of each input, chunked like WAM, input gradient only."""
    rows = n_samples * x.shape[0]
    start = time.perf_counter()
    with adapter.frozen():
        for s in range(0, rows, batch_size):
            idx = torch.arange(s, min(s + batch_size, rows)) % x.shape[0]
            leaf = x[idx].detach().requires_grad_(True)
            score = adapter.forward(leaf).gather(1, targets[idx, None]).sum()
            torch.autograd.grad(score, leaf)
    return time.perf_counter() - start


def wam_time(adapter, x, targets, variant, n_samples, batch_size) -> float:
    explainer = ux.create("wam", adapter, variant=variant, n_samples=n_samples, batch_size=batch_size)
    start = time.perf_counter()
    explainer.explain(x, targets)
    return time.perf_counter() - start


def speed(name: str, adapter: ux.ModelAdapter, x: torch.Tensor, n_samples: int, batch_size: int, repeats: int):
    targets = adapter.predict(x).argmax(1)
    wam_time(adapter, x, targets, "gradient", 1, batch_size)  # warm-up
    for variant in ("smoothgrad", "integrated"):
        ratios, wams, floors = [], [], []
        for _ in range(repeats):
            f = floor_time(adapter, x, targets, n_samples, batch_size)
            w = wam_time(adapter, x, targets, variant, n_samples, batch_size)
            ratios.append(w / f)
            wams.append(w)
            floors.append(f)
        print(f"{name:28s} {variant:10s} batch {x.shape[0]} x {n_samples} samples, chunk {batch_size}: "
              f"WAM {statistics.median(wams):.2f}s  floor {statistics.median(floors):.2f}s  "
              f"ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f})")


def chunk_sizes(adapter: ux.ModelAdapter, shape, sizes=(4, 8, 16, 32, 64)):
    """Per-sample f+b time at several chunk sizes (to choose the default batch_size)."""
    out = []
    for size in sizes:
        x = torch.randn(size, *shape)
        t = torch.zeros(size, dtype=torch.long)
        floor_time(adapter, x, t, 1, size)
        best = min(floor_time(adapter, x, t, 2, size) for _ in range(2)) / (2 * size)
        out.append(f"{size}: {1000 * best:.1f} ms")
    print("  per-sample f+b time by chunk size: " + ", ".join(out))


def completeness(adapter: ux.ModelAdapter, x: torch.Tensor, passes=(8, 16, 32, 64, 128)):
    targets = adapter.predict(x).argmax(1)
    gap = adapter.scores(x, targets) - adapter.scores(torch.zeros_like(x), targets)
    print(f"  IG completeness |sum(attr) - (f(x) - f(0))| / |f(x) - f(0)|, mean over {x.shape[0]} inputs:")
    print("  " + f"{'passes':>20s}" + "".join(f"{p:>9d}" for p in passes))
    for rule in RULES:
        errors = []
        for p in passes:
            e = ux.create("wam", adapter, variant="integrated", n_samples=p, quadrature=rule).explain(x, targets)
            total = sum(v.flatten(1).sum(1) for v in e.raw_attributions().values())
            errors.append(((total - gap).abs() / gap.abs()).mean().item())
        print("  " + f"{rule:>20s}" + "".join(f"{err:9.4f}" for err in errors))


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def noise_levels(n_items: int = 4):
    """Per-input Pearson correlation of WAM-SG (25 samples) with the plain WAM gradient, by noise level."""
    print("\n== SmoothGrad vs plain gradient (per-input Pearson over all coefficients), 25 samples, levels 2")
    for name, official in (("planted-audio", 0.001), ("planted-volume", 0.0001), ("planted-image", 0.25)):
        adapter = ux.data.load_model(name, progress=False)
        x, y = ux.data.load_dataset(name, split="test")[:n_items]
        flat = lambda e, i: torch.cat([v[i].flatten() for v in e.raw_attributions().values()])  # noqa: E731
        plain = ux.create("wam", adapter, variant="gradient", levels=2).explain(x, y)
        for spread in (official, 0.15):
            sg = ux.create("wam", adapter, variant="smoothgrad", levels=2, stdev_spread=spread).explain(x, y)
            corr = [_pearson(flat(sg, i), flat(plain, i)) for i in range(n_items)]
            tag = "official" if spread == official else "library "
            print(f"  {name:15s} {tag} stdev_spread {spread:<7g} " + " ".join(f"{c:7.4f}" for c in corr))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=("builtins", "resnet18", "digits", "noise"),
                        default=("builtins", "resnet18", "digits"), help="sections to run")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")

    for name in ("planted-image", "planted-audio") if "builtins" in args.only else ():
        builtin = ux.data.load_model(name, progress=False)
        builtin.model.eval()  # the floor calls the model directly: same mode as inside explanations
        xb, _ = ux.data.load_dataset(name, split="test")[:4]
        print(f"\n== built-in {name}")
        chunk_sizes(builtin, builtin.input_shape)
        speed(name, builtin, xb, 25, builtin.chunk_size(xb), args.repeats)
        completeness(builtin, xb)

    if "resnet18" in args.only:
        resnet = ux.ModelAdapter(timm.create_model("resnet18", pretrained=False).eval(), (3, 224, 224), device="cpu",
                                 progress=False, name="resnet18")
        x = torch.randn(4, 3, 224, 224)
        print("\n== timm resnet18 (random weights), 224x224")
        chunk_sizes(resnet, (3, 224, 224), sizes=(4, 8, 16, 32))
        speed("resnet18", resnet, x, 25, resnet.chunk_size(x), args.repeats)
        # (no completeness table here: a random-weight ResNet in eval mode is positively homogeneous,
        #  f(a x) = a f(x), so every rule that skips a = 0 is exact and the table says nothing)

    if "digits" in args.only:
        digits = ux.data.load_model("digits", progress=False)
        xd, _ = ux.data.load_dataset("digits", split="test")[:8]
        print("\n== built-in digits (trained CNN with biases)")
        completeness(digits, xd)
    if "noise" in args.only:
        noise_levels()


if __name__ == "__main__":
    main()
