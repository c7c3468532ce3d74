"""Explainer registry: ``@register_explainer``, ``create``, ``list_explainers``.

Third-party packages register explainers through the entry-point group
``unified_xai.explainers``: each entry point names a module (or an explainer class);
loading it runs its ``@register_explainer`` decorators.
"""
from __future__ import annotations

import fnmatch
import importlib.metadata
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import ParameterError, RegistrationError, UnknownNameError, suggest

ENTRY_POINT_GROUP = "unified_xai.explainers"
_REGISTRY: dict[str, type] = {}
_entry_points_loaded = False


@dataclass(frozen=True)
class Param:
    """Declaration of one explainer parameter: default, type, allowed values or range."""

    default: Any
    types: tuple = ()
    choices: Sequence | None = None
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    allow_none: bool = False
    doc: str = ""
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = []
        if self.types:
            parts.append(" or ".join(t.__name__ for t in self.types))
        if self.low is not None:
            parts.append((">= " if self.low_inclusive else "> ") + str(self.low))
        if self.high is not None:
            parts.append("<= " + str(self.high))
        if self.allow_none:
            parts.append("or None")
        return " ".join(parts) or "any value"

    def validate(self, name: str, value: Any, explainer: str) -> Any:
        bad = f"{explainer}: parameter {name!r} got {value!r}; allowed: {self.describe()}"
        if value is None:
            if self.allow_none:
                return None
            raise ParameterError(bad)
        if self.choices is not None:
            if value not in self.choices:
                raise ParameterError(bad)
            return value
        if self.types:
            if isinstance(value, bool):  # bool is an int subclass: accept it only where asked for
                if bool not in self.types:
                    raise ParameterError(bad)
                return value
            if isinstance(value, numbers.Integral) and int in self.types:
                value = int(value)
            elif isinstance(value, numbers.Real) and float in self.types:
                value = float(value)
            elif not isinstance(value, self.types):
                raise ParameterError(bad)
        if self.low is not None and (value < self.low if self.low_inclusive else value <= self.low):
            raise ParameterError(bad)
        if self.high is not None and value > self.high:
            raise ParameterError(bad)
        if self.check is not None:
            message = self.check(value)
            if message:
                raise ParameterError(f"{explainer}: parameter {name!r} got {value!r}: {message}")
        return value


def validate_params(explainer: str, spec: dict[str, Param], given: dict[str, Any],
                    aliases: dict[str, str] | None = None) -> dict[str, Any]:
    """Full parameter dict (defaults filled in), every value checked against ``spec``.

    ``aliases`` maps deprecated names to current ones: they still work, with a FutureWarning.
    """
    given = dict(given)
    for old, new in (aliases or {}).items():
        if old in given:
            if new in given:
                raise ParameterError(f"{explainer}: {old!r} is the old name of {new!r}; give only {new!r}")
            warnings.warn(f"{explainer}: parameter {old!r} is deprecated, use {new!r} (the same meaning in every"
                          f" explainer)", FutureWarning, stacklevel=4)
            given[new] = given.pop(old)
    unknown = [k for k in given if k not in spec]
    if unknown:
        name = unknown[0]
        raise ParameterError(
            f"{explainer}: unknown parameter {name!r}; valid parameters: {', '.join(sorted(spec))}"
            f" (closest: {suggest(name, spec)})"
        )
    return {k: p.validate(k, given.get(k, p.default), explainer) for k, p in spec.items()}


def register_explainer(name: str) -> Callable[[type], type]:
    """Class decorator registering an explainer under ``name`` (like timm's ``register_model``)."""

    def decorator(cls: type) -> type:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
            raise RegistrationError(f"an explainer named {name!r} is already registered ({existing.__module__});"
                                    f" choose another name")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not break the library
            warnings.warn(f"could not load explainer plugin {entry.name!r} ({entry.value}): {exc}")
            continue
        if isinstance(loaded, type) and entry.name not in _REGISTRY:
            register_explainer(entry.name)(loaded)


def _ensure_builtins() -> None:
    # the built-in explainers register when the package imports (unified_xai/__init__.py);
    # the core knows no method, only the plugins found through entry points
    _load_entry_points()


def list_explainers(pattern: str = "*") -> list[str]:
    """Sorted names of registered explainers matching a glob ``pattern``."""
    _ensure_builtins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_explainer_class(name: str) -> type:
    _ensure_builtins()
    if name not in _REGISTRY:
        raise UnknownNameError(
            f"unknown explainer {name!r}; registered explainers: {', '.join(sorted(_REGISTRY))}"
            f" (closest: {suggest(name, _REGISTRY)})"
        )
    return _REGISTRY[name]


def create(name: str, adapter, **params):
    """Build the explainer registered as ``name`` on a :class:`ModelAdapter`."""
    return get_explainer_class(name)(adapter, **params)
