"""The one place where unified-xai touches model internals.

Forward hooks are registered for the duration of one call and removed in a ``finally``
block, so no hook survives a normal call, a bad argument or a forward that raises.
``split_model`` cuts a model into ``g`` (input -> activations of a layer) and ``h``
(activations -> logits) with torch.fx where the model traces; see :func:`split_model`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterable, Sequence

import torch
import torch.fx
from torch import nn

from .errors import LayerError, UXAIError, suggest


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of every sub-module of ``model`` (the root excluded)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Sub-module by dotted name; a wrong name raises an error listing the closest valid names."""
    modules = dict(model.named_modules())
    if not isinstance(name, str) or name not in modules or name == "":
        valid = layer_names(model)
        raise LayerError(
            f"no layer named {name!r} in {type(model).__name__}; closest valid names: {suggest(str(name), valid)}."
            f" `uxai info MODEL` or ModelAdapter.layer_names() lists all {len(valid)} layers."
        )
    return modules[name]


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for value in output.values():
            if isinstance(value, torch.Tensor):
                return value
    raise UXAIError(f"layer output of type {type(output).__name__} holds no tensor to capture")


@contextmanager
def forward_hooks(modules: Iterable[nn.Module], hook: Callable):
    """Register ``hook`` as a forward hook on each module; always removed on exit."""
    handles = []
    try:
        for module in modules:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _StopForward(BaseException):
    """Raised by a hook to stop a forward pass once the wanted activations are captured.

    A ``BaseException``, so a model's own ``except Exception`` cannot swallow it.
    """


def capture_activations(model: nn.Module, run: Callable[[], object], names: Sequence[str],
                        stop_early: bool = False) -> dict[str, torch.Tensor]:
    """Activations of several layers, captured in ONE forward pass (``run()`` does the forward).

    A module called several times in one forward gives the output of its FIRST call, with or
    without ``stop_early`` (which abandons the forward once every requested layer has fired).
    """
    modules = {name: get_layer(model, name) for name in names}
    by_module: dict[int, list[str]] = {}
    for name, module in modules.items():
        by_module.setdefault(id(module), []).append(name)
    captured: dict[str, torch.Tensor] = {}

    def hook(module, inputs, output):
        for name in by_module[id(module)]:
            captured.setdefault(name, _first_tensor(output))
        if stop_early and len(captured) == len(modules):
            raise _StopForward

    unique = {id(m): m for m in modules.values()}.values()
    with forward_hooks(unique, hook):
        try:
            run()
        except _StopForward:
            pass
    missing = [n for n in names if n not in captured]
    if missing:
        raise UXAIError(f"layers {missing} were not called during the forward pass; pick layers the model"
                        f" runs (`uxai info MODEL` lists the layers with their output shapes)")
    return captured


_HOOK_STORES = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


@contextmanager
def hooks_restored(model: nn.Module):
    """Inside the block third-party code may hook ``model`` (lucent's ``render_vis`` hooks every module
    and never removes them); on exit every hook added inside is removed, the model's own are kept."""
    before = {(id(m), attr): set(getattr(m, attr, None) or ()) for m in model.modules() for attr in _HOOK_STORES}
    try:
        yield
    finally:
        for module in model.modules():
            for attr in _HOOK_STORES:
                store = getattr(module, attr, None)
                if store:
                    for key in [k for k in store if k not in before.get((id(module), attr), set())]:
                        del store[key]


def count_hooks(model: nn.Module) -> int:
    """Number of hooks registered on ``model`` and its sub-modules (tests use it)."""
    stores = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(module, attr, None) or ()) for module in model.modules() for attr in stores)


# ------------------------------------------------------------------ token layers
def prefix_token_count(model: nn.Module, n_tokens: int) -> int:
    """Number of class/register tokens before the patch tokens of a ViT-like layer output.

    The model's own ``num_prefix_tokens`` when the rest forms a square grid (timm ViTs), else the
    smallest count that leaves a square (e.g. 0 for the patch embedding's output).
    """
    def square(n: int) -> bool:
        return n > 0 and math.isqrt(n) ** 2 == n

    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int) and square(n_tokens - count):
        return count
    for prefix in range(0, 9):
        if square(n_tokens - prefix):
            return prefix
    raise UXAIError(f"cannot lay {n_tokens} tokens out as a square grid of patches; this layer's output is not a"
                    f" ViT token sequence (pick another layer)")


