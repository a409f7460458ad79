"""Process faults: kill -9 at each stage of a run, then rerun. The rerun must finish with exactly the
leaderboard of an undisturbed run, reuse the work that was committed, and leave no half-written file.

Each kill is deterministic: the child process SIGKILLs itself at a chosen call or atomic rename
(killpoint.py), never after a sleep that could race.
"""
from __future__ import annotations

import json
import signal

import pandas as pd
import pytest

from faultkit import assert_complete_files, cli, leaderboard, run_args, run_killed, temporaries, write_experiment


def killed(result) -> None:
    assert result.returncode == -signal.SIGKILL, f"the child was meant to die by SIGKILL:\n{result.stderr[-2000:]}"


def resume(experiment, out):
    outcome = cli(*run_args(experiment, out))
    assert outcome.code == 0, outcome.text
    assert temporaries(out) == [], "the rerun left temporary files behind"
    assert_complete_files(out)
    return outcome


def test_kill_during_data_generation(tmp_path, reference_run):
    fresh = tmp_path / "synthetic"  # not the session's pre-generated data: this run must generate it
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=fresh)
    # Every video is rendered into the staging folder; the kill comes as the oracle table is written.
    killed(run_killed(tmp_path, ["call", "benchmark.synth.oracle:write", "1"], experiment, tmp_path / "run"))
    generations = [path for path in fresh.iterdir() if not path.name.startswith(".")]
    assert generations == [], "a killed generation must not leave a folder that looks complete"
    assert [path.name.split(".partial-")[0] for path in fresh.iterdir()] == [
        ".echonet_pediatric-n20-seed0-amb0.2-noise3"]

    resume(experiment, tmp_path / "run")
    assert [path.name for path in fresh.iterdir()] == ["echonet_pediatric-n20-seed0-amb0.2-noise3"], \
        "the rerun must replace the dead staging folder by one complete generation"
    pd.testing.assert_frame_equal(leaderboard(tmp_path / "run"), leaderboard(reference_run))


def test_kill_during_feature_caching(tmp_path, experiment, reference_run):
    out = tmp_path / "run"
    # The train features are committed; the val entry's npz is written, its metadata (the commit mark) not.
    killed(run_killed(tmp_path, ["replace", "*/cache/*.json", "2"], experiment, out))
    assert len(list((out / "cache").glob("*.json"))) == 1
    assert len(list((out / "cache").glob("*.npz"))) == 2
    assert_complete_files(out)

    outcome = resume(experiment, out)
    assert "train: 16 clips (hit)" in outcome.out and "val: 2 clips (miss)" in outcome.out, outcome.out
    assert "stage 1 fold0/seed 0: reused" in outcome.out, "the stored stage-1 encoder must be reused"
    pd.testing.assert_frame_equal(leaderboard(out), leaderboard(reference_run))


def test_kill_during_training(tmp_path, experiment, reference_run):
    out = tmp_path / "run"
    # Two epochs per job: the third validation pass is the first epoch of the second job.
    killed(run_killed(tmp_path, ["call", "benchmark.engine:_validate", "3"], experiment, out))
    finished = sorted(path.parent.name for path in (out / "jobs").glob("*/result.json"))
    assert [name.split("__")[0] for name in finished] == ["mse"]
    assert_complete_files(out)

    outcome = resume(experiment, out)
    assert "1 already done, 1 to run" in outcome.out
    pd.testing.assert_frame_equal(leaderboard(out), leaderboard(reference_run))


@pytest.mark.parametrize("target", ["*/jobs/*/result.json", "*/leaderboard.csv"])
def test_kill_while_writing_results(tmp_path, experiment, reference_run, target):
    out = tmp_path / "run"
    killed(run_killed(tmp_path, ["replace", target, "1"], experiment, out))
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


def test_kill_during_tuning(tmp_path, synthetic_root):
    def tuned_experiment(folder):
        return write_experiment(folder / "experiment.toml", synthetic_root=synthetic_root, models=TUNED_MODEL,
                                trials=3)

    undisturbed = tmp_path / "undisturbed"
    assert cli(*run_args(tuned_experiment(undisturbed), undisturbed / "run")).code == 0

    folder = tmp_path / "interrupted"
    experiment = tuned_experiment(folder)
    # Each trial trains two epochs; the third validation pass is inside the second trial.
    killed(run_killed(folder, ["call", "benchmark.engine:_validate", "3"], experiment, folder / "run"))
    assert (folder / "run" / "optuna.db").is_file() and not (folder / "run" / "tuning").exists()

    resume(experiment, folder / "run")
    stored = [json.loads(path.read_text()) for path in (undisturbed / "run", folder / "run")
              for path in [path / "tuning" / "mse.json"]]
    assert stored[0]["params"] == stored[1]["params"], "the resumed study must pick what the undisturbed one picked"
    assert stored[1]["trials"] == 3
    pd.testing.assert_frame_equal(leaderboard(folder / "run"), leaderboard(undisturbed / "run"))
