"""ModelAdapter: one wrapper around any classifier, shared by every explainer."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import hooks
from .batching import chunks, progress_bar, progress_enabled
from .errors import InputError, ParameterError, UXAIError

MODALITIES = {1: "signal", 2: "image", 3: "volume"}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU."""
    if device == "auto" or device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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

    ``method`` is ``"fx"`` when ``h`` runs only the layers after the split, or ``"hooks"``
    (fallback for models torch.fx cannot trace): then ``h`` re-runs the model on the last input
    given to ``g`` with the layer's output replaced, so the prefix is recomputed.
    """

    layer: str
    g: Callable[[torch.Tensor], torch.Tensor]
    h: Callable[[torch.Tensor], torch.Tensor]
    method: str


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
    batch_size : default chunk size of every batched evaluation; counts perturbed samples. 16 by
        measurement (experiments/bench_wam.py): on CPU, per-sample forward+backward time of ResNet-18 at
        224 and of the built-in audio model is lowest at chunks of 4-16 and grows beyond.
    progress : ``None`` shows progress bars only on a terminal; ``False`` silences them.
    name : model id stored in every Explanation.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int | None], preprocess: Callable | None = None,
                 class_names: Sequence[str] | None = None, device: str | torch.device = "auto",
                 batch_size: int | str = 16, progress: bool | None = None, name: str | None = None,
                 dtype: torch.dtype = torch.float32, sample_rate: float | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if isinstance(preprocess, nn.Module):
            preprocess = preprocess.to(self.device).eval()
        self.preprocess = preprocess
        self.network = _Preprocessed(self.model, preprocess).eval()
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

    def chunk_size(self, x: torch.Tensor, kind: str = "grad") -> int:
        """Rows per model call for inputs shaped like ``x``: ``batch_size``, or the probed choice
        when it is ``"auto"`` (cached per model, sample shape and pass kind ``"grad"`` / ``"nograd"``)."""
        if self.batch_size != "auto":
            return self.batch_size
        from .autobatch import choose_batch_size

        return choose_batch_size(self, tuple(x.shape[1:]), kind)

    def show_progress(self, progress: bool | None = None) -> bool:
        return progress_enabled(self.progress if progress is None else progress)

    # ------------------------------------------------------------ inputs
    def check_input(self, x) -> torch.Tensor:
        """Validate ``x`` against ``input_shape`` and return it as a float batch on the model's device.

        A single sample ``(C, *spatial)`` gets a batch dimension. Raises :class:`InputError` on a
        wrong shape or dtype, or on NaN/inf values.
        """
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise InputError(f"inputs must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if not torch.is_floating_point(x):
            raise InputError(
                f"inputs must be floating point, got dtype {x.dtype}; convert with x.float()"
                f" (and scale to the range the model expects, e.g. /255 for uint8 images)"
            )
        expected = len(self.input_shape)
        if x.ndim == expected:
            x = x.unsqueeze(0)
        if x.ndim != expected + 1:
            raise InputError(
                f"inputs must have shape (B, {', '.join(_dim(s) for s in self.input_shape)}) for this"
                f" {self.modality} model, got {tuple(x.shape)}"
            )
        for axis, (got, want) in enumerate(zip(x.shape[1:], self.input_shape)):
            if want is not None and got != want:
                raise InputError(
                    f"inputs have shape {tuple(x.shape)} but the model expects (B, "
                    f"{', '.join(_dim(s) for s in self.input_shape)}): dimension {axis + 1} is {got}, not {want}"
                )
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise InputError(f"inputs contain {bad} NaN or infinite values; clean them before explaining")
        return x.to(device=self.device, dtype=self.dtype)

    def check_targets(self, targets, x: torch.Tensor) -> torch.Tensor:
        """Targets as a long tensor (B,) on the device; ``None`` means the predicted classes."""
        if targets is None:
            return self.predict(x).argmax(dim=1)
        targets = torch.as_tensor(targets, device=self.device).long().reshape(-1)
        if targets.numel() == 1 and x.shape[0] > 1:
            targets = targets.expand(x.shape[0]).clone()
        if targets.numel() != x.shape[0]:
            raise InputError(f"got {targets.numel()} targets for {x.shape[0]} inputs; give one per input")
        n_classes = self.num_classes(x)
        if (targets < 0).any() or (targets >= n_classes).any():
            raise InputError(f"targets must be class indices in [0, {n_classes}), got {targets.tolist()}")
        return targets

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
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch (preprocessing applied), with autograd as the caller sets it."""
        out = self.network(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise UXAIError(
                f"the model must return logits of shape (B, num_classes); got "
                f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
            )
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int | None = None, progress: bool | None = None) -> torch.Tensor:
        """Logits ``(B, K)``, evaluated in chunks of ``batch_size`` without autograd."""
        batch_size = batch_size or self.chunk_size(x, "nograd")
        outputs = []
        with progress_bar(x.shape[0], "predict", self.show_progress(progress) and x.shape[0] > batch_size) as advance:
            for part in chunks(x.shape[0], batch_size):
                outputs.append(self.forward(x[part]))
                advance(part.stop - part.start)
        return torch.cat(outputs)

    @torch.no_grad()
    def scores(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Target logits ``(B,)`` for one chunk, without autograd."""
        return self.forward(x).gather(1, targets.view(-1, 1)).squeeze(1)

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

    def target_gradient(self, leaves: torch.Tensor | Sequence[torch.Tensor], targets: torch.Tensor,
                        transform: Callable[..., torch.Tensor] | None = None):
        """Target logits and their gradients w.r.t. ``leaves`` for one chunk.

        ``transform(*leaves)`` builds the model input (e.g. an inverse wavelet transform); without it
        the single leaf is the input. Samples are independent, so the gradient of the *sum* of target
        logits gives every per-sample gradient in one backward pass.

        Returns ``(scores (B,), tuple of gradients shaped like leaves)``.
        """
        single = isinstance(leaves, torch.Tensor)
        leaves = [leaves] if single else list(leaves)
        leaves = [leaf.detach().requires_grad_(True) for leaf in leaves]
        with self.frozen(), torch.enable_grad():
            x = transform(*leaves) if transform is not None else leaves[0]
            scores = self.forward(x).gather(1, targets.view(-1, 1)).squeeze(1)
            grads = torch.autograd.grad(scores.sum(), leaves)
        return scores.detach(), grads

    # ------------------------------------------------------------ layers
    def layer_names(self) -> list[str]:
        """Dotted names of the model's layers (relative to the model, preprocessing excluded)."""
        return hooks.layer_names(self.model)

    def layer(self, name: str) -> "LayerHandle":
        hooks.get_layer(self.model, name)  # validates the name
        return LayerHandle(self, name)

    def capture(self, x: torch.Tensor, layers: str | Sequence[str], as_grid: bool = False,
                with_grad: bool = False) -> dict[str, torch.Tensor] | torch.Tensor:
        """Activations of one or several layers in ONE forward pass.

        ``as_grid`` lays token activations ``(B, N, D)`` out as a spatial grid ``(B, D, h, w)``.
        Returns a tensor for one layer name, a dict for a list of names.
        """
        single = isinstance(layers, str)
        names = [layers] if single else list(layers)
        x = self.check_input(x)
        context = torch.enable_grad() if with_grad else torch.no_grad()
        with context:
            acts = hooks.capture_activations(self.model, lambda: self.forward(x), names,
                                             stop_early=not with_grad)
        if as_grid:
            acts = {k: self._as_grid(v) for k, v in acts.items()}
        return acts[names[0]] if single else acts

    def _as_grid(self, act: torch.Tensor) -> torch.Tensor:
        if act.ndim != 3:
            return act
        return hooks.tokens_to_grid(act, hooks.prefix_token_count(self.model, act.shape[1]))

    def split(self, layer: str) -> Split:
        """``g`` (input -> activations of ``layer``) and ``h`` (activations -> logits).

        Uses torch.fx where the model traces, so ``h`` runs only the layers after the split;
        otherwise falls back to hooks (see :class:`Split`). Both run on the adapter's device.
        """
        module = hooks.get_layer(self.model, layer)
        preprocess = self.preprocess
        try:
            g_graph, h_graph = hooks.fx_split(self.model, layer)
        except hooks.FxSplitError as exc:
            if "skip connection" in str(exc):
                raise
            return self._hook_split(layer, module)

        def g(x: torch.Tensor) -> torch.Tensor:
            return g_graph(preprocess(x) if preprocess is not None else x)

        return Split(layer, g, h_graph, "fx")

    def _hook_split(self, layer: str, module: nn.Module) -> Split:
        last_input: dict[str, torch.Tensor] = {}

        def g(x: torch.Tensor) -> torch.Tensor:
            last_input["x"] = x.detach()
            return hooks.capture_activations(self.model, lambda: self.forward(x), [layer], stop_early=True)[layer]

        def h(acts: torch.Tensor) -> torch.Tensor:
            if "x" in last_input and last_input["x"].shape[0] == acts.shape[0]:
                x = last_input["x"]
            elif "x" in last_input:
                x = last_input["x"][:1].expand(acts.shape[0], *last_input["x"].shape[1:])
            else:
                x = self.example_input(acts.shape[0])
            with hooks.replace_output(module, acts):
                return self.forward(x)

        return Split(layer, g, h, "hooks")

    @torch.no_grad()
    def layer_shapes(self, x: torch.Tensor | None = None) -> list[tuple[str, str, tuple]]:
        """(name, module type, output shape) of every layer for one example input."""
        x = self.example_input(1) if x is None else self.check_input(x)[:1]
        shapes: dict[int, tuple] = {}

        def hook(module, inputs, output):
            try:
                shapes[id(module)] = tuple(hooks._first_tensor(output).shape)
            except UXAIError:
                shapes[id(module)] = ()

        modules = [m for _, m in self.model.named_modules()][1:]
        with hooks.forward_hooks(modules, hook):
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


def _dim(size: int | None) -> str:
    return "any" if size is None else str(size)
