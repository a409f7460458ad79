"""``run`` workers share one benchmark through an Optuna storage and an artifact store (the run folders).

Two workers: each encoder stage (stage 1 and the features of every role, per seed) is computed once, by one
of them, every tuning trial suggests and scores what the one process's trial of that number does, and the
tuned winners and the leaderboard are the one process's bit for bit (every process on one thread). Three
workers: the first to train a stage-1 encoder is
killed there and the first to start a job is killed there (SIGKILL); the stage and the job are retried by
another worker, every job finishes exactly once, each stage is computed to the end once, each tuning study
holds exactly ``tune.trials`` trials, and ``status`` and ``report --storage`` see the whole run from a
directory no worker wrote.

Both run against PostgreSQL too when ``LVEFBENCH_TEST_POSTGRES`` holds a URL of a database the test may
write to (``.ci/run`` starts one), e.g. postgresql://lvef:lvef@127.0.0.1:5432/lvef.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.components import resolve
from benchmark.config import load_experiment
from benchmark.data.prepare import load_data
from benchmark.orchestration.cluster import RESULT, counted_trials, jobs_study_name
from benchmark.orchestration.stages import FILES, STAGE, stages_study_name
from benchmark.orchestration.storage import open_storage
from benchmark.orchestration.timings import TIMINGS_FILE
from benchmark.store import RunDir, read_json

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "quick.toml"
POSTGRES = os.environ.get("LVEFBENCH_TEST_POSTGRES", "")
STORAGES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES, reason="no PostgreSQL server: set LVEFBENCH_TEST_POSTGRES=postgresql://user:password@127.0.0.1:"
    "5432/db (.ci/run starts one) to run the workers against it"))]
TRIALS = 3
KILL_AT_JOB, KILL_IN_STAGE = "LVEFBENCH_TEST_KILL_AT_JOB", "LVEFBENCH_TEST_KILL_IN_STAGE"
# The first process to create a marker file dies there (holding its claim); the others go on. A marker made
# beforehand kills nobody.
KILL_PLUGIN = f'''
import os, signal

import torch

from plugins.encoders.area_length import AreaLength
from registry import hookimpl


def first_to(marker):
    try:
        os.close(os.open(os.environ[marker], os.O_CREAT | os.O_EXCL))
    except (KeyError, FileExistsError):
        return
    os.kill(os.getpid(), signal.SIGKILL)


class DiesInStageOne(AreaLength):
    """area_length, but the first process to train one (stage 1 on the tracings) dies in it."""

    def segment(self, images):
        if torch.is_grad_enabled() and self.training:
            first_to("{KILL_IN_STAGE}")
        return super().segment(images)


@hookimpl
def register_encoders(registry):
    registry.add("area_length_dies", DiesInStageOne)


@hookimpl
def on_job_start(run, job):
    first_to("{KILL_AT_JOB}")
'''
# One stage-1 encoder trained to the end (its loss said), one feature extraction per role of a stage.
TRAINED = re.compile(r"^stage 1 (\S+)/seed (\d+) \(\w+\): loss ", re.MULTILINE)  # the line of a finished training
EXTRACTED = re.compile(r"^features (\S+)/seed (\d+)/(\w+): \d+ clips \(miss\)", re.MULTILINE)


def overrides(name: str, data: Path, plugin: Path, trials: int) -> list[str]:
    values = [f'name="{name}"', f'synthetic.root="{data}"', f'plugins=["{plugin}"]', "synthetic.n=24",
              "clips.frames=4", "clips.size=32", 'encoder.name="area_length_dies"', "encoder.params={width=4}",
              "encoder.pretrain.epochs=1", "train.epochs=2", "evaluate.samples=4", "evaluate.bootstrap=20",
              f"tune.trials={trials}", "seeds=[0,1]", 'models=[{head="mse",label="mse"},{head="gaussian",label="gaussian"}]']
    return [item for value in values for item in ("--set", value)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The data generated once before the workers start (workers on one machine share its folder)."""
    base = tmp_path_factory.mktemp("cluster")
    plugin = base / "kills.py"
    plugin.write_text(KILL_PLUGIN)
    data = base / "data"
    sets = overrides("cluster", data, plugin, TRIALS)
    experiment = resolve(load_experiment(EXPERIMENT, [v for v in sets[1::2]])).experiment
    load_data(experiment, resolve(experiment).registry, say=lambda _: None)
    return base, data, plugin


def storage_for(kind: str, base: Path) -> str:
    return POSTGRES if kind == "postgresql" else f"sqlite:///{base / 'shared.db'}"


