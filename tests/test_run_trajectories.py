"""Trajectories are a declared head capability: a run stores them for the heads that declare it, only."""
import json

import numpy as np
from faults.faultkit import write_experiment  # the suite's tiny experiment: 20 videos of 32 px

from benchmark.cli import main


def test_a_run_stores_trajectories_for_heads_that_declare_them_only(tmp_path):
    """mcsdr declares ``trajectories`` (its ``sample(..., record=True)``); mse does not."""
    experiment = write_experiment(tmp_path / "tiny.toml", synthetic_root=tmp_path / "data", models='''
[[models]]
head = "mcsdr"
params = { width = 16, heads = 2, time_dim = 8, timesteps = 20, steps = 4 }

[[models]]
head = "mse"
''')
    assert main(["run", str(experiment), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    jobs = {json.loads((job / "result.json").read_text())["head"]: job for job in (tmp_path / "run" / "jobs").iterdir()}
    assert set(jobs) == {"mcsdr", "mse", "prior"}  # prior: the row every run adds
    assert (jobs["mcsdr"] / "trajectories.npz").is_file() and not (jobs["mse"] / "trajectories.npz").exists()
    paths = np.load(jobs["mcsdr"] / "trajectories.npz")["paths"]
    assert paths.shape[:2] == (2, 5)  # the confident and the ambiguous item, 4 steps + the starting noise
