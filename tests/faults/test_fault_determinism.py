"""Determinism: the same experiment and seeds give bit-identical predictions and metrics on CPU, which is
what lets a resumed run be compared with an undisturbed one at all. A different seed must differ, or
the comparison would prove nothing."""
from __future__ import annotations

import numpy as np
import pandas as pd
from faultkit import cli, leaderboard, run_args


def per_model(run, file_name):
    """Each job's file by model label (job ids also hash the experiment's paths, which differ here)."""
    return {path.parent.name.split("__")[0]: path for path in sorted(run.glob(f"jobs/*/{file_name}"))}


def predictions(run):
    return {model: pd.read_csv(path) for model, path in per_model(run, "predictions.csv").items()}


def test_same_seeds_same_numbers(tmp_path, experiment, reference_run):
    assert cli(*run_args(experiment, tmp_path / "run")).code == 0
    pd.testing.assert_frame_equal(leaderboard(tmp_path / "run"), leaderboard(reference_run))
    again, before = predictions(tmp_path / "run"), predictions(reference_run)
    assert again.keys() == before.keys() == {"mse", "gaussian", "prior"}
    for model in again:
        pd.testing.assert_frame_equal(again[model], before[model])
    other = per_model(tmp_path / "run", "samples.npz")
    for model, path in per_model(reference_run, "samples.npz").items():
        with np.load(path) as one, np.load(other[model]) as two:
            np.testing.assert_array_equal(one["samples"], two["samples"])


def test_another_seed_other_numbers(tmp_path, experiment, reference_run):
    assert cli(*run_args(experiment, tmp_path / "run", "--set", "seeds=[1]")).code == 0
    other, before = predictions(tmp_path / "run"), predictions(reference_run)
    assert not np.allclose(other["gaussian"]["EF_pred"], before["gaussian"]["EF_pred"])
