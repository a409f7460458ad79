"""Components named by an experiment: checked against the registry (shared by ``validate`` and ``run`` so both
reject the same mistakes before any work starts), and experiment-level settings offered to the factories
that declare them."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from benchmark.config import Experiment
from benchmark.contracts import unable_to_segment
from benchmark.errors import ConfigError
from registry import Registry, RegistryError, UnknownComponentError, load_registry


def accepted(factory: Callable[..., Any], offered: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``offered`` keyword arguments that ``factory`` declares.

    Experiment-wide settings such as ``clips.size`` or ``dataset.view`` are offered to every component;
    a component that has no such parameter simply does not take it.
    """
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(offered)
    return {key: value for key, value in offered.items() if key in parameters}


def check_parameters(factory: Callable[..., Any], params: Mapping[str, Any], where: str) -> None:
    """Raise a ConfigError naming ``where`` when ``factory`` cannot take ``params``."""
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as error:
        known = [name for name in inspect.signature(factory).parameters if name != "self"]
        raise ConfigError(f"{where}: {error}. Accepted parameters: {', '.join(known)}.") from None


@dataclass
class Resolved:
    experiment: Experiment
    registry: Registry
    warnings: list[str] = field(default_factory=list)


def resolve(experiment: Experiment) -> Resolved:
    try:
        registry = load_registry(experiment.plugins, base_dir=experiment.base_dir)
    except RegistryError as error:
        raise ConfigError(f"{experiment.source}: `plugins`: {error}") from None
    warnings = [f"{failure} (ignored: the experiment does not name it)" for failure in registry.failures]

    def check(kind: str, name: str, key_path: str) -> None:
        try:
            registry.describe(kind, name)
        except RegistryError as error:
            raise ConfigError(f"{experiment.source}: `{key_path}`: {error}") from None

    check("dataset", experiment.dataset.name, "dataset.name")
    check("encoder", experiment.encoder.name, "encoder.name")
    encoder = registry.describe("encoder", experiment.encoder.name).factory
    # A class shows whether it segments before anything is built; a factory function is checked in stage 1.
    problem = unable_to_segment(encoder, experiment.encoder.name) if isinstance(encoder, type) else None
    if experiment.encoder.pretrain.objective == "tracings" and problem:
        raise ConfigError(f"{experiment.source}: `encoder.pretrain.objective`: {problem}")
    dataset_tabular = registry.describe("dataset", experiment.dataset.name).metadata.get("tabular")
    for index, model in enumerate(experiment.models):
        check("head", model.head, f"models[{index}].head")
        check("fusion", model.fusion, f"models[{index}].fusion")
        if model.conformal:
            _check_conformal(registry.describe("head", model.head), model, f"{experiment.source}: `models[{index}].conformal`")
        fusion = registry.describe("fusion", model.fusion)
        if fusion.metadata.get("needs_tabular") and dataset_tabular is not None and not dataset_tabular:
            raise ConfigError(
                f"{experiment.source}: `models[{index}].fusion`: {model.fusion!r} combines tabular "
                f"attributes, but dataset {experiment.dataset.name!r} has none. Use fusion = \"none\"."
            )
    for index, metric in enumerate(experiment.evaluate.metrics):
        check("metric", metric, f"evaluate.metrics[{index}]")
    if experiment.tune.trials:
        find_metric(registry, experiment.tune.metric, f"{experiment.source}: `tune.metric`")
    return Resolved(experiment, registry, warnings)


def _check_conformal(head, model, where: str) -> None:
    """Conformal calibration stretches a trained head's samples on VAL: it needs both a spread and VAL."""
    if not head.metadata.get("probabilistic", False):
        raise ConfigError(f"{where}: head {model.head!r} predicts a point; its intervals have zero width and "
                          "cannot be calibrated by stretching. Use a probabilistic head.")
    if model.checkpoint or not head.metadata.get("needs_training", True):
        raise ConfigError(f"{where}: only a head trained in this run is calibrated on VAL; "
                          f"{model.key!r} is not trained here (checkpoint or oracle).")


def find_metric(registry: Registry, name: str, where: str) -> str:
    """The registered metric called ``name`` or labelled so (case-insensitive)."""
    for record in registry.records("metric"):
        if name.lower() in (record.name.lower(), str(record.metadata.get("label", "")).lower()):
            return record.name
    raise ConfigError(f"{where}: {UnknownComponentError('metric', name, registry.names('metric'))}")
