"""ModelAdapter: one wrapper around any classifier, shared by every explainer."""
from __future__ import annotations

import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import hooks, objectives
from .batching import chunks, progress_bar, progress_enabled
from .errors import InputError, ParameterError, UXAIError

MODALITIES = {1: "signal", 2: "image", 3: "volume"}
_WARNED_TRAIN_MODE: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()
#: with ``batch_size="auto"``, a job of at most this many rows runs as one chunk, unprobed
SMALL_JOB_ROWS = 16


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; asking for CUDA without a GPU is an error."""
    if device == "auto" or device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r} was asked for but this machine has no CUDA GPU visible to torch;"
                             f" use device='auto' or 'cpu'")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ParameterError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return resolved


class _Preprocessed(nn.Module):
    """The classifier with its preprocessing in front: what the adapter differentiates."""

    def __init__(self, model: nn.Module, preprocess: Callable | None):
        super().__init__()
        self.model = model
        self.preprocess = preprocess

    def forward(self, x):
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.model(x)


@dataclass
class Split:
    """``g`` (input -> activations) and ``h`` (activations -> logits) with ``h(g(x)) == logits``.

    ``h`` is a pure function of the activations (it runs only the layers after the split), so it
    can be fed activations that never went through ``g`` (e.g. rebuilt from concepts).
    ``method`` is ``"fx"`` for a torch.fx cut made by :meth:`ModelAdapter.split`, ``"user"`` when
    built by hand: ``ux.Split(layer, g=..., h=...)``. Unpacks as ``g, h = adapter.split(layer)``.
    """

    layer: str
    g: Callable[[torch.Tensor], torch.Tensor]
    h: Callable[[torch.Tensor], torch.Tensor]
    method: str = "user"

    def __iter__(self):
        return iter((self.g, self.h))


class ModelAdapter:
    """Wrap a classifier for explanation.

    Parameters
    ----------
    model : the classifier, mapping a batch ``(B, C, *spatial)`` (after ``preprocess``) to logits ``(B, K)``.
    input_shape : ``(C, *spatial)``; its length gives the modality: 1 spatial dim = signal (audio),
        2 = image, 3 = volume. A spatial size may be ``None`` to accept any size.
    preprocess : optional callable applied before the model (e.g. normalisation). Explanations and
        perturbations live in the space *before* it.
    class_names : optional names of the K classes.
    device : ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:0"``...
    batch_size : rows (perturbed samples) per model call of every batched evaluation. ``"auto"``
        (default) probes a few chunk sizes once per model, sample shape and pass kind (gradient or
        no-grad) within a memory budget and caches the choice (:mod:`unified_xai.core.autobatch`;
        experiments/bench_batch.py: within 1-4 % of the best fixed size on ResNet-18 and the built-ins).
    progress : ``None`` shows progress bars only on a terminal; ``False`` silences them.
    name : model id stored in every Explanation.
    dtype : floating dtype of the inputs; must be the model's parameter dtype.
    sample_rate : samples per second of an audio model's input (file readers resample to it, figures
        show seconds and Hz).

    The model is moved to ``device`` but otherwise left as it came: every call runs it in eval mode
    and restores each module's mode after; a model that arrives in train mode gets one warning.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int | None], preprocess: Callable | None = None,
                 class_names: Sequence[str] | None = None, device: str | torch.device = "auto",
                 batch_size: int | str = "auto", progress: bool | None = None, name: str | None = None,
                 dtype: torch.dtype = torch.float32, sample_rate: float | None = None):
        if not isinstance(model, nn.Module):
            raise ParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        input_shape = tuple(None if s is None else int(s) for s in input_shape)
        if len(input_shape) not in (2, 3, 4) or input_shape[0] is None:
            raise InputError(
                f"input_shape must be (C, *spatial) with 1 to 3 spatial dims and a fixed channel count,"
                f" got {input_shape}; e.g. (3, 224, 224) for images, (1, 16000) for audio, (1, 32, 32, 32) for volumes"
            )
        if batch_size != "auto" and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ParameterError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
        if sample_rate is not None and not (isinstance(sample_rate, (int, float)) and sample_rate > 0):
            raise ParameterError(f"sample_rate must be a positive number of samples per second, got {sample_rate!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ParameterError(f"dtype must be a floating torch dtype such as torch.float32, got {dtype!r}")
        params = [p for p in model.parameters() if p.is_floating_point()]
        if device in ("auto", None) and params and params[0].device.type == "cuda":
            self.device = params[0].device  # already on a GPU: keep it there
        else:
            self.device = resolve_device(device)
        if params and params[0].dtype != dtype:
            raise ParameterError(
                f"the model's parameters are {params[0].dtype} but the adapter's dtype is {dtype}; pass"
                f" dtype={params[0].dtype} or convert the model first (e.g. model.to({dtype}))")
        if model.training and model not in _WARNED_TRAIN_MODE:
            _WARNED_TRAIN_MODE.add(model)
            warnings.warn(
                f"{type(model).__name__} is in train mode; explanations run it in eval mode (Dropout off,"
                f" BatchNorm statistics frozen) and restore train mode after each call", UserWarning, stacklevel=2)
        self.model = model.to(self.device)
        if isinstance(preprocess, nn.Module):
            preprocess = preprocess.to(self.device)
        self.preprocess = preprocess
        self.network = _Preprocessed(self.model, preprocess)
        self._eval_depth = 0
        self._splits: dict[str, Split] = {}
        self.input_shape = input_shape
        self.class_names = list(class_names) if class_names is not None else None
        self.batch_size = batch_size
        self.sample_rate = None if sample_rate is None else float(sample_rate)
        self.progress = progress
        self.name = name or type(model).__name__
        self.dtype = dtype

    # ------------------------------------------------------------ description
    @property
    def spatial_ndim(self) -> int:
        return len(self.input_shape) - 1

    @property
    def modality(self) -> str:
        return MODALITIES[self.spatial_ndim]

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    def __repr__(self) -> str:
        return (f"ModelAdapter({self.name}, input_shape={self.input_shape}, modality={self.modality!r},"
                f" device={self.device}, batch_size={self.batch_size})")

    def chunk_size(self, x: torch.Tensor, kind: str = "grad", rows: int | None = None) -> int:
        """Rows per model call for inputs shaped like ``x``: ``batch_size``, or the probed choice
        when it is ``"auto"`` (cached per model, sample shape and pass kind ``"grad"`` / ``"nograd"``).

        ``rows``: how many rows the job needs; a job of at most :data:`SMALL_JOB_ROWS` rows runs as one
        chunk without a probe (the probe would cost more than the job), unless a choice is cached.
        """
        if self.batch_size != "auto":
            return self.batch_size
        from .autobatch import cached_choice, choose_batch_size

        sample_shape = tuple(x.shape[1:])
        if rows is not None and rows <= SMALL_JOB_ROWS and cached_choice(self, sample_shape, kind) is None:
            return max(int(rows), 1)
        return choose_batch_size(self, sample_shape, kind)

    def show_progress(self, progress: bool | None = None) -> bool:
        return progress_enabled(self.progress if progress is None else progress)

    # ------------------------------------------------------------ inputs
    def check_input(self, x) -> torch.Tensor:
        """Validate ``x`` against ``input_shape`` and return it as a float batch on the model's device.

        A single sample ``(C, *spatial)`` gets a batch dimension. Raises :class:`InputError` on a
        wrong type, shape or dtype, an empty batch, or NaN/inf values.
        """
        if isinstance(x, np.ndarray):
            if x.dtype.byteorder not in ("=", "|", "<" if np.little_endian else ">"):
                x = x.astype(x.dtype.newbyteorder("="))
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise InputError(f"inputs must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if not torch.is_floating_point(x):
            raise InputError(
                f"inputs must be floating point, got dtype {str(x.dtype).replace('torch.', '')}; convert and scale"
                f" them to the range the model expects, e.g. x.float() / 255 for 8-bit images"
            )
        expected = len(self.input_shape)
        if x.ndim == expected:
            x = x.unsqueeze(0)
        if x.ndim != expected + 1:
            raise InputError(
                f"inputs must have shape (B, {', '.join(_dim(s) for s in self.input_shape)}) for this"
                f" {self.modality} model, got {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise InputError("the batch is empty (0 inputs); give at least one input")
        for axis, (got, want) in enumerate(zip(x.shape[1:], self.input_shape)):
            if want is not None and got != want:
                raise InputError(
                    f"inputs have shape {tuple(x.shape)} but the model expects (B, "
                    f"{', '.join(_dim(s) for s in self.input_shape)}): dimension {axis + 1} is {got}, not {want}"
                )
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise InputError(f"inputs contain {bad} NaN or infinite values; clean them before explaining")
        self.check_model()
        return x.to(device=self.device, dtype=self.dtype)

    def check_model(self) -> None:
        """The model must still be on the adapter's device and dtype (a user may move it later)."""
        param = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        if param is not None and (param.device != self.device or param.dtype != self.dtype):
            raise InputError(
                f"the model is now on {param.device} as {param.dtype}, but this adapter was built for {self.device}"
                f" as {self.dtype}; move it back (model.to({str(self.device)!r}, {self.dtype})) or build a new"
                f" ModelAdapter")

    def check_targets(self, targets, x: torch.Tensor) -> torch.Tensor:
        """Targets as a long tensor (B,) on the device; ``None`` means the predicted classes.

        Targets are class indices or class names (matched case-insensitively to ``class_names``).
        """
        if targets is None:
            return self.predict(x).argmax(dim=1)
        n_classes = self.num_classes(x)
        values = targets.tolist() if isinstance(targets, (torch.Tensor, np.ndarray)) else targets
        if isinstance(values, (str, int, float, np.generic)) or values is None:
            values = [values]
        indices = [self.class_index(v, n_classes) for v in list(values)]
        if len(indices) == 1 and x.shape[0] > 1:
            indices = indices * x.shape[0]
        if len(indices) != x.shape[0]:
            raise InputError(f"got {len(indices)} targets for {x.shape[0]} inputs; give one per input, or one for all")
        return torch.tensor(indices, dtype=torch.long, device=self.device)

    def class_index(self, value, n_classes: int) -> int:
        """A class given by index or name (case-insensitive) as an index in ``[0, n_classes)``."""
        if isinstance(value, str):
            if self.class_names is None:
                raise InputError(f"target {value!r} is a class name but this model has no class names; give an index")
            lowered = [c.lower() for c in self.class_names]
            if value.lower() in lowered:
                return lowered.index(value.lower())
            from .errors import suggest

            raise InputError(f"unknown class name {value!r}; closest: {suggest(value.lower(), self.class_names)}")
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(f"targets must be class indices or names, got {value!r} ({type(value).__name__})")
        if float(value) != int(value):
            raise InputError(f"target {value!r} is not a whole class index; give an int in [0, {n_classes})")
        if not 0 <= int(value) < n_classes:
            raise InputError(f"target {int(value)} is out of range: class indices are in [0, {n_classes})")
        return int(value)

    def num_classes(self, x: torch.Tensor | None = None) -> int:
        if self.class_names is not None:
            return len(self.class_names)
        if not hasattr(self, "_num_classes"):
            probe = x[:1] if x is not None else self.example_input(1)
            self._num_classes = int(self.predict(probe).shape[1])
        return self._num_classes

    def example_input(self, batch: int = 1, default_size: int = 64) -> torch.Tensor:
        """Zeros of the input shape (free spatial sizes get ``default_size``)."""
        shape = [s if s is not None else default_size for s in self.input_shape]
        return torch.zeros(batch, *shape, device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------ evaluation
    @contextmanager
    def evaluating(self):
        """The model in eval mode inside the block; every module's own mode restored after.

        Re-entrant: explainers wrap a whole explanation, the entry points below wrap themselves.
        """
        if self._eval_depth:
            self._eval_depth += 1
            try:
                yield
            finally:
                self._eval_depth -= 1
            return
        modes = [(m, m.training) for m in self.network.modules()]
        self._eval_depth = 1
        try:
            self.network.eval()
            yield
        finally:
            self._eval_depth = 0
            for module, training in modes:
                module.training = training

    @contextmanager
    def frozen(self):
        """Parameters do not require grad inside the block (only input gradients are computed)."""
        params = [p for p in self.network.parameters() if p.requires_grad]
        try:
            for p in params:
                p.requires_grad_(False)
            yield
        finally:
            for p in params:
                p.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch (preprocessing applied), with autograd and mode as the caller sets them."""
        out = self.network(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise UXAIError(
                f"the model must return logits of shape (B, num_classes); got "
                f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
            )
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int | None = None, progress: bool | None = None) -> torch.Tensor:
        """Logits ``(B, K)`` in eval mode, evaluated in chunks of ``batch_size`` without autograd."""
        x = self.check_input(x)
        batch_size = batch_size or self.chunk_size(x, "nograd", rows=x.shape[0])
        outputs = []
        with self.evaluating(), progress_bar(x.shape[0], "predict",
                                             self.show_progress(progress) and x.shape[0] > batch_size) as advance:
            for part in chunks(x.shape[0], batch_size):
                outputs.append(self.forward(x[part]))
                advance(part.stop - part.start)
        return torch.cat(outputs)

    @torch.no_grad()
    def scores(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Target logits ``(B,)`` for one chunk, in eval mode, without autograd."""
        with self.evaluating():
            return self.forward(x).gather(1, targets.view(-1, 1)).squeeze(1)

    def objective_scores(self, x: torch.Tensor, objective, targets: torch.Tensor,
                         extra_layers: Sequence[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward of ``x``: the objective's score per input ``(B,)`` and the activations it read
        (plus ``extra_layers``), with autograd and mode as the caller sets them.

        ``objective``: None (each input's target logit), a class index or name, or an
        :class:`~unified_xai.core.objectives.Objective`. Its layers are read by hooks that live for this
        call only; when no term needs the logits the forward stops after the last layer read.
        """
        objective = objectives.as_objective(objective)
        names = list(dict.fromkeys(list(objective.layers) + list(extra_layers)))
        if not names:
            logits = self.forward(x)
            return objective.value(self, logits, {}, targets), {}
        out: dict[str, torch.Tensor] = {}

        def run():
            out["logits"] = self.forward(x)

        acts = hooks.capture_activations(self.model, run, names, stop_early=not objective.needs_logits)
        return objective.value(self, out.get("logits"), acts, targets), acts

    def target_gradient(self, leaves: torch.Tensor | Sequence[torch.Tensor], targets: torch.Tensor,
                        transform: Callable[..., torch.Tensor] | None = None, objective=None):
        """Objective scores (default: target logits) and their gradients w.r.t. ``leaves`` for one chunk,
        in eval mode.

        ``transform(*leaves)`` builds the model input (e.g. an inverse wavelet transform); without it
        the single leaf is the input. Samples are independent, so the gradient of the *sum* of the
        scores gives every per-sample gradient in one backward pass. ``objective``: see
        :meth:`objective_scores`.

        Returns ``(scores (B,), tuple of gradients shaped like leaves)``.
        """
        single = isinstance(leaves, torch.Tensor)
        leaves = [leaves] if single else list(leaves)
        leaves = [leaf.detach().requires_grad_(True) for leaf in leaves]
        with self.evaluating(), self.frozen(), torch.enable_grad():
            x = transform(*leaves) if transform is not None else leaves[0]
            if objective is None:
                scores = self.forward(x).gather(1, targets.view(-1, 1)).squeeze(1)
            else:
                scores, _ = self.objective_scores(x, objective, targets)
            _check_differentiable(scores, objective)
            grads = torch.autograd.grad(scores.sum(), leaves)
        return scores.detach(), grads

    def layer_gradient(self, x: torch.Tensor, targets: torch.Tensor, layer: str,
                       objective=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Activations of ``layer`` (its first call) and the gradient of the objective (default: the
        target logits) w.r.t. them."""
        hooks.get_layer(self.model, layer)
        with self.evaluating(), self.frozen(), torch.enable_grad():
            # the input requires grad so every layer after it does, even with the user's frozen weights
            scores, acts = self.objective_scores(x.detach().requires_grad_(True), objective, targets, [layer])
            act = acts[layer]
            if not act.requires_grad:
                raise UXAIError(f"the output of layer {layer!r} does not depend on the input through autograd"
                                f" (e.g. an embedding lookup); pick a later layer")
            _check_differentiable(scores, objective)
            (grad,) = torch.autograd.grad(scores.sum(), act, allow_unused=True)
        if grad is None:  # the objective reads a layer before this one
            grad = torch.zeros_like(act)
        return act.detach(), grad

    # ------------------------------------------------------------ layers
    def layer_names(self) -> list[str]:
        """Dotted names of the model's layers (relative to the model, preprocessing excluded)."""
        return hooks.layer_names(self.model)

    def layer(self, name: str) -> "LayerHandle":
        hooks.get_layer(self.model, name)  # validates the name
        return LayerHandle(self, name)

    def capture(self, x: torch.Tensor, layers: str | Sequence[str], as_grid: bool = False,
                with_grad: bool = False) -> dict[str, torch.Tensor] | torch.Tensor:
        """Activations of one or several layers in ONE forward pass, in eval mode.

        A layer called several times gives its FIRST call's output (with or without gradients).
        ``as_grid`` lays token activations ``(B, N, D)`` out as a spatial grid ``(B, D, h, w)``.
        Returns a tensor for one layer name, a dict for a list of names.
        """
        single = isinstance(layers, str)
        names = [layers] if single else list(layers)
        x = self.check_input(x)
        context = torch.enable_grad() if with_grad else torch.no_grad()
        with self.evaluating(), context:
            acts = hooks.capture_activations(self.model, lambda: self.forward(x), names,
                                             stop_early=not with_grad)
        if as_grid:
            acts = {k: self.as_grid(v) for k, v in acts.items()}
        return acts[names[0]] if single else acts

    def as_grid(self, act: torch.Tensor) -> torch.Tensor:
        """Token activations ``(B, N, D)`` as a grid ``(B, D, h, w)`` (class/register tokens dropped);
        spatial activations are returned unchanged."""
        if act.ndim != 3 or self.spatial_ndim != 2:
            return act
        return hooks.tokens_to_grid(act, hooks.prefix_token_count(self.model, act.shape[1]))

    def split(self, layer: str) -> Split:
        """``g`` (input -> activations of ``layer``) and ``h`` (activations -> logits), cut by torch.fx.

        ``h`` runs only the layers after the split and is a pure function of the activations; a cut
        that cannot guarantee it (untraceable forward, layer called twice, skip connection across the
        cut) raises :class:`~unified_xai.core.hooks.SplitError` saying why. Both run in eval mode on
        the adapter's device. Cached per layer.
        """
        hooks.get_layer(self.model, layer)
        if layer not in self._splits:
            g_graph, h_graph = hooks.fx_split(self.model, layer)
            preprocess = self.preprocess

            def g(x: torch.Tensor) -> torch.Tensor:
                with self.evaluating():
                    return g_graph(preprocess(x) if preprocess is not None else x)

            def h(acts: torch.Tensor) -> torch.Tensor:
                with self.evaluating():
                    return h_graph(acts)

            self._splits[layer] = Split(layer, g, h, "fx")
        return self._splits[layer]

    @torch.no_grad()
    def layer_shapes(self, x: torch.Tensor | None = None) -> list[tuple[str, str, tuple]]:
        """(name, module type, output shape) of every layer for one example input."""
        x = self.example_input(1) if x is None else self.check_input(x)[:1]
        shapes: dict[int, tuple] = {}

        def hook(module, inputs, output):
            try:
                shapes.setdefault(id(module), tuple(hooks._first_tensor(output).shape))
            except UXAIError:
                shapes.setdefault(id(module), ())

        modules = [m for _, m in self.model.named_modules()][1:]
        with self.evaluating(), hooks.forward_hooks(modules, hook):
            self.forward(x)
        return [(n, type(m).__name__, shapes.get(id(m), ())) for n, m in self.model.named_modules() if n]


class LayerHandle:
    """A named layer of an adapter: ``capture(x)`` and ``split()``."""

    def __init__(self, adapter: ModelAdapter, name: str):
        self.adapter = adapter
        self.name = name

    def capture(self, x: torch.Tensor, as_grid: bool = False) -> torch.Tensor:
        return self.adapter.capture(x, self.name, as_grid=as_grid)

    def split(self) -> Split:
        return self.adapter.split(self.name)


def _check_differentiable(scores: torch.Tensor, objective) -> None:
    if not scores.requires_grad:
        raise UXAIError(f"the objective {objectives.as_objective(objective).describe()} does not depend on the input"
                        f" through autograd; pick a layer after the input (not an embedding lookup)")


def _dim(size: int | None) -> str:
    return "any" if size is None else str(size)
