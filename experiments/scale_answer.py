"""Does the "what scale" answer hold? Every candidate scale profile against the level-removal reference.

The reference, per input: remove one whole wavelet level alone (detail coefficients set to 0; the
approximation set to each channel's mean, as ``ux.metrics.deletion(..., domain="scales")`` does) and
take the drop of the target logit, ``f(x) - f(x without level j)``. A scale profile holds when it ranks
the levels as the reference does: per input the Spearman correlation of the profile with the reference
(median over inputs), how many inputs have the same top level, and the ``scales``-domain Deletion score
of the profile's order (whole levels removed cumulatively, most important first; lower = the decisive
levels go first).

Candidates (``z`` = coefficients of ``x``, ``z0`` = those of a baseline, ``a`` = WAM attributions,
``g`` = a variant's coefficient gradient; every sum runs over the channels, orientations and positions
of one level):

* ``|a| share <variant>``: ``sum |a| / sum over all levels`` (the library's profile before issue 11);
* ``mean |a| per coeff <variant>``: ``sum |a| / n_j``, ``n_j`` = number of coefficients of level j;
* ``signed IG, baseline b``: ``sum a`` of integrated gradients from baseline ``b`` = level j's
  contribution to ``f(x) - f(b)`` (completeness); ``b`` = 0 (black, the default), the mean colour
  (= every level removed), a Gaussian blur of ``x``;
* ``signed g.(z - z0) <variant>``: first-order Taylor estimate of the same contribution from one
  gradient (``gradient``) or the noise-averaged gradient (``smoothgrad``), ``z0`` = 0 or mean colour;
* ``IG from x without level j``: integrated gradients from the level-removed input itself: by
  completeness its sum is the reference up to quadrature error (a check, at levels + 1 times the cost);
* ``WCAM``: ``sobol_wavelet``'s ``scales`` (total Sobol indices summed per level);
* ``Shapley values of the levels``: exact, over the ``2**(levels + 1)`` subsets of levels kept (the others
  removed as in the reference): the fair additive split of ``f(x) - f(every level removed)``;
* ``one level alone``: ``f(mean colour + level j) - f(mean colour)``, the reference's mirror;
* ``fixed coarse->fine`` / ``fine->coarse``: the same order for every input (what a profile must beat);
* ``library default``: ``ux.create("wam", adapter).explain(x, y).scales`` as shipped (only printed with
  ``--n-samples 25``, the library's default).

Also printed: the interaction between levels, ``sum_j drop_j / (f(x) - f(every level removed))`` per input
(1 for a model that adds up its levels' effects, where additive splits can equal the reference).

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python experiments/scale_answer.py [--model efficientnet-lite0-imagenet]
        [--items 7] [--n-samples 25] [--extra-samples 8] [--wcam-designs 16] [--no-wcam] [--quick]
        [--per-input] [--cache FILE]

Models: ``efficientnet-lite0-imagenet`` (the first ``--items`` labelled photos), ``planted-image``,
``planted-audio``, ``planted-volume`` (the first ``--items`` test items with planted evidence).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import sys
import time

import torch
import torch.nn.functional as F

import unified_xai as ux
from unified_xai import wavelets

DEFAULT_ITEMS = {"efficientnet-lite0-imagenet": 7}


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def load(model: str, items: int):
    adapter = ux.data.load_model(model, progress=False)
    ds = ux.data.load_dataset(model, split="test")
    if model == "efficientnet-lite0-imagenet":
        keep = torch.nonzero(ds.targets >= 0).flatten()[:items]
        cfg = {"wavelet": "haar", "levels": 3, "mode": "reflect"}
    else:
        keep = torch.nonzero(ds.has_evidence).flatten()[:items]
        cfg = {"wavelet": ds.wavelet, "levels": ds.levels, "mode": "reflect"}
    return adapter, ds.inputs[keep], ds.targets[keep], cfg


def removal_baseline(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Every level removed: each channel at its mean (the approximation's mean, no details)."""
    return x.mean(dim=tuple(range(2, 2 + ndim)), keepdim=True).expand_as(x).contiguous()


def without_levels(x: torch.Tensor, ndim: int, cfg: dict, levels) -> torch.Tensor:
    """``x`` with some levels removed, as the ``scales`` domain of ``ux.metrics.deletion`` removes them."""
    coeffs = wavelets.dwt(x, ndim, **cfg)
    parts = coeffs.tensors()
    for level in levels:
        t = parts[level]
        if level == 0:
            parts[0] = t.mean(dim=tuple(range(t.ndim - ndim, t.ndim)), keepdim=True).expand_as(t)
        else:
            parts[level] = torch.zeros_like(t)
    return wavelets.idwt(coeffs.with_tensors(parts))


