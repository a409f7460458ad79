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


def _with(truth: pd.DataFrame, **columns) -> pd.DataFrame:
    """FileName and EF_pred of the run's test items, then ``columns`` (a value, or one per item)."""
    table = pd.DataFrame({"FileName": truth["FileName"], "EF_pred": truth["EF"]})
    for name, value in columns.items():
        table[name] = value
    return table


# Each file is refused naming its row, FileName and column: scored, a NaN sample turned CRPS into n/a and
# coverage into 0 without a word, and 1e308 overflowed the figures, leaving a run whose report failed.
BAD_PREDICTIONS = {
    "a sample is NaN": (lambda t: _with(t, sample_0="nan", sample_1=50.0), "sample_0", "'nan'"),
    "a sample is empty": (lambda t: _with(t, sample_0=float("nan"), sample_1=50.0), "sample_0", "''"),
    "a sample is infinite": (lambda t: _with(t, sample_0=50.0, sample_1=float("inf")), "sample_1", "'inf'"),
    "a sample is text": (lambda t: _with(t, sample_0="abc", sample_1=50.0), "sample_0", "'abc'"),
    "EF_pred is text": (lambda t: _with(t).assign(EF_pred=["abc"] + list(t["EF"][1:])), "EF_pred", "'abc'"),
    "EF_pred overflows": (lambda t: _with(t).assign(EF_pred=1e308), "EF_pred", "'1e+308'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PREDICTIONS))
def test_score_refuses_a_value_that_is_no_finite_number_naming_its_row_and_column(run_dir, tmp_path, capsys, case):
    make, column, shown = BAD_PREDICTIONS[case]
    (job,) = [path for path in (run_dir / "jobs").iterdir() if path.name.startswith("mse__seed0")]
    truth = pd.read_csv(job / "predictions.csv")
    path = tmp_path / "bad.csv"
    make(truth).to_csv(path, index=False)
    board = (run_dir / "leaderboard.csv").read_bytes()
    assert main(["score", str(run_dir), str(path), "--name", "bad"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"{path} row 2 ({truth['FileName'][0]}): {column} {shown}" in err, err
    assert not (run_dir / "external" / "bad").exists()
    assert (run_dir / "leaderboard.csv").read_bytes() == board


@pytest.mark.parametrize("columns, problem", [
    (["sample_0"], "one sample column"),
    (["sample_0", "sample_2"], "sample_1 is missing"),
    (["sample_0", "sample_1", "sample_01"], "sample_01"),
])
def test_score_refuses_sample_columns_that_are_not_sample_0_to_k(run_dir, tmp_path, capsys, columns, problem):
    """The fair CRPS needs two samples, and sample_01 beside sample_1 (or a gap) is a file written wrongly."""
    (job,) = [path for path in (run_dir / "jobs").iterdir() if path.name.startswith("mse__seed0")]
    truth = pd.read_csv(job / "predictions.csv")
    path = tmp_path / "samples.csv"
    _with(truth, **{column: 50.0 for column in columns}).to_csv(path, index=False)
    assert main(["score", str(run_dir), str(path), "--name", "samples"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert str(path) in err and problem in err, err
    assert not (run_dir / "external" / "samples").exists()
