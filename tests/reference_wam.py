"""A test-only re-implementation of the official WAM recipes (ALGORITHMS.md §1), one per modality.

Written from the spec, step by step, independently of ``unified_xai``: one input at a time, plain
Python loops over noise samples / path points, ptwt's own ``wavedec*`` / ``waverec*`` and autograd
through the inverse transform. Used to check ``reference_compat=True`` of the library.

Per sample gradient ``g = d logit_y(waverec(z)) / dz`` (the model is evaluated at the reconstruction),
turned into a map by the modality's recipe:

* 1D (``lib/wam_1D.py``): the raw signed gradient, no channel mean, abs or normalisation;
* 2D (``lib/wam_2D.py``): mean over channels (signed), then ``|.|``, then each sub-band (the
  approximation, and every H, V, D of every level) divided by its own max;
* 3D (``lib/wam_3D.py``): ``|g|`` per coefficient (the dyadic cube of |grad|), no normalisation.

SmoothGrad averages the maps over ``n`` noisy copies ``x + sigma * noise[k]``, sigma = spread x
(max - min) of the input; Integrated Gradients evaluates the gradients at ``alpha * z`` for
``alpha = linspace(0, 1, n)`` (coefficients fed directly, not re-transformed), integrates the maps with
the trapezoid rule at unit spacing (``nan -> 0``) and multiplies by the map of ``z`` itself.

Returns, per input, one tensor per band in the library's layout: ``approx (C', *sub)`` then each detail
level, coarsest first, ``(C', O, *sub)`` (``C' = 1`` after the 2D channel mean).
"""
from __future__ import annotations

import numpy as np
import ptwt
import torch

_DEC = {1: ptwt.wavedec, 2: ptwt.wavedec2, 3: ptwt.wavedec3}
_REC = {1: ptwt.waverec, 2: ptwt.waverec2, 3: ptwt.waverec3}


def _flat(coeffs, ndim):
    """ptwt's nested coefficients -> one flat list of tensors (approx, then each level's orientations)."""
    out = [coeffs[0]]
    for level in coeffs[1:]:
        if ndim == 1:
            out.append(level)
        elif ndim == 2:
            out.extend(level)  # horizontal, vertical, diagonal
        else:
            out.extend(level[key] for key in sorted(level))
    return out


def _nest(flat, like, ndim):
    """Inverse of :func:`_flat`, in ptwt's structure (for ``waverec*``)."""
    out, i = [flat[0]], 1
    for level in like[1:]:
        if ndim == 1:
            out.append(flat[i])
            i += 1
        elif ndim == 2:
            out.append(ptwt.constants.WaveletDetailTuple2d(*flat[i:i + 3]))
            i += 3
        else:
            keys = sorted(level)
            out.append(dict(zip(keys, flat[i:i + len(keys)])))
            i += len(keys)
    return out


def _gradient(model, coeffs, target, ndim, wavelet, size):
    """Gradient of the target logit w.r.t. every coefficient of ONE input (model at the reconstruction)."""
    leaves = [c.detach().clone().requires_grad_(True) for c in _flat(coeffs, ndim)]
    rec = _REC[ndim](_nest(leaves, coeffs, ndim), wavelet)
    rec = rec[(Ellipsis, *(slice(0, s) for s in size))]  # odd sizes come back one sample longer
    logit = model(rec.unsqueeze(0))[0, target]
    return list(torch.autograd.grad(logit, leaves))


def _map(bands, ndim):
    """The official per-sample map of a flat list of per-band tensors ``(C, *sub)``."""
    if ndim == 1:
        return [b.clone() for b in bands]
    if ndim == 3:
        return [b.abs() for b in bands]
    out = []
    for b in bands:
        m = b.mean(0, keepdim=True).abs()  # channel mean first (signed), then |.|
        out.append(m / m.max())  # each sub-band over its own max (nan when the band is all zero)
    return out


def _to_library_layout(flat, ndim, levels):
    """Flat per-band list -> [approx (C', *sub), level J (C', O, *sub), ..., level 1]."""
    n_orient = 2 ** ndim - 1
    out = [flat[0]]
    for j in range(levels):
        out.append(torch.stack(flat[1 + j * n_orient: 1 + (j + 1) * n_orient], dim=1))
    return out


def reference_wam(model, x, targets, ndim, variant, n_samples, wavelet="haar", levels=2, mode="reflect",
                  stdev_spread=0.0, noise=None):
    """The official recipe of modality ``ndim`` for every input of ``x`` ``(B, C, *spatial)``.

    ``variant`` is ``"smoothgrad"`` (needs ``noise`` ``(n_samples, C, *spatial)`` standard normal),
    ``"integrated"`` or ``"gradient"``. Returns a list (one per input) of per-band tensors.
    """
    model = model.eval()
    size = tuple(x.shape[2:])
    results = []
    for i in range(x.shape[0]):
        xi, target = x[i].detach(), int(targets[i])
        coeffs = _DEC[ndim](xi, wavelet, mode=mode, level=levels)  # channels act as ptwt's batch axis
        if variant == "gradient":
            total = _map(_gradient(model, coeffs, target, ndim, wavelet, size), ndim)
        elif variant == "smoothgrad":
            sigma = stdev_spread * (xi.max() - xi.min())
            total = None
            for k in range(n_samples):
                noisy = _DEC[ndim](xi + sigma * noise[k], wavelet, mode=mode, level=levels)
                m = _map(_gradient(model, noisy, target, ndim, wavelet, size), ndim)
                total = m if total is None else [t + v for t, v in zip(total, m)]
            total = [t / n_samples for t in total]
        elif variant == "integrated":
            path = []
            for alpha in np.linspace(0, 1, n_samples):
                scaled = _nest([float(alpha) * c for c in _flat(coeffs, ndim)], coeffs, ndim)
                path.append(_map(_gradient(model, scaled, target, ndim, wavelet, size), ndim))
            integral = []
            for band in zip(*path):  # trapezoid rule, unit spacing, nan -> 0
                stacked = torch.nan_to_num(torch.stack(band))
                integral.append(stacked[1:-1].sum(0) + 0.5 * (stacked[0] + stacked[-1]) if n_samples > 1
                                else torch.zeros_like(stacked[0]))
            factor = _map(_flat(coeffs, ndim), ndim)
            total = [f * g for f, g in zip(factor, integral)]
        else:
            raise ValueError(variant)
        results.append(_to_library_layout(total, ndim, levels))
    return results
