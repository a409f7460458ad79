"""The hooks a plugin can implement, with the types of what they receive (as pytest's ``hookspec.py``).

A plugin is a module (or object) with functions of these names decorated with ``@registry.hookimpl``; it
may accept any subset of a hook's arguments, by name. Component hooks use the register-callback style:
the plugin receives a ``registry`` bound to one component kind and calls ``registry.add(...)`` for each
component it provides; the component's contract (README, "Writing a plugin") is checked as it is added.
Lifecycle hooks let observers (loggers, trackers) follow a run without touching the engine; their
return values are ignored and an exception in one stops the run, so an observer should not raise.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

import pluggy

if TYPE_CHECKING:
    import pandas

    from benchmark.config import Experiment, ModelConfig

PROJECT = "lvefbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- what the hooks receive
class ComponentAdder(Protocol):
    """What a component hook receives as ``registry`` (a ``registry.Registrar``)."""

    kind: str    # "dataset", "encoder", "fusion", "head" or "metric"
    origin: str  # the plugin: "builtin", "entry point ...", "file ...", "module ..."

    def add(self, name: str, factory: Callable[..., Any], description: str = "",
            metadata: Mapping[str, Any] | None = None, search_space: Mapping[str, Any] | None = None) -> None:
        """Register ``factory`` (usually the component's class) as ``name``.

        :param name: the name experiments use; letters, digits, ``_`` and ``-``.
        :param factory: builds the component from its parameters (for a metric: the metric function).
        :param description: one paragraph for ``list``; the factory's docstring when empty.
        :param metadata: declared facts and capabilities, e.g. ``probabilistic``, ``needs_tabular``,
            ``trajectories``, a metric's ``label`` and ``direction``.
        :param search_space: the default Optuna space: names to ``FloatParam``, ``IntParam``, ``Categorical``.
        :raises registry.ContractError: the component lacks a member its kind requires.
        """


class RunView(Protocol):
    """What lifecycle hooks receive as ``run``."""

    experiment: Experiment  # the resolved experiment
    directory: Path         # runs/<name>/: an observer writes its files here
    registry: Any           # the run's ``registry.Registry``, e.g. ``run.registry.describe("head", name)``


class JobView(Protocol):
    """What lifecycle hooks receive as ``job``: one model trained with one seed on one split."""

    model: ModelConfig  # the ``[[models]]`` entry
    seed: int
    split: str

    @property
    def id(self) -> str:
        """The job's folder name under ``runs/<name>/jobs/``."""


# --------------------------------------------------------------------------- component hooks
@hookspec
def register_datasets(registry: ComponentAdder) -> None:
    """Add datasets: classes built as ``factory(root=..., **params)`` with ``protocols``, ``load()`` and
    ``splits(index, protocol, **options)``.

    :param registry: adds components of kind ``dataset`` for this plugin.
    """


@hookspec
def register_encoders(registry: ComponentAdder) -> None:
    """Add video encoders: ``nn.Module`` mapping a clip batch (B, C, T, H, W) to (B, feature_dim), with
    ``feature_dim``, ``input_spec`` and ``load_weights(path, strict)``.

    :param registry: adds components of kind ``encoder`` for this plugin.
    """


@hookspec
def register_fusions(registry: ComponentAdder) -> None:
    """Add fusions: ``nn.Module`` built with ``feature_dim`` and ``tabular_dim`` mapping (video feature
    (B, D), tabular (B, P) or None) to a condition (B, out_dim).

    :param registry: adds components of kind ``fusion`` for this plugin.
    """


@hookspec
def register_heads(registry: ComponentAdder) -> None:
    """Add regression heads: ``nn.Module`` built with ``condition_dim`` with ``loss(condition, target)``
    and ``sample(condition, n)``, optionally closed forms.

    :param registry: adds components of kind ``head`` for this plugin.
    """


@hookspec
def register_metrics(registry: ComponentAdder) -> None:
    """Add metrics: functions ``(y, predictive) -> float`` with metadata ``label``, ``direction`` and the per-item
    ``aggregate`` the tables compute them from (``benchmark.api.add_metric`` registers one from that aggregate).

    :param registry: adds components of kind ``metric`` for this plugin.
    """


# --------------------------------------------------------------------------- lifecycle hooks
# A job's hooks (on_job_start, on_epoch_end, on_job_end) and a tuning study's on_trial_end are called in
# the process that does that work: with ``train.workers`` > 1 a forked worker process, with a shared
# storage the worker that claimed it. A plugin that gathers figures across jobs should write them to a
# file (as ``plugins/observers/csv_log.py`` does), not keep them in memory for ``on_run_end``.
@hookspec
def on_run_start(run: RunView) -> None:
    """A run begins: its directory exists; the data are not prepared yet.

    :param run: the resolved experiment, the run directory and the registry.
    """


@hookspec
def on_run_end(run: RunView, leaderboard: pandas.DataFrame) -> None:
    """A run finished and its tables are written.

    :param run: as in ``on_run_start``.
    :param leaderboard: the aggregated table, one row per model (the columns of ``leaderboard.csv``).
    """


@hookspec
def on_job_start(run: RunView, job: JobView) -> None:
    """One training job (model x seed x split) is about to run.

    :param run: as in ``on_run_start``.
    :param job: the model, seed and split.
    """


@hookspec
def on_job_end(run: RunView, job: JobView, result: Mapping[str, Any]) -> None:
    """One job finished, successfully or not.

    :param run: as in ``on_run_start``.
    :param job: as in ``on_job_start``.
    :param result: its stored record (``result.json``): ``status`` "ok" or "failed" (then ``error``),
        ``seconds``, and for trained models ``best_epoch`` and ``epochs_run``.
    """


@hookspec
def on_epoch_end(run: RunView, job: JobView, epoch: int, logs: Mapping[str, float]) -> None:
    """An epoch of a job's training finished.

    :param run: as in ``on_run_start``.
    :param job: as in ``on_job_start``.
    :param epoch: the epoch number, from 1.
    :param logs: ``train_loss``, ``val_loss``, ``lr`` and the monitored ``val_mae`` or ``val_crps`` when set.
    """


@hookspec
def on_trial_end(run: RunView, job: JobView, trial: int, value: float | None) -> None:
    """An Optuna tuning trial finished.

    :param run: as in ``on_run_start``.
    :param job: the model being tuned, on its split, with the first seed (a model is tuned once per split);
        its ``id`` names the tuning study, not a job folder.
    :param trial: the trial's number in its study.
    :param value: the objective, or None when the trial was pruned or failed.
    """


COMPONENT_HOOKS = {
    "dataset": "register_datasets",
    "encoder": "register_encoders",
    "fusion": "register_fusions",
    "head": "register_heads",
    "metric": "register_metrics",
}
