"""The pre-flight: every model's fusion and head exercised on a tiny random batch before any real work.

``validate`` and the start of ``run`` call it, so a head that returns the wrong shape, a NaN or no gradient
fails in a second, naming the model and the contract point, instead of in every job after stage 1. The
batch has B rows and asks for n != B samples: a head that returns (n, B) instead of (B, n) cannot pass,
whatever batch size and K the experiment itself would use. A trained model is checked again with each value
its ``search_space`` can give (a range's ends, every choice); a head served without training (oracle, prior)
is built on a stand-in of what the runner hands it and asked for its predictive. A trained model is built on the
meta device first, its sampling estimated, and its checks run for real, held to the machine's ``Budget``
(``benchmark.encoding.budget``).
"""
from __future__ import annotations

import dataclasses
import functools
import tempfile
import typing
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from benchmark.components import FUSION_PREFIX, TRAINER_PARAMS, range_values
from benchmark.config import Experiment, ModelConfig
from benchmark.device import random_state_kept, resolve_device
from benchmark.encoding.budget import BUDGET_POINT, MODEL_FLOPS, Budget, OverBudget, estimate, limited, refused
from benchmark.errors import ConfigError
from benchmark.synth import oracle as synthetic_oracle
from benchmark.training.checks import HeadError, checked
from benchmark.training.model import build_model, build_served_head
from registry import Registry
from registry.records import param_from_spec

ROWS = 3  # B: the batch
SAMPLES = 5  # n != B, so a transposed (n, B) sample never has the expected shape
FEATURE_DIM = 8  # any width exercises the contract; the encoder's own is known only after it is built
TABULAR_DIM = 4
CLOSED_FORMS = ("mean", "std")  # of condition alone; log_prob and cdf also take y


def preflight(experiment: Experiment, registry: Registry) -> list[str]:
    """Check every model of ``experiment`` not loaded from a checkpoint: a trained one also with each value its
    ``search_space`` stands for (a range's ends, every choice), a served one (oracle, prior) by ``predict_ids``.
    Returns one line per model, raises ConfigError on the first failure. The random state of the run is left
    exactly as it was."""
    lines = []
    source = experiment.source
    for index, model in enumerate(experiment.models):
        record = registry.describe("head", model.head)
        if model.checkpoint:
            lines.append(f"{model.key}: not trained here (checkpoint), no pre-flight")
            continue
        served = not record.metadata.get("needs_training", True)
        check = _check_served if served else _check_model
        failure = _failure(check, experiment, registry, model)
        if failure:
            # Past its budget, the key is the one without which it fits: asked of the estimate alone, building nothing.
            culprit = _culprit(_check_budget if failure.point == BUDGET_POINT else check, experiment, registry, model,
                               index)
            _fail(f"{source}: `{culprit}`: model" if culprit else f"{source}: model", model, failure)
        for key, value, variant in ([] if served else _search_variants(model)):
            failure = _failure(check, experiment, registry, variant)
            if failure:
                _fail(f"{source}: `models[{index}].search_space.{key}` can give {value!r}, with which model",
                      variant, failure)
        lines.append(f"{model.key}: pre-flight ok (served without training: predict_ids)" if served else
                     f"{model.key}: pre-flight ok (loss, backward, sample{_forms(registry, model)})")
    return lines


Check = Callable[[Experiment, Registry, ModelConfig], None]


def _failure(check: Check, experiment: Experiment, registry: Registry, model: ModelConfig) -> _Failure | None:
    with random_state_kept():
        try:
            check(experiment, registry, model)
        except _Failure as failure:
            return failure
    return None


def _culprit(check: Check, experiment: Experiment, registry: Registry, model: ModelConfig, index: int) -> str | None:
    """The key path of the one ``params`` or ``fusion_params`` entry without which the model passes: the one to fix
    (None when no single entry is to blame, e.g. the head itself is broken)."""
    for table in ("params", "fusion_params"):
        given = getattr(model, table)
        for key in given:
            without = dataclasses.replace(model, **{table: {k: v for k, v in given.items() if k != key}})
            if _failure(check, experiment, registry, without) is None:
                return f"models[{index}].{table}.{key}"
    return None


