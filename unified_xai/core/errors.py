"""Error types and the helper that suggests close valid names."""
from __future__ import annotations

import difflib
from typing import Iterable


class UXAIError(Exception):
    """Base class of every error raised by unified-xai on bad input."""


class InputError(UXAIError, ValueError):
    """An input tensor does not match what the model adapter expects."""


class LayerError(UXAIError, KeyError):
    """A layer name does not exist in the model."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ParameterError(UXAIError, ValueError):
    """An explainer parameter is unknown or out of its allowed values."""


class CheckpointError(UXAIError, ValueError):
    """A checkpoint cannot be read or does not match the architecture it is loaded into."""


class RegistrationError(UXAIError, ValueError):
    """An explainer cannot be registered (e.g. its name is taken)."""


class UnknownNameError(UXAIError, KeyError):
    """An explainer, built-in model or dataset name is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def suggest(name: str, valid: Iterable[str], n: int = 5) -> str:
    """A short 'did you mean' clause listing the valid names closest to ``name``."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=n, cutoff=0.4)
    if not close:
        # fall back to names sharing a dotted prefix or substring, then the first few
        close = [v for v in valid if name.split(".")[0] in v][:n] or valid[:n]
    return ", ".join(repr(c) for c in close)
