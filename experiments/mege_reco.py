"""MeGe and ReCo (Fel et al., WACV 2022) of several explainers on k-fold retrained digits models.

    nice -n 10 python experiments/mege_reco.py          # k = 4, 24 epochs, 100 digits per fold, 16 samples
    nice -n 10 python experiments/mege_reco.py --folds 5 --epochs 40 --per-fold 0 --samples 0   # the full
                                                        # recipe, every digit, the explainers' defaults (~1 h)

The 1,797 digits (the train and test splits of ``ux.data.load_dataset("digits")`` together) are split
into ``k`` class-stratified folds (seeded). Model ``i`` is the built-in ``digits`` architecture trained
by ``train_builtin.train`` -- the recipe of the shipped model (AdamW, one-cycle schedule, the +-2 pixel
shift augmentation), the same seed for every fold -- on every fold but fold ``i``: ``train`` reads its
data through ``load_dataset``, which is redirected to the fold's training and held-out sets while it
runs (its per-epoch "test acc" is then the held-out fold's). ``--epochs`` shortens the recipe's 40 epochs
to keep the run to a few minutes. Each method then explains, with every model, ``--per-fold`` held-out
digits of each fold (the first of a seeded order; 0: all of them) for their true label, and
``ux.metrics.stability.mege_reco`` compares the held-out model's map with the other models' maps.
Integrated gradients, SmoothGrad and WAM take ``--samples`` samples (default 16 instead of their 50 / 25
/ 25) to fit the run in a few minutes. The models err mostly on the same hard digits, so ``S≠`` (exactly
one model right) is small and ReCo uncertain: the table gives 5-95 % bootstrap intervals (the explained
digits resampled). Seeded and CPU-only, one thread.
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import torch

import train_builtin
import unified_xai as ux
from unified_xai.data import BUILTIN_MODELS, ArrayDataset
from unified_xai.data.loading import _build
from unified_xai.metrics.stability import DISTANCES, MeGeReCo, mege_reco, mege_score, reco_score

METHODS = ("saliency", "integrated_gradients", "smoothgrad", "gradcam", "wam")
#: the methods whose cost is n_samples model passes per input (``--samples`` sets it)
SAMPLED = ("integrated_gradients", "smoothgrad", "wam")


def all_digits() -> ArrayDataset:
    train, test = ux.data.load_dataset("digits", "train"), ux.data.load_dataset("digits", "test")
    return ArrayDataset("digits", "all", torch.cat([train.inputs, test.inputs]),
                        torch.cat([train.targets, test.targets]), train.class_names, dict(train.metadata))


def stratified_folds(targets: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Fold of each item: each class's items in a seeded random order, dealt to the folds in turn."""
    gen = torch.Generator().manual_seed(seed)
    folds = torch.empty_like(targets)
    offset = 0
    for c in targets.unique().tolist():
        idx = (targets == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        folds[idx] = (torch.arange(len(idx)) + offset) % k
        offset += len(idx)  # continue the deal where the last class stopped: folds differ by at most 1 item
    return folds


def subset(ds: ArrayDataset, mask: torch.Tensor, split: str) -> ArrayDataset:
    return ArrayDataset(ds.name, split, ds.inputs[mask], ds.targets[mask], ds.class_names, ds.metadata)


@contextmanager
def digits_data(train: ArrayDataset, test: ArrayDataset):
    """``train_builtin.load_dataset("digits", split)`` gives these sets while the block runs."""
    original = train_builtin.load_dataset

    def load(name, split="test"):
        if name != "digits":
            return original(name, split)
        return train if split == "train" else test

    train_builtin.load_dataset = load
    try:
        yield
    finally:
        train_builtin.load_dataset = original


def fold_models(ds: ArrayDataset, folds: torch.Tensor, k: int, epochs: int, seed: int,
                cache: Path | None = None) -> list[ux.ModelAdapter]:
    spec = BUILTIN_MODELS["digits"]
    adapters = []
    for i in range(k):
        path = cache / f"digits-k{k}-e{epochs}-s{seed}-fold{i}.pt" if cache is not None else None
        if path is not None and path.exists():
            model = _build("digits")["model"]
            model.load_state_dict(torch.load(path, weights_only=True))
            print(f"== fold {i}: loaded {path}", flush=True)
        else:
            with digits_data(subset(ds, folds != i, "train"), subset(ds, folds == i, "test")):
                print(f"== fold {i}: training on {int((folds != i).sum())} digits, {int((folds == i).sum())} held"
                      f" out", flush=True)
                model, report = train_builtin.train("digits", epochs, seed)
            print(f"   held-out accuracy {report['test_accuracy']:.4f} ({report['train_seconds']:.0f} s)", flush=True)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), path)
        adapters.append(ux.ModelAdapter(model, spec["input_shape"], class_names=spec["class_names"], device="cpu",
                                        batch_size=256, progress=False, name=f"digits-fold{i}"))
    return adapters


