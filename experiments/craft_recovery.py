"""Does CRAFT recover the planted concepts? One table over the built-in models.

    HF_HUB_OFFLINE=1 .venv/bin/python experiments/craft_recovery.py            # every built-in planted model
    HF_HUB_OFFLINE=1 .venv/bin/python experiments/craft_recovery.py --models planted-concepts --images 40
    HF_HUB_OFFLINE=1 .venv/bin/python experiments/craft_recovery.py --models planted-concepts --start 32  # other items

For each class with evidence: a bank fitted on ``--images`` test items of the class, then

* match: Hungarian on the cosine between the concept coefficients of the crops and the planted
  ground-truth indicators of the crops (planted-concepts: each part, a crop holding >= 50 % of it, and
  the background, a crop touching no part; planted-image/volume/audio: the two pattern variants and
  "no evidence"); the minimum cosine; banks have as many concepts as there are planted ones;
* top: the most important concept is the one matched to the part carrying the most class evidence
  (``ranks``: the importance rank of the concept matched to each planted one, in the order of ``truth``:
  planted-concepts lists the class parts by decreasing evidence, then the background);
* mass: the median mass ratio of the concept maps of that concept on the planted region (1 = chance);
* rho: Spearman between the Sobol importances and the mean |logit drop| of removing each concept;
* scale: how often ``wam`` on the top concept's coefficient puts its largest share on the planted scale;
* seconds to fit.
"""
from __future__ import annotations

import argparse
import time

import torch
from scipy.stats import spearmanr

import unified_xai as ux
from unified_xai.data.datasets import ConceptDataset, part_indicators
from unified_xai.metrics import concept_match, crop_overlap, mass_ratio

#: model -> (layer, patch size, stride, crop fit) of the banks. planted-concepts: crops tiled, not zoomed (a
#: zoom changes the Haar level of its textures), at the ReLU before the last conv, as tests/test_craft.py
#: (``--layer features`` gives the same figures on the shipped weights; in some trial trainings NMF there
#: spent the background's concept on a part, whose activations are 4-8x stronger)
SETTINGS = {
    "planted-concepts": ("features.7", 24, 8, "tile"),
    "planted-image": ("features", 24, 8, "auto"),
    "planted-volume": ("features", 12, 4, "auto"),
    "planted-audio": ("features", 1024, 512, "auto"),
}


def truth_and_regions(ds, index, craft):
    """Per-crop indicators (n_crops, P), the planted regions (n_items, P, *spatial), the main concept id,
    the scale of each planted concept."""
    patch = craft._patch(tuple(ds.inputs.shape[2:]))
    boxes = craft.crop_boxes_
    if isinstance(ds, ConceptDataset):
        cls = ds.class_names[craft.class_id_]
        parts = ds.class_parts[cls]
        with_size = torch.cat([boxes, torch.full((boxes.shape[0], 1), patch[0], dtype=torch.long)], 1)
        items = index[boxes[:, 0]]
        rows = torch.cat([items[:, None], with_size[:, 1:]], 1)
        indicators = part_indicators(ds, rows)[:, parts]
        # the background is a planted concept too: the crops that touch no part at all
        empty = (part_indicators(ds, rows, threshold=None).sum(1) == 0).double()[:, None]
        regions = ds.part_masks[index][:, parts]
        regions = torch.cat([regions, ~ds.part_masks[index].any(1, keepdim=True)], 1)
        main = parts.index(ds.main_parts[cls])
        return (torch.cat([indicators.double(), empty], 1), regions, main,
                torch.cat([ds.part_scales[parts], torch.tensor([-1])]))
    overlap = crop_overlap(ds.masks[index], boxes, patch)
    kind = ds.concepts[index][boxes[:, 0]]
    inside = overlap >= 0.5
    indicators = torch.stack([inside & (kind == 0), inside & (kind == 1), overlap == 0], 1).double()
    region = ds.masks[index]
    regions = torch.stack([region, region, ~region], 1)
    scale = ds.scales[index[0]]
    return indicators, regions, None, torch.stack([scale, scale, torch.tensor(-1)])