def _fail(prefix: str, model: ModelConfig, failure: _Failure) -> typing.NoReturn:
    raise ConfigError(f"{prefix} {model.key!r} (head {model.head!r}, fusion {model.fusion!r}) fails the pre-flight "
                      f"at {failure.point}: {failure.problem}")


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
    _check_budget(experiment, registry, model)
    with limited(_budget(experiment)):
        _check_contract(model, _builder(experiment, registry, model), _tabular_dim(experiment))


def _check_budget(experiment: Experiment, registry: Registry, model: ModelConfig) -> None:
    """The fusion and head built on the meta device, and what ``sample(condition, SAMPLES)`` computes, held to the
    budget before anything is built or sampled for real. Sampling costs two operations per head parameter and row
    for each network evaluation: one, or as many as the head declares (``sampling_steps``: a diffusion sampler's
    steps, which run only for real, so only a declared count is known before they run)."""
    budget = _budget(experiment)
    try:
        parts = estimate(_builder(experiment, registry, model), budget)
    except OverBudget as over:
        raise _Failure(BUDGET_POINT, str(over)) from None
    if parts is None:
        return
    head = parts[1]
    steps = getattr(head, "sampling_steps", 1)
    try:
        budget.check(flops=2 * sum(p.numel() for p in head.parameters()) * ROWS * SAMPLES * steps)
    except OverBudget as over:
        raise _Failure(BUDGET_POINT, f"sample(condition, {SAMPLES}) runs its network {steps} time(s) on {ROWS} x "
                                     f"{SAMPLES} rows: {over}") from None


def _budget(experiment: Experiment) -> Budget:
    return Budget.here(resolve_device(experiment.train.device), "Lower the sizes in its params or fusion_params (a "
                       "sampler: its steps or timesteps).", MODEL_FLOPS)


def _builder(experiment: Experiment, registry: Registry, model: ModelConfig) -> Callable[[], tuple[Any, Any]]:
    return functools.partial(build_model, registry, model, FEATURE_DIM, _tabular_dim(experiment), seed=0)


def _tabular_dim(experiment: Experiment) -> int:
    return 0 if experiment.dataset.tabular == [] else TABULAR_DIM


def _check_contract(model: ModelConfig, build: Callable[[], tuple[torch.nn.Module, torch.nn.Module]],
                    tabular_dim: int) -> None:
    fusion, head = _step("building the fusion and head", build)
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
    # Each part on its own: a fusion whose output is cut from its parameters (a detach) would otherwise pass on
    # the head's gradients and stay at its random initialisation through every job.
    for part, module in (("fusion", fusion), ("head", head)):
        trainable = [p for p in module.parameters() if p.requires_grad]
        if trainable and all(p.grad is None for p in trainable):
            raise _Failure("loss.backward()", f"no parameter of the {part} received a gradient")
    parameters = [p for p in [*fusion.parameters(), *head.parameters()] if p.requires_grad]
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


def _check_served(experiment: Experiment, registry: Registry, model: ModelConfig) -> None:
    """A head served without training (oracle, prior), built as a job builds it but on stand-ins of what the runner
    hands it (exact posteriors of ROWS items in a sidecar, training EF values), must predict (ROWS, SAMPLES)."""
    ids = [f"item{row}" for row in range(ROWS)]
    with tempfile.TemporaryDirectory() as directory:
        sidecar = Path(directory) / "oracle.csv"
        synthetic_oracle.write(sidecar, [row for item in ids for row in synthetic_oracle.posterior_rows(
            item, (50.0, 60.0), hidden_state=0, ambiguous=True, prior_vision=0.3, prior_tabular=0.4, label_noise=3.0)])
        training_ef = 55 + 10 * np.random.randn(ROWS)
        head = _step("building the head", lambda: build_served_head(registry, model, sidecar, training_ef))
        predictive = _step(f"predict_ids(ids, {SAMPLES})", lambda: head.predict_ids(ids, n=SAMPLES, seed=0))
    _step(f"predict_ids(ids, {SAMPLES})", lambda: checked(
        model.key, f"predict_ids(ids, {SAMPLES}) samples", torch.as_tensor(predictive.samples), (ROWS, SAMPLES),
        finite=True))


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
        raise _Failure(point, refused(error) or f"{type(error).__name__}: {error}") from None


def _forms(registry: Registry, model: ModelConfig) -> str:
    head = registry.describe("head", model.head).factory
    present = [form for form in (*CLOSED_FORMS, "log_prob", "cdf", "mixture") if hasattr(head, form)]
    return f", {', '.join(present)}" if present else ""
