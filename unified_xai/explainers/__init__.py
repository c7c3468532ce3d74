"""Built-in explainers; importing this package registers them."""
from .base import Explainer
from . import craft, gradient_baselines, sobol, wam  # noqa: F401

__all__ = ["Explainer"]