def evaluate(model: str, n_images: int, wam_items: int, crop_fit: str | None = None, patch=None, stride=None,
             layer=None, start: int = 0) -> list[dict]:
    default_layer, default_patch, default_stride, default_fit = SETTINGS[model]
    layer, crop_fit = layer or default_layer, crop_fit or default_fit
    patch, stride = patch or default_patch, stride or default_stride
    adapter = ux.data.load_model(model, progress=False)
    ds = ux.data.load_dataset(model, "test")
    rows = []
    classes = [c for c in range(len(ds.class_names)) if bool(ds.has_evidence[ds.targets == c].any())]
    for class_id in classes:
        index = torch.nonzero((ds.targets == class_id) & ds.has_evidence).flatten()[start:start + n_images]
        x = ds.inputs[index]
        K = n_planted(ds, class_id)
        t0 = time.perf_counter()
        craft = Craft_for(adapter, layer, patch, stride, K, crop_fit).fit(x, class_id)
        seconds = time.perf_counter() - t0
        indicators, regions, main, scales = truth_and_regions(ds, index, craft)
        match = concept_match(craft.crop_coefficients_, indicators)
        drop = craft.ablation(x).abs().mean(0)
        rho = float(spearmanr(drop, craft.importances_).statistic)
        top_truth = int(match["assignment"].tolist().index(0)) if 0 in match["assignment"].tolist() else -1
        maps = craft.concept_maps(x)
        mass = float(mass_ratio(maps[:, 0], regions[:, top_truth]).median()) if top_truth >= 0 else float("nan")
        e = ux.create("wam", adapter, objective=craft.objective(0), n_samples=16).explain(x[:wam_items], targets=class_id)
        planted_scale = int(scales[top_truth]) if top_truth >= 0 else -1
        hits = float((e.scales.argmax(1) == planted_scale).float().mean())
        rows.append({"model": model, "class": ds.class_names[class_id], "K": K, "n_crops": craft.crop_boxes_.shape[0],
                     "layer": layer, "crop_fit": crop_fit, "truth": truth_names(ds, class_id),
                     "cosines": [round(float(c), 3) for c in match["cosines"]],
                     "ranks": [int(k) for k in match["assignment"].tolist()],
                     "top_is_main": None if main is None else top_truth == main,
                     "mass": round(mass, 2), "rho": round(rho, 2), "scale_hits": round(hits, 2),
                     "importances": [round(float(v), 3) for v in craft.importances_], "seconds": round(seconds, 1)})
        print(rows[-1], flush=True)
    return rows


def truth_names(ds, class_id: int) -> list[str]:
    """Names of the planted concepts of a class, in the order of the indicators."""
    if isinstance(ds, ConceptDataset):
        return [ds.part_names[p] for p in ds.class_parts[ds.class_names[class_id]]] + ["background"]
    return ["variant 0", "variant 1", "no evidence"]


def n_planted(ds, class_id: int) -> int:
    """The planted concepts of a class: its parts plus the background, or the two pattern variants plus
    "no evidence" (the background: what every crop without evidence shows)."""
    if isinstance(ds, ConceptDataset):
        return len(ds.class_parts[ds.class_names[class_id]]) + 1
    return 3


def Craft_for(adapter, layer, patch, stride, K, crop_fit="auto"):
    return ux.concepts.Craft(adapter, layer, K, patch_size=patch, stride=stride, crop_fit=crop_fit, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[m for m in SETTINGS if m in ux.data.list_models()])
    parser.add_argument("--images", type=int, default=32, help="class test items per bank")
    parser.add_argument("--start", type=int, default=0, help="skip the first items of each class (another sample)")
    parser.add_argument("--wam-items", type=int, default=12, help="items for the concept scale check")
    parser.add_argument("--crop-fit", default=None, choices=ux.concepts.craft.CROP_FITS,
                        help="default: per model, see SETTINGS")
    parser.add_argument("--patch", type=int, default=None, help="crop side (default: per model, see SETTINGS)")
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--layer", default=None, help="layer of the banks (default: per model, see SETTINGS)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for model in args.models:
        rows += evaluate(model, args.images, args.wam_items, args.crop_fit, args.patch, args.stride, args.layer,
                         args.start)
    print("\nmodel | class | layer, fit | K | crops | min match cos | cosine per planted concept | importance rank"
          " of its concept | top concept = main part | map mass | rho(Sobol, ablation) | WAM top scale = planted"
          " | fit s")
    for r in rows:
        cells = ", ".join(f"{n} {c:.2f}" for n, c in zip(r["truth"], r["cosines"]))
        ranks = ", ".join(f"{n} {k}" for n, k in zip(r["truth"], r["ranks"]))
        print(f"{r['model']} | {r['class']} | {r['layer']}, {r['crop_fit']} | {r['K']} | {r['n_crops']} |"
              f" {min(r['cosines']):.2f} | {cells} | {ranks} | {r['top_is_main']} | {r['mass']} | {r['rho']} |"
              f" {r['scale_hits']} | {r['seconds']}")


if __name__ == "__main__":
    main()
