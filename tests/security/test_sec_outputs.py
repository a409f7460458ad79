"""What the tool writes: CSV cells a spreadsheet would run as formulas are quoted, result files get the
mode the umask asks for, and storage passwords appear in no file or message."""
from __future__ import annotations

import os
import stat

import pandas as pd
import pytest
from faults.faultkit import cli, run_args

from benchmark.store import atomic_write_text, csv_text, read_csv_table

FORMULA = "=1+1"


def test_score_name_is_not_a_formula_in_leaderboard_csv(run_copy, tmp_path):
    truth = pd.read_csv(next((run_copy / "jobs").glob("*/predictions.csv")), dtype={"FileName": str})
    predictions = tmp_path / "preds.csv"
    truth[["FileName", "EF"]].rename(columns={"EF": "EF_pred"}).to_csv(predictions, index=False)
    assert cli("score", run_copy, predictions, "--name", FORMULA).code == 0
    cells = [cell for line in (run_copy / "leaderboard.csv").read_text().splitlines() for cell in line.split(",")]
    assert not any(cell.lstrip('"').startswith(("=", "+", "@")) for cell in cells)
    assert "'" + FORMULA in cells
    assert FORMULA in read_csv_table(run_copy / "leaderboard.csv")["model"].tolist()  # read back as given


def test_csv_quotes_formula_text_only_and_reads_back_exactly(tmp_path):
    frame = pd.DataFrame({"label": [FORMULA, "+cmd", "-x", "@SUM(A1)", "'quoted", "-2.5", "plain"],
                          "value": [-1.5, 2.0, -3.0, 0.0, 1.0, 2.0, -0.25]})
    text = csv_text(frame)
    assert text.splitlines()[1:5] == ["'=1+1,-1.5", "'+cmd,2.0", "'-x,-3.0", "'@SUM(A1),0.0"]
    assert "-2.5,2.0" in text.splitlines()  # a number written as text is left alone
    (tmp_path / "t.csv").write_text(text)
    pd.testing.assert_frame_equal(read_csv_table(tmp_path / "t.csv", dtype={"label": str}), frame,
                                  check_dtype=False)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_result_files_honour_the_umask(run_copy, umask_022, tmp_path):
    assert stat.S_IMODE(atomic_write_text(tmp_path / "x.json", "{}").stat().st_mode) == 0o644
    assert cli("report", run_copy).code == 0
    for name in ("leaderboard.csv", "leaderboard.json", "leaderboard.md", "subgroups.csv"):
        assert stat.S_IMODE((run_copy / name).stat().st_mode) == 0o644, name
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o644 for path in (run_copy / "plots").glob("*.png"))


def test_a_storage_password_is_in_no_file_and_no_message(tmp_path, experiment, monkeypatch):
    secret = "s3cret-pw"
    out = tmp_path / "run"
    outcome = cli(*run_args(experiment, out, "--storage", f"postgresql://lvef:{secret}@127.0.0.1:1/lvef"))
    assert outcome.code == 2 and "postgresql://lvef:***@127.0.0.1:1/lvef" in outcome.err
    assert secret not in outcome.text and not out.exists()  # refused before any work

    # A database that answered the check and then went away: the run got as far as its manifest.
    monkeypatch.setattr("benchmark.orchestration.runner.check_storage", lambda *_: None)
    outcome = cli(*run_args(experiment, out, "--set", f"tune.storage=postgresql://lvef:{secret}@127.0.0.1:1/lvef"))
    assert outcome.code == 2 and secret not in outcome.text
    assert (out / "manifest.json").is_file()
    assert not [path for path in out.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert "lvef:***@" in (out / "manifest.json").read_text()


@pytest.mark.parametrize("url", ["postgresql://lvef:s3cret-pw@[::1/lvef",  # an IPv6 host left open: urllib raises
                                 "postgresql://lvef:s3cret-pw@127.0.0.1:port/lvef",
                                 "postgresql://lvef@127.0.0.1:1/lvef?password=s3cret-pw"])
def test_a_storage_url_urllib_cannot_parse_is_refused_naming_the_key_without_its_password(experiment, url):
    outcome = cli("validate", experiment, "--set", f'tune.storage="{url}"')
    assert outcome.code == 2 and "`tune.storage`" in outcome.err and "***" in outcome.err, outcome.text
    assert "s3cret-pw" not in outcome.text
