"""The component registry: pluggy hook specs, typed records, discovery and validation.

Public API::

    import registry
    registry.names("head")                       # ['gaussian', 'mcsdr', ...]
    registry.build("head", "mse", condition_dim=512)
    registry.describe("head", "mcsdr")           # ComponentRecord with origin, metadata, search space

These act on the default registry (built-ins and installed entry points). An experiment's extra
plugins go through ``load_registry(extra=[...])``, which returns a separate ``Registry``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from .errors import ContractError, DuplicateComponentError, PluginLoadError, RegistryError, UnknownComponentError
from .hookspecs import PROJECT, hookimpl
from .manager import Registrar, Registry, load_registry
from .records import KINDS, Categorical, ComponentRecord, FloatParam, IntParam, PluginFailure

__all__ = [
    "KINDS", "PROJECT", "hookimpl", "Registry", "Registrar", "load_registry", "default",
    "names", "build", "describe", "ComponentRecord", "PluginFailure", "FloatParam", "IntParam",
    "Categorical", "RegistryError", "ContractError", "UnknownComponentError", "DuplicateComponentError",
    "PluginLoadError",
]


@lru_cache(maxsize=1)
def default() -> Registry:
    """The registry of built-ins and entry points, loaded once per process."""
    return load_registry()


def names(kind: str) -> list[str]:
    return default().names(kind)


def build(kind: str, name: str, **params: Any) -> Any:
    return default().build(kind, name, **params)


def describe(kind: str, name: str) -> ComponentRecord:
    return default().describe(kind, name)
