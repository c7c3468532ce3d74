"""Saliency: the plain gradient of the target logit w.r.t. the input (Simonyan et al., 2014)."""
from __future__ import annotations

import torch

from ..core.batching import chunks, progress_bar
from ..core.explanation import Explanation
from ..core.registry import Param, register_explainer
from .base import Explainer, channel_sum


@register_explainer("saliency")
class Saliency(Explainer):
    """``attributions`` = d logit_target / d x (signed, per channel); ``where`` = |grad| summed over channels.

    Parameters
    ----------
    absolute : take |grad| before summing channels for ``where`` (True) or sum signed values (False).
    batch_size : inputs per forward/backward chunk (default: the adapter's).
    """

    params = {
        "absolute": Param(True, types=(bool,), doc="abs before channel sum in `where`"),
        "batch_size": Param(None, types=(int,), low=1, allow_none=True, doc="inputs per chunk"),
    }

    def _explain(self, x: torch.Tensor, targets: torch.Tensor) -> Explanation:
        grads = torch.empty_like(x)
        with progress_bar(x.shape[0], self.name, self.adapter.show_progress() and x.shape[0] > self.batch_size) as advance:
            for part in chunks(x.shape[0], self.batch_size):
                _, (grads[part],) = self.adapter.target_gradient(x[part], targets[part])
                advance(part.stop - part.start)
        return Explanation(where=channel_sum(grads, self.config["absolute"]), method=self.name, attributions=grads)