def without_level(x: torch.Tensor, ndim: int, cfg: dict, level: int) -> torch.Tensor:
    return without_levels(x, ndim, cfg, [level])


def subset_values(adapter, x, y, cfg) -> torch.Tensor:
    """``(B, 2 ** (levels + 1))``: column ``mask`` = target logit with only the levels ``j`` of the bits
    ``mask >> j & 1`` kept (the others removed), 2 ** (levels + 1) forwards."""
    n = cfg["levels"] + 1
    return torch.stack([target_logits(adapter, without_levels(x, adapter.spatial_ndim, cfg,
                                                               [j for j in range(n) if not mask >> j & 1]), y)
                        for mask in range(2 ** n)], 1)


def shapley(values: torch.Tensor, n: int) -> torch.Tensor:
    """Exact Shapley values of the ``n`` levels as players, from :func:`subset_values`."""
    phi = torch.zeros(values.shape[0], n, dtype=torch.float64)
    for mask in range(2 ** n):
        k = bin(mask).count("1")
        for j in range(n):
            if not mask >> j & 1:
                weight = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
                phi[:, j] += weight * (values[:, mask | 1 << j] - values[:, mask])
    return phi


def gaussian_blur(x: torch.Tensor, ndim: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every spatial axis (reflect padding), radius 3 sigma."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = x
    for axis in range(ndim):
        moved = out.movedim(2 + axis, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        flat = F.conv1d(F.pad(flat, (radius, radius), mode="reflect"), kernel.view(1, 1, -1))
        out = flat.reshape(shape).movedim(-1, 2 + axis)
    return out.contiguous()


@torch.no_grad()
def target_logits(adapter, x, y) -> torch.Tensor:
    with adapter.evaluating():
        return adapter.forward(x).gather(1, y.view(-1, 1))[:, 0].double()


# --------------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------------
def bands(e) -> list[torch.Tensor]:
    return list(e.raw_attributions().values())  # approximation, level J, ..., level 1


def level_sum(parts, fn=lambda t: t) -> torch.Tensor:
    return torch.stack([fn(t).flatten(1).sum(1) for t in parts], 1).double()


def level_counts(parts) -> torch.Tensor:
    return torch.tensor([t[0].numel() for t in parts], dtype=torch.float64)


def coeff_diff(x, base, ndim, cfg) -> list[torch.Tensor]:
    z = wavelets.dwt(x, ndim, **cfg).tensors()
    z0 = wavelets.dwt(base, ndim, **cfg).tensors()
    return [a - b for a, b in zip(z, z0)]


def candidates(adapter, x, y, cfg, n_samples, extra_samples, wcam_designs, quick, cache, save=lambda: None):
    """name -> ((B, levels + 1) profile, cost per input: "k fb" forward + backward, "k f" forward passes). ``cache``: dict of finished runs, ``save``
    called after each."""
    nd = adapter.spatial_ndim
    wam = dict(cfg, n_samples=n_samples)
    extra = dict(cfg, n_samples=extra_samples)
    mean_base = removal_baseline(x, nd)
    zeros = torch.zeros_like(x)
    passes = {"gradient": "1 fb", "smoothgrad": f"{n_samples} fb", "integrated": f"{n_samples} fb"}

    def run(key, fn):
        if key not in cache:
            t = time.time()
            cache[key] = fn()
            save()
            print(f"  {key}: {time.time() - t:.1f} s", file=sys.stderr)
        return cache[key]

    def variant_profiles(variant):
        e = ux.create("wam", adapter, variant=variant, scale_profile="magnitude", **wam).explain(x, y)
        parts = bands(e)
        out = {"abs": level_sum(parts, torch.abs), "mean_abs": level_sum(parts, torch.abs) / level_counts(parts),
               "signed": level_sum(parts)}
        for label, base in (("zero", zeros), ("mean", mean_base)):
            dz = coeff_diff(x, base, nd, cfg)
            out[f"gdz_{label}"] = level_sum([a * b for a, b in zip(parts, dz)])
        return out

    def ig_sum(baseline, params):
        e = ux.create("wam", adapter, variant="integrated", baseline=baseline, **params).explain(x, y)
        return level_sum(bands(e))

    out = {}
    runs = {v: run(f"wam {v}, {n_samples} samples", lambda v=v: variant_profiles(v)) for v in passes}
    for v, r in runs.items():
        out[f"|a| share, {v}"] = (r["abs"], passes[v])
    for v, r in runs.items():
        out[f"mean |a| per coeff, {v}"] = (r["mean_abs"], passes[v])
    out["signed IG, baseline 0 (black)"] = (runs["integrated"]["signed"], passes["integrated"])
    for v in ("gradient", "smoothgrad"):
        out[f"signed g.(z - z0), {v}, z0 = 0"] = (runs[v]["gdz_zero"], passes[v])
        out[f"signed g.(z - z0), {v}, z0 = mean colour"] = (runs[v]["gdz_mean"], passes[v])
    out["signed IG, baseline mean colour"] = (run(f"IG mean colour, {n_samples} samples",
                                                  lambda: ig_sum(mean_base, wam)), passes["integrated"])
    if not quick:
        sigma = max(1.0, x.shape[-1] / 45)  # 5 px at 224
        out[f"signed IG, baseline Gaussian blur (sigma {sigma:.3g}), {extra_samples} samples"] = (
            run(f"IG blur {sigma:.3g}, {extra_samples} samples",
                lambda: ig_sum(gaussian_blur(x, nd, sigma), extra)), f"{extra_samples} fb")

        def official():
            e = ux.create("wam", adapter, variant="gradient", reference_compat=True, **cfg).explain(x, y)
            return level_sum(bands(e), torch.abs)

        out["|a| share, gradient, reference_compat (official maps)"] = (run("reference_compat gradient", official), "1 fb")

        def removed():
            return torch.stack([ig_sum(without_level(x, nd, cfg, j), extra).sum(1)
                                for j in range(cfg["levels"] + 1)], 1)

        out[f"IG from x without level j (check), {extra_samples} samples"] = (
            run(f"IG level-removed baselines, {extra_samples} samples", removed), f"{(cfg['levels'] + 1) * extra_samples} fb")
    if wcam_designs:
        def wcam():
            return ux.create("sobol_wavelet", adapter, n_designs=wcam_designs, **cfg).explain(x, y).scales.double()

        sizes = [x.shape[-1] // 2 ** cfg["levels"]] + [x.shape[-1] // 2 ** j for j in range(cfg["levels"], 0, -1)]
        d = sum(min(4, s) ** nd for s in sizes)
        out[f"WCAM (sobol_wavelet, {wcam_designs} designs)"] = (run(f"WCAM {wcam_designs} designs", wcam),
                                                                f"{wcam_designs * (d + 2)} f")
    n = cfg["levels"] + 1
    values = run("level subsets", lambda: subset_values(adapter, x, y, cfg))
    out[f"Shapley values of the levels (exact, {2 ** n} forwards)"] = (shapley(values, n), f"{2 ** n} f")
    out["one level alone on the mean colour (insertion)"] = (
        torch.stack([values[:, 1 << j] - values[:, 0] for j in range(n)], 1), f"{n + 1} f")
    out["fixed coarse->fine"] = (torch.arange(n, 0, -1, dtype=torch.float64).expand(len(x), n), "0")
    out["fixed fine->coarse"] = (torch.arange(1, n + 1, dtype=torch.float64).expand(len(x), n), "0")
    if n_samples == 25:  # the library default is the contribution of the integrated run above
        library = run("library default", lambda: ux.create("wam", adapter, **cfg).explain(x, y).scales.double())
        out["library default: ux.create('wam', adapter).explain(x, y).scales"] = (library, f"25 fb + {n + 1} f")
    return out


# --------------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------------
def ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks along the last axis (ties share the mean rank)."""
    order = v.argsort(-1)
    r = torch.empty_like(v)
    r.scatter_(-1, order, torch.arange(v.shape[-1], dtype=v.dtype).expand_as(v).contiguous())
    out = r.clone()
    for i in range(v.shape[0]):
        for value in torch.unique(v[i]):
            tie = v[i] == value
            if tie.sum() > 1:
                out[i, tie] = r[i, tie].mean()
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = (ra.norm(dim=1) * rb.norm(dim=1))
    return torch.where(den > 0, (ra * rb).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))


def reference(adapter, x, y, cfg) -> torch.Tensor:
    nd = adapter.spatial_ndim
    clean = target_logits(adapter, x, y)
    drops = [clean - target_logits(adapter, without_level(x, nd, cfg, j), y) for j in range(cfg["levels"] + 1)]
    return torch.stack(drops, 1)


def deletion_scores(adapter, x, y, profile, cfg) -> torch.Tensor:
    return ux.metrics.deletion(adapter, x, profile.to(x.dtype), targets=y, domain="scales", progress=False,
                               **cfg).double()


def md(text: str) -> str:
    """A table cell: ``|`` escaped."""
    return text.replace("|", "\\|")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet-lite0-imagenet",
                   choices=["efficientnet-lite0-imagenet", "planted-image", "planted-audio", "planted-volume"])
    p.add_argument("--items", type=int, default=None, help="inputs (default 7 photos, 8 planted items)")
    p.add_argument("--n-samples", type=int, default=25, help="smoothgrad noise draws / IG path points")
    p.add_argument("--wcam-designs", type=int, default=16, help="WCAM Sobol designs (0: skip)")
    p.add_argument("--no-wcam", action="store_true")
    p.add_argument("--extra-samples", type=int, default=8, help="IG path points of the blur / level-removed runs")
    p.add_argument("--quick", action="store_true", help="skip the blur / reference_compat / level-removed runs")
    p.add_argument("--cache", default=None, help="torch file keeping finished runs (resume a long run)")
    p.add_argument("--per-input", action="store_true", help="also print the reference and every top level")
    args = p.parse_args(argv)
    items = args.items or DEFAULT_ITEMS.get(args.model, 8)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    adapter, x, y, cfg = load(args.model, items)
    ref = reference(adapter, x, y, cfg)
    key = f"{args.model}|{len(x)}"
    store = torch.load(args.cache) if args.cache and os.path.exists(args.cache) else {}
    cache = store.setdefault(key, {})
    profiles = candidates(adapter, x, y, cfg, args.n_samples, args.extra_samples,
                          0 if args.no_wcam else args.wcam_designs, args.quick, cache,
                          (lambda: torch.save(store, args.cache)) if args.cache else (lambda: None))
    clean = target_logits(adapter, x, y)
    names = ["approx"] + [f"L{j}" for j in range(cfg["levels"], 0, -1)]

    given, shown = list(sys.argv[1:] if argv is None else argv), []
    for i, a in enumerate(given):
        if not (a.startswith("--cache") or (i > 0 and given[i - 1] == "--cache")):
            shown.append(a)
    command = "HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python experiments/scale_answer.py " + shlex.join(shown)
    print(f"### {args.model}: {len(x)} inputs, {cfg['wavelet']}, {cfg['levels']} levels\n")
    print(f"`{command.strip()}` — {datetime.date.today().isoformat()}, torch {torch.__version__}, CPU\n")
    top_ref = ref.argmax(1)
    counts = torch.bincount(top_ref, minlength=len(names)).tolist()
    print("Reference top level per input: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts) if c) + "; "
          f"mean drop per level (logit; target logit mean {clean.mean():.2f}): "
          + ", ".join(f"{n} {v:+.2f}" for n, v in zip(names, ref.mean(0).tolist())) + "\n")
    values = cache["level subsets"]
    joint = values[:, -1] - values[:, 0]
    print("Interaction between levels, per input: sum of the single-level drops / (f(x) - f(every level "
          "removed)) = " + " ".join(f"{v:.2f}" for v in (ref.sum(1) / joint).tolist())
          + " (1 for a model that adds up its levels' effects; f(x) - f(every level removed) = "
          + " ".join(f"{v:.2f}" for v in joint.tolist()) + ")\n")
    ref_del = deletion_scores(adapter, x, y, ref, cfg)
    print("| scale profile | model passes / input | Spearman median | Spearman per input | top level agrees | "
          "Deletion (scales) |")
    print("|---|---|---|---|---|---|")
    print(f"| reference (level-removal drops) | {len(names) + 1} f | 1.00 | – | {len(x)}/{len(x)} | {ref_del.mean():.3f} |")
    rows = {}
    for name, (profile, passes) in profiles.items():
        rho = spearman(profile, ref)
        agree = int((profile.argmax(1) == top_ref).sum())
        dele = deletion_scores(adapter, x, y, profile, cfg)
        rows[name] = (rho, agree, dele)
        per = " ".join(f"{v:+.1f}" for v in rho.tolist())
        print(f"| {md(name)} | {passes} | {rho.median():+.2f} | {per} | {agree}/{len(x)} | {dele.mean():.3f} |")
    print("\nSpearman median: the lower median over inputs (torch.median). Deletion: mean over inputs of the "
          "trapezoid AUC of the target logit as whole levels are removed in the profile's order (lower = better).")
    print("\nPasses: fb = forward + backward, f = forward only (no autograd).")
    if args.per_input:
        print("\nPer input: the reference drops (logit), then the top level of every profile.\n")
        print("| | " + " | ".join(f"input {i}" for i in range(len(x))) + " |")
        print("|---" * (len(x) + 1) + "|")
        print("| target logit | " + " | ".join(f"{v:.2f}" for v in clean.tolist()) + " |")
        print("| reference drops (" + ", ".join(names) + ") | "
              + " | ".join(" ".join(f"{v:+.2f}" for v in ref[i].tolist()) for i in range(len(x))) + " |")
        print("| reference top | " + " | ".join(names[int(j)] for j in top_ref) + " |")
        for name, (profile, _) in profiles.items():
            print(f"| {md(name)} | " + " | ".join(names[int(j)] if int(j) == int(t) else f"**{names[int(j)]}**"
                                             for j, t in zip(profile.argmax(1), top_ref)) + " |")
        print("\nBold: a top level that differs from the reference's.")
    return rows


if __name__ == "__main__":
    main()
