"""The figures of the documentation site (docs/figures/*.png), made on the built-in models and data.

One figure per method, drawn by ``Explanation.plot`` (the library's own figure) with the method's
default parameters:

* on the real ImageNet model ``efficientnet-lite0-imagenet``, photo ``chelsea`` of the built-in
  ``photos`` dataset (explained for the predicted class): ``wam`` and the gradient baselines
  ``saliency``, ``input_x_gradient``, ``smoothgrad``, ``integrated_gradients``, ``gradcam``;
* on ``planted-image`` (class evidence planted at a known place and Haar scale), item
  ``PLANTED_ITEM`` of the test split: ``sobol`` and ``sobol_wavelet``, plus ``wam`` for comparison.

PNGs are quantised to a 256-colour palette so that each stays well under 300 KB.

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/docs_figures.py [--out docs/figures] [--only wam sobol ...]

About 1-2 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

import unified_xai as ux  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL_MODEL, PHOTO = "efficientnet-lite0-imagenet", "chelsea"
PLANTED_MODEL = "planted-image"
#: a test item of planted-image with 'mid'-scale evidence (Haar level 2): a patch the methods must find
PLANTED_CLASS = "mid"
MAX_BYTES = 300_000
DPI = 72

#: figure name -> (model, method, params); the photo figures use PHOTO, the planted ones a planted item
FIGURES: dict[str, tuple[str, str, dict]] = {
    "wam": (REAL_MODEL, "wam", {}),
    "wam-planted": (PLANTED_MODEL, "wam", {}),
    "sobol": (PLANTED_MODEL, "sobol", {}),
    "sobol_wavelet": (PLANTED_MODEL, "sobol_wavelet", {}),
    "saliency": (REAL_MODEL, "saliency", {}),
    "input_x_gradient": (REAL_MODEL, "input_x_gradient", {}),
    "smoothgrad": (REAL_MODEL, "smoothgrad", {}),
    "integrated_gradients": (REAL_MODEL, "integrated_gradients", {}),
    "gradcam": (REAL_MODEL, "gradcam", {}),
}


def planted_item(dataset) -> int:
    """First test item of class PLANTED_CLASS (with evidence)."""
    wanted = dataset.class_names.index(PLANTED_CLASS)
    for i in range(len(dataset)):
        if int(dataset.targets[i]) == wanted and bool(dataset.has_evidence[i]):
            return i
    raise RuntimeError(f"no {PLANTED_CLASS!r} item in {dataset.name}")


def inputs_for(model: str):
    """One input ``(1, C, *spatial)`` and a short description of it."""
    dataset = ux.data.load_dataset(model, split="test")
    if model == REAL_MODEL:
        i = dataset.names.index(PHOTO)
        return dataset.inputs[i:i + 1], f"photo {PHOTO!r}"
    i = planted_item(dataset)
    return dataset.inputs[i:i + 1], f"{dataset.name} test item {i} (class {PLANTED_CLASS!r})"


def save_small_png(fig, path: Path) -> int:
    """Save ``fig`` as a palette PNG (256 colours, optimised); returns its size in bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    image = Image.open(buffer).convert("RGB")
    small = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    small.save(path, format="PNG", optimize=True)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES), help="make only these figures")
    args = parser.parse_args()
    names = args.only or list(FIGURES)
    adapters, inputs = {}, {}
    for name in names:
        model, method, params = FIGURES[name]
        if model not in adapters:
            adapters[model] = ux.data.load_model(model, progress=False)
            inputs[model] = inputs_for(model)
        x, what = inputs[model]
        start = time.perf_counter()
        explanation = ux.create(method, adapters[model], **params).explain(x)
        fig = explanation.plot(0)
        size = save_small_png(fig, args.out / f"{name}.png")
        plt.close(fig)
        print(f"{name}.png: {method} on {model}, {what}, target {explanation.target_names[0]!r};"
              f" {explanation.key_params() or 'defaults'}; {time.perf_counter() - start:.1f} s; {size / 1000:.0f} KB")
        if size > MAX_BYTES:
            raise SystemExit(f"{name}.png is {size} bytes, over the {MAX_BYTES} limit; lower DPI")


if __name__ == "__main__":
    main()
