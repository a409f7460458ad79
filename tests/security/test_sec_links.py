"""What stands under a name in a received run directory cannot steer the tool: a symbolic link planted for a
folder or file that it writes or reads is refused, naming it, and nothing outside the run directory is written
or copied into the report; a FIFO is refused instead of waited on, and a result.json that records no files
vouches for none. Each test is bounded by an alarm (DEADLINE_S covers a rerun of the tiny experiment), so that
a regression fails instead of hanging the suite."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import pandas as pd
import pytest
from faults.faultkit import cli, run_args

from benchmark.errors import StoreError
from benchmark.orchestration.artifacts import download, open_artifacts, upload
from benchmark.orchestration.cluster import JobBoard, decode_files
from benchmark.orchestration.storage import open_storage
from benchmark.store import RunDir, atomic_write_text, inside

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


JOB = "mse__seed0__fold0__aaaa"


def _worker(tmp_path):
    """A worker's jobs board over its run directory (its own artifacts/ folder as the store)."""
    run = RunDir(tmp_path / "run")
    storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)
    board = JobBoard(storage, "exp/jobs/plan", open_artifacts("", run.root))
    board.publish([JOB], {"experiment": "exp", "jobs": [JOB]})
    return run, board


def _written_predictions(run):
    """A worker's ``run_one``: the job writes its predictions (atomically) and nothing else: a served head."""
    def run_one(job):
        atomic_write_text(run.job(job) / "predictions.csv", f"FileName\n{job}\n")
        return {"job": job, "seconds": 0.5, "status": "ok"}, run.job(job)
    return run_one


@pytest.mark.parametrize("name", ["model.pt", "traceback.txt", "trajectories.npz", "samples.npz"])
@pytest.mark.parametrize("planted", ["link", "fifo"])
def test_a_worker_hands_no_planted_job_file_to_the_storage_or_the_artifact_store(tmp_path, name, planted):
    # A received run directory: a job's folder holds, under a name the job does not write, a link to the user's
    # key (or a FIFO). The worker that runs the job must not send the key to every machine sharing the storage.
    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET)
    run, board = _worker(tmp_path)
    run.job(JOB).mkdir(parents=True)
    os.symlink(secret, run.job(JOB) / name) if planted == "link" else os.mkfifo(run.job(JOB) / name)
    kind = "a symbolic link" if planted == "link" else "a FIFO"

    with pytest.raises(StoreError, match=f"{run.job(JOB) / name} is {kind}, not a regular file"):
        board.work(_written_predictions(run), say=lambda _: None)
    trial = board.study.get_trials()[-1]
    assert "S3cr3t" not in json.dumps(trial.user_attrs) and "S3cr3t" not in str(decode_files(trial.user_attrs))
    assert not any("S3cr3t" in path.read_text(errors="replace") for path in run.root.rglob("*")
                   if path.is_file() and not path.is_symlink())
    state = board.states([JOB])[0]
    assert state.state == "failed" and f"{run.job(JOB) / name} is {kind}" in state.detail
    assert secret.read_text() == SECRET


def test_an_artifact_is_uploaded_from_no_link(tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET)
    run, board = _worker(tmp_path)
    (run.root / "encoders").mkdir(parents=True)
    (run.root / "encoders" / "fold0-seed0-abc.pt").symlink_to(secret)
    trial = board.study.ask()
    with pytest.raises(StoreError, match="encoders/fold0-seed0-abc.pt is a symbolic link"):
        upload(board.artifacts, trial, run.root / "encoders" / "fold0-seed0-abc.pt")
    assert not (run.root / "artifacts").exists() or not any((run.root / "artifacts").iterdir())


def test_an_artifact_uploads_the_bytes_it_checked_when_a_link_replaces_the_file_meanwhile(tmp_path, monkeypatch):
    # Whoever can write into the run directory swaps the checked file for a link while the upload runs (here at the
    # moment Optuna is handed the file): the bytes stored, and the SHA-256 and size recorded, are the file's.
    import optuna.artifacts

    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET)
    run, board = _worker(tmp_path)
    weights = atomic_write_text(run.root / "encoders" / "fold0-seed0-abc.pt", "weights")
    real_upload = optuna.artifacts.upload_artifact

    def swapped_meanwhile(**arguments):
        weights.unlink()
        weights.symlink_to(secret)
        return real_upload(**arguments)

    monkeypatch.setattr(optuna.artifacts, "upload_artifact", swapped_meanwhile)
    record = upload(board.artifacts, board.study.ask(), weights)
    with board.artifacts.store.open_reader(record["artifact"]) as stored:
        assert stored.read() == b"weights"
    assert record["sha256"] == hashlib.sha256(b"weights").hexdigest() and record["size"] == len(b"weights")


def test_a_run_loads_no_stage_one_weights_through_a_link(run_copy, tmp_path):
    # A received run directory whose stage-1 weights are a link to a file elsewhere: a run would load it (and a
    # worker would upload it to the artifact store). It is trained again instead, and the link replaced.
    stored = next((run_copy / "encoders").glob("*.pt"))
    elsewhere = tmp_path / "my_model.pt"
    shutil.copy(stored, elsewhere)
    stored.unlink()
    stored.symlink_to(elsewhere)
    outcome = _rerun(run_copy)
    assert outcome.code == 0, outcome.text
    assert f"reused {stored.name}" not in _said(outcome) and "training it again" in _said(outcome)
    assert stored.is_file() and not stored.is_symlink()


def test_a_job_records_no_digest_of_a_file_a_planted_link_points_at(run_copy, tmp_path):
    # A job records the SHA-256 of its scored files in result.json (sent to the storage by a worker). A link
    # planted under a name the job does not write (an mse head writes no trajectories) is removed before the job
    # runs again (what an earlier attempt left is not this attempt's), never followed, and not hashed.
    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET)
    job = _job(run_copy)
    (job / "result.json").unlink()  # this job runs again, into its folder
    (job / "trajectories.npz").symlink_to(secret)
    outcome = cli(*run_args(run_copy.parent / "experiment.toml", run_copy))
    assert outcome.code == 0, outcome.text
    assert not (job / "trajectories.npz").is_symlink() and secret.read_text() == SECRET
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert not any(digest in path.read_text() for path in run_copy.rglob("*.json"))


def test_a_download_replaces_a_link_planted_where_the_file_goes(tmp_path):
    # A received run directory holds, where a worker fetches a stage file, a link to a file with those very
    # bytes: taken for the file, it would stay, and what reads the file would go through it. It is replaced.
    run, board = _worker(tmp_path)
    weights = atomic_write_text(run.root / "encoders" / "fold0-seed0-abc.pt", "weights")
    record = upload(board.artifacts, board.study.ask(), weights)
    elsewhere = tmp_path / "elsewhere.pt"
    elsewhere.write_text("weights")
    weights.unlink()
    weights.symlink_to(elsewhere)
    assert download(record, board.artifacts, "the weights", weights)
    assert not weights.is_symlink() and weights.read_text() == "weights"
