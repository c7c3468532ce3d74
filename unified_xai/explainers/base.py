"""Base class of every explainer: validated parameters in ``__init__``, work in ``explain``."""
from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch

from .. import wavelets
from ..core.errors import InputError
from ..core.explanation import Explanation
from ..core.model import ModelAdapter
from ..core.registry import Param, validate_params

#: the DWT parameters shared by every wavelet-domain explainer
WAVELET_PARAMS = {
    "wavelet": Param("haar", types=(str,), check=lambda w: None if w in wavelets.WAVELETS else
                     "not a wavelet that reconstructs exactly; e.g. haar, db2, sym4, coif1, bior2.2"),
    "levels": Param(3, types=(int,), low=1),
    "mode": Param("reflect", choices=tuple(wavelets.MODES)),
}


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


class Explainer:
    """Subclasses declare ``params`` (name -> :class:`Param`) and implement ``_explain``.

    ``explain(x, targets=None)`` validates the inputs against the adapter, explains the predicted
    classes when ``targets`` is None, times the call and fills the bookkeeping fields of the
    returned :class:`Explanation` (method, params, seed, model id, elapsed seconds).
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    modalities: ClassVar[tuple[str, ...]] = ("signal", "image", "volume")

    def __init__(self, adapter: ModelAdapter, **params: Any):
        if not isinstance(adapter, ModelAdapter):
            raise TypeError(
                f"{self.name}: expected a unified_xai.ModelAdapter, got {type(adapter).__name__};"
                f" wrap your model with ux.ModelAdapter(model, input_shape=(C, *spatial))"
            )
        if adapter.modality not in self.modalities:
            raise ValueError(f"{self.name} explains {', '.join(self.modalities)} models, not {adapter.modality} ones")
        self.adapter = adapter
        self.config = validate_params(self.name, self.params, params)
        self._check_config()

    def _check_config(self) -> None:
        """Cross-parameter checks (override when parameters constrain each other)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"

    @property
    def batch_size(self) -> int:
        return self.config.get("batch_size") or self.adapter.batch_size

    def generator(self) -> torch.Generator:
        """A generator seeded with the ``seed`` parameter, on the adapter's device."""
        gen = torch.Generator(device=self.adapter.device)
        gen.manual_seed(int(self.config.get("seed") or 0))
        return gen

    def explain(self, x, targets=None) -> Explanation:
        """Explain the decisions on ``x`` ``(B, C, *spatial)`` for ``targets`` (default: predicted classes)."""
        start = time.perf_counter()
        x = self.adapter.check_input(x)
        targets = self.adapter.check_targets(targets, x)
        explanation = self._explain(x, targets)
        explanation.method = self.name
        explanation.targets = targets
        explanation.params = {k: _plain(v) for k, v in self.config.items()}
        explanation.seed = self.config.get("seed")
        explanation.model_id = self.adapter.name
        explanation.elapsed = time.perf_counter() - start
        return explanation

    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        raise NotImplementedError


def _plain(value: Any) -> Any:
    """Parameter values as JSON-friendly plain data (tensors become lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