def evaluation_set(folds: torch.Tensor, k: int, per_fold: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    chosen = []
    for i in range(k):
        idx = (folds == i).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        chosen.append(idx if per_fold <= 0 else idx[:per_fold])
    return torch.cat(chosen).sort().values


def bootstrap(r: MeGeReCo, n_inputs: int, rounds: int, seed: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """5-95 % intervals of MeGe and ReCo when the explained digits are resampled with replacement (an
    input's k - 1 pairs go together: they share the input)."""
    gen = torch.Generator().manual_seed(seed)
    owner = r.pairs[:, 0]
    mege, reco = [], []
    for _ in range(rounds):
        weight = torch.bincount(torch.randint(0, n_inputs, (n_inputs,), generator=gen), minlength=n_inputs)[owner]
        d, kinds = r.distances.repeat_interleave(weight), r.kinds.repeat_interleave(weight)
        mege.append(mege_score(d[kinds == 1]))
        reco.append(reco_score(d[kinds == 1], d[kinds == 0]))
    q = torch.tensor([0.05, 0.95], dtype=torch.float64)
    mege, reco = torch.tensor(mege, dtype=torch.float64), torch.tensor(reco, dtype=torch.float64)
    return tuple(mege.nanquantile(q).tolist()), tuple(reco.nanquantile(q).tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=4, help="k: models and folds (the paper uses 4 to 6)")
    parser.add_argument("--epochs", type=int, default=24, help="training epochs per fold (the recipe's: 40)")
    parser.add_argument("--bootstrap", type=int, default=200, help="resamples of the digits for the intervals")
    parser.add_argument("--per-fold", type=int, default=100, help="held-out digits explained per fold (0: all)")
    parser.add_argument("--samples", type=int, default=16,
                        help=f"n_samples of {', '.join(SAMPLED)} (0: each explainer's default)")
    parser.add_argument("--cache", type=Path, default=None, help="directory keeping the fold models between runs")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--distance", default="spearman", choices=DISTANCES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()

    ds = all_digits()
    folds = stratified_folds(ds.targets, args.folds, args.seed)
    adapters = fold_models(ds, folds, args.folds, args.epochs, args.seed, args.cache)
    trained = time.time()
    idx = evaluation_set(folds, args.folds, args.per_fold, args.seed)
    x, y, f = ds.inputs[idx], ds.targets[idx], folds[idx]
    print(f"\n== MeGe / ReCo: {len(idx)} held-out digits ({args.per_fold or 'all'} per fold), k = {args.folds},"
          f" {args.folds - 1} pairs per digit, distance {args.distance!r}, seed {args.seed}", flush=True)

    rows = []
    for method in args.methods:
        t0 = time.time()
        params = {"n_samples": args.samples} if args.samples > 0 and method in SAMPLED else {}
        r = mege_reco(adapters, x, y, f, method, params, distance=args.distance, seed=args.seed, progress=False)
        rows.append((method, r, time.time() - t0))
        print(f"   {r!r}  ({time.time() - t0:.0f} s)", flush=True)

    accuracy = rows[0][1].accuracy if rows else torch.tensor([])
    print(f"\nheld-out accuracy of the {args.folds} models on the explained digits: "
          + " ".join(f"{a:.3f}" for a in accuracy.tolist()))
    print(f"\n| method | MeGe | (5-95 %) | ReCo | (5-95 %) | gamma | S= | S≠ | left out | mean d S= | mean d S≠ |"
          f" flat | s |")
    print("| --- | ---: | :---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for method, r, seconds in rows:
        d = r.as_dict()
        (m0, m1), (r0, r1) = bootstrap(r, len(idx), args.bootstrap, args.seed)
        print(f"| {method} | {r.mege:.3f} | {m0:.3f}-{m1:.3f} | {r.reco:.3f} | {r0:.3f}-{r1:.3f} | {r.threshold:.3f} |"
              f" {r.n_equal} | {r.n_different} | {r.n_excluded} | {d['mean_equal']:.3f} | {d['mean_different']:.3f} |"
              f" {r.n_flat} | {seconds:.0f} |")
    now = time.time()
    print(f"\ntraining {trained - start:.0f} s, metrics {now - trained:.0f} s, total {now - start:.0f} s")


if __name__ == "__main__":
    main()
