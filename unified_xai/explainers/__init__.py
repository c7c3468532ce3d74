"""Built-in explainers; importing this package registers them."""
from .base import Explainer
from . import saliency  # noqa: F401

__all__ = ["Explainer"]
