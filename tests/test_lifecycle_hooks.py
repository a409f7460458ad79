"""The lifecycle hooks a plugin observes a run with: each fires when its hookspec says, with what it says."""
from __future__ import annotations

import json

from faults.faultkit import cli, run_args, write_experiment

OBSERVER = '''
import json
from pathlib import Path

from registry import hookimpl

LOG = Path({log!r})


def record(hook, **fields):
    with LOG.open("a") as stream:
        stream.write(json.dumps({{"hook": hook, **fields}}) + "\\n")


@hookimpl
def on_run_start(run):
    record("on_run_start", name=run.experiment.name)


@hookimpl
def on_job_start(run, job):
    record("on_job_start", job=job.id, model=job.model.key, seed=job.seed, split=job.split)


@hookimpl
def on_epoch_end(run, job, epoch, logs):
    record("on_epoch_end", job=job.id, epoch=epoch, logs=sorted(logs))


@hookimpl
def on_trial_end(run, job, trial, value):
    record("on_trial_end", model=job.model.key, split=job.split, trial=trial, value=value)


@hookimpl
def on_job_end(run, job, result):
    record("on_job_end", job=job.id, status=result["status"])


@hookimpl
def on_run_end(run, leaderboard):
    record("on_run_end", models=sorted(leaderboard["model"]))
'''

TUNED = '''\
[[models]]
head = "mse"
label = "mse"
search_space = { lr = { float = [1e-4, 1e-2], log = true } }
'''


def test_every_lifecycle_hook_fires_in_order_with_its_arguments(tmp_path, synthetic_root):
    log = tmp_path / "hooks.jsonl"
    (tmp_path / "observer.py").write_text(OBSERVER.format(log=str(log)))
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, models=TUNED,
                                  plugins=["observer.py"], trials=3)
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 0, outcome.text
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    hooks = [call["hook"] for call in calls]

    assert hooks[0] == "on_run_start" and hooks[-1] == "on_run_end" and hooks.count("on_run_start") == 1
    trials = [call for call in calls if call["hook"] == "on_trial_end"]
    assert [call["trial"] for call in trials] == [0, 1, 2]
    assert all(call["model"] == "mse" and call["split"] == "fold0" for call in trials)
    assert all(call["value"] is None or call["value"] >= 0 for call in trials)
    assert any(call["value"] is not None for call in trials), "no trial reported its objective"
    # Tuning comes before the jobs that use its parameters; each job's epochs fall between its start and end.
    assert hooks.index("on_job_start") > max(index for index, hook in enumerate(hooks) if hook == "on_trial_end")
    started = [call["job"] for call in calls if call["hook"] == "on_job_start"]
    ended = [call["job"] for call in calls if call["hook"] == "on_job_end"]
    assert started == ended and len(started) == len(set(started)) >= 2
    mse = next(call for call in calls if call["hook"] == "on_job_start" and call["model"] == "mse")
    epochs = [call for call in calls if call["hook"] == "on_epoch_end" and call["job"] == mse["job"]]
    assert [call["epoch"] for call in epochs] == [1, 2]  # train.epochs of the tiny experiment
    assert {"train_loss", "val_loss", "lr"} <= set(epochs[0]["logs"])
    assert all(call["status"] == "ok" for call in calls if call["hook"] == "on_job_end")
    assert "mse" in calls[-1]["models"]
