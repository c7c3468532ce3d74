"""MACO on real and built-in models: does the image carry its class, and what does it cost?

For each class: the default visualisation (``ux.featviz.maco(adapter, class)``: its steps, crops and
boxes), its time, the class's rank on the whole image, the share of 64 random views (the crops MACO
optimises: boxes drawn with sides along its schedule) on which the class ranks in the top 5, and
the z-score of the class logit on the image against 16 renders of the same magnitude with random
phase (the null: same spectrum, no optimised structure).

The planted models read the wavelet level of their evidence; MACO's default views zoom in (boxes of
0.6 -> 0.3 of the image resized to the input), which moves fine texture to coarser levels, so on them
the views are the whole image (``--planted-box 1 1``; measured: with the default views the planted
``fine`` and ``mid`` classes rank last on the whole image).

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/maco_visualizations.py [--imagenet-classes 967 285 417]
        [--planted planted-image planted-concepts] [--steps N] [--figure docs/figures/maco-imagenet.png]
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
import sys
import time

import torch

import unified_xai as ux
from unified_xai.featviz import crop_boxes, crop_views, random_phase_images
from unified_xai.featviz.maco import _view_size


def views_of(result, adapter, n: int = 64, seed: int = 1) -> torch.Tensor:
    start, end = result.config["box_size"]
    generator = torch.Generator().manual_seed(seed)
    sides = start + (end - start) * torch.rand(n, generator=generator)
    boxes = torch.cat([crop_boxes(1, float(s), generator) for s in sides])
    size = tuple(result.image.shape[1:])
    return crop_views(result.image.to(adapter.device), boxes, _view_size(adapter, size))


def study(adapter, class_id: int, **kwargs) -> dict:
    began = time.perf_counter()
    result = ux.featviz.maco(adapter, class_id, progress=False, **kwargs)
    seconds = time.perf_counter() - began
    logits = adapter.predict(result.image[None].to(adapter.device))[0]
    rank = int((logits > logits[class_id]).sum())
    view_logits = adapter.predict(views_of(result, adapter))
    view_ranks = (view_logits > view_logits[:, class_id:class_id + 1]).sum(1)
    null = adapter.predict(random_phase_images(adapter, 16, seed=123))[:, class_id]
    z = float((logits[class_id] - null.mean()) / null.std())
    return {"result": result, "seconds": seconds, "rank": rank, "views_top5": float((view_ranks < 5).float().mean()),
            "views_median_rank": int(view_ranks.median()), "z": z, "logit": float(logits[class_id]),
            "null": (float(null.mean()), float(null.std()))}


def report(name: str, adapter, classes, **kwargs) -> list:
    rows = []
    print(f"\n{name}  (input {tuple(adapter.input_shape)})")
    print(f"{'class':28s} {'time s':>7s} {'whole-image rank':>17s} {'views top-5':>12s} {'view med. rank':>15s}"
          f" {'logit':>7s} {'random phase':>14s} {'z':>7s}")
    for c in classes:
        row = study(adapter, c, **kwargs)
        rows.append((c, row))
        label = adapter.class_names[c] if adapter.class_names else str(c)
        print(f"{label[:28]:28s} {row['seconds']:7.1f} {row['rank'] + 1:17d} {row['views_top5']:12.2f}"
              f" {row['views_median_rank'] + 1:15d} {row['logit']:7.2f} {row['null'][0]:7.2f}±{row['null'][1]:<5.2f}"
              f" {row['z']:7.1f}")
    top1 = sum(r["rank"] == 0 for _, r in rows)
    print(f"whole image top-1: {top1} of {len(rows)}; every class top-5 on views: "
          f"{all(r['views_median_rank'] < 5 for _, r in rows)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet-classes", type=int, nargs="*", default=[967, 285, 417, 1, 980])
    parser.add_argument("--planted", nargs="*", default=["planted-image", "planted-concepts"])
    parser.add_argument("--steps", type=int, default=None, help="default: maco's own")
    parser.add_argument("--planted-box", type=float, nargs=2, default=(1.0, 1.0),
                        help="box_size on the planted models: whole-image views by default, because zoomed views"
                             " move texture to coarser wavelet levels and these models read the level")
    parser.add_argument("--figure", default=None, help="write the ImageNet visualisations to this PNG")
    args = parser.parse_args()
    kwargs = {} if args.steps is None else {"steps": args.steps}
    print("command:", "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"torch threads {torch.get_num_threads()}")
    if args.imagenet_classes:
        adapter = ux.data.load_model("efficientnet-lite0-imagenet", progress=False)
        rows = report("efficientnet-lite0-imagenet", adapter, args.imagenet_classes, **kwargs)
        if args.figure:
            import matplotlib

            matplotlib.use("Agg")
            from unified_xai.plotting import plot_maco

            titles = [f"{adapter.class_names[c].split(',')[0]}\n(whole image: rank {r['rank'] + 1})" for c, r in rows]
            from docs_figures import save_small_png  # the docs' 256-colour PNG writer (same folder)

            fig = plot_maco([r["result"] for _, r in rows], titles, columns=min(len(rows), 3))
            size = save_small_png(fig, Path(args.figure))
            print(f"figure: {args.figure} ({size / 1000:.0f} KB)")
    for name in args.planted:
        adapter = ux.data.load_model(name, progress=False)
        evidence = [i for i, n in enumerate(adapter.class_names) if n != "background"]
        report(name, adapter, evidence, **kwargs, box_size=tuple(args.planted_box))


if __name__ == "__main__":
    main()
