"""The structure of the WAM paper's Table 1 on the built-in models: Insertion, Deletion, Faith = Ins - Del.

For every model and method: the explanation of each input's target class (the label), then
``ux.metrics.insertion`` / ``deletion`` with the WAM evaluation's score (softmax probability of the
target, area ``sum p / (max p * (steps + 1))``, 32 steps, baseline 0) in

* ``pixels``: positions ranked by the method's ``where`` map, removed to 0 (all methods);
* ``wavelet``: coefficients ranked by the method's wavelet-domain attribution, removed in the wavelet
  domain (the methods that attribute wavelet coefficients: WAM-SG, WAM-IG, WCAM);
* ``scales``: whole levels removed in the order of the method's scale profile (the methods that give
  one), the claimed "what scale" answer put to the test.

Models and inputs: ``planted-audio``, ``planted-image``, ``planted-volume`` (their test sets, the first
``--n`` items with evidence), and ``efficientnet-lite0-imagenet`` on the labelled built-in photos.
Means over inputs; Faith is the mean of per-input differences (so it may differ from Ins - Del in the
last digit). The paper's own numbers (ImageNet val, ESC-50, AdrenalMNIST3D) are not reproducible offline;
this is its structure on the data that ships.

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/wam_table1.py [--models ...] [--n 8] [--markdown docs/results.md]
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time

import torch

import unified_xai as ux

METHODS = {
    "WAM-SG": ("wam", {"variant": "smoothgrad", "n_samples": 16}),
    "WAM-IG": ("wam", {"variant": "integrated", "n_samples": 16}),
    "Integrated Gradients": ("integrated_gradients", {"n_samples": 16}),
    "SmoothGrad": ("smoothgrad", {"n_samples": 16}),
    "GradCAM": ("gradcam", {}),
    "Saliency": ("saliency", {}),
    "Sobol": ("sobol", {"n_designs": 16}),
    "WCAM": ("sobol_wavelet", {"n_designs": 16}),
}
WAVELET_METHODS = {"WAM-SG", "WAM-IG", "WCAM"}
MODELS = ["planted-audio", "planted-image", "planted-volume", "efficientnet-lite0-imagenet"]
METRIC = {"output": "probability", "auc": "wam", "steps": 32}


def inputs_for(model: str, n: int):
    if model == "efficientnet-lite0-imagenet":
        ds = ux.data.load_dataset("photos")
        keep = ds.targets >= 0
        return ds.inputs[keep][:n], ds.targets[keep][:n]
    ds = ux.data.load_dataset(model, split="test")
    names = ds.class_names
    keep = torch.tensor([names[int(t)] != "background" for t in ds.targets])
    return ds.inputs[keep][:n], ds.targets[keep][:n]


def evaluate(adapter, x, y, method: str, params: dict) -> dict:
    began = time.perf_counter()
    explanation = ux.create(method, adapter, **params).explain(x, targets=y)
    row = {"explain s": time.perf_counter() - began}
    domains = ["pixels"] + (["wavelet"] if method in ("wam", "sobol_wavelet") else []) \
        + (["scales"] if explanation.scales is not None else [])
    for domain in domains:
        steps = {} if domain != "scales" else {"steps": None}
        settings = {**METRIC, **steps}
        ins = ux.metrics.insertion(adapter, x, explanation, y, domain=domain, **settings)
        dele = ux.metrics.deletion(adapter, x, explanation, y, domain=domain, **settings)
        row[domain] = (float(ins.mean()), float(dele.mean()), float((ins - dele).mean()))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--n", type=int, default=8, help="inputs per model")
    parser.add_argument("--markdown", default=None, help="append the tables to this markdown file")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv)
    lines = [f"Command: `{command}` ({datetime.date.today().isoformat()}, {torch.get_num_threads()} threads)", ""]
    began = time.perf_counter()
    for model in args.models:
        adapter = ux.data.load_model(model, progress=False)
        x, y = inputs_for(model, args.n)
        lines += [f"### {model} ({x.shape[0]} inputs {tuple(x.shape[1:])})", "",
                  "| method | pixels Ins ↑ | Del ↓ | Faith ↑ | wavelet Ins ↑ | Del ↓ | Faith ↑ | scales Ins ↑ | Del ↓ |"
                  " Faith ↑ | explain s |", "|" + "---|" * 11]
        for name in args.methods:
            method, params = METHODS[name]
            row = evaluate(adapter, x, y, method, params)
            cells = []
            for domain in ("pixels", "wavelet", "scales"):
                cells += [f"{v:.3f}" for v in row[domain]] if domain in row else ["—"] * 3
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['explain s']:.1f} |")
            print(lines[-1], flush=True)
        lines.append("")
    lines.append(f"Total {time.perf_counter() - began:.0f} s.")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as handle:
            handle.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
