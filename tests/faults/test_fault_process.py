"""Process faults: kill -9 at each stage of a run, then rerun. The rerun must finish with exactly the
leaderboard of an undisturbed run, reuse the work that was committed, and leave no half-written file.

Each kill is deterministic: the child process SIGKILLs itself at a chosen call or atomic rename
(killpoint.py), never after a sleep that could race.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
from faultkit import (
    KilledRuns,
    assert_complete_files,
    cli,
    copy_run,
    leaderboard,
    run_args,
    temporaries,
    write_experiment,
)


@pytest.fixture(scope="module")
def run_killed(tmp_path_factory):
    """``run_killed(tmp_path, kill, experiment, out)``: the run in a fresh process that dies at ``kill``
    (faultkit.KilledRuns)."""
    killed_runs = KilledRuns(tmp_path_factory.mktemp("killed"))
    yield killed_runs
    killed_runs.close(kill=False)


def killed(result) -> None:
    assert result.returncode == -signal.SIGKILL, f"the child was meant to die by SIGKILL:\n{result.stderr[-2000:]}"


def resume(experiment, out):
    outcome = cli(*run_args(experiment, out))
    assert outcome.code == 0, outcome.text
    assert temporaries(out) == [], "the rerun left temporary files behind"
    assert_complete_files(out)
    return outcome


def generations(root):
    """What a generation left in ``root``, apart from the lock that serialises concurrent generators."""
    return [path for path in root.iterdir() if path.suffix != ".lock"]


def test_kill_during_data_generation(tmp_path, reference_run, run_killed):
    fresh = tmp_path / "synthetic"  # not the session's pre-generated data: this run must generate it
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=fresh)
    # Every video is rendered into the staging folder; the kill comes as the oracle table is written.
    killed(run_killed(tmp_path, ["call", "benchmark.synth.oracle:write", "1"], experiment, tmp_path / "run"))
    (staging,) = generations(fresh)
    assert staging.name.startswith(".") and ".partial-" in staging.name, \
        "a killed generation must leave only its hidden staging folder, nothing that looks complete"

    resume(experiment, tmp_path / "run")
    (generation,) = generations(fresh)
    assert not generation.name.startswith(".") and (generation / "SYNTHETIC.md").is_file(), \
        "the rerun must replace the dead staging folder by one complete generation"
    pd.testing.assert_frame_equal(leaderboard(tmp_path / "run"), leaderboard(reference_run))


def test_kill_during_feature_caching(tmp_path, experiment, reference_run, run_killed):
    out = tmp_path / "run"
    # The train features are committed; the val entry's npz is written, its metadata (the commit mark) not.
    killed(run_killed(tmp_path, ["replace", "*/cache/*.json", "2"], experiment, out))
    assert len(list((out / "cache").glob("*.json"))) == 1
    assert len(list((out / "cache").glob("*.npz"))) == 2
    assert_complete_files(out)

    outcome = resume(experiment, out)
    assert re.search(r"train: \d+ clips \(hit\)", outcome.out), outcome.out
    assert re.search(r"val: \d+ clips \(miss\)", outcome.out), outcome.out
    assert "stage 1 fold0/seed 0: reused" in outcome.out, "the stored stage-1 encoder must be reused"
    pd.testing.assert_frame_equal(leaderboard(out), leaderboard(reference_run))


def test_kill_during_training(tmp_path, experiment, reference_run, run_killed):
    out = tmp_path / "run"
    # Two epochs per job: the fourth validation pass is the second epoch of the second job, whose first
    # epoch is already in training_log.csv.
    killed(run_killed(tmp_path, ["call", "benchmark.training.loop:_validate", "4"], experiment, out))
    finished = sorted(path.parent.name for path in (out / "jobs").glob("*/result.json"))
    assert [name.split("__")[0] for name in finished] == ["mse"]
    assert_complete_files(out)

    outcome = resume(experiment, out)
    assert "1 already done, 2 to run" in outcome.out  # gaussian and the prior row
    pd.testing.assert_frame_equal(leaderboard(out), leaderboard(reference_run))
    log, reference_log = (pd.read_csv(run / "training_log.csv") for run in (out, reference_run))
    assert not log.duplicated(["job", "epoch"]).any(), "the resumed job's first epoch is logged twice"
    assert len(log) == len(reference_log)


@pytest.mark.parametrize("target, jobs_done", [("*/jobs/*/result.json", 0), ("*/leaderboard.csv", 3)])
def test_kill_while_writing_results(tmp_path, experiment, reference_run, target, jobs_done, run_killed):
    out = tmp_path / "run"
    # Killed with the file complete under its temporary name, just before the rename that commits it.
    killed(run_killed(tmp_path, ["replace", target, "1"], experiment, out))
    assert len(list(out.glob("jobs/*/result.json"))) == jobs_done
    assert not (out / "leaderboard.csv").exists()
    assert_complete_files(out)

    resume(experiment, out)
    pd.testing.assert_frame_equal(leaderboard(out), leaderboard(reference_run))


TUNED_MODEL = """\
[[models]]
head = "mse"
label = "mse"
search_space = { lr = { float = [1e-4, 1e-2], log = true }, width = { choices = [8, 16, 32] } }
"""


def tuned_experiment(folder, synthetic_root):
    return write_experiment(folder / "experiment.toml", synthetic_root=synthetic_root, models=TUNED_MODEL, trials=3)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory, synthetic_root):
    """The tuned experiment's undisturbed run, which every interrupted one must reproduce (only read)."""
    folder = tmp_path_factory.mktemp("undisturbed")
    assert cli(*run_args(tuned_experiment(folder, synthetic_root), folder / "run")).code == 0
    return folder