def tokens_to_grid(tokens: torch.Tensor, n_prefix: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, N, D) token activations -> (B, D, h, w) grid of the patch tokens (prefix tokens dropped)."""
    if tokens.ndim != 3:
        raise UXAIError(f"token activations must be (B, N, D), got shape {tuple(tokens.shape)}")
    patches = tokens[:, n_prefix:, :]
    if grid is None:
        side = math.isqrt(patches.shape[1])
        if side * side != patches.shape[1]:
            raise UXAIError(f"{patches.shape[1]} patch tokens do not form a square grid; pass grid=(h, w)")
        grid = (side, side)
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


# ------------------------------------------------------------------ g / h split
class _SplitTracer(torch.fx.Tracer):
    """fx tracer that keeps the split layer (and the usual leaves) as one call_module node."""

    def __init__(self, leaf: nn.Module, extra_leaves: tuple = ()):
        autowrap_functions, leaf_types = _timm_tracing_hints()
        super().__init__(autowrap_functions=autowrap_functions)
        self.leaf = leaf
        self.leaf_types = tuple(leaf_types) + tuple(extra_leaves)

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if module is self.leaf:
            return True
        if self.leaf_types and isinstance(module, self.leaf_types):
            return True
        return super().is_leaf_module(module, qualified_name)


def _timm_tracing_hints() -> tuple[tuple, tuple]:
    """Functions and module types timm marks as not fx-traceable (empty without timm)."""
    try:
        from timm.models import _features_fx as fx_hints
    except Exception:
        return (), ()
    return tuple(fx_hints.get_notrace_functions()), tuple(fx_hints.get_notrace_modules())


class SplitError(UXAIError):
    """The model cannot be cut exactly at this layer."""


_SPLIT_REMEDY = ("split at another layer (`uxai info MODEL` lists them), or give the two halves yourself:"
                 " ux.Split(layer, g=input_to_activations, h=activations_to_logits)")


def fx_split(model: nn.Module, layer: str) -> tuple[torch.fx.GraphModule, torch.fx.GraphModule]:
    """``g`` and ``h`` as fx GraphModules sharing ``model``'s sub-modules and parameters.

    ``h`` is a pure function of the activations: every split that cannot guarantee it (an
    untraceable model, a layer called twice, a skip connection across the cut) is refused.
    """
    target = get_layer(model, layer)
    tracer = _SplitTracer(target)
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        raise SplitError(
            f"cannot split {type(model).__name__} at {layer!r}: torch.fx cannot trace its forward"
            f" ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Make the forward traceable (no Python"
            f" branching on tensor values, no unpacking of tensor shapes) or {_SPLIT_REMEDY}") from exc
    nodes = list(graph.nodes)
    layer_nodes = [n for n in nodes if n.op == "call_module" and tracer.root.get_submodule(n.target) is target]
    if len(layer_nodes) != 1:
        why = ("is never called as a module (it sits inside a block torch.fx treats as one leaf, or the forward"
               " uses its parameters directly)") if not layer_nodes else f"is called {len(layer_nodes)} times"
        raise SplitError(f"cannot split at {layer!r}: the layer {why}, so no single cut gives its activations;"
                         f" {_SPLIT_REMEDY}")
    cut = layer_nodes[0]
    cut_index = nodes.index(cut)
    placeholders = [n for n in nodes if n.op == "placeholder"]

    # g: everything up to the layer, returning its output
    g_graph = torch.fx.Graph()
    env: dict = {}
    for node in nodes[: cut_index + 1]:
        env[node] = g_graph.node_copy(node, lambda n: env[n])
    g_graph.output(env[cut])

    # h: a placeholder for the activations, then the nodes after the layer; any later use of
    # an input-dependent value from before the layer means h cannot be fed activations alone.
    # only the first placeholder is the input; later ones are optional arguments with defaults
    depends_on_input = set(placeholders[:1])
    for node in nodes[:cut_index]:
        if any(arg in depends_on_input for arg in node.all_input_nodes):
            depends_on_input.add(node)
    h_graph = torch.fx.Graph()
    env = {cut: h_graph.placeholder("activations")}
    for node in nodes[:cut_index]:  # input-independent constants (parameters, shapes of buffers)
        if node not in depends_on_input:
            env[node] = h_graph.node_copy(node, lambda n: env[n])
    for node in nodes[cut_index + 1:]:
        crossing = [a for a in node.all_input_nodes if a not in env]
        if crossing:
            raise SplitError(
                f"cannot split at {layer!r}: a later operation ({node.name}) also uses {crossing[0].name}, computed"
                f" before the layer (a skip connection crosses the split), so h would not be a function of the"
                f" activations alone; split at an enclosing block instead, or {_SPLIT_REMEDY}")
        env[node] = h_graph.node_copy(node, lambda n: env[n])
    g_module = torch.fx.GraphModule(tracer.root, g_graph, class_name="SplitG")
    h_module = torch.fx.GraphModule(tracer.root, h_graph, class_name="SplitH")
    return g_module, h_module
