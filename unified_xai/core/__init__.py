"""Core pieces shared by every method: adapter and hooks, registry, Explanation, batching, storage."""
from .errors import CheckpointError, InputError, LayerError, ParameterError, UnknownNameError, UXAIError
from .explanation import Explanation
from .model import ModelAdapter, Split, resolve_device
from .registry import Param, create, list_explainers, register_explainer

__all__ = [
    "CheckpointError", "Explanation", "InputError", "LayerError", "ModelAdapter", "Param", "ParameterError", "Split",
    "UXAIError", "UnknownNameError", "create", "list_explainers", "register_explainer", "resolve_device",
]
