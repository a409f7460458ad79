"""Encoder stages built in worker processes (``encoder.workers``) store exactly what a serial run with one
torch thread stores, the run reuses it, and a worker that fails leaves the stage to the run's process."""
from __future__ import annotations

from pathlib import Path

from faults.faultkit import cli, run_args

from benchmark.orchestration.stage_workers import build_in_processes

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

    seconds = build_in_processes({"seed 0": lambda: {"stage 1": 1.5}, "seed 1": broken}, 2, said.append)
    assert seconds == {"seed 0": {"stage 1": 1.5}}
    assert len(said) == 1 and "encoder stage seed 1 failed" in said[0] and "no such video" in said[0]
