"""Real photos that ship with installed packages (no download), for the ImageNet model.

Sources: scikit-learn's two sample images (``load_sample_images``: china.jpg, flower.jpg),
scikit-image's photographs (``skimage.data``: coffee, chelsea, rocket, camera, astronaut,
stereo_motorcycle, clock, coins, moon) and matplotlib's sample photo of Grace Hopper. Left out:
scikit-image's scientific images (retina, hubble_deep_field, immunohistochemistry), textures
(brick, grass, gravel), scans of text (page, text), drawings and synthetic images, and every image
that scikit-image downloads on first use.

Each photo is centre-cropped to a square (the shorter side) and resized to ``size`` x ``size``
with an antialiased bilinear filter: aspect ratio kept, nothing stretched. Grayscale photos are
repeated to 3 channels (said in the item's note).

Targets are ImageNet-1k class indices (timm's ``ImageNetInfo`` order): the class of the photo's
subject where ImageNet-1k has one, else -1 (astronaut, flower, motorcycle, coins, moon: ImageNet-1k
has no astronaut, flower species of that kind, motorcycle, coin or moon class). Where two ImageNet
classes name the same subject (tabby / Egyptian cat, missile / projectile, wall / analog clock),
``metadata["accepted_targets"][i]`` lists every index counted as right; the target is the first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..core.errors import ParameterError, UXAIError
from ..io import fit_image
from .datasets import ArrayDataset

SIZE = 224


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)
    return load


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[index] if index is not None else image
    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib.cbook
        import matplotlib.image

        return matplotlib.image.imread(matplotlib.cbook.get_sample_data(filename, asfileobj=False))
    return load


@dataclass(frozen=True)
class Photo:
    """One photo: its name, where it comes from, how to load it (uint8 ``(H, W)`` or ``(H, W, 3|4)``),
    the WordNet ids of the ImageNet classes that name its subject (first = target; empty = none) and a note."""

    name: str
    source: str
    load: Callable[[], np.ndarray]
    wnids: tuple[str, ...]
    note: str


#: the photos, labelled ones first (so the first few are the ones with a known right answer)
PHOTOS: tuple[Photo, ...] = (
    Photo("china", "scikit-learn load_sample_image('china.jpg')", _sklearn("china.jpg"),
          ("n03877845",), "a Chinese temple tower above a lake; ImageNet 'palace'"),
    Photo("coffee", "scikit-image data.coffee()", _skimage("coffee"),
          ("n07920052",), "a cup of coffee on a saucer, seen from above; ImageNet 'espresso'"),
    Photo("chelsea", "scikit-image data.chelsea()", _skimage("chelsea"),
          ("n02123045", "n02124075"), "Chelsea the tabby cat; ImageNet 'tabby' (also accepted: 'Egyptian cat')"),
    Photo("rocket", "scikit-image data.rocket()", _skimage("rocket"),
          ("n03773504", "n04008634"), "a SpaceX Falcon 9 on its launch pad; ImageNet 'missile' (also accepted:"
          " 'projectile, missile')"),
    Photo("camera", "scikit-image data.camera()", _skimage("camera"),
          ("n04485082",), "the 'cameraman': a man with a camera on a tripod; ImageNet 'tripod'."
          " Grayscale photo, repeated to 3 channels"),
    Photo("grace_hopper", "matplotlib sample_data/grace_hopper.jpg", _matplotlib("grace_hopper.jpg"),
          ("n03763968",), "portrait of Grace Hopper in US Navy uniform; ImageNet 'military uniform'"),
    Photo("clock", "scikit-image data.clock()", _skimage("clock"),
          ("n04548280", "n02708093"), "a wall clock, strongly blurred on purpose by moving the camera; ImageNet"
          " 'wall clock' (also accepted: 'analog clock'). Grayscale photo, repeated to 3 channels"),
    Photo("astronaut", "scikit-image data.astronaut()", _skimage("astronaut"),
          (), "astronaut Eileen Collins with a flag and a model shuttle: target -1, no ImageNet-1k class"
          " names the subject"),
    Photo("flower", "scikit-learn load_sample_image('flower.jpg')", _sklearn("flower.jpg"),
          (), "an orange dahlia: target -1, ImageNet-1k's few flower classes (daisy, yellow lady's"
          " slipper) are other flowers"),
    Photo("motorcycle", "scikit-image data.stereo_motorcycle()[0] (left view)", _skimage("stereo_motorcycle", 0),
          (), "a motorcycle in a lab: target -1, ImageNet-1k has no motorcycle class (nearest: 'moped',"
          " 'motor scooter')"),
    Photo("coins", "scikit-image data.coins()", _skimage("coins"),
          (), "ancient Greek coins from Pompeii: target -1, ImageNet-1k has no coin class."
          " Grayscale photo, repeated to 3 channels"),
    Photo("moon", "scikit-image data.moon()", _skimage("moon"),
          (), "the surface of the moon: target -1, ImageNet-1k has no moon class."
          " Grayscale photo, repeated to 3 channels"),
)


def to_square_tensor(image: np.ndarray, size: int = SIZE) -> torch.Tensor:
    """uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` -> float ``(3, size, size)`` in [0, 1].

    Gray is repeated to 3 channels, alpha dropped; the centred square of side ``min(H, W)`` is
    resized with an antialiased bilinear filter.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise UXAIError(f"expected a gray (H, W) or colour (H, W, 3|4) image, got shape {array.shape}")
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    x = torch.from_numpy(np.array(array[..., :3], dtype=np.float32)).permute(2, 0, 1) / scale
    x = fit_image(x, size, size, [])  # the file readers' centre crop and antialiased resize
    return x.clamp_(0.0, 1.0)


def load_photos(split: str = "test", size: int = SIZE) -> ArrayDataset:
    """The photos as an :class:`ArrayDataset`: inputs ``(N, 3, size, size)`` in [0, 1], ImageNet-1k
    targets (-1 where no class fits; see the module docstring), the 1000 ImageNet class names,
    ``names`` and ``notes`` per photo. Only the ``"test"`` split exists.
    """
    if split != "test":
        raise ParameterError(
            f"the 'photos' dataset has only a 'test' split, got split={split!r}: these {len(PHOTOS)} photos"
            f" are for looking at the ImageNet model 'efficientnet-lite0-imagenet', which was trained on"
            f" ImageNet (not shipped); use split='test'")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ParameterError(f"size must be an integer of at least 8 pixels, got {size!r}")
    from .imagenet import imagenet_class_names, imagenet_index

    inputs, targets, accepted = [], [], []
    for photo in PHOTOS:
        inputs.append(to_square_tensor(photo.load(), size))
        indices = [imagenet_index(w) for w in photo.wnids]
        targets.append(indices[0] if indices else -1)
        accepted.append(indices)
    metadata = {
        "value_range": [0.0, 1.0], "size": [size, size],
        "sources": {p.name: p.source for p in PHOTOS},
        "accepted_targets": accepted,
        "target_rule": "ImageNet-1k index of the photo's subject; -1 where ImageNet-1k has no class for it",
        "preprocessing": "centre square crop, antialiased bilinear resize; gray repeated to RGB",
    }
    return ArrayDataset("photos", split, torch.stack(inputs), torch.tensor(targets), imagenet_class_names(),
                        metadata, names=[p.name for p in PHOTOS], notes=[p.note for p in PHOTOS])
