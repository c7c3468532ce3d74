"""The figures of the documentation site (docs/figures/*.png), made on the built-in models and data.

One figure per method, drawn by ``Explanation.plot`` (the library's own figure) with the method's
default parameters:

* on the real ImageNet model ``efficientnet-lite0-imagenet``, photo ``chelsea`` of the built-in
  ``photos`` dataset (explained for the predicted class): ``wam`` and the gradient baselines
  ``saliency``, ``input_x_gradient``, ``smoothgrad``, ``integrated_gradients``, ``gradcam``;
* on ``planted-image`` (class evidence planted at a known place and Haar scale), item
  ``PLANTED_ITEM`` of the test split: ``sobol`` and ``sobol_wavelet``, plus ``wam`` for comparison.

and two figures of CRAFT concept banks (``plot_concept_bank``, the figure of ``uxai concepts``), each
concept with its importance, top crops and wavelet scale profile (WAM on the concept's coefficient), and
the MACO images (default settings) of the three most important concepts:

* ``concepts-imagenet``: the class the ImageNet model predicts for ``chelsea`` ("Egyptian cat"), from that
  photo, its mirror image and a zoomed copy of both (4 images, 100 crops of 80 px every 40 px) at layer
  ``blocks.6.0.bn2`` (the ReLU6 after the depthwise convolution of the last block, 1152 x 7 x 7), 5 concepts;
* ``concepts-planted``: class ``alpha`` of ``planted-concepts`` (three planted parts of known look and
  Haar level), 16 test items, 24-pixel crops every 8 pixels, 3 concepts.

PNGs are quantised to a 256-colour palette so that each stays well under 300 KB.

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/docs_figures.py [--out docs/figures] [--only wam sobol ...]

About 1-2 minutes on 2 CPU cores, plus about 2 minutes each for the two concept figures and up to a minute
per MACO image.
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


# --------------------------------------------------------------------------- CRAFT concept banks
#: the ImageNet bank: layer, concepts, crop side and step (pixels of the 224 x 224 input), WAM samples
IMAGENET_CONCEPTS = {"layer": "blocks.6.0.bn2", "n_concepts": 5, "patch_size": 80, "stride": 40, "wam_samples": 8}
#: rows per model call of the concept figures (a fixed size: no probe of the fastest one)
CONCEPT_BATCH = {REAL_MODEL: 16, "planted-concepts": 64, "planted-image": 64}
#: the planted bank: the three parts of class alpha are known concepts (look, place, Haar level)
PLANTED_CONCEPTS = {"model": "planted-concepts", "class": "alpha", "n_images": 16, "layer": "features",
                    "n_concepts": 3, "patch_size": 24, "stride": 8, "wam_samples": 16}


def concept_figure(adapter, images, class_id: int, layer: str, n_concepts: int, patch_size: int, stride: int,
                   wam_samples: int):
    """Fit the bank of ``class_id`` on ``images`` and draw it with its scale profiles (as ``uxai concepts``)."""
    from unified_xai.concepts.scales import CONCEPT_LEVELS, CONCEPT_WAVELET, concept_scale_profiles
    from unified_xai.plotting import plot_concept_bank

    craft = ux.concepts.Craft(adapter, layer, n_concepts, patch_size=patch_size, stride=stride, seed=0,
                              progress=False).fit(images, class_id)
    levels = min(CONCEPT_LEVELS, ux.wavelets.max_levels(tuple(images.shape[2:]), CONCEPT_WAVELET))
    profiles, names, _ = concept_scale_profiles(adapter, craft, images, class_id, levels, wam_samples)
    # MACO images of the three most important concepts (their directions at the bank's layer)
    maco_images = ux.featviz.concept_images(adapter, craft.bank_, 3, progress=False) if adapter.spatial_ndim == 2 else []
    return craft, plot_concept_bank(craft.bank_, profiles, names, sample_rate=adapter.sample_rate,
                                    maco_images=maco_images)


def imagenet_concepts():
    """The ImageNet bank of the class predicted for PHOTO, from the photo and three copies of it."""
    import torch
    import torch.nn.functional as F

    adapter = ux.data.load_model(REAL_MODEL, progress=False, batch_size=CONCEPT_BATCH[REAL_MODEL])
    photos = ux.data.load_dataset("photos", split="test")
    i = photos.names.index(PHOTO)
    x = photos.inputs[i:i + 1]
    with torch.no_grad():
        class_id = int(adapter.predict(x).argmax(1))
    zoom = F.interpolate(x[..., 28:196, 28:196], size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
    images = torch.cat([x, x.flip(-1), zoom, zoom.flip(-1)])
    craft, fig = concept_figure(adapter, images, class_id, **IMAGENET_CONCEPTS)
    what = (f"photo {PHOTO!r}, mirrored and zoomed copies ({images.shape[0]} images, {craft.crop_boxes_.shape[0]}"
            f" crops), class {adapter.class_names[class_id]!r}, layer {IMAGENET_CONCEPTS['layer']}")
    return fig, what


def planted_concepts():
    """A planted model's bank: the parts of class PLANTED_CONCEPTS['class'] are the known concepts."""
    settings = dict(PLANTED_CONCEPTS)
    model, name, n_images = settings.pop("model"), settings.pop("class"), settings.pop("n_images")
    adapter = ux.data.load_model(model, progress=False, batch_size=CONCEPT_BATCH.get(model, 64))
    dataset = ux.data.load_dataset(model, split="test")
    class_id = dataset.class_names.index(name)
    images = dataset.inputs[dataset.targets == class_id][:n_images]
    craft, fig = concept_figure(adapter, images, class_id, **settings)
    return fig, (f"{model} class {name!r}, {images.shape[0]} test items, {craft.crop_boxes_.shape[0]} crops,"
                 f" layer {settings['layer']}")


CONCEPT_FIGURES = {"concepts-imagenet": imagenet_concepts, "concepts-planted": planted_concepts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES) + sorted(CONCEPT_FIGURES),
                        help="make only these figures")
    args = parser.parse_args()
    names = args.only or list(FIGURES) + list(CONCEPT_FIGURES)
    adapters, inputs = {}, {}
    for name in names:
        if name in CONCEPT_FIGURES:
            start = time.perf_counter()
            fig, what = CONCEPT_FIGURES[name]()
            size = save_small_png(fig, args.out / f"{name}.png")
            plt.close(fig)
            print(f"{name}.png: CRAFT concept bank, {what}; {time.perf_counter() - start:.1f} s; {size / 1000:.0f} KB")
            if size > MAX_BYTES:
                raise SystemExit(f"{name}.png is {size} bytes, over the {MAX_BYTES} limit; lower DPI")
            continue
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
