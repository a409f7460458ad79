"""Typed records describing registered components and their tunable parameters."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

KINDS = ("dataset", "encoder", "fusion", "head", "metric")


@dataclass(frozen=True)
class FloatParam:
    """A continuous hyperparameter for Optuna's ``suggest_float``."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"FloatParam needs low < high, got {self.low} >= {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled FloatParam needs low > 0")

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class IntParam:
    """An integer hyperparameter for Optuna's ``suggest_int``."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self):
        if not self.low <= self.high:
            raise ValueError(f"IntParam needs low <= high, got {self.low} > {self.high}")
        if self.log and self.low < 1:  # Optuna's log-scaled integers start at 1
            raise ValueError(f"a log-scaled IntParam needs low >= 1, got {self.low}")

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Categorical:
    """A choice among fixed values for Optuna's ``suggest_categorical``."""

    choices: tuple

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise ValueError("Categorical needs at least one choice")

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, self.choices)


Param = FloatParam | IntParam | Categorical


def param_from_spec(spec: Any) -> Param:
    """Build a parameter from its TOML spelling.

    ``{float = [1e-4, 1e-2], log = true}``, ``{int = [1, 4]}`` or ``{choices = [64, 128]}``.
    """
    if isinstance(spec, (FloatParam, IntParam, Categorical)):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"a search-space entry must be a table, got {spec!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):  # bool() would take "false" or "no" for true: a log-scaled range, unseen
        raise TypeError(f"log must be true or false, got {log!r}")
    extra = set(spec) - {"float", "int", "choices", "log"}
    if extra:
        raise ValueError(f"unknown search-space field(s) {sorted(extra)}; use float, int, choices, log")
    # One kind per entry: the first of float, int, choices was taken and the others dropped unsaid, as was a log
    # scale on choices, which have no scale.
    kinds = [kind for kind in ("float", "int", "choices") if kind in spec]
    if len(kinds) > 1:
        raise ValueError(f"an entry is one of float, int or choices, got {' and '.join(kinds)}")
    if "choices" in spec and log:
        raise ValueError("log scales a float or int range; choices have none")
    if "float" in spec:
        low, high = spec["float"]
        if not all(isinstance(end, (int, float)) and not isinstance(end, bool) for end in (low, high)):
            # float() would read "1e-3" and true as numbers
            raise ValueError(f"a float range needs numbers at its ends, got [{low!r}, {high!r}]")
        return FloatParam(float(low), float(high), log)
    if "int" in spec:
        low, high = spec["int"]
        if not all(isinstance(end, int) and not isinstance(end, bool) for end in (low, high)):
            raise ValueError(f"an int range needs integer ends, got [{low!r}, {high!r}]")  # int() would truncate
        return IntParam(low, high, log)
    if "choices" in spec:
        if not isinstance(spec["choices"], (list, tuple)):  # a string would become its characters
            raise ValueError(f"choices must be a list, got {spec['choices']!r}")
        return Categorical(tuple(spec["choices"]))
    raise ValueError(f"a search-space entry needs one of float, int or choices: {dict(spec)!r}")


@dataclass(frozen=True)
class ComponentRecord:
    """One registered component: what it is, how to build it and who provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    origin: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, Param] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown component kind {self.kind!r}; kinds are {', '.join(KINDS)}")
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"component name {self.name!r} must be non-empty letters, digits, '_' or '-'")
        if not callable(self.factory):
            raise TypeError(f"{self.kind} {self.name!r}: factory {self.factory!r} is not callable")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        space = {key: param_from_spec(value) for key, value in dict(self.search_space).items()}
        object.__setattr__(self, "search_space", MappingProxyType(space))

    @property
    def summary(self) -> str:
        """The first line of the description, for listings."""
        return self.description.strip().splitlines()[0] if self.description.strip() else ""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose hook raised; the others still load."""

    plugin: str
    origin: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.origin}) failed: {self.error}"


Names = Sequence[str]
