"""Encoder stages (``encoder.workers``), tuning studies and jobs (``train.workers``) done in worker processes
store exactly what a serial run with one torch thread stores, the run reuses it, a piece starts only after
the pieces it needs (a job after its model's tuning) and sees their answers, and a piece that fails is
named and left to the run's own process."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from faults.faultkit import cli, run_args

from benchmark.orchestration import runner
from benchmark.orchestration.processes import run_in_processes

TWO_SEEDS = ("--set", "seeds=[0, 1]")


def _stage_files(run: Path) -> dict[str, bytes]:
    """Stored stage-1 weights and feature cache entries, by name."""
    files = [*(run / "encoders").glob("*.pt"), *(run / "cache").glob("*.npz")]
    return {path.name: path.read_bytes() for path in files}


def test_stages_built_in_workers_are_those_of_a_serial_single_thread_run(experiment, tmp_path):
    serial = cli(*run_args(experiment, tmp_path / "serial", *TWO_SEEDS, "--set", "train.threads=1"))
    parallel = cli(*run_args(experiment, tmp_path / "parallel", *TWO_SEEDS, "--set", "encoder.workers=2"))
    assert serial.code == 0 and parallel.code == 0, serial.text + parallel.text
    stored = _stage_files(tmp_path / "parallel")
    assert len(stored) == 2 + 2 * 3  # stage 1 of two seeds; train/val/test features of each
    assert stored == _stage_files(tmp_path / "serial")
    # The run's own process found what the workers stored instead of training and encoding again.
    for seed in (0, 1):
        assert f"/seed {seed}: reused" in parallel.text, parallel.text
    assert parallel.text.count("clips (hit)") == 6, parallel.text
    assert "encoder stages in 2 processes" in parallel.text


def test_a_failed_worker_is_named_and_its_stage_left_to_the_run():
    said = []

    def broken() -> dict[str, float]:
        raise ValueError("no such video")

    seconds = run_in_processes({"seed 0": lambda: {"stage 1": 1.5}, "seed 1": broken}, 2, said.append)
    assert seconds == {"seed 0": {"stage 1": 1.5}}
    assert len(said) == 1 and "seed 1 failed in its worker process" in said[0] and "no such video" in said[0]


def test_a_piece_starts_after_its_prerequisites_and_sees_their_answers():
    said, seen = [], {}

    def broken() -> int:
        raise ValueError("tuning diverged")

    def on_done(name: str, answer: int) -> None:
        seen[name] = answer  # in the parent: a process forked afterwards has it

    pieces = {"job b": lambda: seen["tuning b"] + 1, "tuning b": lambda: 41, "tuning c": broken,
              "job c": lambda: 0, "job d": lambda: 7}
    after = {"job b": ("tuning b",), "job c": ("tuning c",), "job d": ("tuning d",)}  # d: not a piece, done
    answers = run_in_processes(pieces, 2, said.append, after=after, on_done=on_done)
    assert answers == {"tuning b": 41, "job b": 42, "job d": 7}
    assert seen == answers
    assert len(said) == 1 and "tuning c failed" in said[0], said  # job c never started: it needed tuning c


def test_a_failure_that_leaves_nothing_to_run_ends_the_schedule():
    said = []

    def broken() -> int:
        raise ValueError("tuning diverged")

    assert run_in_processes({"tuning": broken, "job": lambda: 1}, 2, said.append, after={"job": ("tuning",)}) == {}
    assert len(said) == 1 and "tuning failed" in said[0], said


TUNED = ("--set", "seeds=[0, 1]", "--set", "tune.trials=2", "--set", "tune.epochs=1")


def _job_files(run: Path) -> dict[str, bytes]:
    """Every stored prediction and sample file and tuning winner, by path in the run directory."""
    files = [*run.glob("jobs/*/predictions.csv"), *run.glob("jobs/*/samples.npz"), *run.glob("tuning/*.json")]
    return {str(path.relative_to(run)): path.read_bytes() for path in files}


def _log_rows(run: Path) -> list[tuple[str, ...]]:
    with (run / "training_log.csv").open(newline="") as stream:
        return sorted(tuple(row.values()) for row in csv.DictReader(stream))


def test_tuning_and_jobs_in_workers_store_what_a_serial_single_thread_run_stores(experiment, tmp_path):
    serial = cli(*run_args(experiment, tmp_path / "serial", *TUNED, "--set", "train.threads=1"))
    parallel = cli(*run_args(experiment, tmp_path / "parallel", *TUNED, "--set", "train.workers=3"))
    assert serial.code == 0 and parallel.code == 0, serial.text + parallel.text
    stored = _job_files(tmp_path / "parallel")
    assert sum(name.endswith("predictions.csv") for name in stored) == 6  # mse, gaussian, prior x 2 seeds
    assert sum(name.startswith("tuning") for name in stored) == 2  # mse and gaussian, tuned at seed 0
    assert stored == _job_files(tmp_path / "serial")
    assert (tmp_path / "parallel" / "leaderboard.csv").read_bytes() == \
        (tmp_path / "serial" / "leaderboard.csv").read_bytes()
    # The observer logged every epoch of every job exactly once, from the job processes.
    assert _log_rows(tmp_path / "parallel")[:-1] and len(_log_rows(tmp_path / "parallel")) == \
        len(_log_rows(tmp_path / "serial"))
    timings = (tmp_path / "parallel" / "timings.json").read_text()
    assert "tuning and jobs in 3 processes" in timings and '"training"' in timings


def test_what_no_worker_did_runs_in_the_run_process(experiment, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_in_processes", lambda *args, **kwargs: {})  # every worker failed
    outcome = cli(*run_args(experiment, tmp_path / "run", *TUNED, "--set", "train.workers=3"))
    assert outcome.code == 0, outcome.text
    assert sum(name.endswith("predictions.csv") for name in _job_files(tmp_path / "run")) == 6
    assert outcome.text.count("tuned ") == 2 and outcome.text.count("done ") == 6, outcome.text


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_train_workers_below_one_is_refused_before_work(experiment, tmp_path, workers):
    outcome = cli(*run_args(experiment, tmp_path / "run", "--set", f"train.workers={workers}"))
    assert outcome.code == 2 and "train.workers" in outcome.text
    assert not (tmp_path / "run").exists()
