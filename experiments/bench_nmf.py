"""Torch HALS NMF against scikit-learn's coordinate descent, on real activations, at equal error.

The matrix: spatially pooled activations of sliding-window crops (each upsampled back to the input
size, as CRAFT does) of a built-in model at a post-ReLU layer. Per rank, interleaved repeats of:
scikit-learn ``NMF(solver="cd")`` with its defaults (init nndsvda, tol 1e-4, max_iter 200), giving
its relative error E_sk; then torch HALS stopping as soon as its own error is at most E_sk, "equal"
meaning the same to ``--equal-rtol`` (default 1e-4: four significant digits; two runs that converge to
one local minimum differ in the sixth), i.e. ``nmf(..., tol=0, target_error=E_sk * (1 + rtol))``.
Ratio = median sklearn time / median HALS time. HALS with its own defaults (tol 1e-4) is shown too.
Errors are recomputed exactly (||A - UW|| / ||A||).

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/bench_nmf.py [--rows 20000] [--ranks 10 20] [--repeats 3]
        [--threads N] [--equal-rtol 1e-4] [--photos] [--photo-stride 16] [--suite]

``--suite`` instead compares the numbers of HALS sweeps per iteration (over U, over W) that
``unified_xai.concepts.nmf._SWEEPS`` could take, on the crop activations of every built-in model at its
default concept layer x ranks 5, 10, 20: time to scikit-learn's error, geometric mean of the ratios.

``--photos`` adds a second matrix with larger D: EfficientNet-Lite0 (ImageNet) at ``bn2`` (1280
channels after ReLU6), 64 px crops of the 12 built-in photos at the given stride (16: 121 crops a
photo, 1452 rows; stride 8 gives 5292 rows but 3.6x the forward passes).
"""
from __future__ import annotations

import argparse
import importlib
import math
import shlex
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

import unified_xai as ux
from unified_xai.concepts.nmf import _SWEEPS as SWEEPS, nmf

HALS_MAX_ITER = 1000
nmf_module = importlib.import_module("unified_xai.concepts.nmf")  # the module, not the function of that name
SUITE_SWEEPS = [(2, 5), (3, 3), (4, 3), (4, 5), (6, 3), (6, 5), (8, 3)]
SUITE_MODELS = {"digits": 800, "planted-concepts": 400, "planted-audio": 400, "planted-image": 300,
                "planted-volume": 60}  # model: training images cropped


def crops(x: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """All ``patch``-pixel windows of ``x`` (n, C, H, W) at ``stride``, upsampled back to (H, W)."""
    n, C, H, W = x.shape
    windows = x.unfold(2, patch, stride).unfold(3, patch, stride)  # (n, C, h, w, patch, patch)
    windows = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, C, patch, patch)
    return F.interpolate(windows, size=(H, W), mode="bilinear", align_corners=False)


