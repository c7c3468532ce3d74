"""CRAFT's recursion: a concept shared by several classes is split at an earlier layer.

The rule (stated so it can be tested): concept ``k`` of class A's bank is *shared* with class B when
B's images express it at least ``threshold`` times as strongly as A's own images do, measured by the
mean pooled coefficient ``craft_A.transform(images)[:, k]`` over each class's images. A late layer
merges what several classes have in common; refitting the concept's top crops at an earlier layer
(:meth:`Craft.refine`) separates the parts it merged.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..core.errors import InputError
from .craft import Craft


def concept_sharing(crafts: Sequence[Craft], images: Mapping[int, torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
    """For each class's bank, ``(K, n_classes)``: how strongly each class's images express each concept,
    relative to the bank's own class (1 for the own class column).

    ``images``: class id -> images; default each Craft's fit images. Columns follow ``crafts``' order.
    """
    crafts = list(crafts)
    layers = {c.layer_ for c in crafts}
    if len(layers) != 1:
        raise InputError(f"shared concepts compare banks of one layer; got layers {sorted(layers)}")
    per_class = {}
    for craft in crafts:
        x = (images or {}).get(craft.class_id_, craft._fit_images)
        if x is None:
            raise InputError(f"no images for class {craft.class_id_}: pass images={{class_id: tensor}} (banks loaded"
                             f" from disk do not keep their images)")
        per_class[craft.class_id_] = x
    out = {}
    for craft in crafts:
        means = torch.stack([craft.transform(per_class[c.class_id_]).mean(0) for c in crafts], dim=1)  # (K, classes)
        own = means[:, [c.class_id_ for c in crafts].index(craft.class_id_)]
        out[craft.class_id_] = (means / own.clamp_min(1e-12)[:, None]).cpu()
    return out


def shared_concepts(crafts: Sequence[Craft], threshold: float = 0.5,
                    images: Mapping[int, torch.Tensor] | None = None) -> dict[int, list[int]]:
    """Class id -> the concepts of its bank that another class expresses at least ``threshold`` times as
    strongly (see the module's rule)."""
    sharing = concept_sharing(crafts, images)
    out = {}
    for craft in crafts:
        ratios = sharing[craft.class_id_].clone()
        ratios[:, [c.class_id_ for c in crafts].index(craft.class_id_)] = 0.0  # not shared with itself
        out[craft.class_id_] = [int(k) for k in torch.nonzero(ratios.amax(1) >= threshold).flatten()]
    return out


def refine_shared(crafts: Sequence[Craft], layer: str, threshold: float = 0.5, n_concepts: int = 2,
                  images: Mapping[int, torch.Tensor] | None = None,
                  n_crops: int | None = None) -> dict[int, dict[int, Craft]]:
    """Split every shared concept (see :func:`shared_concepts`) at the earlier ``layer``.

    ``n_crops``: crops refitted per concept (see :meth:`Craft.refine`). Returns class id -> {concept:
    child Craft}; each child is also stored in its bank's ``children``.
    """
    shared = shared_concepts(crafts, threshold, images)
    out: dict[int, dict[int, Craft]] = {}
    for craft in crafts:
        x = (images or {}).get(craft.class_id_)
        out[craft.class_id_] = {k: craft.refine(k, layer, n_concepts, images=x, n_crops=n_crops) for k in shared[craft.class_id_]}
    return out
