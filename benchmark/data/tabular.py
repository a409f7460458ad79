"""Tabular patient attributes as model inputs, with every statistic fitted on the training split only.

Two transforms (``dataset.tabular_transform``):

``standard`` (``TabularTransform``): numeric columns imputed with the training mean, standardised with
the training mean and standard deviation, plus one 0/1 column marking that the value was missing.
``Sex`` has a fixed one-hot encoding (F, M, unknown) so its width never depends on the data; other
categorical columns one-hot encode the training categories plus an explicit ``unknown``.

``reference`` (``ReferenceTabularTransform``): MCSDR's preprocessing, one column per attribute, which
its checkpoints were trained on: categorical columns factorised into one integer column (codes in order
of first appearance, missing -1, as ``pandas.factorize``), numeric ones imputed with the mean, then
every column min-max scaled. The reference fits all of this on each split separately (TEST's own mean,
minimum and maximum, even its own Sex codes: a leak); here it is fitted on TRAIN and applied everywhere.

Columns derived from the label are refused.

``BMI`` and ``BSA`` are derived from ``Weight`` (kg) and ``Height`` (cm) wherever a dataset has both.
Clinicians read cardiac size against body size, and a small network learns a ratio such as weight for
height poorly from the two standardised inputs: given as columns, they are one linear unit away.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from benchmark.contracts import Item
from benchmark.errors import ConfigError
from registry.errors import did_you_mean

LABEL_DERIVED = frozenset({"ef", "esv", "edv", "lvef", "lvedv", "lvesv"})
SEX_CATEGORIES = ("F", "M", "unknown")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Derived:
    """A numeric attribute computed from other numeric ones; missing when any input is missing or not
    positive (a body size of 0 is a placeholder, not a measurement)."""

    inputs: tuple[str, ...]
    formula: Callable[..., float]

    def value(self, tabular: Mapping[str, Any]) -> float | None:
        values = [tabular.get(name) for name in self.inputs]
        if any(v is None or not v > 0 for v in values):  # `not v > 0` is also true for NaN
            return None
        return self.formula(*values)


DERIVED = {
    "BMI": Derived(("Weight", "Height"), lambda kg, cm: kg / (cm / 100) ** 2),  # kg/m^2
    "BSA": Derived(("Weight", "Height"), lambda kg, cm: math.sqrt(kg * cm / 3600)),  # m^2, Mosteller
}


# What a patient can measure: outside these a value is an entry error (the heaviest person on record
# weighed 635 kg, the tallest stood 272 cm). Such a value is treated as missing rather than fed to a model.
PLAUSIBLE = {"Age": (0.0, 120.0, "years"), "Weight": (0.0, 650.0, "kg"), "Height": (0.0, 300.0, "cm")}
POSITIVE = frozenset({"Weight", "Height"})  # 0 kg or 0 cm is a placeholder, not a measurement


def implausible(name: str, value: float) -> str | None:
    """Why the measurement ``name`` = ``value`` cannot be a patient's, or None."""
    if not math.isfinite(value):
        return f"{name} {value} is not a finite number"
    if name not in PLAUSIBLE:
        return None
    low, high, unit = PLAUSIBLE[name]
    if name in POSITIVE and not low < value <= high:
        return f"{name} {value:g} outside the plausible ({low:g}, {high:g}] {unit}"
    if not low <= value <= high:
        return f"{name} {value:g} outside the plausible [{low:g}, {high:g}] {unit}"
    return None


def with_derived(kinds: Mapping[str, str]) -> dict[str, str]:
    """The dataset's column kinds plus every derived attribute whose inputs it has."""
    derived = {name: "numeric" for name, rule in DERIVED.items()
               if name not in kinds and all(kinds.get(i) == "numeric" for i in rule.inputs)}
    return {**kinds, **derived}


def check_columns(columns: Sequence[str], available: Mapping[str, str], dataset: str,
                  where: str = "dataset.tabular", label_derived: Sequence[str] = ()) -> None:
    """Refuses label-derived columns (EF is computed from ESV/EDV: leakage): those of ``LABEL_DERIVED`` and those the
    dataset declares (``label_derived`` in its metadata, e.g. a plugin's ``LVEDV_ml``); and unknown ones. ``where``
    starts the message (the file and key path, when known)."""
    derived = LABEL_DERIVED | {name.lower() for name in label_derived}
    for column in columns:
        if column.lower() in derived:
            raise ConfigError(f"{where}: {column!r} is derived from the EF label (EF = (EDV - ESV) / EDV) "
                              "and would leak it into the model; remove it")
        if column not in available:
            raise ConfigError(f"{where}: {dataset} has no tabular column {column!r};"
                              f"{did_you_mean(column, list(available))} available: {', '.join(available) or 'none'}")