def pooled_activations(adapter, images: torch.Tensor, layer: str, patch: int, stride: int, batch: int) -> torch.Tensor:
    """(n_crops, C): the layer's activations of every crop, averaged over space."""
    per_image = ((images.shape[-1] - patch) // stride + 1) ** 2
    step = max(1, batch // per_image)  # images per forward pass
    acts = [adapter.capture(crops(images[i:i + step], patch, stride), layer).mean((2, 3))
            for i in range(0, len(images), step)]
    return torch.cat(acts)


def digits_matrix(n_rows: int) -> tuple[torch.Tensor, str]:
    patch, stride = 16, 4
    per_image = ((32 - patch) // stride + 1) ** 2
    adapter = ux.data.load_model("digits", batch_size=256, device="cpu", progress=False)
    images, _ = ux.data.load_dataset("digits", split="train")[:-(-n_rows // per_image)]
    if len(images) * per_image < n_rows:
        sys.exit(f"digits has {len(images)} training images = {len(images) * per_image} crops < --rows {n_rows}")
    A = pooled_activations(adapter, images, "features", patch, stride, batch=256)[:n_rows]
    return A, (f"digits layer 'features' (conv-ReLU block), {len(images)} train images x {per_image} crops of"
               f" {patch} px, stride {stride}")


def photos_matrix(stride: int) -> tuple[torch.Tensor, str]:
    patch = 64
    adapter = ux.data.load_model("efficientnet-lite0-imagenet", batch_size=32, device="cpu", progress=False)
    dataset = ux.data.load_dataset("photos")
    images, _ = dataset[:len(dataset)]
    per_image = ((images.shape[-1] - patch) // stride + 1) ** 2
    A = pooled_activations(adapter, images, "bn2", patch, stride, batch=32)
    return A, (f"efficientnet-lite0-imagenet layer 'bn2' (BN + ReLU6), {len(images)} photos x {per_image} crops"
               f" of {patch} px, stride {stride}")


def concept_matrix(model: str, n_images: int) -> tuple[torch.Tensor, str]:
    """Crop activations of a built-in model's training images at its default concept layer, as CRAFT takes them."""
    from unified_xai.concepts.scales import default_concept_layer

    adapter = ux.data.load_model(model, device="cpu", progress=False)
    layer, _ = default_concept_layer(adapter)
    images, _ = ux.data.load_dataset(model, split="train")[:n_images]
    craft = ux.concepts.Craft(adapter, layer, 10)
    A = craft.crop_activations(images, craft.crop_boxes(len(images), images.shape[2:]))
    return A.contiguous(), f"{model} layer {layer!r}, {len(images)} train images"


def suite(repeats: int, rtol: float) -> None:
    """Time to scikit-learn's error for each candidate ``_SWEEPS``, per matrix and rank; geometric means."""
    ratios = {sweeps: [] for sweeps in SUITE_SWEEPS}
    for model, n_images in SUITE_MODELS.items():
        with torch.no_grad():
            A, description = concept_matrix(model, n_images)
        for rank in (5, 10, 20):
            start = time.perf_counter()
            sk = NMF(n_components=rank, init="nndsvda", solver="cd", random_state=0)
            U_sk = sk.fit_transform(A.numpy())
            t_sk = time.perf_counter() - start
            err_sk = relative_error(A, torch.from_numpy(U_sk), torch.from_numpy(sk.components_))
            cells = []
            for sweeps in SUITE_SWEEPS:
                times = []
                try:
                    nmf_module._SWEEPS = sweeps
                    for _ in range(repeats):
                        start = time.perf_counter()
                        U, W = nmf(A, rank, tol=0, max_iter=HALS_MAX_ITER, target_error=err_sk * (1 + rtol))
                        times.append(time.perf_counter() - start)
                finally:
                    nmf_module._SWEEPS = SWEEPS
                reached = relative_error(A, U, W) <= err_sk * (1 + rtol) * (1 + 1e-6)
                ratio = t_sk / statistics.median(times)
                ratios[sweeps].append(ratio if reached else 0.0)
                cells.append(f"{sweeps}: {ratio:5.1f}x" + ("" if reached else " (not reached)"))
            print(f"{description}, {A.shape[0]} x {A.shape[1]}, rank {rank:2d}, sklearn {t_sk:.2f} s | "
                  + " | ".join(cells), flush=True)
    print("\nsweeps (U, W): geometric mean of sklearn time / HALS time to its error, worst (0 = never reached)")
    for sweeps, values in ratios.items():
        reached = [v for v in values if v > 0]
        mean = math.exp(statistics.mean(math.log(v) for v in reached)) if reached else 0.0
        print(f"  {sweeps}: {mean:5.2f}x, worst {min(values):5.2f}x" + (" <- current" if sweeps == SWEEPS else ""))


def relative_error(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor) -> float:
    return float(torch.linalg.norm(A - U @ W) / torch.linalg.norm(A))


def bench_rank(A: torch.Tensor, rank: int, repeats: int, rtol: float) -> str:
    A_np = A.numpy()
    nmf(A, rank, max_iter=2)  # warm-up (first calls of linalg kernels)
    sk_times, hals_times, default_times = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        model = NMF(n_components=rank, init="nndsvda", solver="cd", random_state=0)
        U_sk = model.fit_transform(A_np)
        sk_times.append(time.perf_counter() - start)
        err_sk = relative_error(A, torch.from_numpy(U_sk), torch.from_numpy(model.components_))

        start = time.perf_counter()
        U, W = nmf(A, rank, tol=0, max_iter=HALS_MAX_ITER, target_error=err_sk * (1 + rtol))
        hals_times.append(time.perf_counter() - start)
        err_hals = relative_error(A, U, W)

        start = time.perf_counter()
        U, W = nmf(A, rank)
        default_times.append(time.perf_counter() - start)
        err_default = relative_error(A, U, W)
    t_sk, t_hals, t_default = (statistics.median(t) for t in (sk_times, hals_times, default_times))
    equal = err_hals <= err_sk * (1 + rtol)
    verdict = (f"ratio sklearn/torch = {t_sk / t_hals:.2f}x at equal or lower error" if equal else
               f"HALS stopped ABOVE sklearn's error (+{err_hals / err_sk - 1:.3%}: another local minimum, or the"
               f" {HALS_MAX_ITER}-iteration cap); time ratio {t_sk / t_hals:.2f}x")
    return (f"rank {rank:3d}: sklearn cd {t_sk:6.3f} s err {err_sk:.5f} ({model.n_iter_} it) | torch HALS to that"
            f" error {t_hals:6.3f} s err {err_hals:.5f} | {verdict} | HALS defaults (tol 1e-4) {t_default:6.3f} s"
            f" err {err_default:.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows of the digits matrix")
    parser.add_argument("--ranks", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--equal-rtol", type=float, default=1e-4, help="relative tolerance of 'equal error'")
    parser.add_argument("--photos", action="store_true", help="also the EfficientNet-Lite0 matrix (D = 1280)")
    parser.add_argument("--photo-stride", type=int, default=16)
    parser.add_argument("--suite", action="store_true", help="compare HALS sweep settings on every built-in model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # sklearn's default max_iter=200 is the reference

    print("command: HF_HUB_OFFLINE=1 .venv/bin/python experiments/bench_nmf.py " + shlex.join(sys.argv[1:]))
    print(f"threads: torch {torch.get_num_threads()}, numpy/sklearn BLAS {args.threads} (threadpoolctl); "
          f"{args.repeats} interleaved repeats, median; HALS capped at {HALS_MAX_ITER} iterations; 'equal error' ="
          f" within {args.equal_rtol:g} relative")
    if args.suite:
        with threadpool_limits(args.threads):
            suite(args.repeats, args.equal_rtol)
        return
    builders = [lambda: digits_matrix(args.rows)] + ([lambda: photos_matrix(args.photo_stride)] if args.photos else [])
    with threadpool_limits(args.threads):
        for build in builders:
            start = time.perf_counter()
            with torch.no_grad():
                A, description = build()
            A = A.contiguous()
            print(f"\nmatrix: {A.shape[0]} x {A.shape[1]} {str(A.dtype).removeprefix('torch.')}, min"
                  f" {float(A.min()):.3g}, {float((A == 0).float().mean()):.1%} zeros, built in"
                  f" {time.perf_counter() - start:.1f} s -- {description}")
            for rank in args.ranks:
                print(bench_rank(A, rank, args.repeats, args.equal_rtol), flush=True)


if __name__ == "__main__":
    main()
