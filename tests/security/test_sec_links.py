"""What stands under a name in a received run directory cannot steer the tool: a symbolic link planted for a
folder or file that it writes or reads is refused, naming it, and nothing outside the run directory is written
or copied into the report; a FIFO is refused instead of waited on, and a result.json that records no files
vouches for none. Each test is bounded by an alarm (DEADLINE_S covers a rerun of the tiny experiment), so that
a regression fails instead of hanging the suite."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import pandas as pd
import pytest
from faults.faultkit import cli, run_args

from benchmark.errors import StoreError
from benchmark.store import RunDir, inside

pytestmark = pytest.mark.usefixtures("deadline")
DEADLINE_S = 120
SECRET = "STORAGE=postgresql://lvef:S3cr3t@db.internal/lvef\n"


def _said(outcome) -> str:
    """The output as one line: wrapped paragraphs keep paths whole, but break between words."""
    return " ".join((outcome.out + outcome.err).split())


def _job(run_dir, model: str = "mse"):
    return min((run_dir / "jobs").glob(f"{model}__seed0__*"))


def _rerun(run_dir):
    """A run into ``run_dir`` that trains again (one more epoch), so that it writes what a run writes."""
    return cli(*run_args(run_dir.parent / "experiment.toml", run_dir, "--set", "train.epochs=3"))


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("planted", ["external/mine", "external"])
def test_score_writes_through_no_link_planted_in_external(run_copy, tmp_path, planted):
    elsewhere = tmp_path / "another_run_job"  # e.g. a job folder of the user's own other run
    elsewhere.mkdir()
    (elsewhere / "result.json").write_text('{"mine": true}\n')
    (run_copy / planted).parent.mkdir(exist_ok=True)
    (run_copy / planted).symlink_to(elsewhere, target_is_directory=True)
    truth = pd.read_csv(_job(run_copy) / "predictions.csv")
    predictions = tmp_path / "preds.csv"
    pd.DataFrame({"FileName": truth["FileName"], "EF_pred": 50.0}).to_csv(predictions, index=False)

    outcome = cli("score", run_copy, predictions, "--name", "mine")
    assert outcome.code == 1
    assert f"{run_copy / planted} is a symbolic link" in _said(outcome)
    assert [path.name for path in elsewhere.iterdir()] == ["result.json"]
    assert (elsewhere / "result.json").read_text() == '{"mine": true}\n'


def test_report_copies_no_linked_excluded_csv_into_the_page(run_copy, tmp_path):
    secret = tmp_path / ".env"
    secret.write_text(SECRET)
    (run_copy / "excluded.csv").unlink()
    (run_copy / "excluded.csv").symlink_to(os.path.relpath(secret, run_copy))  # relative: no path knowledge
    outcome = cli("report", run_copy)
    assert outcome.code == 1
    assert f"{run_copy / 'excluded.csv'} is a symbolic link" in _said(outcome)
    assert "S3cr3t" not in (run_copy / "report.html").read_text()


def test_report_draws_no_figure_into_a_linked_plots_folder(run_copy, tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "pit.png").write_text("the user's own figure")
    (run_copy / "plots").rename(tmp_path / "old_plots")
    (run_copy / "plots").symlink_to(figures, target_is_directory=True)
    outcome = cli("report", run_copy)
    assert outcome.code == 1 and f"{run_copy / 'plots'} is a symbolic link" in _said(outcome)
    assert [path.name for path in figures.iterdir()] == ["pit.png"]
    assert (figures / "pit.png").read_text() == "the user's own figure"


@pytest.mark.parametrize("folder", ["cache", "encoders"])
def test_a_run_writes_into_no_linked_folder(run_copy, tmp_path, folder):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (run_copy / folder).rename(tmp_path / "moved")
    (run_copy / folder).symlink_to(target, target_is_directory=True)
    outcome = _rerun(run_copy)
    assert outcome.code == 1 and f"{run_copy / folder} is a symbolic link" in _said(outcome)
    assert not any(target.iterdir())


def test_a_run_appends_to_no_linked_training_log(run_copy, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n")
    (run_copy / "training_log.csv").unlink()
    (run_copy / "training_log.csv").symlink_to(os.path.relpath(readme, run_copy))
    outcome = _rerun(run_copy)
    assert outcome.code != 0 and f"{run_copy / 'training_log.csv'} is a symbolic link" in _said(outcome)
    assert readme.read_text() == "# my project\n"


def test_a_run_waits_on_no_fifo_training_log(run_copy):
    (run_copy / "training_log.csv").unlink()
    os.mkfifo(run_copy / "training_log.csv")  # opened to append, it would block until someone reads it
    outcome = _rerun(run_copy)
    assert outcome.code != 0 and f"{run_copy / 'training_log.csv'} is a FIFO" in _said(outcome)


def test_status_opens_no_linked_optuna_database(run_copy, tmp_path):
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as connection:
        connection.execute("create table notes(text)")
    before = _digest(database)
    (run_copy / "optuna.db").symlink_to(database)
    outcome = cli("status", run_copy)
    assert outcome.code == 1 and f"{run_copy / 'optuna.db'} is a symbolic link" in _said(outcome)
    assert _digest(database) == before


def test_links_inside_the_run_directory_are_refused_too(tmp_path):
    # Even a link that stays inside would let one job's folder stand for another's, overwriting its result.
    run = RunDir(tmp_path / "run")
    (run.root / "jobs" / "real").mkdir(parents=True)
    (run.root / "jobs" / "alias").symlink_to(run.root / "jobs" / "real")
    with pytest.raises(StoreError, match="jobs/alias is a symbolic link"):
        run.job("alias")
    with pytest.raises(StoreError, match="outside"):
        inside(run.root, tmp_path / "elsewhere")


def _forget_files(job) -> None:
    """What a received result.json may say: it recorded no files (so that nothing would be checked)."""
    record = json.loads((job / "result.json").read_text())
    record["files"] = {}
    (job / "result.json").write_text(json.dumps(record))


def test_an_unrecorded_fifo_predictions_csv_is_damage_not_a_hang(run_copy):
    job = _job(run_copy)
    _forget_files(job)
    (job / "predictions.csv").unlink()
    os.mkfifo(job / "predictions.csv")
    status = cli("status", run_copy)
    assert status.code == 0 and f"{job / 'predictions.csv'} is not recorded in result.json" in _said(status)
    assert cli("report", run_copy).code == 0
    board = pd.read_csv(run_copy / "leaderboard.csv").set_index("model")
    assert board.loc["mse", "status"] == "failed"
    assert f"damaged: {job / 'predictions.csv'} is not recorded in result.json" in board.loc["mse", "error"]


def test_an_unrecorded_predictions_csv_is_damage(run_copy):
    job = _job(run_copy)
    _forget_files(job)
    assert RunDir(run_copy).damage(job.name, json.loads((job / "result.json").read_text())) == \
        f"{job / 'predictions.csv'} is not recorded in result.json, so it cannot be checked"


def test_no_earlier_result_is_read_through_a_linked_job_folder(run_copy, tmp_path):
    job = _job(run_copy)
    (job / "result.json").unlink()  # this job runs again, and the run looks for an earlier version of it
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "result.json").write_text(json.dumps({"identity": {"planted": "outside the run directory"}}))
    job.with_name(job.name.rsplit("__", 1)[0] + "__older").symlink_to(outside, target_is_directory=True)
    outcome = cli(*run_args(run_copy.parent / "experiment.toml", run_copy))
    assert outcome.code == 0 and "planted" not in _said(outcome) and "runs again" not in _said(outcome)


def test_a_fifo_result_json_beside_a_job_to_rerun_is_not_waited_on(run_copy):
    job = _job(run_copy)
    (job / "result.json").unlink()  # this job runs again, and the run looks for an earlier version of it
    older = job.with_name(job.name.rsplit("__", 1)[0] + "__older")
    older.mkdir()
    os.mkfifo(older / "result.json")
    assert cli(*run_args(run_copy.parent / "experiment.toml", run_copy)).code == 0
    assert (job / "result.json").is_file()


def test_a_fifo_run_lock_is_not_waited_on(run_copy):
    os.mkfifo(run_copy / "run.lock")
    outcome = cli(*run_args(run_copy.parent / "experiment.toml", run_copy))
    assert outcome.code != 0 and "is in use" in _said(outcome)
