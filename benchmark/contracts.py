"""The typed records and protocols that components exchange with the engine.

Datasets produce ``Item`` records and ``Split`` assignments; encoders, fusions and heads are
``torch.nn.Module`` objects with the attributes below; metrics read a ``Predictive``. Plugin authors
implement these; the engine relies on nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

Role = Literal["train", "val", "test"]
ROLES: tuple[Role, ...] = ("train", "val", "test")


@dataclass(frozen=True, eq=False)  # compared by identity: the polygon is an array
class Tracing:
    """The LV endocardial outline in one frame: a closed polygon in the video's pixel coordinates."""

    frame: int           # 0-based frame index in the item's video (as the clip pipeline reads it)
    polygon: np.ndarray  # (P, 2) float64, columns x (right), y (down), P >= 3


@dataclass(frozen=True)
class Item:
    """One video with its label. ``id`` is unique and stable across runs (EchoNet: the FileName)."""

    id: str
    patient: str
    ef: float
    video: Path
    fold: str  # the dataset's own split label as written on disk ("TRAIN", "3", "training", ...)
    tabular: Mapping[str, float | str | None] = field(default_factory=dict)
    subgroups: Mapping[str, str] = field(default_factory=dict)  # e.g. sex, age_bin, quality, view
    visit: str = ""  # predictions are pooled per visit where a protocol says so; "" = per video
    tracings: tuple[Tracing, ...] = field(default=(), compare=False, repr=False)  # ordered by frame
    # The file stores the frames last to first (CAMUS half-sequences from ES to ED): readers reverse them,
    # so frame indices (tracings included) always count in time order.
    reversed: bool = False


@dataclass(frozen=True)
class Exclusion:
    """Something left out of the benchmark, and why. Written to ``excluded.csv``; never silent.

    ``dropped`` says how much: the whole ``item``, one ``tracing`` (the LV outline of ``frame``; the item
    stays), or one tabular ``value`` (treated as missing; the item stays).
    """

    id: str
    file: str
    reason: str
    dropped: Literal["item", "tracing", "value"] = "item"
    frame: int | None = None


@dataclass(frozen=True)
class DatasetIndex:
    """What a dataset found on disk."""

    items: tuple[Item, ...]
    excluded: tuple[Exclusion, ...] = ()
    tabular_columns: Mapping[str, Literal["numeric", "categorical"]] = field(default_factory=dict)
    synthetic: bool = False  # True for generated stand-ins: every output says so
    oracle_path: Path | None = None  # sidecar with exact posteriors (synthetic data only)
    notes: tuple[str, ...] = ()  # what the loader changed on purpose (e.g. reversed sequences); in manifest.json

    @property
    def excluded_items(self) -> tuple[Exclusion, ...]:
        return tuple(exclusion for exclusion in self.excluded if exclusion.dropped == "item")


@dataclass(frozen=True)
class Split:
    """One assignment of item ids to roles. Protocols with folds return several (``cv10``: ten)."""

    name: str
    roles: Mapping[str, Role]
    source: str = ""  # where the assignment comes from (a file, or the rule that dealt it); in manifest.json
    excluded: tuple[Exclusion, ...] = ()  # items this split cannot place (e.g. not in its split files)

    def ids(self, role: Role) -> list[str]:
        return sorted(item_id for item_id, r in self.roles.items() if r == role)


@runtime_checkable
class Dataset(Protocol):
    """Built by ``registry.build("dataset", name, root=..., **params)``.

    Required: ``protocols`` (the split protocol names it knows), ``load()`` and ``splits(index, protocol,
    **options)``. Optional: a class method ``example_params(directory) -> dict`` giving the constructor
    parameters of a tiny instance it can create in ``directory`` (the synthetic stand-in generates one),
    so ``check_dataset`` loads and splits real items instead of checking the class's shape only; for a
    dataset that takes ``view``, a class attribute ``views`` (the values it takes, compared ignoring case);
    a class attribute ``tabular_columns`` (name -> "numeric" or "categorical", as ``load()`` gives them; {} for
    none); and a static ``parameter_problems(params) -> {name: problem}`` with its rules on its other parameters:
    ``validate`` refuses what these exclude (a ``dataset.tabular`` name outside ``tabular_columns`` too) before the
    data are loaded or generated.
    """

    protocols: Sequence[str]

    def load(self) -> DatasetIndex: ...

    def splits(self, index: DatasetIndex, protocol: str, **options: Any) -> list[Split]: ...


