"""CRAFT: concepts of a class by NMF of a layer's activations (Fel et al., CVPR 2023), any modality.

The model is split at ``layer`` into ``g`` (input -> activations) and ``h`` (activations -> logits).
:meth:`Craft.fit` takes images of one class and

1. cuts them into crops by a sliding window — windows of a signal, patches of an image, sub-volumes
   of a volume — that cover the whole input (the last window sits flush with the far edge);
2. fits each crop back to the model's input size (``crop_fit="resize"``: zoom it, as CRAFT does for
   images; ``"tile"``: repeat it, the default for signals, whose pitch a zoom would change);
3. spatially averages ``g(crop)`` into one vector per crop (ViT tokens: the patch tokens);
4. factorises the crop matrix ``A (n_crops, D) ~ U W`` with a non-negative ``W (K, D)``: the concept bank;
5. ranks the concepts by their total Sobol index: for each class image, the per-position concept
   coefficients ``U`` (NNLS with ``W`` fixed) are masked, ``h((U * m) W)`` scores the class, and the
   indices over ``m`` (``ux.sampling.sobol_indices``) are averaged over the class images.

Concepts are stored sorted by decreasing importance. ``transform`` gives pooled concept
coefficients, ``concept_maps`` per-position coefficients on the input grid, ``ablation`` the drop of
the class logit when one concept is removed, ``refine`` the recursion of the paper (a concept split
into sub-concepts at an earlier layer), ``objective`` the concept coefficient as an objective for
every gradient explainer (``wam`` on it gives the wavelet scale profile of the concept).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import sampling
from ..core import hooks
from ..core.batching import chunks, progress_bar
from ..core.errors import InputError, ParameterError, UXAIError
from ..core.model import ModelAdapter, Split
from ..core.objectives import Direction, _grid, pooled_activations
from ..core.spatial import to_input_grid
from ..core.storage import clean_stale_temporaries
from .bank import ConceptBank, bank_filename, model_fingerprint, tensor_digest
from .nmf import nmf, nnls

CROP_FITS = ("auto", "resize", "tile")
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


class NotFittedError(UXAIError, AttributeError):
    """A learned attribute was read before :meth:`Craft.fit`."""


class NegativeActivationsError(UXAIError, ValueError):
    """The layer's activations take negative values, so NMF does not apply."""