@dataclass
class TabularTransform:
    """Fitted with ``fit(train_items)``; ``transform(items)`` gives a float32 (N, width) matrix."""

    columns: Sequence[str]
    kinds: Mapping[str, str]
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    fitted: bool = False

    def fit(self, train_items: Sequence[Item]) -> "TabularTransform":
        if not train_items:
            raise ConfigError("the tabular transform needs training items to fit on; the train role is empty")
        for column in self.columns:
            values = [_value(item, column) for item in train_items]
            if self.kinds[column] == "numeric":
                present = np.array([v for v in values if v is not None and not np.isnan(v)], dtype=float)
                mean = float(present.mean()) if present.size else 0.0
                std = float(present.std()) if present.size > 1 else 0.0
                self.means[column], self.stds[column] = mean, std if std > 0 else 1.0
            elif column == "Sex":
                self.categories[column] = SEX_CATEGORIES
            else:
                seen = sorted({str(v) for v in values if v is not None} - {UNKNOWN})
                self.categories[column] = (*seen, UNKNOWN)
        self.fitted = True
        return self

    @property
    def feature_names(self) -> list[str]:
        names = []
        for column in self.columns:
            if self.kinds[column] == "numeric":
                names += [column, f"{column}_missing"]
            else:
                names += [f"{column}={category}" for category in self.categories[column]]
        return names

    @property
    def width(self) -> int:
        return len(self.feature_names)

    def transform(self, items: Sequence[Item]) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("TabularTransform.transform before fit: fit it on the training items first")
        out = np.zeros((len(items), self.width), dtype=np.float32)
        for row, item in enumerate(items):
            out[row] = self._row(item)
        return out

    def _row(self, item: Item) -> list[float]:
        row: list[float] = []
        for column in self.columns:
            value = _value(item, column)
            if self.kinds[column] == "numeric":
                missing = value is None or np.isnan(value)
                filled = self.means[column] if missing else float(value)
                row += [(filled - self.means[column]) / self.stds[column], float(missing)]
            else:
                categories = self.categories[column]
                category = str(value) if value is not None and str(value) in categories else UNKNOWN
                row += [float(category == c) for c in categories]
        return row


@dataclass
class ReferenceTabularTransform:
    """MCSDR's tabular preprocessing, fitted on TRAIN: one float32 column per attribute (see above)."""

    columns: Sequence[str]
    kinds: Mapping[str, str]
    codes: dict[str, dict[str, int]] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    low: np.ndarray | None = None
    span: np.ndarray | None = None

    def fit(self, train_items: Sequence[Item]) -> "ReferenceTabularTransform":
        if not train_items:
            raise ConfigError("the tabular transform needs training items to fit on; the train role is empty")
        for column in self.columns:
            values = [_value(item, column) for item in train_items]
            if self.kinds[column] == "numeric":
                present = [float(v) for v in values if not _missing(v)]
                if not present:
                    raise ConfigError(f"dataset.tabular: {column!r} has no value in the training split, so the "
                                      "reference transform has no mean to fill it with; leave the column out")
                self.means[column] = float(np.mean(present))
            else:  # dict keeps insertion order: codes by first appearance, as pandas.factorize
                self.codes[column] = {key: code for code, key in
                                      enumerate(dict.fromkeys(str(v) for v in values if not _missing(v)))}
        encoded = self._encode(train_items)
        self.low = encoded.min(axis=0)
        span = encoded.max(axis=0) - self.low
        self.span = np.where(span > 0, span, 1.0)  # a constant column only shifts, as sklearn's MinMaxScaler
        return self

    @property
    def feature_names(self) -> list[str]:
        return list(self.columns)

    @property
    def width(self) -> int:
        return len(self.columns)

    def transform(self, items: Sequence[Item]) -> np.ndarray:
        if self.low is None:
            raise RuntimeError("ReferenceTabularTransform.transform before fit: fit it on the training items first")
        return ((self._encode(items) - self.low) / self.span).astype(np.float32)

    def _encode(self, items: Sequence[Item]) -> np.ndarray:
        out = np.zeros((len(items), self.width))
        for row, item in enumerate(items):
            for index, column in enumerate(self.columns):
                value = _value(item, column)
                if self.kinds[column] == "numeric":
                    out[row, index] = self.means[column] if _missing(value) else float(value)
                else:  # a missing value or one TRAIN never had: -1, as the reference codes a missing one
                    out[row, index] = -1 if _missing(value) else self.codes[column].get(str(value), -1)
        return out


def _missing(value: Any) -> bool:
    return value is None or value == UNKNOWN or (isinstance(value, float) and math.isnan(value))


def _value(item: Item, column: str) -> Any:
    if column in DERIVED and column not in item.tabular:
        return DERIVED[column].value(item.tabular)
    return item.tabular.get(column)


TRANSFORMS = {"standard": TabularTransform, "reference": ReferenceTabularTransform}


def fit_tabular(columns: Sequence[str], kinds: Mapping[str, str], train_items: Sequence[Item],
                dataset: str = "the dataset", transform: str = "standard") -> TabularTransform | ReferenceTabularTransform:
    """Checks ``columns`` against the dataset's ``kinds`` (plus the derived attributes its columns allow)
    and fits the ``transform`` (``standard`` or ``reference``) on ``train_items``."""
    kinds = with_derived(kinds)
    check_columns(columns, kinds, dataset)
    return TRANSFORMS[transform](columns=list(columns), kinds=kinds).fit(train_items)
