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


def test_score_refuses_a_name_taken_by_a_model_and_changes_nothing(run_dir, tmp_path, capsys):
    (job,) = [path for path in (run_dir / "jobs").iterdir() if path.name.startswith("mse__seed0")]
    truth = pd.read_csv(job / "predictions.csv")
    external = tmp_path / "external.csv"
    pd.DataFrame({"FileName": truth["FileName"], "EF_pred": truth["EF"] + 5.0}).to_csv(external, index=False)
    board = (run_dir / "leaderboard.csv").read_bytes()
    for name in ("mse", "gaussian"):
        for replace in ([], ["--replace"]):  # a trained row is never replaced, --replace or not
            assert main(["score", str(run_dir), str(external), "--name", name, *replace]) == 2
            assert "is taken by the trained model" in " ".join(capsys.readouterr().err.split())
    assert (run_dir / "leaderboard.csv").read_bytes() == board


def test_score_names_that_sanitise_alike_clash_unless_replaced(run_dir, tmp_path, capsys):
    (job,) = [path for path in (run_dir / "jobs").iterdir() if path.name.startswith("mse__seed0")]
    truth = pd.read_csv(job / "predictions.csv")
    for offset in (1.0, 3.0):
        pd.DataFrame({"FileName": truth["FileName"], "EF_pred": truth["EF"] + offset}).to_csv(
            tmp_path / f"plus{offset:g}.csv", index=False)
    assert main(["score", str(run_dir), str(tmp_path / "plus1.csv"), "--name", "model A"]) == 0
    board = (run_dir / "leaderboard.csv").read_bytes()
    assert main(["score", str(run_dir), str(tmp_path / "plus3.csv"), "--name", "model_A"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is taken by the external model 'model A'" in err and "--replace" in err
    assert (run_dir / "leaderboard.csv").read_bytes() == board

    assert main(["score", str(run_dir), str(tmp_path / "plus3.csv"), "--name", "model_A", "--replace"]) == 0
    rows = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
    assert "model A" not in rows.index and rows.loc["model_A", "mae"] == pytest.approx(3.0)
    assert {"mse", "gaussian"} <= set(rows.index)
