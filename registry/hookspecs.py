"""The hooks a plugin can implement.

Component hooks use the register-callback style: the plugin receives a ``registry`` bound to one
component kind and calls ``registry.add(name, factory, ...)`` for each component it provides.
Lifecycle hooks let observers (loggers, trackers) follow a run without touching the engine.
"""
from __future__ import annotations

import pluggy

PROJECT = "lvefbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_datasets(registry):
    """Add dataset components: ``registry.add(name, factory, description=..., metadata=...)``."""


@hookspec
def register_encoders(registry):
    """Add video encoders (``nn.Module`` mapping a clip batch (B, C, T, H, W) to (B, D))."""


@hookspec
def register_fusions(registry):
    """Add fusions mapping (video feature (B, D), tabular (B, P) or None) to a condition."""


@hookspec
def register_heads(registry):
    """Add regression heads (training loss and predictive samples from a condition)."""


@hookspec
def register_metrics(registry):
    """Add metrics computed from targets and a predictive distribution."""


@hookspec
def on_run_start(run):
    """A run begins; ``run`` carries the resolved config and the run directory."""


@hookspec
def on_run_end(run, leaderboard):
    """A run finished; ``leaderboard`` is the aggregated table (a pandas DataFrame)."""


@hookspec
def on_job_start(run, job):
    """One training job (model x seed x split) is about to train."""


@hookspec
def on_job_end(run, job, result):
    """One job finished (``result`` is its stored record, including failures)."""


@hookspec
def on_epoch_end(run, job, epoch, logs):
    """An epoch of a job finished; ``logs`` maps names such as ``train_loss`` to floats."""


@hookspec
def on_trial_end(run, job, trial, value):
    """An Optuna tuning trial finished with objective ``value`` (None when pruned or failed)."""


COMPONENT_HOOKS = {
    "dataset": "register_datasets",
    "encoder": "register_encoders",
    "fusion": "register_fusions",
    "head": "register_heads",
    "metric": "register_metrics",
}
