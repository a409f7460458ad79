"""`report` rebuilds identical tables from stored results; `score` adds an external model as a row."""
import shutil

import pandas as pd
import pytest
from faults.faultkit import write_experiment  # the suite's tiny experiment: 20 videos of 32 px, two heads

from benchmark.cli import main

TABLES = ("leaderboard.csv", "leaderboard.md", "leaderboard.json", "leaderboard.tex", "subgroups.csv",
          "paired_tests.csv")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    experiment = write_experiment(root / "tiny.toml", synthetic_root=root / "data")
    assert main(["run", str(experiment), "--out", str(root / "run"), "--quiet", "--set", "seeds=[0, 1]",
                 "--set", "baseline=mse"]) == 0
    return root / "run"


def test_report_rebuilds_identical_tables(run_dir, tmp_path):
    saved = {name: (run_dir / name).read_bytes() for name in TABLES}
    for name in TABLES:
        (run_dir / name).unlink()
    shutil.rmtree(run_dir / "plots")
    assert main(["report", str(run_dir)]) == 0
    assert {name: (run_dir / name).read_bytes() for name in TABLES} == saved
    assert (run_dir / "plots" / "reliability.png").is_file()


def test_score_adds_an_external_row_scored_like_the_others(run_dir, tmp_path):
    (job,) = [path for path in (run_dir / "jobs").iterdir() if path.name.startswith("mse__seed0")]
    truth = pd.read_csv(job / "predictions.csv")
    external = tmp_path / "external.csv"
    pd.DataFrame({"FileName": truth["FileName"], "EF_pred": truth["EF"] + 2.0}).to_csv(external, index=False)
    assert main(["score", str(run_dir), str(external), "--name", "clinician"]) == 0
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
    assert board.loc["clinician", "mae"] == pytest.approx(2.0)
    assert board.loc["clinician", "crps"] == pytest.approx(2.0)  # a point prediction: CRPS = MAE
    assert board.loc["clinician", "n_seeds"] == 1
    assert {"mse", "gaussian"} <= set(board.index)


def test_score_refuses_predictions_that_miss_test_items(run_dir, tmp_path, capsys):
    (job,) = [path for path in (run_dir / "jobs").iterdir() if path.name.startswith("mse__seed0")]
    truth = pd.read_csv(job / "predictions.csv")
    partial = tmp_path / "partial.csv"
    pd.DataFrame({"FileName": truth["FileName"][1:], "EF_pred": truth["EF"][1:]}).to_csv(partial, index=False)
    assert main(["score", str(run_dir), str(partial), "--name", "partial"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "1 missing" in err and truth["FileName"][0] in err
