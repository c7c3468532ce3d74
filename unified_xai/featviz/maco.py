"""MACO feature visualisation (Fel et al., NeurIPS 2023): optimise only the Fourier phase of an image.

The magnitude stays fixed to a natural-image spectrum (:mod:`.spectrum`), so the image keeps the
statistics of photos and the optimisation can only move structure around. Each step renders the
image from the phase, takes random crops with shrinking boxes, adds noise, and raises the mean
objective over the crops with NAdam. The accumulated ``|d objective / d image|`` is the
transparency map: which parts of the picture the objective uses.

Objectives are the library's one set (``ux.objectives``): an int or class name is that class's
logit; channels, neurons, directions and CRAFT concepts (``craft.direction(k)``) combine with
``+``, ``-`` and weights.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from ..core import objectives as objectives_module
from ..core.batching import chunks, progress_bar
from ..core.errors import ParameterError, UXAIError
from .spectrum import natural_spectrum, recorrelate

DEFAULT_IMAGE_SIZE = 224  # for models that take any input size


@dataclass
class MacoResult:
    """A MACO visualisation.

    ``image`` ``(C, H, W)`` in the value range (``[0, 1]`` by default), ``transparency`` ``(C, H, W)``
    the accumulated ``|gradient|``, ``alpha`` ``(H, W)`` in [0, 1] (its channel mean clipped at the
    80th percentile, over its max: Fel et al.'s display), ``history`` the mean objective over the
    crops at each step.
    """

    image: torch.Tensor
    transparency: torch.Tensor
    history: torch.Tensor
    objective: str
    config: dict = field(default_factory=dict)

    @property
    def alpha(self) -> torch.Tensor:
        mean = self.transparency.mean(0)
        top = torch.quantile(mean.flatten().float(), 0.8)
        clipped = mean.clamp(max=float(top))
        return clipped / clipped.max().clamp_min(1e-12)

    def display(self) -> torch.Tensor:
        """The image for display ``(H, W, C)``: clipped at its 1st and 99th percentiles, min-maxed."""
        image = self.image.float()
        low, high = torch.quantile(image.flatten(), torch.tensor([0.01, 0.99]))
        image = ((image - low) / (high - low).clamp_min(1e-8)).clamp(0, 1)
        return image.permute(1, 2, 0)

    def rgba(self) -> torch.Tensor:
        """``(H, W, 4)``: the display image with :attr:`alpha` as its transparency (grey repeated)."""
        image = self.display()
        if image.shape[2] == 1:
            image = image.expand(-1, -1, 3)
        return torch.cat([image[..., :3], self.alpha[..., None]], dim=2)

    def save_npz(self, path) -> None:
        """Every array and setting to one ``.npz`` file (atomically); :meth:`load` reads it back."""
        import json

        import numpy as np

        from ..core.storage import atomic_write

        with atomic_write(path) as handle:
            np.savez_compressed(handle, image=self.image.cpu().numpy(), transparency=self.transparency.cpu().numpy(),
                                history=self.history.cpu().numpy(), objective=np.array(self.objective),
                                config=np.array(json.dumps(self.config)))

    @classmethod
    def load(cls, path) -> "MacoResult":
        import json

        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            return cls(torch.from_numpy(data["image"]), torch.from_numpy(data["transparency"]),
                       torch.from_numpy(data["history"]), str(data["objective"]), json.loads(str(data["config"])))

    def save(self, path_stem) -> tuple:
        """Write ``<stem>.png`` (the image) and ``<stem>_alpha.png`` (with transparency); returns both paths."""
        from pathlib import Path

        from ..plotting import save_rgb_png

        stem = Path(path_stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        image_path = stem.with_name(stem.name + ".png")
        alpha_path = stem.with_name(stem.name + "_alpha.png")
        display = self.display()
        save_rgb_png(display.expand(-1, -1, 3) if display.shape[2] == 1 else display, image_path)
        save_rgb_png(self.rgba(), alpha_path)
        return image_path, alpha_path


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ParameterError(f"maco: {name} must be a positive int, got {value!r}")
    return int(value)


def _fraction_pair(name: str, value) -> tuple[float, float]:
    try:
        start, end = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"maco: {name} must be a pair (start, end) of fractions of the image side,"
                             f" got {value!r}") from None
    if not (0 < end <= 1 and 0 < start <= 1):
        raise ParameterError(f"maco: {name} must be fractions in (0, 1], got {value!r}")
    return start, end


def _image_size(adapter, image_size) -> tuple[int, int]:
    if adapter.spatial_ndim != 2:
        raise UXAIError(f"maco visualises image models (inputs C x H x W); this model's inputs are"
                        f" {adapter.modality} {tuple(adapter.input_shape)}")
    if image_size is None:
        size = tuple(s if s is not None else DEFAULT_IMAGE_SIZE for s in adapter.input_shape[1:])
    elif isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            size = ()
    if len(size) != 2 or min(size) < 8:
        raise ParameterError(f"maco: image_size must be None (the model's input size), an int or (H, W) of"
                             f" at least 8 pixels, got {image_size!r}")
    return size


def _view_size(adapter, image_size: tuple[int, int]) -> tuple[int, int]:
    """Crops are resized to the model's input size (the image size for models of any size)."""
    return tuple(s if s is not None else i for s, i in zip(adapter.input_shape[1:], image_size))


def _objective(objective) -> objectives_module.Objective:
    objective = objectives_module.as_objective(objective)
    if any(isinstance(term, objectives_module.Logit) and term.target is None for _, term in objective.terms()):
        raise ParameterError("maco: Logit() means each input's target, but a visualisation has no input;"
                             " name the class: maco(adapter, 3) or Logit('espresso')")
    return objective


def render(phase: torch.Tensor, magnitude: torch.Tensor, size: tuple[int, int],
           value_range: tuple[float, float]) -> torch.Tensor:
    """The image ``(C, H, W)`` of a phase under a fixed magnitude: standardised phase, inverse real
    FFT, standardised image, colours recorrelated (3 channels), sigmoid, affine map to ``value_range``."""
    phase = (phase - phase.mean()) / (phase.std() + 1e-5)
    image = torch.fft.irfft2(torch.polar(magnitude, phase), s=size)
    image = (image - image.mean()) / (image.std() + 1e-5)
    if image.shape[0] == 3:
        image = recorrelate(image)
    low, high = value_range
    return low + (high - low) * torch.sigmoid(image)


def crop_boxes(n: int, side: float, generator: torch.Generator, jitter: float = 0.05) -> torch.Tensor:
    """``(n, 3)`` boxes ``(centre_y, centre_x, side)`` in fractions of the image: sides ~ N(side, jitter)
    clipped to [0.05, 1], centres ~ N(0.5, 0.15) clipped so the box stays inside the image."""
    sides = (side + jitter * torch.randn(n, generator=generator)).clamp(0.05, 1.0)
    centres = (0.5 + 0.15 * torch.randn(n, 2, generator=generator))
    half = sides[:, None] / 2
    centres = torch.maximum(torch.minimum(centres, 1 - half), half)
    return torch.cat([centres, sides[:, None]], dim=1)


def crop_views(image: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear crop-and-resize of ``image`` ``(C, H, W)`` at ``boxes`` to ``(n, C, *size)``, in one call."""
    n = boxes.shape[0]
    boxes = boxes.to(image)
    theta = torch.zeros(n, 2, 3, device=image.device, dtype=image.dtype)
    theta[:, 0, 0] = boxes[:, 2]  # x scale
    theta[:, 1, 1] = boxes[:, 2]
    theta[:, 0, 2] = 2 * boxes[:, 1] - 1  # x centre in [-1, 1]
    theta[:, 1, 2] = 2 * boxes[:, 0] - 1
    grid = F.affine_grid(theta, (n, image.shape[0], *size), align_corners=False)
    return F.grid_sample(image.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def maco(adapter, objective, steps: int = 128, image_size=None, crops: int = 4,
         box_size: Sequence[float] = (0.6, 0.3), noise: float = 0.04, learning_rate: float = 1.0,
         spectrum=None, value_range: Sequence[float] = (0.0, 1.0), seed: int = 0, batch_size=None,
         progress: bool | None = None) -> MacoResult:
    """Visualise ``objective`` by MACO: the image whose crops maximise it, with only its phase free.

    Parameters
    ----------
    adapter : ModelAdapter
        An image model (1, 3 or any number of channels, any input size).
    objective : int, str or Objective
        A class index or name (that class's logit), or an objective of ``ux.objectives`` or
        ``craft.direction(k)``; combine with ``+``, ``-`` and weights.
    steps : int
        NAdam steps (each: ``crops`` forward+backward passes of input-size views).
    image_size : None, int or (H, W)
        Size of the rendered image; None: the model's input size (224 for models of any size).
    crops : int
        Random views per step; each is resized to the model's input size.
    box_size : (start, end)
        Side of the crop boxes as a fraction of the image side, decaying linearly from ``start`` to
        ``end`` over the steps (jitter 0.05); Xplique decays 0.5 -> 0.05 on a 512 px canvas that it
        shows at 224, here the canvas is the model's input size by default, hence larger boxes.
    noise : float
        Gaussian noise of standard deviation ``noise`` plus uniform noise of half that width, as a
        fraction of the value range, added to every view (0.04 of [0, 1] = Xplique's 0.08 of [-1, 1]).
    spectrum : None, path or tensor
        The fixed magnitude (see :func:`~unified_xai.featviz.spectrum.natural_spectrum`); default:
        the shipped estimate from natural photos.
    value_range : (low, high)
        The input range of the model (the adapter's preprocessing included): ``(0, 1)`` for images
        the library loads.
    seed : int
        Seeds the initial phase, the boxes and the noise: one seed, one image.
    batch_size : int or None
        Views per forward pass (None: the adapter's choice); the result does not depend on it.

    Returns
    -------
    MacoResult with ``image``, ``transparency``, ``alpha`` and the objective's ``history``.
    """
    steps = _positive_int("steps", steps)
    crops = _positive_int("crops", crops)
    start, end = _fraction_pair("box_size", box_size)
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or noise < 0:
        raise ParameterError(f"maco: noise must be a number >= 0, got {noise!r}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) or learning_rate <= 0:
        raise ParameterError(f"maco: learning_rate must be a number > 0, got {learning_rate!r}")
    low, high = _fraction_pair_range(value_range)
    objective = _objective(objective)
    objective.check(adapter)
    size = _image_size(adapter, image_size)
    view_size = _view_size(adapter, size)
    channels = adapter.channels
    device, dtype = adapter.device, adapter.dtype
    magnitude = natural_spectrum(channels, size, spectrum).to(device=device, dtype=dtype)

    generator = torch.Generator().manual_seed(int(seed))
    phase = torch.randn(magnitude.shape, generator=generator).to(device=device, dtype=dtype).requires_grad_(True)
    optimizer = torch.optim.NAdam([phase], lr=float(learning_rate))
    transparency = torch.zeros(channels, *size, device=device, dtype=dtype)
    history = torch.empty(steps)
    targets = torch.zeros(crops, dtype=torch.long, device=device)
    sigma = float(noise) * (high - low)
    probe = torch.zeros(1, channels, *view_size, device=device, dtype=dtype)
    per_call = batch_size or adapter.chunk_size(probe, "grad", rows=crops)

    with adapter.evaluating(), adapter.frozen(), progress_bar(steps, "maco", adapter.show_progress(progress)) as advance:
        for step in range(steps):
            side = start + (end - start) * (step / max(steps - 1, 1))
            boxes = crop_boxes(crops, side, generator)
            gaussian = torch.randn(crops, channels, *view_size, generator=generator)
            uniform = torch.rand(crops, channels, *view_size, generator=generator) - 0.5
            jitter = (sigma * (gaussian + uniform)).to(device=device, dtype=dtype)

            image = render(phase, magnitude, size, (low, high))
            image.retain_grad()
            views = crop_views(image, boxes, view_size)
            # the model runs on detached views in chunks; their gradients flow back through the crops once
            leaf = (views.detach() + jitter).requires_grad_(True)
            total = 0.0
            for part in chunks(crops, per_call):
                scores, _ = adapter.objective_scores(leaf[part], objective, targets[part])
                if not scores.requires_grad:
                    raise UXAIError(f"objective {objective.describe()} does not depend on the input through"
                                    f" autograd; pick a layer the input reaches")
                (scores.sum() / crops).backward()
                total += float(scores.detach().sum())
            if not math.isfinite(total):
                raise UXAIError(f"maco: the objective {objective.describe()} became {total} at step {step};"
                                f" lower learning_rate or check the model's input value_range")
            history[step] = total / crops
            optimizer.zero_grad(set_to_none=True)
            views.backward(leaf.grad)
            transparency += image.grad.abs()
            phase.grad.neg_()  # ascent
            optimizer.step()
            advance(1)

    with torch.no_grad():
        final = render(phase, magnitude, size, (low, high))
    config = {"steps": steps, "image_size": list(size), "crops": crops, "box_size": [start, end],
              "noise": float(noise), "learning_rate": float(learning_rate), "value_range": [low, high],
              "seed": int(seed), "spectrum": "natural photos" if spectrum is None else str(spectrum)
              if isinstance(spectrum, str) else "user tensor"}
    return MacoResult(final.detach(), transparency.detach(), history, objective.describe(), config)


def _fraction_pair_range(value_range) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ParameterError(f"maco: value_range must be (low, high), got {value_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ParameterError(f"maco: value_range must be finite with high > low, got {value_range!r}")
    return low, high


def sample_views(image: torch.Tensor, adapter, n: int = 32, box_size: Sequence[float] = (0.6, 0.3),
                 seed: int = 0) -> torch.Tensor:
    """``(n, C, *input size)`` views of ``image`` drawn as MACO draws them over its whole schedule: box sides
    uniform between the schedule's ends (jittered), the same seed giving the same boxes for any image."""
    start, end = _fraction_pair("box_size", box_size)
    generator = torch.Generator().manual_seed(int(seed))
    sides = start + (end - start) * torch.rand(_positive_int("n", n), generator=generator)
    boxes = torch.cat([crop_boxes(1, float(side), generator) for side in sides])
    size = tuple(image.shape[-2:])
    return crop_views(image.to(device=adapter.device, dtype=adapter.dtype), boxes, _view_size(adapter, size))


def random_phase_images(adapter, n: int, image_size=None, spectrum=None, value_range=(0.0, 1.0),
                        seed: int = 0) -> torch.Tensor:
    """``(n, C, H, W)`` renders of random phases under the same magnitude (MACO's null model)."""
    size = _image_size(adapter, image_size)
    low, high = _fraction_pair_range(value_range)
    magnitude = natural_spectrum(adapter.channels, size, spectrum).to(device=adapter.device, dtype=adapter.dtype)
    generator = torch.Generator().manual_seed(int(seed))
    out = [render(torch.randn(magnitude.shape, generator=generator).to(magnitude), magnitude, size, (low, high))
           for _ in range(_positive_int("n", n))]
    return torch.stack(out)
