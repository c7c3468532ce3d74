"""Base class of every explainer: validated parameters in ``__init__``, work in ``explain``."""
from __future__ import annotations

import time
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from .. import wavelets
from ..core.batching import chunks, progress_bar, sample_blocks
from ..core.errors import InputError, ParameterError
from ..core.explanation import Explanation
from ..core.model import ModelAdapter
from ..core.objectives import Objective, check_objective
from ..core.registry import Param, validate_params
from ..core.spatial import resize  # noqa: F401  (re-exported for the explainers)

#: the DWT parameters shared by every wavelet-domain explainer
WAVELET_PARAMS = {
    "wavelet": Param("haar", types=(str,), check=lambda w: None if w in wavelets.WAVELETS else
                     "not a wavelet that reconstructs exactly; e.g. haar, db2, sym4, coif1, bior2.2",
                     doc="pywt wavelet name"),
    "levels": Param(3, types=(int,), low=1, doc="DWT levels: scales = approximation + one per level"),
    "mode": Param("reflect", choices=tuple(wavelets.MODES), doc="boundary extension of the DWT"),
}


#: what a gradient explainer attributes, shared by every one of them
OBJECTIVE_PARAM = Param(None, allow_none=True, check=check_objective,
                        doc="what to attribute: None = the target logit; an objective from ux.objectives (Logit,"
                            " Channel, Neuron, Direction, a CRAFT Concept; combine with + - and weights)")


def channel_sum(attributions: torch.Tensor, absolute: bool) -> torch.Tensor:
    """(B, C, *spatial) -> (B, *spatial): the ``where`` map of a per-channel attribution."""
    return attributions.abs().sum(1) if absolute else attributions.sum(1)


def expand_baseline(value, x: torch.Tensor, explainer: str) -> torch.Tensor:
    """A baseline as a ``(B, C, *spatial)`` view of the inputs ``x``, ready to be sliced like ``x``.

    ``value`` is a number, one sample ``(C, *spatial)`` (or anything broadcasting to it, such as a
    per-channel ``(C, 1, 1)``), or one baseline per input ``(B, C, *spatial)``.
    """
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, (torch.Tensor, int, float)) or isinstance(value, bool):
        raise InputError(f"{explainer}: baseline must be a number or a tensor, got {type(value).__name__}")
    base = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if not torch.isfinite(base).all():
        raise InputError(f"{explainer}: the baseline contains NaN or infinite values")
    if base.ndim == x.ndim and base.shape[0] not in (1, x.shape[0]):
        raise InputError(f"{explainer}: got {base.shape[0]} baselines for {x.shape[0]} inputs; give one per input"
                         f" (B, C, *spatial), one for all (C, *spatial) or a number")
    try:
        return base.expand_as(x)
    except RuntimeError:
        raise InputError(f"{explainer}: baseline of shape {tuple(base.shape)} does not broadcast to the inputs"
                         f" {tuple(x.shape)}; give a number, one sample (C, *spatial) or one per input"
                         f" (B, C, *spatial)") from None


def sample_rows(segments, count: int, like: torch.Tensor,
                write: Callable[[int, int, int, torch.Tensor], None]) -> torch.Tensor:
    """The ``count`` rows of one chunk, shaped like ``like``'s rows, written in place:
    ``write(k, i0, i1, out)`` fills copy ``k`` of inputs ``i0:i1`` (no per-row temporaries)."""
    out = like.new_empty(count, *like.shape[1:])
    offset = 0
    for k, i0, i1 in segments:
        write(k, i0, i1, out[offset:offset + i1 - i0])
        offset += i1 - i0
    return out