@pytest.mark.parametrize("how", ["call", "interrupt"])  # kill -9, or Ctrl-C (SIGINT) in the middle of a trial
def test_kill_during_tuning(tmp_path, synthetic_root, how, run_killed, undisturbed):
    folder = tmp_path / "interrupted"
    experiment = tuned_experiment(folder, synthetic_root)
    # Each trial trains two epochs; the third validation pass is inside the second trial.
    stopped = run_killed(folder, [how, "benchmark.training.loop:_validate", "3"], experiment, folder / "run")
    if how == "interrupt":
        assert stopped.returncode == 130 and "interrupted" in stopped.stderr, stopped.stderr[-2000:]
        assert not (folder / "run" / "run.lock").exists(), "Ctrl-C must release the run directory"
    else:
        killed(stopped)
    assert (folder / "run" / "optuna.db").is_file() and not (folder / "run" / "tuning").exists()

    resume(experiment, folder / "run")
    stored = [json.loads((run / "tuning" / "mse__fold0.json").read_text())
              for run in (undisturbed / "run", folder / "run")]
    assert stored[0]["params"] == stored[1]["params"], "the resumed study must pick what the undisturbed one picked"
    assert stored[1]["study"] == stored[0]["study"], "its own study is resumed (the ledger knows its trials)"
    assert stored[1]["trials"] == 3
    pd.testing.assert_frame_equal(leaderboard(folder / "run"), leaderboard(undisturbed / "run"))


def test_damaged_cache_entry_is_rebuilt(tmp_path, reference_run):
    experiment, out = reference_run.parent / "experiment.toml", copy_run(reference_run, tmp_path / "run")
    for result in out.glob("jobs/*/result.json"):
        result.unlink()  # the jobs must run again, so the features are read back
    entry = max((out / "cache").glob("*.npz"), key=lambda path: path.stat().st_size)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit's worth of rot: still a readable zip, wrong numbers
    entry.write_bytes(bytes(data))

    outcome = resume(experiment, out)
    assert "(rebuilt: checksum mismatch)" in outcome.out, outcome.out
    pd.testing.assert_frame_equal(leaderboard(out), leaderboard(reference_run))


def test_damaged_result_file_is_named(tmp_path, reference_run):
    experiment, out = reference_run.parent / "experiment.toml", copy_run(reference_run, tmp_path / "run")
    result = next(out.glob("jobs/mse__*/result.json"))
    result.write_text(result.read_text()[:40])  # e.g. an editor or a sync tool cut it short

    outcome = cli(*run_args(experiment, out))
    assert outcome.code == 1
    message = " ".join(outcome.err.split())
    assert f"{result} is not valid JSON" in message and "delete it to recompute that step" in message


def test_temporaries_of_live_writers_are_kept(tmp_path, reference_run):
    """Another worker writing into the same folder keeps its in-flight file; a dead writer's goes."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    out = copy_run(reference_run, tmp_path / "run")
    live = out / "jobs" / f".result.json.{os.getpid()}.abc123.tmp"
    dead = out / "cache" / f".entry.json.{finished.pid}.xyz789.tmp"
    live.write_text("{")
    dead.write_text("{")
    assert cli(*run_args(reference_run.parent / "experiment.toml", out)).code == 0
    assert live.exists() and not dead.exists()