def start(base: Path, name: str, index: int, arguments: list[str], env: dict[str, str]):
    log = (base / f"{name}-{index}.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "benchmark", "run", str(EXPERIMENT), *arguments, "--out",
                                str(base / f"{name}-{index}"), "--quiet"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    return process, log


def environment(base: Path, name: str, kills: tuple[str, ...]) -> dict[str, str]:
    """The workers' environment: one thread each, and the deaths ``kills`` armed (the others' markers made)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **{marker: str(base / f"{name}.{marker}")
                                                    for marker in (KILL_AT_JOB, KILL_IN_STAGE)}}
    for marker in {KILL_AT_JOB, KILL_IN_STAGE} - set(kills):
        Path(env[marker]).touch()
    return env


def run_workers(storage: str, base: Path, data: Path, plugin: Path, count: int, trials: int,
                kills: tuple[str, ...] = (KILL_AT_JOB, KILL_IN_STAGE)):
    """``count`` workers of a fresh run (even in a database used before); ``kills``: the deaths armed."""
    name = f"cluster{uuid.uuid4().hex[:6]}"
    sets = overrides(name, data, plugin, trials)
    env = environment(base, name, kills)
    workers = [start(base, name, index, [*sets, "--storage", storage, "--heartbeat", "1"], env)
               for index in range(count)]
    codes = []
    for process, log in workers:
        codes.append(process.wait(timeout=300))
        log.close()
    return name, codes


def computed_once(base: Path, name: str) -> None:
    """Across every worker's log, each stage-1 encoder was trained to the end once and each role's features
    extracted once, for both seeds."""
    logs = "".join(path.read_text() for path in sorted(base.glob(f"{name}-*.log")))
    assert Counter(TRAINED.findall(logs)) == {("fold0", "0"): 1, ("fold0", "1"): 1}, logs[-3000:]
    assert Counter(EXTRACTED.findall(logs)) == {("fold0", seed, role): 1 for seed in "01"
                                                for role in ("train", "val", "test")}


@pytest.fixture(scope="module")
def one_process(setup) -> Path:
    """The run of the same experiment by one process without a storage, which the workers of either storage
    must match; the tests only read it. Nothing it computes depends on the run's name."""
    base, data, plugin = setup
    name = "cluster-alone"
    process, log = start(base, name, 0, overrides(name, data, plugin, TRIALS), environment(base, name, kills=()))
    assert process.wait(timeout=300) == 0, (base / f"{name}-0.log").read_text()[-3000:]
    log.close()
    return base / f"{name}-0"


@pytest.mark.parametrize("kind", STORAGES)
def test_two_workers_compute_each_stage_once_and_match_one_process(setup, kind, capsys, one_process):
    base, data, plugin = setup
    storage = storage_for(kind, base)
    name, codes = run_workers(storage, base, data, plugin, count=2, trials=TRIALS, kills=())
    assert codes == [0, 0], "".join(path.read_text()[-3000:] for path in base.glob(f"{name}-*.log"))
    computed_once(base, name)
    alone = pd.read_csv(one_process / "leaderboard.csv")
    winners = {path.name: read_json(path)["params"] for path in (one_process / "tuning").glob("*.json")}
    assert sorted(winners) == ["gaussian__fold0.json", "mse__fold0.json"]
    for index in range(2):
        pd.testing.assert_frame_equal(pd.read_csv(base / f"{name}-{index}" / "leaderboard.csv"), alone,
                                      check_exact=True)
        assert {path: read_json(base / f"{name}-{index}" / "tuning" / path)["params"] for path in winners} == winners
    shared = tuning_trials(storage, base / f"{name}-0")  # the one process's trials, each in the same slot
    alone_trials = tuning_trials(f"sqlite:///{one_process / 'optuna.db'}", one_process)
    assert [trial[:4] for trial in shared] == [trial[:4] for trial in alone_trials]
    assert len(shared) == 2 * TRIALS and all(trial[4] for trial in shared)  # (which worker ran each: by timing)
    capsys.readouterr()
    assert main(["status", storage]) == 0
    shown = capsys.readouterr().out
    assert "2 encoder stages: 2 done, 0 running, 0 pending, 0 failed" in shown
    assert "workers on other machines compute their own" in shown  # no --artifacts: the run folders


def tuning_trials(storage_spec: str, run: Path) -> list[tuple]:
    """(model, trial number, parameters, value, worker) of each tuning trial of the run that used the budget
    (worker: where shared; a trial asked past the budget in a race with the last one fails unrun)."""
    import optuna

    names = read_json(RunDir(run).manifest)["identity"]["tuning studies"]
    storage = open_storage(storage_spec, run)
    studies = {model: optuna.load_study(study_name=splits["fold0"], storage=storage) for model, splits in names.items()}
    return sorted((model, trial.number, json.dumps(trial.params, sort_keys=True), trial.value,
                   trial.user_attrs.get("worker", ""))
                  for model, study in studies.items() for trial in counted_trials(study.get_trials()))


def claims_of(storage, study: str, attr: str) -> list:
    import optuna

    trials = optuna.load_study(study_name=study, storage=storage).get_trials()
    return [trial for trial in trials if attr in trial.user_attrs and "skipped" not in trial.user_attrs]


def each_done_once_and_the_dead_claim_retried(claims: list, attr: str, names: list[str]) -> list:
    """Every unit completed by exactly one claim; one claim failed by a dead worker's missing heartbeat and
    completed by its retry on another worker. Returns the completed claims."""
    from optuna.trial import TrialState

    done = [trial for trial in claims if trial.state == TrialState.COMPLETE]
    assert sorted(trial.user_attrs[attr] for trial in done) == sorted(names)
    dead = [trial for trial in claims if trial.state == TrialState.FAIL]
    assert len(dead) == 1 and "error" not in dead[0].user_attrs
    retried = [trial for trial in claims if trial.system_attrs.get("failed_trial") == dead[0].number]
    assert [trial.state for trial in retried] == [TrialState.COMPLETE]
    assert retried[0].user_attrs["worker"] != dead[0].user_attrs["worker"]
    return done


def check_run(storage_spec: str, base: Path, name: str, codes: list[int], capsys) -> None:
    import optuna
    from optuna.trial import TrialState

    logs = "\n".join(path.read_text()[-3000:] for path in sorted(base.glob(f"{name}-*.log")))
    assert sorted(codes) == [-signal.SIGKILL] * 2 + [0] * (len(codes) - 2), logs  # one in a stage, one at a job
    survivor = RunDir(base / f"{name}-{codes.index(0)}")
    manifest = read_json(survivor.manifest)
    jobs, stages = manifest["jobs"], manifest["stages"]
    assert len(jobs) == 6 and len(stages) == 2  # mse, gaussian and the prior row, two seeds
    storage = open_storage(storage_spec, base)

    done = each_done_once_and_the_dead_claim_retried(claims_of(storage, stages_study_name(name, stages), STAGE),
                                                     STAGE, stages)
    assert all(len(trial.user_attrs[FILES]) == 7 for trial in done)  # stage-1 weights, three cache entries
    computed_once(base, name)

    done = each_done_once_and_the_dead_claim_retried(claims_of(storage, jobs_study_name(name, jobs), "job"),
                                                     "job", jobs)
    results = [trial.user_attrs[RESULT] for trial in done]
    assert all(result["status"] == "ok" for result in results)
    for model in ("mse", "gaussian"):  # whichever worker ran a job, it trained with the one tuned winner
        assert len({json.dumps(r["params"], sort_keys=True) for r in results if r["model"] == model}) == 1

    for model in ("mse", "gaussian"):  # each study is named by its identity, which the manifest records
        study = optuna.load_study(study_name=manifest["identity"]["tuning studies"][model]["fold0"], storage=storage)
        counted = counted_trials(study.get_trials())
        assert len(counted) == TRIALS, [(t.number, t.state, t.user_attrs) for t in study.get_trials()]
        assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in counted)

    board = pd.read_csv(survivor.root / "leaderboard.csv")
    assert set(board["status"]) == {"ok"} and len(board) == 3
    assert "tuning" in read_json(survivor.root / TIMINGS_FILE)["stages"]  # a worker's tuning time is measured

    # A machine that ran nothing: status of the storage, and the report from what the workers stored, with
    # every job's model from the workers' run folders (the same machine).
    capsys.readouterr()
    assert main(["status", storage_spec]) == 0
    shown = capsys.readouterr().out
    assert f"{name} (jobs study" in shown and "6 jobs: 6 done, 0 running, 0 pending, 0 failed" in shown
    assert "3/3" in shown and "2 encoder stages: 2 done" in shown
    fresh = base / name
    assert main(["report", str(fresh), "--storage", storage_spec]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(fresh / "leaderboard.csv"), board, check_exact=True)
    assert all((fresh / "jobs" / job / "predictions.csv").is_file() for job in jobs)
    assert sum((fresh / "jobs" / job / "model.pt").is_file() for job in jobs) == 4  # the prior row has none


@pytest.mark.parametrize("kind", STORAGES)
def test_three_workers_retry_a_stage_and_a_job_of_killed_workers(setup, kind, capsys):
    base, data, plugin = setup
    storage = storage_for(kind, base)
    name, codes = run_workers(storage, base, data, plugin, count=3, trials=TRIALS)
    check_run(storage, base, name, codes, capsys)