class Explainer:
    """Subclasses declare ``params`` (name -> :class:`Param`) and implement ``_explain``.

    ``explain(x, targets=None)`` validates the inputs against the adapter, explains the predicted
    classes when ``targets`` is None, runs the model in eval mode (the user's mode is restored
    after), times the call and fills the bookkeeping fields of the returned :class:`Explanation`
    (method, params, seed, model id, class names, sample rate, the inputs, elapsed seconds).

    ``pass_kind`` says which passes the method makes (``"grad"``: forward + backward,
    ``"nograd"``: forwards only): it picks the chunk size when the adapter's is ``"auto"``.
    ``aliases`` maps deprecated parameter names to current ones.
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    aliases: ClassVar[dict[str, str]] = {}
    modalities: ClassVar[tuple[str, ...]] = ("signal", "image", "volume")
    pass_kind: ClassVar[str] = "grad"

    def __init__(self, adapter: ModelAdapter, **params: Any):
        if not isinstance(adapter, ModelAdapter):
            raise ParameterError(
                f"{self.name}: expected a unified_xai.ModelAdapter, got {type(adapter).__name__};"
                f" wrap your model with ux.ModelAdapter(model, input_shape=(C, *spatial))"
            )
        if adapter.modality not in self.modalities:
            raise ParameterError(f"{self.name} explains {', '.join(self.modalities)} models, not {adapter.modality}"
                                 f" ones; `uxai list` shows the other explainers")
        self.adapter = adapter
        self.config = validate_params(self.name, self.params, params, self.aliases)
        if isinstance(self.config.get("objective"), Objective):
            self.config["objective"].check(adapter)  # a wrong layer name lists the valid ones, up front
        self._check_config()

    def _check_config(self) -> None:
        """Cross-parameter checks (override when parameters constrain each other)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"

    def chunk_size(self, x: torch.Tensor, rows: int | None = None) -> int:
        """Perturbed rows per model call: the ``batch_size`` parameter, else the adapter's choice
        (``rows``: the rows the job needs, so a small job skips the ``"auto"`` probe)."""
        return self.config.get("batch_size") or self.adapter.chunk_size(x, self.pass_kind, rows)

    def weighted_sums(self, x: torch.Tensor, targets: torch.Tensor, weights: Sequence[float],
                      rows: Callable[[list, int], Any],
                      gradients: Callable[[Any, torch.Tensor], list[torch.Tensor]]) -> list[torch.Tensor]:
        """The one chunk loop of the gradient methods: ``sum_k weights[k] * gradients(row_k)`` per input.

        Rows are laid out sample-major (row ``k * B + i`` is copy ``k`` of input ``i``), so an input's
        sums never depend on the rest of the batch or the chunk size. ``rows(segments, count)`` builds
        one chunk's rows from its ``(k, i0, i1)`` segments; ``gradients(rows, targets)`` returns a list of
        per-row tensors (one per band). Returns the weighted sums, each ``(B, ...)``.
        """
        batch = x.shape[0]
        total = len(weights) * batch
        sums = None
        with progress_bar(total, self.name, self.adapter.show_progress() and total > 1) as advance, \
                self.adapter.frozen():
            for part in chunks(total, self.chunk_size(x, total)):
                segments = list(sample_blocks(part.start, part.stop, batch))
                chunk_targets = torch.cat([targets[i0:i1] for _, i0, i1 in segments])
                grads = gradients(rows(segments, part.stop - part.start), chunk_targets)
                if sums is None:
                    sums = [g.new_zeros(batch, *g.shape[1:]) for g in grads]
                offset = 0
                for k, i0, i1 in segments:
                    for acc, g in zip(sums, grads):
                        acc[i0:i1].add_(g[offset:offset + i1 - i0], alpha=float(weights[k]))
                    offset += i1 - i0
                advance(part.stop - part.start)
        return sums

    def explain(self, x, targets=None) -> Explanation:
        """Explain the decisions on ``x`` ``(B, C, *spatial)`` for ``targets`` (default: predicted classes).

        ``targets``: class indices or names, one per input or one for all.
        """
        start = time.perf_counter()
        x = self.adapter.check_input(x)
        with self.adapter.evaluating():
            targets = self.adapter.check_targets(targets, x)
            explanation = self._explain(x, targets)
        explanation.method = self.name
        explanation.targets = targets
        explanation.params = {k: _plain(v) for k, v in self.config.items()}
        explanation.seed = self.config.get("seed")
        explanation.model_id = self.adapter.name
        explanation.class_names = self.adapter.class_names
        explanation.sample_rate = self.adapter.sample_rate
        if explanation.inputs is None:
            explanation.inputs = x.detach()
        explanation.elapsed = time.perf_counter() - start
        return explanation

    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        raise NotImplementedError


def _plain(value: Any) -> Any:
    """Parameter values as JSON-friendly plain data (tensors become lists, objects their description)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Objective):
        return value.describe()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # paths, datasets, concept banks: their readable description
