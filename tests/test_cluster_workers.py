"""Three ``run`` workers share one benchmark through an Optuna storage; the first of them to start a
job is killed there (SIGKILL). Every job must still finish exactly once, each tuning study must hold
exactly ``tune.trials`` trials, and ``status`` and ``report --storage`` must see the whole run from a
directory no worker wrote.

The same test runs against PostgreSQL when ``LVEFBENCH_TEST_POSTGRES`` holds a URL of a database the
test may write to (``.ci/run`` starts one), e.g. postgresql://lvef:lvef@127.0.0.1:5432/lvef.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.components import resolve
from benchmark.config import load_experiment
from benchmark.data.prepare import load_data
from benchmark.orchestration.cluster import RESULT, counted_trials, jobs_study_name
from benchmark.orchestration.storage import open_storage
from benchmark.store import RunDir, read_json

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "quick.toml"
POSTGRES = os.environ.get("LVEFBENCH_TEST_POSTGRES", "")
TRIALS = 3
KILL_ENV = "LVEFBENCH_TEST_KILL_ONCE"
KILL_PLUGIN = f'''
import os, signal
from registry import hookimpl


@hookimpl
def on_job_start(run, job):
    try:  # the first worker to create the marker file dies holding its claim; the others go on
        os.close(os.open(os.environ["{KILL_ENV}"], os.O_CREAT | os.O_EXCL))
    except (KeyError, FileExistsError):
        return
    os.kill(os.getpid(), signal.SIGKILL)
'''


def overrides(name: str, data: Path, plugin: Path) -> list[str]:
    values = [f'name="{name}"', f'synthetic.root="{data}"', f'plugins=["{plugin}"]', "synthetic.n=24",
              "clips.frames=4", "clips.size=32", "encoder.params={width=4}",
              "encoder.pretrain.epochs=1", "train.epochs=2", "evaluate.samples=4", "evaluate.bootstrap=20",
              f"tune.trials={TRIALS}", "seeds=[0,1]", 'models=[{head="mse",label="mse"},{head="gaussian",label="gaussian"}]']
    return [item for value in values for item in ("--set", value)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The data generated once before the workers start (workers on one machine share its folder)."""
    base = tmp_path_factory.mktemp("cluster")
    plugin = base / "kill_at_job.py"
    plugin.write_text(KILL_PLUGIN)
    data = base / "data"
    sets = overrides("cluster", data, plugin)
    experiment = resolve(load_experiment(EXPERIMENT, [v for v in sets[1::2]])).experiment
    load_data(experiment, resolve(experiment).registry, say=lambda _: None)
    return base, data, plugin


def run_workers(storage: str, base: Path, data: Path, plugin: Path, count: int = 3):
    name = f"cluster{uuid.uuid4().hex[:6]}"  # a fresh run, even in a database used before
    sets = overrides(name, data, plugin)
    workers = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", KILL_ENV: str(base / f"{name}.killed")}
    for index in range(count):
        log = (base / f"{name}-{index}.log").open("w")
        workers.append((subprocess.Popen(
            [sys.executable, "-m", "benchmark", "run", str(EXPERIMENT), *sets, "--out", str(base / f"{name}-{index}"),
             "--storage", storage, "--heartbeat", "1", "--quiet"], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT), log))
    codes = []
    for process, log in workers:
        codes.append(process.wait(timeout=240))
        log.close()
    return name, sets, codes


def check_run(storage_spec: str, base: Path, name: str, sets: list[str], codes: list[int], capsys) -> None:
    import optuna
    from optuna.trial import TrialState

    logs = "\n".join(path.read_text()[-3000:] for path in sorted(base.glob(f"{name}-*.log")))
    assert sorted(codes) == [-signal.SIGKILL] + [0] * (len(codes) - 1), logs
    survivors = [index for index, code in enumerate(codes) if code == 0]

    survivor = RunDir(base / f"{name}-{survivors[0]}")
    manifest = read_json(survivor.manifest)
    jobs = manifest["jobs"]
    assert len(jobs) == 6  # mse, gaussian and the prior row, two seeds
    storage = open_storage(storage_spec, base)
    board = optuna.load_study(study_name=jobs_study_name(name, jobs), storage=storage)
    claims = [trial for trial in board.get_trials() if "job" in trial.user_attrs and "skipped" not in trial.user_attrs]
    done = [trial.user_attrs["job"] for trial in claims if trial.state == TrialState.COMPLETE]
    assert sorted(done) == sorted(jobs)  # every job, each exactly once
    results = [trial.user_attrs[RESULT] for trial in claims if trial.state == TrialState.COMPLETE]
    assert all(result["status"] == "ok" for result in results)
    for model in ("mse", "gaussian"):  # whichever worker ran a job, it trained with the one tuned winner
        assert len({json.dumps(r["params"], sort_keys=True) for r in results if r["model"] == model}) == 1
    dead = [trial for trial in claims if trial.state == TrialState.FAIL]
    assert len(dead) == 1  # the killed worker's claim, failed by its missing heartbeat and retried
    retried = [trial for trial in claims if trial.system_attrs.get("failed_trial") == dead[0].number]
    assert [trial.state for trial in retried] == [TrialState.COMPLETE]
    assert retried[0].user_attrs["worker"] != dead[0].user_attrs["worker"]

    for model in ("mse", "gaussian"):  # each study is named by its identity, which the manifest records
        study = optuna.load_study(study_name=manifest["identity"]["tuning studies"][model]["fold0"], storage=storage)
        counted = counted_trials(study.get_trials())
        assert len(counted) == TRIALS, [(t.number, t.state, t.user_attrs) for t in study.get_trials()]
        assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in counted)

    # Every survivor trained with the same tuned parameters and wrote the full leaderboard.
    boards = [pd.read_csv(base / f"{name}-{index}" / "leaderboard.csv") for index in survivors]
    assert all(set(board["status"]) == {"ok"} and len(board) == 3 for board in boards)
    pd.testing.assert_frame_equal(boards[0], boards[1])

    # A machine that ran nothing: status of the storage, and the report from what the workers stored.
    capsys.readouterr()
    assert main(["status", storage_spec]) == 0
    shown = capsys.readouterr().out
    assert f"{name} (jobs study" in shown and "6 jobs: 6 done, 0 running, 0 pending, 0 failed" in shown
    assert "3/3" in shown
    fresh = base / name
    assert main(["report", str(fresh), "--storage", storage_spec]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(fresh / "leaderboard.csv"), boards[0])
    assert all((fresh / "jobs" / job / "predictions.csv").is_file() for job in jobs)


def test_workers_share_sqlite(setup, capsys):
    base, data, plugin = setup
    storage = f"sqlite:///{base / 'shared.db'}"
    name, sets, codes = run_workers(storage, base, data, plugin)
    check_run(storage, base, name, sets, codes, capsys)


@pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL server: set LVEFBENCH_TEST_POSTGRES=postgresql://user:"
                    "password@127.0.0.1:5432/db (.ci/run starts one) to run the workers against it")
def test_workers_share_postgresql(setup, capsys):
    base, data, plugin = setup
    name, sets, codes = run_workers(POSTGRES, base, data, plugin)
    check_run(POSTGRES, base, name, sets, codes, capsys)
