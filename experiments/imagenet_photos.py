"""Evidence for the built-in ImageNet model's conventions (normalisation, padding, BatchNorm eps).

Prints
1. the top-5 classes of every built-in photo under the two candidate normalisations
   (mean = std = 0.5, the TF-Lite convention; and the ImageNet mean/std), with the built-in padding and eps;
2. how well the stem BatchNorm's running statistics fit the photos' statistics under each normalisation
   (mean over channels of KL(batch statistics || running statistics); lower = the inputs look like training);
3. paired comparisons on random crops of the labelled photos: the log-probability of the accepted
   classes with the built-in settings minus that with one setting changed (symmetric padding, eps 1e-5,
   ImageNet mean/std). Positive = the built-in setting fits better.

    HF_HUB_OFFLINE=1 python experiments/imagenet_photos.py [--crops 40] [--seed 0]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from unified_xai.data import imagenet
from unified_xai.data.loading import Normalize
from unified_xai.data.photos import PHOTOS, load_photos, to_square_tensor

NORMS = {"0.5/0.5": (imagenet.MEAN, imagenet.STD),
         "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def top5_table(model, ds, names):
    """Top-5 (class, probability) of every photo under each normalisation."""
    print("## 1. top-5 per photo (built-in padding 'same', BN eps 1e-3)\n")
    right = {k: 0 for k in NORMS}
    labelled = sum(bool(a) for a in ds.metadata["accepted_targets"])
    for key, (mean, std) in NORMS.items():
        with torch.no_grad():
            probs = model(Normalize(mean, std)(ds.inputs)).softmax(1)
        print(f"### normalisation {key}\n")
        print("| photo | expected | ok | top-5 (probability) |\n|---|---|---|---|")
        for i, row in enumerate(probs):
            accepted = ds.metadata["accepted_targets"][i]
            values, indices = row.topk(5)
            ok = "" if not accepted else ("yes" if int(indices[0]) in accepted else "NO")
            right[key] += ok == "yes"
            expected = names[accepted[0]] if accepted else "(none: -1)"
            top = "; ".join(f"{names[j]} {v:.2f}" for v, j in zip(values.tolist(), indices.tolist()))
            print(f"| {ds.names[i]} | {expected} | {ok} | {top} |")
        print()
    print("top-1 right on labelled photos: " + ", ".join(f"{k} {v}/{labelled}" for k, v in right.items()) + "\n")


def stem_bn_fit(model, ds):
    """KL(batch || running) of the stem BatchNorm's input statistics, averaged over channels."""
    print("## 2. stem BatchNorm: photo statistics vs running statistics (KL, lower fits better)\n")
    bn = model.bn1
    for key, (mean, std) in NORMS.items():
        with torch.no_grad():
            act = model.conv_stem(Normalize(mean, std)(ds.inputs)).double()
        eps = bn.eps
        batch_mean, batch_var = act.mean((0, 2, 3)), act.var((0, 2, 3), unbiased=False) + eps
        run_mean, run_var = bn.running_mean.double(), bn.running_var.double() + eps
        kl = 0.5 * (torch.log(run_var / batch_var) + (batch_var + (batch_mean - run_mean) ** 2) / run_var - 1)
        print(f"- {key}: KL {kl.mean().item():.3f} (median over channels {kl.median().item():.3f})")
    print()


def crops(n_per_photo: int, seed: int):
    """Random square crops (60-100 % of the shorter side, every other one flipped) of the labelled photos."""
    gen = torch.Generator().manual_seed(seed)
    views, accepted, owners = [], [], []
    for photo in PHOTOS:
        if not photo.wnids:
            continue
        indices = [imagenet.imagenet_index(w) for w in photo.wnids]
        image = np.asarray(photo.load())
        height, width = image.shape[:2]
        for k in range(n_per_photo):
            side = int(min(height, width) * (0.6 + 0.4 * torch.rand(1, generator=gen).item()))
            top = int(torch.randint(0, height - side + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - side + 1, (1,), generator=gen))
            view = to_square_tensor(image[top:top + side, left:left + side])
            views.append(view.flip(-1) if k % 2 else view)
            accepted.append(indices)
            owners.append(photo.name)
    return torch.stack(views), accepted, owners


def log_prob_accepted(model, mean, std, x, accepted):
    with torch.no_grad():
        logp = torch.cat([model(Normalize(mean, std)(part)) for part in x.split(40)]).log_softmax(1)
    return (np.array([torch.logsumexp(logp[i, a], 0).item() for i, a in enumerate(accepted)]),
            np.array([int(logp[i].argmax()) in a for i, a in enumerate(accepted)]))


def paired(args, chosen):
    x, accepted, owners = crops(args.crops, args.seed)
    print(f"## 3. paired comparison on {len(x)} crops of the labelled photos ({args.crops} per photo)\n")
    base_lp, base_top1 = log_prob_accepted(chosen, imagenet.MEAN, imagenet.STD, x, accepted)
    rivals = {
        "timm symmetric padding": (imagenet.load_efficientnet_lite0(pad_type=""), NORMS["0.5/0.5"]),
        "BatchNorm eps 1e-5": (imagenet.load_efficientnet_lite0(bn_eps=1e-5), NORMS["0.5/0.5"]),
        "ImageNet mean/std": (chosen, NORMS["imagenet"]),
    }
    print("| built-in vs | mean d log p (SE) | median d | crops favouring built-in | photos favouring built-in |"
          " top-1 built-in / rival | mean d log p per photo |")
    print("|---|---|---|---|---|---|---|")
    photos = list(dict.fromkeys(owners))
    for label, (model, (mean, std)) in rivals.items():
        lp, top1 = log_prob_accepted(model, mean, std, x, accepted)
        d = base_lp - lp
        by_photo = {p: d[np.array([o == p for o in owners])].mean() for p in photos}
        per_photo = ", ".join(f"{p} {v:+.2f}" for p, v in by_photo.items())
        print(f"| {label} | {d.mean():+.3f} ({d.std(ddof=1) / np.sqrt(len(d)):.3f}) | {np.median(d):+.3f} |"
              f" {np.mean(d > 0):.0%} | {sum(v > 0 for v in by_photo.values())}/{len(photos)} |"
              f" {base_top1.mean():.3f} / {top1.mean():.3f} | {per_photo} |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=40, help="random crops per labelled photo (0: skip part 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = imagenet.load_efficientnet_lite0()
    names = imagenet.imagenet_class_names()
    ds = load_photos()
    top5_table(model, ds, names)
    stem_bn_fit(model, ds)
    if args.crops > 0:
        paired(args, model)


if __name__ == "__main__":
    main()
