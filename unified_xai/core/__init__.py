"""Core pieces shared by every method: adapter and hooks, registry, Explanation, batching, storage.

The core knows no method: explainers register themselves from their own modules.
"""
from .errors import (CheckpointError, InputError, LayerError, ParameterError, RegistrationError, UnknownNameError,
                     UXAIError)
from .explanation import Explanation
from .hooks import SplitError
from .model import ModelAdapter, Split, resolve_device
from .registry import Param, create, list_explainers, register_explainer

__all__ = [
    "CheckpointError", "Explanation", "InputError", "LayerError", "ModelAdapter", "Param", "ParameterError",
    "RegistrationError", "Split", "SplitError", "UXAIError", "UnknownNameError", "create", "list_explainers",
    "register_explainer", "resolve_device",
]
