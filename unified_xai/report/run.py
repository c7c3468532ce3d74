"""``ux.report``: where + what scale + which concept, for every input, as ``report.h5`` and a static site.

Order of work: everything checkable is checked first (explainer names, input files, the output
folder), then the predictions, the concept bank of every predicted class (fitted once, stored in
``<out>/banks`` and reused by later runs), then each input alone. An input's result is written
atomically to ``<out>/parts/`` as soon as it is finished; a rerun with the same settings reads it
back instead of recomputing it, so a killed run resumes where it stopped and gives the same numbers
(every explainer is seeded and an input's explanation never depends on the others). Last,
``report.h5`` gathers every part (then ``parts/`` is removed: a later run with the same settings
reuses the inputs from ``report.h5``, found by their key) and the site is drawn from it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import torch

from .. import wavelets
from .._version import __version__
from ..core import registry
from ..core.batching import progress_bar, progress_enabled
from ..core.errors import InputError, ParameterError, UXAIError
from ..core.model import ModelAdapter
from ..core.storage import atomic_h5, clean_stale_temporaries
from .records import ClassConcepts, InputConcepts, InputResult, Report, read_input, write_input

#: explainers run by default: the white-box where + scale answer, and its two black-box cross-checks
DEFAULT_EXPLAINERS = ("wam", "sobol", "sobol_wavelet")
#: settings of the default explainers in a report, for seconds per input on a CPU: Sobol on a 7x7 grid with
#: 8 designs (408 forwards) is a coarse cross-check of the where map; WCAM with one region per sub-band
#: (192 forwards for 3 levels) answers only "what scale", which is all the report compares it on
DEFAULT_PARAMS = {
    "wam": {"n_samples": 16},
    "sobol": {"grid_size": 7, "n_designs": 8},
    "sobol_wavelet": {"grid_size": 1, "n_designs": 16},
}
WHITE_BOX, BLACK_BOX, SCALE_BLACK_BOX = "wam", "sobol", "sobol_wavelet"
TOP_K = 5
CLASS_PAGE_CROPS = 6  # top crops per concept kept in the report (the bank file keeps all of them)


@dataclass
class _Input:
    name: str
    x: torch.Tensor | None  # (C, *spatial), None when the input could not be read
    label: int | None = None
    error: str = ""


# ---------------------------------------------------------------------- inputs
def _load_inputs(adapter: ModelAdapter, inputs, names, labels, limit) -> tuple[list[_Input], str]:
    """The report's inputs (tensors, files, a folder, a built-in dataset or the model's default)."""
    from .. import data, io

    if inputs is None or (isinstance(inputs, str) and inputs in data.list_datasets()):
        name = inputs or _default_dataset(adapter)
        if name is None:
            raise InputError(f"give inputs: {adapter.name} has no built-in dataset (a tensor, files, a folder, or "
                             f"one of the built-in datasets: {', '.join(data.list_datasets())})")
        ds = data.load_dataset(name, split="test") if name != "photos" else data.load_dataset(name)
        count = len(ds) if limit is None else min(limit, len(ds))
        x, y = ds[:count]
        ds_names = list(getattr(ds, "names", None) or [f"{name}-{i:04d}" for i in range(count)])[:count]
        ys = [None if int(t) < 0 else int(t) for t in y.tolist()]
        return [_Input(n, t, label) for n, t, label in zip(ds_names, x, ys)], f"the built-in dataset {name!r}"
    if isinstance(inputs, torch.Tensor):
        x = adapter.check_input(inputs).cpu() if inputs.ndim == len(adapter.input_shape) + 1 else \
            adapter.check_input(inputs[None]).cpu()
        count = len(x) if limit is None else min(limit, len(x))
        given = list(names) if names is not None else [f"input-{i:04d}" for i in range(len(x))]
        if len(given) != len(x):
            raise ParameterError(f"names: {len(given)} names for {len(x)} inputs; give one name per input")
        ys = list(labels) if labels is not None else [None] * len(x)
        return [_Input(given[i], x[i], ys[i]) for i in range(count)], f"{len(x)} given tensor(s)"
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
    if not isinstance(given, (list, tuple)) or not all(isinstance(p, (str, os.PathLike)) for p in given):
        raise ParameterError(f"inputs: expected a tensor (B, C, *spatial), a file or folder path, a list of paths or "
                             f"a built-in dataset name, got {type(inputs).__name__}")
    paths = [Path(p) for p in given]
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"input {str(path)!r} does not exist (relative to {os.getcwd()}); give files, a "
                             f"folder or a built-in dataset ({', '.join(data.list_datasets())})")
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                           and io.file_kind(p) is not None)
            if not found:
                raise InputError(f"folder {str(path)!r} holds no file a model reads (images, audio, NIfTI, .npy, .pt)")
            files += found
        else:
            files.append(path)
    if limit is not None:
        files = files[:limit]
    loaded = []
    for path in files:
        try:
            one = io.load_input(path, adapter)
            for k in range(len(one.x)):
                suffix = f"[{k}]" if len(one.x) > 1 else ""
                loaded.append(_Input(one.names[k] + suffix if one.names else path.stem + suffix, one.x[k]))
        except UXAIError as exc:
            loaded.append(_Input(path.name, None, error=str(exc)))
    if not any(item.x is not None for item in loaded):
        raise InputError("no input could be read: " + "; ".join(f"{i.name}: {i.error}" for i in loaded[:3]))
    return loaded, f"{len(files)} file(s)"


def _default_dataset(adapter: ModelAdapter) -> str | None:
    from .. import data

    if "imagenet" in adapter.name:
        return "photos"
    return adapter.name if adapter.name in data.list_datasets() else None


# ---------------------------------------------------------------------- checks
def _check_explainers(explainers: Sequence[str], explainer_params: dict) -> dict[str, dict]:
    known = registry.list_explainers()
    unknown = [name for name in explainers if name not in known]
    if unknown:
        raise ParameterError(f"unknown explainer(s) {', '.join(map(repr, unknown))}; registered: {', '.join(known)} "
                             f"(a third-party explainer registers with ux.register or an entry point)")
    if not explainers:
        raise ParameterError("explainers is empty; give at least one name, e.g. ['wam']")
    if "craft" in explainers:
        raise ParameterError("'craft' runs as the report's concepts (concepts=True), not as an explainer; drop it")
    extra = [k for k in explainer_params if k not in explainers]
    if extra:
        raise ParameterError(f"explainer_params names {', '.join(extra)}, which is not in explainers")
    settings = {}
    for name in explainers:
        params = {**DEFAULT_PARAMS.get(name, {}), **explainer_params.get(name, {})}
        registry.validate_params(name, registry.get_explainer_class(name).params, params)  # a bad setting fails now
        settings[name] = params
    return settings


def _check_out(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {str(out)!r} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"output folder {str(out)!r} is not writable ({exc.strerror or exc}); give another --out "
                         f"or fix its permissions") from None
    return out


# ---------------------------------------------------------------------- the report
def report(adapter: ModelAdapter, inputs=None, explainers: Sequence[str] = DEFAULT_EXPLAINERS, concepts: bool = True,
           out: str | os.PathLike = "uxai-report", *, names: Sequence[str] | None = None,
           labels: Sequence[int | None] | None = None, limit: int | None = None,
           explainer_params: dict[str, dict] | None = None, concept_layer: str | None = None, n_concepts: int = 5,
           top_concepts: int = 3, concept_images=None, maco: int = 1, maco_steps: int = 64, keep: float = 0.05,
           faithfulness: bool = False, seed: int = 0, site: bool = True, progress: bool | None = None) -> Report:
    """Explain every input: prediction, where (each explainer), what scale, which concepts; write a report.

    Parameters
    ----------
    inputs : a tensor ``(B, C, *spatial)``, a file, a folder, a list of files, a built-in dataset name,
        or None (the model's built-in test set; the built-in photos for an ImageNet model).
    explainers : registered explainer names (third-party ones included), run on each input for its
        predicted class. ``wam`` gives the white-box where and scale answer; ``sobol`` (where) and
        ``sobol_wavelet`` (WCAM, scale) the black-box cross-checks the agreement compares with.
    concepts : fit (or reuse) a CRAFT bank for every predicted class and explain each input's top
        concepts: importance, map and scale profile (WAM on the concept). Images of the class come from
        ``concept_images`` (a dict class id -> tensor), else the model's built-in training set, else the
        report's inputs predicted as that class.
    maco : MACO images of this many top concepts per class (images only; cached with the bank).
    keep : fraction of wavelet coefficients kept in the rebuilt input (the most important by |WAM|).
    faithfulness : also score every where map by Deletion, Insertion and µ-Fidelity (pixels).
    out : the report folder: ``report.h5``, ``index.html``, ``banks/``, ``parts/`` (finished inputs of a
        run still going or killed).
    """
    started = time.perf_counter()
    explainers = list(explainers)
    settings_by_explainer = _check_explainers(explainers, dict(explainer_params or {}))
    for name, value, low in (("n_concepts", n_concepts, 1), ("top_concepts", top_concepts, 1), ("maco", maco, 0),
                             ("maco_steps", maco_steps, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    if not 0 < keep <= 1:
        raise ParameterError(f"keep is the fraction of coefficients kept in the rebuilt input; give 0 < keep <= 1, "
                             f"got {keep}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ParameterError(f"limit must be an integer >= 1 (the first N inputs), got {limit!r}")
    layer = None
    if concepts:  # a model without a layer CRAFT can factorise fails here, before any work
        try:
            layer = _concept_layer(adapter, concept_layer)
        except UXAIError as exc:
            raise type(exc)(f"{exc}; or report without concepts (concepts=False, uxai report --no-concepts)") from None
    out = _check_out(Path(out))
    clean_stale_temporaries(out, depth=2)
    items, source = _load_inputs(adapter, inputs, names, labels, limit)
    top_concepts = min(top_concepts, n_concepts)
    settings = {"explainers": settings_by_explainer, "concepts": bool(concepts), "n_concepts": n_concepts,
                "top_concepts": top_concepts, "concept_layer": concept_layer, "maco": maco, "maco_steps": maco_steps,
                "keep": keep, "faithfulness": bool(faithfulness), "seed": seed, "source": source}

    good = [i for i, item in enumerate(items) if item.x is not None]
    top_ids, top_probs = _top_classes(adapter, [items[i].x for i in good])
    predicted = {i: int(top_ids[k, 0]) for k, i in enumerate(good)}

    classes: dict[int, ClassConcepts] = {}
    crafts: dict[int, Any] = {}
    if concepts:
        settings["concept_layer"] = layer
        for class_id in sorted(set(predicted.values())):
            own = [items[i].x for i in good if predicted[i] == class_id]
            own = [x for x in own if x.shape == own[0].shape]  # a free-size model's inputs: one size per bank
            craft, summary = _class_bank(adapter, class_id, layer, n_concepts, seed, out, concept_images,
                                         torch.stack(own), maco if adapter.spatial_ndim == 2 else 0, maco_steps,
                                         progress)
            crafts[class_id], classes[class_id] = craft, summary

    key = _settings_key(adapter, settings)
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    results: list[InputResult] = []
    reused = 0
    with progress_bar(len(items), "report", progress_enabled(progress)) as advance:
        for index, item in enumerate(items):
            if item.x is None:
                results.append(InputResult(index=index, name=item.name, ok=False, error=item.error))
            else:
                input_key = _input_key(item, key)
                part = parts / f"{index:06d}-{input_key}.h5"
                result = _read_part(part) or _read_finished(out / "report.h5", index, input_key)
                reused += result is not None
                if result is None:
                    k = good.index(index)
                    result = _explain_one(adapter, index, item, top_ids[k], top_probs[k], settings_by_explainer,
                                          crafts.get(predicted[index]), top_concepts, keep, faithfulness)
                    result.key = input_key
                    with atomic_h5(part) as h5:
                        write_input(h5, result)
                results.append(result)
            advance(1)

    level_names = next((e.level_names for r in results if r.ok for e in r.explanations.values()
                        if e.level_names), None)
    settings["elapsed"] = time.perf_counter() - started
    report_ = Report(model_id=adapter.name, class_names=[str(c) for c in (adapter.class_names or [])],
                    spatial_ndim=adapter.spatial_ndim, sample_rate=adapter.sample_rate, explainers=explainers,
                    settings=settings, inputs=results, classes=classes, level_names=level_names,
                     reused=reused)
    report_.save(out / "report.h5")
    shutil.rmtree(parts, ignore_errors=True)  # report.h5 holds every part now, and a rerun reuses them from it
    if site:
        from .site import build_site

        build_site(report_, out, progress=progress)
    return report_


# ---------------------------------------------------------------------- pieces
@torch.no_grad()
def _top_classes(adapter: ModelAdapter, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Top classes and probabilities of every input (batched when they share one size)."""
    if len({tuple(x.shape) for x in inputs}) == 1:
        logits = adapter.predict(torch.stack(inputs).to(adapter.device), progress=False)
    else:  # a free-size model on inputs of several sizes
        logits = torch.cat([adapter.predict(x[None].to(adapter.device), progress=False) for x in inputs])
    probs = logits.float().softmax(1)
    k = min(TOP_K, probs.shape[1])
    values, ids = probs.topk(k, dim=1)
    return ids.cpu(), values.cpu()


def _settings_key(adapter: ModelAdapter, settings: dict) -> str:
    from ..concepts.bank import model_fingerprint

    stable = {k: v for k, v in settings.items() if k not in ("source", "elapsed")}
    text = json.dumps({"model": adapter.name, "weights": model_fingerprint(adapter.model), "settings": stable,
                       "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _input_key(item: _Input, settings_key: str) -> str:
    from ..concepts.bank import tensor_digest

    return hashlib.sha256(f"{settings_key}:{item.name}:{tensor_digest(item.x)}".encode()).hexdigest()[:16]


def _read_part(path: Path) -> InputResult | None:
    """A finished input's stored result, or None (missing, or damaged by a crash: then recomputed)."""
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as h5:
            return read_input(h5)
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _read_finished(path: Path, index: int, input_key: str) -> InputResult | None:
    """Input ``index`` from an earlier run's ``report.h5`` when it was computed with the same key."""
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as h5:
            group = h5.get(f"inputs/{index:06d}")
            if group is None or group.attrs.get("key") != input_key:
                return None
            return read_input(group)
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _concept_layer(adapter: ModelAdapter, layer: str | None) -> str:
    from ..concepts.scales import default_concept_layer

    return default_concept_layer(adapter, layer)[0]


def _class_bank(adapter, class_id, layer, n_concepts, seed, out, concept_images, own, maco, maco_steps, progress):
    """The class's fitted Craft (a stored bank of the same key is reused) and what its page shows."""
    from ..concepts.scales import CONCEPT_LEVELS, CONCEPT_WAVELET, concept_scale_profiles
    from ..concepts import Craft
    from ..concepts.bank import bank_filename

    images, source = None, ""
    if concept_images is not None and class_id in concept_images:
        images, source = adapter.check_input(concept_images[class_id]), "the given concept images"
    if images is None:
        images, source = _builtin_class_images(adapter, class_id)
    if images is None:
        images, source = own, "the report's inputs predicted as this class"
    images = images.to(adapter.device)
    craft = Craft(adapter, layer, n_concepts, seed=seed, progress=progress)
    bank_dir = out / "banks"
    craft.fit(images, class_id, bank_dir=bank_dir)
    bank_path = bank_dir / bank_filename(adapter.name, layer, class_id, craft.key(images, class_id))
    levels = min(CONCEPT_LEVELS, wavelets.max_levels(tuple(images.shape[2:]), CONCEPT_WAVELET))
    scales = None
    if levels >= 1:
        scales = concept_scale_profiles(adapter, craft, images[:8], class_id, levels, 2)[0]
    maco_images = None
    if maco:
        from ..featviz import concept_images as draw

        drawn = draw(adapter, craft, min(maco, craft.concepts_.shape[0]), bank_path=bank_path, steps=maco_steps,
                     seed=seed, progress=progress)
        maco_images = torch.stack([r.image.cpu() for r in drawn])
    summary = ClassConcepts(class_id=class_id, name=_class_name(adapter, class_id), layer=layer,
                            bank_path=os.path.relpath(bank_path, out), importances=craft.importances_.cpu(),
                            crops=craft.top_crop_images_[:, :CLASS_PAGE_CROPS].cpu(), scales=scales, maco=maco_images,
                            n_images=int(images.shape[0]), source=source)
    return craft, summary


def _builtin_class_images(adapter: ModelAdapter, class_id: int, max_images: int = 32):
    from .. import data

    name = adapter.name if adapter.name in data.list_datasets() else None
    if name is None:
        return None, ""
    ds = data.load_dataset(name, split="train")
    hits = torch.nonzero(ds.targets == class_id).flatten()[:max_images]
    if len(hits) == 0:
        return None, ""
    return adapter.check_input(ds.inputs[hits]), f"{len(hits)} training item(s) of {name}"


def _class_name(adapter: ModelAdapter, class_id: int) -> str:
    names = adapter.class_names or []
    return str(names[class_id]) if 0 <= class_id < len(names) else str(class_id)


def _explain_one(adapter, index, item, top_ids, top_probs, explainer_settings, craft, top_concepts, keep,
                 faithfulness) -> InputResult:
    began = time.perf_counter()
    x = item.x[None].to(adapter.device)
    target = torch.tensor([int(top_ids[0])], device=adapter.device)
    result = InputResult(index=index, name=item.name, label=item.label, input=item.x.cpu(), top_ids=top_ids,
                         top_probs=top_probs)
    for name, params in explainer_settings.items():
        explanation = registry.create(name, adapter, **params).explain(x, target).cpu()
        explanation.inputs = None  # kept once, in result.input
        result.explanations[name] = explanation
    result.agreement = _agreement(result.explanations)
    if craft is not None:
        result.concepts = _input_concepts(adapter, craft, x, int(target), top_concepts)
    if WHITE_BOX in result.explanations:
        result.rebuilt, result.rebuilt_info = _rebuilt(adapter, x, target, result.explanations[WHITE_BOX], keep)
    if faithfulness:
        result.faithfulness = _faithfulness(adapter, x, target, result.explanations)
    result.elapsed = time.perf_counter() - began
    return result


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    from scipy.stats import spearmanr

    a, b = a.flatten().double().cpu().numpy(), b.flatten().double().cpu().numpy()
    if a.std() == 0 or b.std() == 0:
        return None
    return float(spearmanr(a, b).statistic)


def _pooled(where: torch.Tensor, cells: Sequence[int]) -> torch.Tensor:
    """A where map averaged over a grid of ``cells`` (the black-box map's resolution)."""
    pool = {1: torch.nn.functional.adaptive_avg_pool1d, 2: torch.nn.functional.adaptive_avg_pool2d,
            3: torch.nn.functional.adaptive_avg_pool3d}[where.ndim - 1]
    return pool(where[:, None].float(), tuple(cells))[:, 0]


def _agreement(explanations: dict) -> dict[str, Any]:
    """The white-box answers against the black-box ones: rank correlation of the where maps (on the
    black-box grid), and whether the top scale is the same. A top scale is the level of largest signed
    share: the one whose removal lowers the score most (WAM) / of largest total Sobol index (WCAM)."""
    found: dict[str, Any] = {}
    white, black, scale_black = (explanations.get(n) for n in (WHITE_BOX, BLACK_BOX, SCALE_BLACK_BOX))
    if white is not None and black is not None:
        grid = black.params.get("grid_size", 8)
        ndim = white.where.ndim - 1
        cells = [grid] * ndim if isinstance(grid, int) else list(grid)
        cells = [min(c, s) for c, s in zip(cells, white.where.shape[1:])]
        found.update(white_box=WHITE_BOX, black_box=BLACK_BOX,
                     where_spearman=_spearman(_pooled(white.where, cells), _pooled(black.where, cells)))
    for name, key in ((WHITE_BOX, "wam_top_scale"), (SCALE_BLACK_BOX, "wcam_top_scale")):
        e = explanations.get(name)
        if e is not None and e.scales is not None and e.level_names:
            found[key] = e.level_names[int(e.scales[0].argmax())]
    if "wam_top_scale" in found and "wcam_top_scale" in found:
        found.update(scale_black_box=SCALE_BLACK_BOX, same_top_scale=found["wam_top_scale"] == found["wcam_top_scale"])
    return found


def _input_concepts(adapter, craft, x, class_id: int, top: int) -> InputConcepts:
    from ..concepts.scales import CONCEPT_WAVELET

    importance = craft.importance(x, class_id)[0].cpu()
    coefficients = craft.transform(x)[0].cpu()
    order = torch.argsort(importance, descending=True)[:top]
    maps = craft.concept_maps(x)[0].cpu()[order]
    levels = min(3, wavelets.max_levels(tuple(x.shape[2:]), CONCEPT_WAVELET))
    scales = torch.zeros(len(order), levels + 1)
    target = torch.tensor([class_id], device=x.device)
    for row, k in enumerate(order.tolist()):
        if coefficients[k] > 0 and levels >= 1:  # an absent concept has no scale profile
            e = registry.create("wam", adapter, variant="gradient", objective=craft.objective(k),
                                wavelet=CONCEPT_WAVELET, levels=levels).explain(x, target)
            scales[row] = e.scales[0].cpu()
    return InputConcepts(class_id=class_id, ids=order, importances=importance[order],
                         coefficients=coefficients[order], maps=maps, scales=scales)


@torch.no_grad()
def _rebuilt(adapter, x, target, wam, keep: float) -> tuple[torch.Tensor, dict]:
    """The input rebuilt from its ``keep`` most important wavelet coefficients (by |WAM attribution|),
    the WAM paper's "what" view, and the target score of the input and of the rebuilt input."""
    params = wam.params
    coeffs = wavelets.dwt(x, adapter.spatial_ndim, wavelet=params["wavelet"], levels=params["levels"],
                          mode=params["mode"])
    attributions = list(wam.raw_attributions().values())
    parts = coeffs.tensors()
    if len(attributions) != len(parts) or any(a.shape != p.shape for a, p in zip(attributions, parts)):
        return None, {}
    magnitude = torch.cat([a.abs().flatten() for a in attributions])
    count = max(1, int(round(keep * magnitude.numel())))
    threshold = magnitude.topk(count).values[-1]
    kept = [p * (a.abs() >= threshold).to(p.device, p.dtype) for p, a in zip(parts, attributions)]
    rebuilt = wavelets.idwt(coeffs.with_tensors(kept))
    scores = adapter.scores(torch.cat([x, rebuilt]), torch.cat([target, target]))
    return rebuilt[0].cpu(), {"kept_fraction": count / magnitude.numel(), "kept": count, "target": int(target),
                              "score": float(scores[0]), "rebuilt_score": float(scores[1])}


def _faithfulness(adapter, x, target, explanations: dict) -> dict[str, dict[str, float]]:
    from .. import metrics

    scores = {}
    for name, e in explanations.items():
        scores[name] = {
            "deletion": float(metrics.deletion(adapter, x, e.where, target, progress=False)[0]),
            "insertion": float(metrics.insertion(adapter, x, e.where, target, progress=False)[0]),
            "mu_fidelity": float(metrics.mu_fidelity(adapter, x, e.where, target)[0]),
        }
    return scores
