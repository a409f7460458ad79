"""The pre-flight: every model's fusion and head exercised on a tiny random batch before any real work.

``validate`` and the start of ``run`` call it, so a head that returns the wrong shape, a NaN or no gradient
fails in a second, naming the model and the contract point, instead of in every job after stage 1. The
batch has B rows and asks for n != B samples: a head that returns (n, B) instead of (B, n) cannot pass,
whatever batch size and K the experiment itself would use.
"""
from __future__ import annotations

import dataclasses
import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

from benchmark.components import FUSION_PREFIX, TRAINER_PARAMS, range_values
from benchmark.config import Experiment, ModelConfig
from benchmark.errors import ConfigError
from benchmark.training.checks import HeadError, checked
from benchmark.training.model import build_model
from registry import Registry
from registry.records import param_from_spec

ROWS = 3  # B: the batch
SAMPLES = 5  # n != B, so a transposed (n, B) sample never has the expected shape
FEATURE_DIM = 8  # any width exercises the contract; the encoder's own is known only after it is built
TABULAR_DIM = 4
CLOSED_FORMS = ("mean", "std")  # of condition alone; log_prob and cdf also take y


def preflight(experiment: Experiment, registry: Registry) -> list[str]:
    """Check every trainable model of ``experiment``, also with each value its ``search_space`` stands for (a
    range's ends, every choice); returns one line per model, raises ConfigError on the first failure. The random
    state of the run is left exactly as it was."""
    lines = []
    for index, model in enumerate(experiment.models):
        record = registry.describe("head", model.head)
        if model.checkpoint or not record.metadata.get("needs_training", True):
            lines.append(f"{model.key}: not trained here (checkpoint or oracle), no pre-flight")
            continue
        _check_or_fail(experiment, registry, model, f"{experiment.source}: model")
        for key, value, variant in _search_variants(model):
            _check_or_fail(experiment, registry, variant,
                           f"{experiment.source}: `models[{index}].search_space.{key}` can give {value!r}, with which model")
        lines.append(f"{model.key}: pre-flight ok (loss, backward, sample{_forms(registry, model)})")
    return lines


def _check_or_fail(experiment: Experiment, registry: Registry, model: ModelConfig, prefix: str) -> None:
    with _random_state_kept():
        try:
            _check_model(experiment, registry, model)
        except _Failure as failure:
            raise ConfigError(f"{prefix} {model.key!r} (head {model.head!r}, fusion {model.fusion!r}) fails the "
                              f"pre-flight at {failure.point}: {failure.problem}") from None


def _search_variants(model: ModelConfig) -> Iterator[tuple[str, Any, ModelConfig]]:
    """``model`` with each head or fusion value of its own ``search_space`` in turn (a trial can give any of them;
    the trainer's values were checked against their [train] rules by ``components``)."""
    for key, spec in model.search_space.items():
        if key in TRAINER_PARAMS:
            continue
        for value in range_values(param_from_spec(spec)):
            if key.startswith(FUSION_PREFIX):
                fusion_params = {**model.fusion_params, key[len(FUSION_PREFIX):]: value}
                yield key, value, dataclasses.replace(model, fusion_params=fusion_params)
            else:
                yield key, value, dataclasses.replace(model, params={**model.params, key: value})


class _Failure(Exception):
    def __init__(self, point: str, problem: str):
        super().__init__(point, problem)
        self.point, self.problem = point, problem


def _check_model(experiment: Experiment, registry: Registry, model: ModelConfig) -> None:
    tabular_dim = 0 if experiment.dataset.tabular == [] else TABULAR_DIM
    fusion, head = _step("building the fusion and head", lambda: build_model(
        registry, model, FEATURE_DIM, tabular_dim, seed=0))
    features = torch.randn(ROWS, FEATURE_DIM)
    tabular = torch.randn(ROWS, tabular_dim) if tabular_dim else None
    condition = _step("fusion(feature, tabular)", lambda: fusion(features, tabular))
    out_dim = getattr(fusion, "out_dim", None)
    _step("fusion(feature, tabular)", lambda: checked(model.key, "fusion", condition, (ROWS, out_dim), finite=True))
    raw = getattr(head, "target_scale", "standardised") == "raw"  # such a head trains on EF in percent
    target = 55 + 10 * torch.randn(ROWS) if raw else torch.randn(ROWS)
    head.train()
    loss = _step("loss(condition, target)", lambda: head.loss(condition, target))
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shown = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise _Failure("loss(condition, target)", f"expected a scalar tensor, got {shown}")
    if not torch.isfinite(loss):
        raise _Failure("loss(condition, target)", f"the loss of a random batch is {float(loss.detach())}")
    _step("loss.backward()", loss.backward)
    parameters = [p for p in [*fusion.parameters(), *head.parameters()] if p.requires_grad]
    if parameters and all(p.grad is None for p in parameters):
        raise _Failure("loss.backward()", "no parameter of the fusion or head received a gradient")
    if any(p.grad is not None and not torch.isfinite(p.grad).all() for p in parameters):
        raise _Failure("loss.backward()", "non-finite gradients")
    head.eval()
    with torch.no_grad():
        condition = condition.detach()
        _step(f"sample(condition, {SAMPLES})", lambda: checked(
            model.key, f"sample(condition, {SAMPLES})", head.sample(condition, SAMPLES), (ROWS, SAMPLES), finite=True))
        for form in CLOSED_FORMS:
            if hasattr(head, form):
                _step(f"{form}(condition)", lambda form=form: checked(
                    model.key, f"{form}(condition)", getattr(head, form)(condition), (ROWS,), finite=True))
        y = torch.randn(ROWS)
        for form in ("log_prob", "cdf"):
            if hasattr(head, form):
                _step(f"{form}(condition, y)", lambda form=form: checked(
                    model.key, f"{form}(condition, y)", getattr(head, form)(condition, y), (ROWS,), finite=True))
        if hasattr(head, "mixture"):
            _check_mixture(model, head, condition)


def _check_mixture(model: ModelConfig, head: torch.nn.Module, condition: torch.Tensor) -> None:
    parts = _step("mixture(condition)", lambda: head.mixture(condition))
    if not isinstance(parts, tuple) or len(parts) != 3:
        raise _Failure("mixture(condition)", "expected (log_weights, means, stds)")
    components = parts[0].shape[-1] if isinstance(parts[0], torch.Tensor) and parts[0].ndim == 2 else -1
    for name, value in zip(("log_weights", "means", "stds"), parts):
        _step("mixture(condition)", lambda name=name, value=value: checked(
            model.key, f"mixture {name}", value, (ROWS, components), finite=name != "log_weights"))


def _step(point: str, action: Callable[[], Any]) -> Any:
    """Run one contract point; any failure (a HeadError from a shape check, or the head raising) names it."""
    try:
        return action()
    except HeadError as error:
        raise _Failure(point, str(error)) from None
    except Exception as error:  # the head's own error, whatever it is, at this point of the contract
        raise _Failure(point, f"{type(error).__name__}: {error}") from None


def _forms(registry: Registry, model: ModelConfig) -> str:
    head = registry.describe("head", model.head).factory
    present = [form for form in (*CLOSED_FORMS, "log_prob", "cdf", "mixture") if hasattr(head, form)]
    return f", {', '.join(present)}" if present else ""


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """Building a model seeds every generator: the run after the pre-flight must draw what it would without it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)