@dataclass(frozen=True)
class InputSpec:
    """The clip an encoder expects. ``mean``/``std`` are per channel on the 0-255 scale;
    ``None`` means: normalise with training-split statistics."""

    frames: int | None
    size: int
    channels: int = 3
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class LoadReport:
    """What loading a weight file matched. ``ok`` is False when anything did not match."""

    source: str
    loaded: int
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()  # "key: checkpoint (a, b) vs model (c, d)"
    dropped: tuple[str, ...] = ()  # keys removed on purpose, e.g. a classification head

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"{self.source}: loaded {self.loaded} tensors"]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch", self.mismatched), ("dropped", self.dropped)):
            if keys:
                lines.append(f"  {label} ({len(keys)}): " + ", ".join(keys))
        return "\n".join(lines)


class Encoder(Protocol):
    """``nn.Module`` built with its parameters (and ``size``, ``frames`` where it declares them).

    Required: ``forward(clip (B, C, T, H, W) float) -> (B, feature_dim)``, ``feature_dim``, ``input_spec``
    (the clip it expects), ``load_weights(path, strict) -> LoadReport`` (a local file; never downloads).
    Optional: ``segment(frames (N, C, H, W)) -> LV logits (N, 1, h, w)``, which the stage-1 objective
    ``tracings`` trains.
    """

    feature_dim: int
    input_spec: InputSpec

    def forward(self, clip): ...

    def load_weights(self, path: str | Path, strict: bool = True) -> LoadReport: ...


def unable_to_segment(encoder, name: str) -> str | None:
    """Why ``encoder`` (class or instance) cannot be trained with ``pretrain.objective = "tracings"``, or None.

    That objective trains an optional method ``segment(frames (N, C, H, W)) -> LV logits (N, 1, h, w)``.
    """
    if callable(getattr(encoder, "segment", None)):
        return None
    return (f"\"tracings\" trains the encoder's LV segmentation, but encoder {name!r} has no segment() method. "
            "Use an encoder that segments (area_length) or another objective (l1, rnc).")


class Fusion(Protocol):
    """``nn.Module`` built with ``feature_dim`` and ``tabular_dim`` (0 = no tabular input).

    Required: ``forward(feature (B, D), tabular (B, P) or None) -> condition (B, out_dim)`` and ``out_dim``.
    Record metadata ``needs_tabular`` (bool) says whether it is useless without tabular inputs.
    """

    out_dim: int

    def forward(self, feature, tabular=None): ...


def range_problems(params: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]]) -> dict[str, str]:
    """For a component's static ``parameter_problems(params)``: each number in ``params`` outside its
    ``ranges[name]`` = (low, high), both ends allowed, with the range it must be in; other values are left to the type
    checks. `validate` asks before it builds the component, so a size must have an upper end: a mistyped
    ``depth = 1000000000`` is refused there instead of building a billion layers."""
    problems = {}
    for name, (low, high) in ranges.items():
        value = params.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
            problems[name] = f"must be between {low} and {high}, got {value!r}"
    return problems


# Optional head members: exact closed forms that metrics use instead of sample estimates.
CLOSED_FORMS = ("mean", "std", "log_prob", "cdf", "mixture")


class Head(Protocol):
    """``nn.Module`` built with ``condition_dim``. Works on standardised targets (on EF in percent when it
    sets ``target_scale = "raw"``).

    Required: ``loss(condition (B, D), target (B,)) -> scalar`` and ``sample(condition, n) -> (B, n)``.
    Optional closed forms (``CLOSED_FORMS``), used by metrics when present: ``mean(condition) -> (B,)``,
    ``std(condition) -> (B,)``, ``log_prob(condition, y) -> (B,)``, ``cdf(condition, y) -> (B,)``.
    A head whose distribution is a Gaussian mixture should also give ``mixture(condition) ->
    (log_weights, means, stds)``, each (B, M): then every closed form, CRPS included, is exact.
    Declared capability, record metadata ``trajectories = True``: ``sample(condition, n, record=True)``
    returns the whole sampling path (S + 1, B, n), noise first and the samples last (diffusion heads).
    Optional ``sampling_steps``: how many times ``sample`` runs the network (1 when absent; a diffusion sampler's
    steps), which the pre-flight's budget counts before it samples.
    """

    def loss(self, condition, target): ...

    def sample(self, condition, n: int): ...


class ServedHead(Protocol):
    """A head that learns nothing (record metadata ``needs_training = False``, e.g. the synthetic oracle):
    built with ``condition_dim`` and its parameters, it serves the predictive of known item ids instead of
    ``loss``/``sample``: ``predict_ids(ids, n, seed) -> Predictive`` with K = ``n`` samples per item."""

    def predict_ids(self, ids: Sequence[str], n: int, seed: int) -> Predictive: ...