class Craft:
    """Concept extraction for one class at one layer (scikit-learn-like: parameters here, work in ``fit``).

    Parameters
    ----------
    adapter : the model (:class:`~unified_xai.ModelAdapter`).
    layer : the layer to factorise (non-negative activations, e.g. after a ReLU, before global
        pooling); its activations ``(B, C, *grid)``, ``(B, N, D)`` ViT tokens or pooled ``(B, D)``.
    n_concepts : K, the rank of the factorisation.
    patch_size : crop side per spatial axis (an int for all axes, or a tuple); None: 0.3 x the
        input size (CRAFT's 64 px on 224).
    stride : window step per axis; None: ``floor(0.8 * patch_size)`` as in CRAFT.
    crop_fit : how a crop becomes a model input: ``"resize"``, ``"tile"`` or ``"auto"`` (tile for
        signals, resize otherwise).
    n_designs, sampler, estimator : the Sobol design of the importance (``N (K + 2)`` evaluations of
        ``h`` per class image).
    solver : NMF solver, ``"hals"`` (torch) or ``"sklearn"``.
    n_top_crops : crops kept per concept for display.
    seed : seed of the NMF initialisation and of the Sobol design.
    batch_size : crops (or design rows) per model call; None: the adapter's choice.
    split : optional ``ux.Split(layer, g=..., h=...)`` for models torch.fx cannot cut.
    progress : progress bars (None: the adapter's setting).

    Learned attributes (after :meth:`fit`, or loaded from a bank): ``concepts_`` (K, D),
    ``importances_`` (K,), ``importances_per_image_`` (n_images, K), ``top_crops_`` (K, n_top_crops)
    indices into ``crop_boxes_`` (n_crops, 1 + ndim: image index, then the window start per axis),
    ``crop_coefficients_`` (n_crops, K), ``top_crop_images_`` (K, n_top_crops, C, *patch),
    ``class_id_``, ``layer_``, ``key_``; ``bank_`` is the :class:`ConceptBank` holding them.
    """

    def __init__(self, adapter: ModelAdapter, layer: str, n_concepts: int = 10, *, patch_size=None, stride=None,
                 crop_fit: str = "auto", n_designs: int = 32, sampler: str = "sobol", estimator: str = "jansen",
                 solver: str = "hals", n_top_crops: int = 10, seed: int = 0, batch_size: int | None = None,
                 split: Split | None = None, progress: bool | None = None):
        if not isinstance(adapter, ModelAdapter):
            raise ParameterError(f"Craft: expected a unified_xai.ModelAdapter, got {type(adapter).__name__}; wrap the"
                                 f" model with ux.ModelAdapter(model, input_shape=(C, *spatial))")
        hooks.get_layer(adapter.model, layer)  # a wrong name lists the valid ones
        self.adapter = adapter
        self.layer = layer
        self.n_concepts = _positive_int("n_concepts", n_concepts)
        ndim = adapter.spatial_ndim
        self.patch_size = None if patch_size is None else _per_axis("patch_size", patch_size, ndim)
        self.stride = None if stride is None else _per_axis("stride", stride, ndim)
        if crop_fit not in CROP_FITS:
            raise ParameterError(f"Craft: crop_fit must be one of {', '.join(CROP_FITS)}, got {crop_fit!r}")
        self.crop_fit = crop_fit
        self.n_designs = _positive_int("n_designs", n_designs, low=2)
        sampling.get_sampler(sampler).check(self.n_designs, 1)
        sampling.get_estimator(estimator)
        self.sampler, self.estimator = sampler, estimator
        if solver not in ("hals", "sklearn"):
            raise ParameterError(f"Craft: solver must be 'hals' or 'sklearn', got {solver!r}")
        self.solver = solver
        self.n_top_crops = _positive_int("n_top_crops", n_top_crops)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ParameterError(f"Craft: seed must be an int, got {seed!r}")
        self.seed = int(seed)
        self.batch_size = None if batch_size is None else _positive_int("batch_size", batch_size)
        if split is not None and (not isinstance(split, Split) or split.layer != layer):
            raise ParameterError(f"Craft: split must be a ux.Split for layer {layer!r}")
        self._split = split
        self.progress = progress
        self._fit_images: torch.Tensor | None = None

    # ------------------------------------------------------------ learned state
    def __getattr__(self, name: str):
        # learned attributes (trailing underscore) live in the bank; reading them unfitted is an error
        if name.endswith("_") and not name.startswith("_"):
            bank = self.__dict__.get("bank_")
            if bank is None:
                raise NotFittedError(f"Craft.{name} is not available yet: call craft.fit(images, class_id) first (or"
                                     f" ux.concepts.Craft.from_bank(adapter, bank))")
            # arrays keep their underscore in the bank; its descriptive fields (layer, class_id, key...) do not
            return getattr(bank, name) if hasattr(bank, name) else getattr(bank, name[:-1])
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    @property
    def fitted(self) -> bool:
        return self.__dict__.get("bank_") is not None

    def config(self) -> dict:
        """The parameters that define a bank (part of its key)."""
        # lists, not tuples: the config is stored as JSON and must compare equal after a round trip
        return {"n_concepts": self.n_concepts, "patch_size": _listed(self.patch_size), "stride": _listed(self.stride),
                "crop_fit": self.crop_fit, "n_designs": self.n_designs, "sampler": self.sampler,
                "estimator": self.estimator, "solver": self.solver, "n_top_crops": self.n_top_crops,
                "seed": self.seed}

    @classmethod
    def from_bank(cls, adapter: ModelAdapter, bank: ConceptBank | str | Path, **overrides) -> "Craft":
        """A fitted Craft from a stored bank (a :class:`ConceptBank` or the path of one)."""
        if not isinstance(bank, ConceptBank):
            bank = ConceptBank.load(bank)
        params = {k: v for k, v in bank.config.items() if k in _INIT_KEYS}
        params.update(overrides)
        for key in ("patch_size", "stride"):
            if params.get(key) is not None:
                params[key] = tuple(params[key])
        craft = cls(adapter, bank.layer, **params)
        if bank.model_id and bank.model_id != adapter.name:
            raise InputError(f"this bank was fitted on model {bank.model_id!r}, not {adapter.name!r}; fit a bank for"
                             f" this model (craft.fit) or load the adapter of {bank.model_id!r}")
        craft.bank_ = bank
        return craft

    # ------------------------------------------------------------ geometry
    def _spatial(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(int(s) for s in x.shape[2:])

    def _patch(self, size: tuple[int, ...]) -> tuple[int, ...]:
        patch = self.patch_size or tuple(max(1, round(0.3 * s)) for s in size)
        if any(p > s for p, s in zip(patch, size)):
            raise ParameterError(f"Craft: patch_size {patch} is larger than the inputs {size}")
        return patch

    def _stride(self, patch: tuple[int, ...]) -> tuple[int, ...]:
        return self.stride or tuple(max(1, int(0.8 * p)) for p in patch)

    def _crop_fit(self) -> str:
        if self.crop_fit != "auto":
            return self.crop_fit
        return "tile" if self.adapter.spatial_ndim == 1 else "resize"

    def crop_boxes(self, n_images: int, size: Sequence[int]) -> torch.Tensor:
        """``(n_images * windows, 1 + ndim)`` long: image index, then the window start per axis."""
        size = tuple(size)
        patch = self._patch(size)
        starts = [window_starts(s, p, st) for s, p, st in zip(size, patch, self._stride(patch))]
        per_image = torch.tensor(list(itertools.product(*starts)), dtype=torch.long).view(-1, len(size))
        images = torch.arange(n_images).repeat_interleave(per_image.shape[0])
        return torch.cat([images[:, None], per_image.repeat(n_images, 1)], dim=1)

    def crops(self, images: torch.Tensor, boxes: torch.Tensor, patch: Sequence[int] | None = None) -> torch.Tensor:
        """The crops ``(n, C, *patch)`` of ``images`` at ``boxes`` (gathered in one indexing, no loop)."""
        size = self._spatial(images)
        patch = tuple(patch) if patch is not None else self._patch(size)
        boxes = boxes.to(images.device)
        n, ndim = boxes.shape[0], len(size)
        index = [boxes[:, 0].view(n, *[1] * (ndim + 1)),
                 torch.arange(images.shape[1], device=images.device).view(1, -1, *[1] * ndim)]
        for axis, p in enumerate(patch):
            shape = [1] * (ndim + 2)
            shape[2 + axis] = p
            index.append(boxes[:, 1 + axis].view(n, *[1] * (ndim + 1)) + torch.arange(p, device=images.device).view(shape))
        return images[tuple(index)]

    def fit_to_input(self, crops: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Crops made model inputs of ``size``: zoomed (``resize``) or repeated (``tile``)."""
        size = tuple(size)
        if self._crop_fit() == "resize":
            return F.interpolate(crops, size=size, mode=_LINEAR[len(size)], align_corners=False)
        reps = [math.ceil(s / p) for s, p in zip(size, crops.shape[2:])]
        tiled = crops.repeat(1, 1, *reps)
        return tiled[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]

    # ------------------------------------------------------------ activations
    def split(self) -> Split:
        if self._split is None:
            self._split = self.adapter.split(self.layer)
        return self._split

    def _chunk(self, x: torch.Tensor, rows: int) -> int:
        """Model inputs per call of ``g``: ``batch_size``, else the adapter's choice."""
        return self.batch_size or self.adapter.chunk_size(x, "nograd", rows)

    def _h_chunk(self, act: torch.Tensor, rows: int) -> int:
        """Rebuilt activations per call of ``h``: ``batch_size``, else as many as fit in ~256 MB (``h`` is
        usually cheap — pooling and a linear head — so the adapter's probe of the whole model would not fit it)."""
        if self.batch_size:
            return self.batch_size
        per_row = act[:1].numel() * act.element_size() * 4  # rebuilt activations and h's intermediates
        return int(max(1, min(rows, (256 * 2**20) // max(per_row, 1))))

    def _show(self) -> bool:
        return self.adapter.show_progress(self.progress)

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x)``: the layer's activations of model inputs ``x`` (one chunk)."""
        with self.adapter.evaluating():
            return self.split().g(x)

    @torch.no_grad()
    def crop_activations(self, images: torch.Tensor, boxes: torch.Tensor, label: str = "crops") -> torch.Tensor:
        """Pooled activations ``(n_crops, D)`` of the crops at ``boxes``, chunked (memory: one chunk)."""
        size = self._spatial(images)
        out = []
        chunk = self._chunk(images, boxes.shape[0])
        with progress_bar(boxes.shape[0], f"craft {label}", self._show()) as advance:
            for part in chunks(boxes.shape[0], chunk):
                batch = self.fit_to_input(self.crops(images, boxes[part]), size)
                act = self.activations(batch)
                self._check_nonnegative(act)
                out.append(pooled_activations(self.adapter, act))
                advance(part.stop - part.start)
        return torch.cat(out)

    def _check_nonnegative(self, act: torch.Tensor) -> None:
        low = float(act.min())
        if low >= 0:
            return
        share = float((act < 0).float().mean())
        working = nonnegative_layers(self.adapter)
        remedy = (f"layers of this model whose activations are non-negative: {', '.join(repr(n) for n in working[-6:])}"
                  if working else "this model has no layer with non-negative activations, so CRAFT's NMF cannot"
                  " apply (semi-NMF, which allows a signed W, is not implemented)")
        raise NegativeActivationsError(
            f"layer {self.layer!r} has negative activations (min {low:.3g}, {share:.1%} of values; e.g. a GELU/SiLU,"
            f" a BatchNorm or a residual sum), but CRAFT factorises them with NMF, which needs values >= 0. Pick a"
            f" layer after a ReLU: {remedy}")

    # ------------------------------------------------------------ fit
    def _check_images(self, images, class_id) -> tuple[torch.Tensor, int]:
        x = self.adapter.check_input(images)
        if isinstance(class_id, torch.Tensor) and class_id.numel() == 1:
            class_id = class_id.item()
        if class_id is None or isinstance(class_id, (list, tuple)):
            raise InputError(f"Craft.fit: class_id must be one class index or name, got {class_id!r}")
        return x, int(self.adapter.check_targets(class_id, x[:1])[0])

    def key(self, images: torch.Tensor, class_id: int | str) -> str:
        """The bank key of fitting these images for this class: model, weights, layer, class, config, data."""
        x, class_id = self._check_images(images, class_id)
        return self._key(x, class_id)

    def _key(self, x: torch.Tensor, class_id: int) -> str:
        payload = {"model": self.adapter.name, "weights": model_fingerprint(self.adapter.model), "layer": self.layer,
                   "class": class_id, "config": self.config(), "images": tensor_digest(x)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]

    def fit(self, images, class_id: int | str, bank_dir: str | Path | None = None) -> "Craft":
        """Learn the concept bank of class ``class_id`` from ``images`` ``(n, C, *spatial)`` of that class.

        ``bank_dir``: a folder of banks; a bank with the same key (model and weights, layer, class,
        parameters, images) is loaded instead of refitting, and a new fit is saved there (atomically).
        Returns ``self``.
        """
        x, class_id = self._check_images(images, class_id)
        self._fit_images = x
        key = self._key(x, class_id)
        path = None
        if bank_dir is not None:
            folder = Path(bank_dir)
            clean_stale_temporaries(folder)
            path = folder / bank_filename(self.adapter.name, self.layer, class_id, key)
            if path.exists():
                self.bank_ = ConceptBank.load(path)
                return self
        size = self._spatial(x)
        boxes = self.crop_boxes(x.shape[0], size)
        bank = self._fit_crops(x, boxes, class_id, key)
        self.bank_ = bank
        if path is not None:
            bank.save(path)
        return self

    def _fit_crops(self, x: torch.Tensor, boxes: torch.Tensor, class_id: int, key: str,
                   importance_inputs: torch.Tensor | None = None) -> ConceptBank:
        """NMF of the crops at ``boxes``, importance on ``importance_inputs`` (default: ``x``), sorted."""
        if boxes.shape[0] < self.n_concepts:
            raise InputError(
                f"Craft: {x.shape[0]} image(s) give {boxes.shape[0]} crops, fewer than n_concepts={self.n_concepts};"
                f" give more images, a smaller stride or fewer concepts")
        acts = self.crop_activations(x, boxes)
        U, W = nmf(acts, self.n_concepts, seed=self.seed, solver=self.solver)
        W = W.to(acts.dtype)
        U = U.to(acts.dtype)
        bank = ConceptBank(concepts_=W, importances_=torch.zeros(self.n_concepts), layer=self.layer,
                           class_id=class_id, class_name=self._class_name(class_id), model_id=self.adapter.name,
                           config=self.config(), key=key)
        self.bank_ = bank
        per_image = self.importance(importance_inputs if importance_inputs is not None else x)
        order = torch.argsort(per_image.mean(0), descending=True, stable=True)
        U, per_image = U[:, order], per_image[:, order]
        n_top = min(self.n_top_crops, boxes.shape[0])
        top = torch.argsort(U, dim=0, descending=True, stable=True)[:n_top].T.contiguous()  # (K, n_top)
        patch = self._patch(self._spatial(x))
        top_images = self.crops(x, boxes[top.flatten()], patch).view(self.n_concepts, n_top, x.shape[1], *patch)
        bank.concepts_ = W[order].contiguous()
        bank.importances_ = per_image.mean(0).cpu()
        bank.importances_per_image_ = per_image.cpu()
        bank.crop_boxes_ = boxes.cpu()
        bank.crop_coefficients_ = U.cpu()
        bank.top_crops_ = top.cpu()
        bank.top_crop_images_ = top_images.cpu()
        bank.reconstruction_error_ = float((acts - U @ W[order]).norm() / acts.norm().clamp_min(1e-30))
        return bank

    def _class_name(self, class_id: int) -> str | None:
        names = self.adapter.class_names
        return str(names[class_id]) if names is not None and class_id < len(names) else None

    # ------------------------------------------------------------ encoding
    def _bank(self) -> torch.Tensor:
        return self.concepts_.to(device=self.adapter.device, dtype=self.adapter.dtype)

    @torch.no_grad()
    def transform(self, images) -> torch.Tensor:
        """Pooled concept coefficients ``(N, K)``: NNLS of each input's pooled activations on the bank."""
        x = self.adapter.check_input(images)
        W = self._bank()
        out = []
        for part in chunks(x.shape[0], self._chunk(x, x.shape[0])):
            act = self.activations(x[part])
            out.append(nnls(pooled_activations(self.adapter, act), W))
        return torch.cat(out)

    def _positions(self, act: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """``(B, P, D)`` activations per position and the grid shape (``()`` for pooled layers)."""
        grid = _grid(self.adapter, act)
        if grid.ndim == 2:
            return grid[:, None, :], ()
        return grid.flatten(2).transpose(1, 2), tuple(grid.shape[2:])

    def _layout(self, positions: torch.Tensor, grid: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_positions`: ``(n, P, D)`` back to the layer's layout (tokens keep ``like``'s
        class/register tokens)."""
        if not grid:
            return positions[:, 0]
        if like.ndim == 3 and self.adapter.spatial_ndim == 2:  # ViT tokens
            prefix = like.shape[1] - positions.shape[1]
            return torch.cat([like[:, :prefix].expand(positions.shape[0], -1, -1), positions], dim=1)
        return positions.transpose(1, 2).reshape(positions.shape[0], -1, *grid)

    @torch.no_grad()
    def concept_maps(self, images) -> torch.Tensor:
        """Per-position concept coefficients on the input grid ``(N, K, *spatial)``.

        NNLS of the activations at every position of the layer's grid (bank fixed), resized
        (bi/trilinearly) to the input (a signal model's (frequency, time) layer gives time curves).
        """
        x = self.adapter.check_input(images)
        W = self._bank()
        maps = []
        for part in chunks(x.shape[0], self._chunk(x, x.shape[0])):
            act = self.activations(x[part])
            positions, grid = self._positions(act)
            if not grid:
                raise ParameterError(f"Craft: layer {self.layer!r} outputs pooled features {tuple(act.shape)}, so"
                                     f" concepts have no place; fit the bank at a layer with a spatial grid")
            u = nnls(positions.reshape(-1, positions.shape[2]), W).view(positions.shape[0], positions.shape[1], -1)
            maps.append(to_input_grid(u.transpose(1, 2).reshape(u.shape[0], -1, *grid), x.shape[2:], "concept maps",
                                      mode="linear"))  # linear keeps coefficients >= 0
        return torch.cat(maps)

    # ------------------------------------------------------------ importance
    def _per_input(self, x: torch.Tensor):
        """For each input: its activations ``(1, ...)``, per-position coefficients ``(P, K)`` and the grid
        (``g`` runs on chunks of inputs)."""
        for part in chunks(x.shape[0], self._chunk(x, x.shape[0])):
            acts = self.activations(x[part])
            for i in range(acts.shape[0]):
                positions, grid = self._positions(acts[i:i + 1])
                yield acts[i:i + 1], nnls(positions[0], self._bank()), grid

    def _scores(self, act, coefficients, grid, masks: torch.Tensor, class_id: int) -> torch.Tensor:
        """Class logits of the activations rebuilt from masked concepts: ``h(layout((U * m) W))``."""
        rebuilt = (coefficients[None] * masks[:, None, :]) @ self._bank()  # (n, P, D)
        with self.adapter.evaluating():
            logits = self.split().h(self._layout(rebuilt, grid, act))
        return logits[:, class_id]

    @torch.no_grad()
    def importance(self, images, class_id: int | str | None = None) -> torch.Tensor:
        """Total Sobol indices ``(N, K)`` of the concepts for the class logit, one row per input.

        Concept coefficients of every position are multiplied by a mask ``m in [0, 1]^K`` from the
        replicated design; ``h`` scores the rebuilt activations (the NMF residual left out, as in CRAFT).
        """
        x = self.adapter.check_input(images)
        class_id = self.class_id_ if class_id is None else int(self.adapter.check_targets(class_id, x[:1])[0])
        K = self.concepts_.shape[0]
        rows = self.n_designs * (K + 2)
        out = torch.empty(x.shape[0], K)
        with progress_bar(x.shape[0], "craft importance", self._show() and x.shape[0] > 1) as advance:
            # one Sobol estimate per input, on its own coefficients
            for i, (act, coefficients, grid) in enumerate(self._per_input(x)):
                result = sampling.sobol_indices(
                    lambda m: self._scores(act, coefficients, grid, m, class_id), K, self.n_designs,
                    sampler=self.sampler, estimator=self.estimator, seed=self.seed,
                    batch_size=self._h_chunk(act, rows), device=self.adapter.device, dtype=self.adapter.dtype)
                out[i] = result.total.cpu()
                advance(1)
        return out

    @torch.no_grad()
    def ablation(self, images, class_id: int | str | None = None) -> torch.Tensor:
        """Drop of the class logit when one concept is removed, ``(N, K)``: ``h(U W) - h(U_{-k} W)``."""
        x = self.adapter.check_input(images)
        class_id = self.class_id_ if class_id is None else int(self.adapter.check_targets(class_id, x[:1])[0])
        K = self.concepts_.shape[0]
        masks = torch.ones(K + 1, K, device=self.adapter.device, dtype=self.adapter.dtype)
        masks[1:].fill_diagonal_(0.0)
        out = torch.empty(x.shape[0], K)
        for i, (act, coefficients, grid) in enumerate(self._per_input(x)):
            scores = torch.cat([self._scores(act, coefficients, grid, masks[part], class_id)
                                for part in chunks(K + 1, self._h_chunk(act, K + 1))])
            out[i] = (scores[0] - scores[1:]).cpu()
        return out

    # ------------------------------------------------------------ objectives
    def objective(self, concept: int):
        """Concept ``concept``'s coefficient as an objective (``ux.create("wam", adapter, objective=...)``)."""
        from .objective import Concept

        return Concept(self, concept)

    def direction(self, concept: int, cossim_pow: float = 2.0) -> Direction:
        """Concept ``concept``'s vector as a :class:`~unified_xai.objectives.Direction` (what MACO maximises)."""
        k = self._concept_index(concept)
        return Direction(self.layer, self.concepts_[k], cossim_pow=cossim_pow,
                         name=f"concept {k} of {self.class_name_ or f'class {self.class_id_}'}")

    def _concept_index(self, concept) -> int:
        K = self.concepts_.shape[0]
        if isinstance(concept, bool) or not isinstance(concept, numbers.Integral) or not 0 <= concept < K:
            raise ParameterError(f"concept must be an index in [0, {K}) (concepts are sorted by importance), got"
                                 f" {concept!r}")
        return int(concept)

    # ------------------------------------------------------------ recursion
    def refine(self, concept: int, layer: str, n_concepts: int = 2, images=None, n_crops: int | None = None) -> "Craft":
        """Split concept ``concept`` into ``n_concepts`` sub-concepts at an earlier ``layer`` (CRAFT's recursion).

        The crops that most activate the concept (``n_crops``, default the top 20 % of crops with a
        non-zero coefficient, at least ``2 * n_concepts``) are factorised again at ``layer``; the
        sub-concepts' importance is measured on the 32 most activating of those crops as model inputs. ``images`` are the fit
        images (kept from :meth:`fit`; pass them again for a bank loaded from disk). The child is
        returned and stored in ``bank_.children[concept]`` (saved with the bank).
        """
        k = self._concept_index(concept)
        x = self._fit_images if images is None else self.adapter.check_input(images)
        if x is None:
            raise InputError("Craft.refine: this bank was loaded from disk without its images; pass images=...")
        coefficient = self.crop_coefficients_[:, k]
        active = int((coefficient > 0).sum())
        count = n_crops or max(2 * n_concepts, math.ceil(0.2 * active))
        count = min(count, coefficient.shape[0])
        top = torch.argsort(coefficient, descending=True, stable=True)[:count]
        boxes = self.crop_boxes_[top]
        crops = self.fit_to_input(self.crops(x, boxes), self._spatial(x))
        size = self._spatial(crops)
        # each crop (already a model input) is one whole window of the child
        child = Craft(self.adapter, layer, n_concepts, patch_size=size, stride=size, crop_fit=self.crop_fit,
                      n_designs=self.n_designs, sampler=self.sampler, estimator=self.estimator, solver=self.solver,
                      n_top_crops=self.n_top_crops, seed=self.seed, batch_size=self.batch_size, progress=self.progress)
        key = hashlib.sha256(f"{self.key_}/{k}/{layer}/{n_concepts}/{count}".encode()).hexdigest()[:20]
        child.bank_ = child._fit_crops(crops, child.crop_boxes(count, size), self.class_id_, key,
                                       importance_inputs=crops[:32])
        child._fit_images = crops
        self.bank_.children[k] = child.bank_
        return child

    def __repr__(self) -> str:
        state = (f"fitted: class {self.class_id_}, {self.concepts_.shape[0]} concepts" if self.fitted
                 else "not fitted")
        return f"Craft(layer={self.layer!r}, n_concepts={self.n_concepts}, {state})"


_INIT_KEYS = ("n_concepts", "patch_size", "stride", "crop_fit", "n_designs", "sampler", "estimator", "solver",
              "n_top_crops", "seed")


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Starts of windows of ``patch`` every ``stride`` covering ``[0, size)``: the last one ends at ``size``
    (CRAFT's regular grid leaves the far strip uncovered)."""
    if patch >= size:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def nonnegative_layers(adapter: ModelAdapter) -> list[str]:
    """Layers (execution order) whose activations on a probe input are all >= 0 and not the logits."""
    x = torch.rand(2, *[s if s is not None else 64 for s in adapter.input_shape], device=adapter.device,
                   dtype=adapter.dtype)
    found: dict[str, bool] = {}
    names = {id(m): n for n, m in adapter.model.named_modules() if n}

    def hook(module, inputs, output):
        name = names.get(id(module))
        if name is None or name in found or not isinstance(output, torch.Tensor) or output.ndim < 2:
            return
        found[name] = bool(output.min() >= 0) and output.shape[1] > 1

    modules = [m for n, m in adapter.model.named_modules() if n]
    with torch.no_grad(), adapter.evaluating(), hooks.forward_hooks(modules, hook):
        logits = adapter.forward(x)
    return [n for n, ok in found.items() if ok and not _is_logits(n, adapter, logits)]


def _is_logits(name: str, adapter: ModelAdapter, logits: torch.Tensor) -> bool:
    module = hooks.get_layer(adapter.model, name)
    return isinstance(module, torch.nn.Linear) and module.out_features == logits.shape[1]


def _listed(value):
    return None if value is None else list(value)


def _positive_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ParameterError(f"Craft: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def _per_axis(name: str, value, ndim: int) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if not isinstance(values, (tuple, list)) or len(values) != ndim or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ParameterError(f"Craft: {name} must be a positive int or {ndim} positive ints (one per spatial axis),"
                             f" got {value!r}")
    return tuple(int(v) for v in values)


__all__ = ["Craft", "NegativeActivationsError", "NotFittedError", "nonnegative_layers", "window_starts"]
