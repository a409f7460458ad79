"""Fair comparisons in a whole run: cv10 tuning never sees the TEST items of the split it serves, every
leaderboard has the prior row (the training EF distribution), an external point model's AUROC is that of
-EF_pred, subgroup tables hold no infinities and paired tests carry Holm-adjusted p-values."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from faults.faultkit import write_experiment  # the suite's tiny experiment: 20 videos of 32 px

from benchmark.cli import main
from benchmark.orchestration import runner, tuning

pytest.importorskip("optuna")

MSE_ONLY = """\
[[models]]
head = "mse"
label = "mse"
"""


@pytest.fixture(scope="module")
def cv10_run(tmp_path_factory):
    """A cv10 run with tuning, recording what every tuning trial trained and validated on."""
    root = tmp_path_factory.mktemp("cv10")
    experiment = write_experiment(root / "cv10.toml", synthetic_root=root / "data", models=MSE_ONLY, trials=2,
                                  dataset_extra='protocol = "cv10"')
    calls: list[dict] = []  # per tuning call: the ids its trials trained or validated on, its winner's lr
    tune_model, train_model = tuning.tune_model, tuning.train_model

    def spy_trial(fusion, head, train, val, *args, **kwargs):
        calls[-1]["seen"] |= set(train.ids) | set(val.ids)
        return train_model(fusion, head, train, val, *args, **kwargs)

    def spy_tuning(*args, **kwargs):
        calls.append({"seen": set()})
        result = tune_model(*args, **kwargs)
        # Tag the winner (a relative change of 1e-9 in lr) so that a job's stored parameters name the
        # tuning call they came from: splits tuned alike would otherwise pick identical parameters.
        calls[-1]["lr"] = result.params["lr"] * (1 + len(calls) * 1e-9)
        return dataclasses.replace(result, params={**result.params, "lr": calls[-1]["lr"]})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "tune_model", spy_tuning)
        patch.setattr(tuning, "train_model", spy_trial)
        assert main(["run", str(experiment), "--out", str(root / "run"), "--quiet", "--set", "baseline=mse",
                     "--set", "encoder.pretrain.epochs=0"]) == 0  # ten encoder stages: features suffice
    return root / "run", root / "data", calls


def _jobs(run_dir, model):
    jobs = [json.loads(path.read_text()) for path in sorted(run_dir.glob("jobs/*/result.json"))]
    return [job for job in jobs if job["model"] == model]


def _roles(run_dir, role):
    splits = pd.read_csv(run_dir / "splits.csv", dtype=str)
    return {name: set(group.loc[group["role"] == role, "id"]) for name, group in splits.groupby("split")}


def test_cv10_tuning_never_saw_the_test_items_of_the_split_it_serves(cv10_run):
    run_dir, _, calls = cv10_run
    test_ids = _roles(run_dir, "test")
    assert len(test_ids) == 10 and len(set().union(*test_ids.values())) == 20  # every item is some split's TEST
    assert len(calls) == 10 and all(call["seen"] for call in calls)  # one tuning per split, each with trials
    jobs = _jobs(run_dir, "mse")
    assert len(jobs) == 10 and all(job["status"] == "ok" for job in jobs)
    for job in jobs:
        (call,) = [call for call in calls if call["lr"] == job["params"]["lr"]]
        assert not call["seen"] & test_ids[job["split"]], f"{job['split']}: tuned on items of its TEST"


def _labels(data_root) -> pd.Series:
    (file_list,) = data_root.glob("**/A4C/FileList.csv")
    return pd.read_csv(file_list, dtype={"FileName": str}).set_index("FileName")["EF"]


def test_the_prior_row_is_each_splits_training_distribution(cv10_run):
    run_dir, data_root, _ = cv10_run
    labels, train_ids = _labels(data_root), _roles(run_dir, "train")
    jobs = _jobs(run_dir, "prior")
    assert len(jobs) == 10 and all(job["status"] == "ok" and job["head"] == "prior" for job in jobs)
    for job in jobs:
        predictions = pd.read_csv(run_dir / "jobs" / job["job"] / "predictions.csv")
        training = labels[sorted(train_ids[job["split"]])].to_numpy()
        np.testing.assert_allclose(predictions["EF_pred"], training.mean())  # TEST and VAL left out
        assert np.isin(np.load(run_dir / "jobs" / job["job"] / "samples.npz")["samples"],
                       training.astype(np.float32)).all()
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
    assert board.loc["prior", "status"] == "ok"
    assert np.isfinite(board.loc["prior", ["mae", "rmse", "r2", "crps", "nll_kde", "calibration", "auroc50"]]
                       .to_numpy(float)).all()


def test_tables_have_no_infinities_and_holm_adjusted_paired_tests(cv10_run):
    run_dir, _, _ = cv10_run
    subgroups = pd.read_csv(run_dir / "subgroups.csv")
    assert len(subgroups) and not np.isinf(subgroups.select_dtypes("number").to_numpy()).any()
    paired = pd.read_csv(run_dir / "paired_tests.csv")
    assert set(paired["model"]) == {"prior"}
    assert {"wilcoxon_p_holm", "bootstrap_p_holm"} <= set(paired.columns)
    assert (paired["wilcoxon_p_holm"] >= paired["wilcoxon_p"]).all()


def test_an_external_point_models_auroc50_is_that_of_the_negated_prediction(cv10_run, tmp_path):
    from scipy.stats import mannwhitneyu

    run_dir, data_root, _ = cv10_run
    labels = _labels(data_root)
    ids = sorted(pd.read_csv(run_dir / "splits.csv", dtype=str)["id"].unique())
    ef = labels[ids].to_numpy()
    predicted = ef + np.random.default_rng(0).normal(0, 8, len(ef))
    external = tmp_path / "point.csv"
    pd.DataFrame({"FileName": ids, "EF_pred": predicted}).to_csv(external, index=False)
    assert main(["score", str(run_dir), str(external), "--name", "point model"]) == 0
    positive = ef < 50
    assert 0 < positive.sum() < len(ef)
    u = mannwhitneyu(-predicted[positive], -predicted[~positive]).statistic  # pairs the positives win
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
    assert board.loc["point model", "auroc50"] == pytest.approx(u / (positive.sum() * (~positive).sum()))