@dataclass
class Predictive:
    """A head's predictive distribution for N items in EF units.

    ``samples`` (N, K) always; ``mean``/``std`` (N,) and ``log_prob``/``cdf`` (callables of y (N,))
    when the head has a closed form. ``point`` is the point estimate used for MAE/RMSE/R2.
    ``crps`` (callable of y (N,) -> per-item CRPS) only when the head's distribution has an exact
    closed form; otherwise the fair ensemble estimator on ``samples`` is used. Mean and std alone never
    imply a Gaussian: ``benchmark.evaluation.scoring.mixture_predictive`` builds a Predictive with every exact
    closed form of a Gaussian or Gaussian mixture.
    """

    samples: np.ndarray
    point: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    log_prob: Callable[[np.ndarray], np.ndarray] | None = None
    cdf: Callable[[np.ndarray], np.ndarray] | None = None
    crps: Callable[[np.ndarray], np.ndarray] | None = None


class Metric(Protocol):
    """A function ``(y (N,), Predictive) -> float``; the record's metadata holds ``direction``
    ("min", "max" or "target", the last with a ``target`` value), ``label`` (how the leaderboard names it) and
    ``aggregate``, the per-item form the tables compute it from (every seed, subgroup and bootstrap replicate
    from the stored ``predictions.csv``). ``add_metric`` registers a metric from that aggregate and fills all three."""

    def __call__(self, y: np.ndarray, predictive: Predictive) -> float: ...


METRIC_DIRECTIONS = ("min", "max", "target")
# How to supply a required metadata key that a plugin cannot be expected to guess. A bare metric function would
# otherwise be registered, tuned on, and left blank in every table, which are computed from the stored per-item
# columns that only an aggregate reads.
METADATA_HINTS = {("metric", "aggregate"): " (register the metric with benchmark.api.add_metric, from a per-item "
                                           "aggregate)"}


@dataclass(frozen=True)
class Contract:
    """What one kind of component must have: ``methods`` are checked on a class as soon as it is
    registered; ``attributes`` are usually set in ``__init__``, so they are checked on a built instance;
    ``metadata`` keys are checked on the record."""

    protocol: type
    methods: tuple[str, ...]
    attributes: tuple[str, ...]
    metadata: tuple[str, ...] = ()


def _contract(protocol: type, metadata: tuple[str, ...] = ()) -> Contract:
    methods = tuple(name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_"))
    return Contract(protocol, methods, tuple(getattr(protocol, "__annotations__", {})), metadata)


CONTRACTS = {
    "dataset": _contract(Dataset),
    "encoder": _contract(Encoder),
    "fusion": _contract(Fusion),
    "head": _contract(Head),
    "served_head": _contract(ServedHead),
    "metric": _contract(Metric, metadata=("label", "direction", "aggregate")),
}


def contract_of(kind: str, metadata: Mapping[str, Any]) -> Contract:
    """The contract of a component of ``kind`` with record ``metadata`` (a head that needs no training
    serves known posteriors instead of sampling)."""
    if kind == "head" and metadata.get("needs_training", True) is False:
        return CONTRACTS["served_head"]
    return CONTRACTS[kind]


def missing_members(kind: str, factory: Callable[..., Any], metadata: Mapping[str, Any]) -> list[str]:
    """What a component lacks before it is built: metadata keys, and the methods of a class factory.

    A factory function can only be checked once it has built something (``missing_from_instance``).
    """
    contract = contract_of(kind, metadata)
    missing = [f"metadata {key!r}{METADATA_HINTS.get((kind, key), '')}" for key in contract.metadata
               if key not in metadata]
    if kind == "metric" and "direction" in metadata and metadata["direction"] not in METRIC_DIRECTIONS:
        missing.append(f"metadata 'direction' as one of {', '.join(METRIC_DIRECTIONS)} "
                       f"(got {metadata['direction']!r})")
    if isinstance(factory, type):
        missing += [name for name in contract.methods if not _defines(factory, name)]
    return missing


def missing_from_instance(kind: str, component: Any, metadata: Mapping[str, Any]) -> list[str]:
    """The required methods and attributes that a built component (for a metric: the function) lacks."""
    if kind == "metric":
        return [] if callable(component) else ["__call__"]
    contract = contract_of(kind, metadata)
    return ([name for name in contract.methods if not _defines(type(component), name)]
            + [name for name in contract.attributes if not hasattr(component, name)])


def _defines(cls: type, member: str) -> bool:
    """Whether ``cls`` or one of its bases defines ``member``. Protocol classes (a plugin may subclass
    one for documentation) and torch's ``nn.Module``, whose ``forward`` is a placeholder that raises, do
    not count."""
    return any(member in vars(base) for base in cls.__mro__
               if base is not object and not getattr(base, "_is_protocol", False)
               and base.__module__ != "torch.nn.modules.module")
