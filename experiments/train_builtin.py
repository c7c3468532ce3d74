"""Train the built-in models and write their weights into the package.

    python experiments/train_builtin.py --model all
    python experiments/train_builtin.py --model planted-image --epochs 12

Seeded and CPU-only. Prints the test accuracy and, for the planted sets, how well the input
gradient of each model recovers the planted wavelet scale and place (see
``builtin_checks.py``), plus two cheap proxies of the Sobol checks (removing whole Haar
levels, occluding cells of an 8-per-axis grid); for ``planted-concepts`` (parts), how much each
class logit drops when each part is removed from the input. Weights go to
``unified_xai/data/weights/<name>.pt`` in the library's checkpoint format.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unified_xai.data import BUILTIN_MODELS, load_dataset, save_checkpoint
from builtin_checks import (gradient_recoverability, level_ablation_recoverability,
                                     occlusion_recoverability)
from unified_xai.data.loading import WEIGHTS_DIR, _build
from unified_xai.data.planted import SPECS, generate_planted, part_ablation

# epochs, learning rate, batch size; the planted sets draw a fresh training set every epoch
RECIPES = {
    "digits": {"epochs": 40, "lr": 3e-3, "batch": 64},
    "planted-image": {"epochs": 6, "lr": 3e-3, "batch": 64, "train_noise": 0.2},
    "planted-audio": {"epochs": 5, "lr": 3e-3, "batch": 64},
    "planted-volume": {"epochs": 6, "lr": 3e-3, "batch": 32, "train_noise": 0.2},
    "planted-concepts": {"epochs": 12, "lr": 3e-3, "batch": 64},
}


def training_set(name: str, epoch: int):
    """Inputs and targets of one epoch: the fixed train split, or a fresh draw for planted sets."""
    if name in SPECS:
        spec = SPECS[name]
        ds = generate_planted(name, spec.sizes["train"], spec.seeds["train"] + 1000 * epoch, "train")
        return ds.inputs, ds.targets
    ds = load_dataset(name, "train")
    # digits: each image shifted by up to 2 pixels (zero fill), so the small train set generalises
    padded = F.pad(ds.inputs, (2, 2, 2, 2))
    offsets = torch.randint(0, 5, (len(ds), 2)).tolist()
    size = ds.inputs.shape[-1]
    x = torch.stack([padded[i, :, r:r + size, c:c + size] for i, (r, c) in enumerate(offsets)])
    return x, ds.targets


@torch.no_grad()
def accuracy(model, ds, batch: int = 128) -> float:
    preds = torch.cat([model(ds.inputs[i:i + batch]).argmax(1) for i in range(0, len(ds), batch)])
    return float((preds == ds.targets).float().mean())


def train(name: str, epochs: int | None, seed: int) -> tuple[torch.nn.Module, dict]:
    spec = BUILTIN_MODELS[name]
    recipe = dict(RECIPES[name])
    if epochs is not None:
        recipe["epochs"] = epochs
    torch.manual_seed(seed)
    model = _build(name)["model"]
    test = load_dataset(name, "test")
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=1e-4)
    steps = recipe["epochs"] * int(np.ceil(
        (SPECS[name].sizes["train"] if name in SPECS else len(load_dataset(name, "train"))) / recipe["batch"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps, pct_start=0.2)
    start = time.time()
    for epoch in range(recipe["epochs"]):
        model.train()
        x, y = training_set(name, epoch)
        order = torch.randperm(len(y))
        total = 0.0
        for i in range(0, len(y), recipe["batch"]):
            idx = order[i:i + recipe["batch"]]
            xb = x[idx]
            if recipe.get("train_noise"):
                # white noise of random strength: penalises input-gradient components that carry
                # no evidence (Bishop 1995: training with noise ~ gradient-norm regularisation)
                sigma = recipe["train_noise"] * torch.rand(len(idx), *([1] * (xb.ndim - 1)))
                xb = xb + sigma * torch.randn_like(xb)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        print(f"  [{name}] epoch {epoch + 1}/{recipe['epochs']}  loss {total / len(y):.4f}"
              f"  test acc {accuracy(model, test):.4f}  ({time.time() - start:.0f} s)", flush=True)
    report = {"name": name, "train_seconds": time.time() - start, "test_accuracy": accuracy(model, test),
              "parameters": sum(p.numel() for p in model.parameters()), "arch": spec["arch"]}
    return model.eval(), report


def planted_figures(model, name: str) -> dict:
    test = load_dataset(name, "test")
    grad = gradient_recoverability(model, test)
    ablation = level_ablation_recoverability(model, test)
    occlusion = occlusion_recoverability(model, test, max_items=24 if test.inputs.ndim == 5 else 60)
    print(f"  [{name}] gradient recoverability on {grad['n']} evidence items: scale {grad['scale_accuracy']:.3f},"
          f" where (max in mask) {grad['where_accuracy']:.3f}, median mass-in-mask / area share"
          f" {grad['mass_ratio']:.1f}")
    for cls, fig in grad["by_class"].items():
        shares = " ".join(f"{s:.2f}" for s in grad["mean_shares"][cls])
        print(f"      {cls:>10}: scale {fig['scale_accuracy']:.3f} where {fig['where_accuracy']:.3f}"
              f" mass ratio {fig['mass_ratio']:.1f}  mean level shares (pywt order) [{shares}]")
    print(f"  [{name}] proxies: level ablation -> planted level {ablation['accuracy']:.3f} ({ablation['n']} items),"
          f" cell occlusion -> in mask {occlusion['accuracy']:.3f} ({occlusion['n']} items)")
    return {"gradient_scale": grad["scale_accuracy"], "gradient_where": grad["where_accuracy"],
            "mass_ratio": grad["mass_ratio"], "level_ablation": ablation["accuracy"],
            "occlusion": occlusion["accuracy"]}


def concept_figures(model, name: str) -> dict:
    """Parts datasets: the mean drop of each class logit when each of its parts is removed (input space)."""
    test = load_dataset(name, "test")
    result = part_ablation(model, test)
    print(f"  [{name}] mean target-logit drop when a part is removed (over the class's test items;"
          f" in brackets: over the items showing it)")
    ok = True
    for cls, drops in result["mean"].items():
        main = test.part_names[test.main_parts[cls]]
        shown = result["mean_present"][cls]
        cells = "  ".join(f"{part} {drop:.2f} ({shown[part]:.2f})" for part, drop in drops.items())
        most = test.part_names[result["order"][cls][0]]
        ok &= most == main
        print(f"      {cls:>10}: {cells}   largest: {most}{'' if most == main else '  <-- NOT the main part ' + main}")
    return {"main_part_ablation": float(ok)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", choices=["all", *RECIPES])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's number of epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="directory of the weight files")
    parser.add_argument("--no-save", action="store_true", help="train and report without writing weights")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = list(RECIPES) if args.model == "all" else [args.model]  # the ImageNet model is not trained here
    summary = []
    for name in names:
        print(f"== {name}", flush=True)
        model, report = train(name, args.epochs, args.seed)
        if name in SPECS:
            report.update(concept_figures(model, name) if "parts" in SPECS[name].extra
                          else planted_figures(model, name))
        if not args.no_save:
            spec = BUILTIN_MODELS[name]
            path = save_checkpoint(model, args.out / f"{name}.pt", arch=spec["arch"], input_shape=spec["input_shape"],
                                   class_names=spec["class_names"], arch_kwargs=spec["arch_kwargs"])
            report["file_kb"] = path.stat().st_size / 1024
            print(f"  saved {path} ({report['file_kb']:.0f} kB)")
        summary.append(report)
    print("\n== summary")
    for r in summary:
        keys = ("gradient_scale", "gradient_where", "level_ablation", "occlusion", "main_part_ablation")
        extra = "".join(f"  {k} {r[k]:.3f}" for k in keys if k in r)
        print(f"{r['name']:>15}: test acc {r['test_accuracy']:.4f}  params {r['parameters']}"
              f"  train {r['train_seconds']:.0f} s{extra}")


if __name__ == "__main__":
    main()
