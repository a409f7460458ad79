"""Forged results in a run directory: a record this machine did not write is never reused.

A run directory's records vouch for the files beside them (SHA-256 and row counts in a job's result.json, a
checksum in a feature cache entry's metadata, digests in report_inputs.json), so whoever edits the directory can
edit both and pass every check that lives inside it. The ledger (``benchmark.identity``: the SHA-256 of each record
this machine wrote, in the user's state folder) tells the two apart. Each test forges a result consistently, so
that only the ledger can see it, and checks that the run computes the honest result again and says why; a
directory received whole (another machine's ledger) is computed again unless the user trusts it.

The reference run and its copies are made in this session, whose ledger (tests/conftest.py) is "this machine".
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import torch
from faults.faultkit import cli, run_args, write_experiment

from benchmark.identity import made_here_file, state_dir, vouch_file

NOT_MADE_HERE = "not made on this machine"


def _run(experiment: Path, out: Path, *extra: str):
    outcome = cli(*run_args(experiment, out, *extra))
    assert outcome.code == 0, outcome.text
    return outcome


def _experiment(run: Path) -> Path:
    return run.parent / "experiment.toml"


def _job(run: Path, model: str) -> Path:
    (folder,) = (run / "jobs").glob(f"{model}__*")
    return folder


def _rewrite_record(job: Path) -> None:
    """Make result.json vouch for the job's files as they are now, as a forger would."""
    record = json.loads((job / "result.json").read_text())
    for name, entry in record["files"].items():
        entry["sha256"] = hashlib.sha256((job / name).read_bytes()).hexdigest()
    (job / "result.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _same_file(run: Path, reference: Path, name: str) -> bool:
    return (run / name).read_bytes() == (reference / name).read_bytes()


def test_a_forged_job_result_is_computed_again(run_copy, reference_run):
    job = _job(run_copy, "mse")
    frame = pd.read_csv(job / "predictions.csv", dtype=str)
    frame["EF_pred"], frame["abs_error"] = frame["EF"], "0.0"  # a perfect model, on paper
    frame.to_csv(job / "predictions.csv", index=False)
    _rewrite_record(job)
    assert cli("report", run_copy).code == 0  # every check inside the directory passes: damage is not found

    outcome = _run(_experiment(run_copy), run_copy)
    assert f"{job.name}: its result was {NOT_MADE_HERE}" in outcome.text
    assert "2 already done, 1 to run" in outcome.text
    reference_job = _job(reference_run, "mse")
    assert (job / "predictions.csv").read_bytes() == (reference_job / "predictions.csv").read_bytes()
    assert _same_file(run_copy, reference_run, "leaderboard.csv")


def test_forged_stage_one_weights_are_trained_again(run_copy, reference_run):
    (weights,) = (run_copy / "encoders").glob("*.pt")
    state = torch.load(weights, weights_only=True)
    torch.save({name: tensor + 1 if tensor.is_floating_point() else tensor for name, tensor in state.items()}, weights)
    shutil.rmtree(run_copy / "jobs")  # the jobs need the stage again

    outcome = _run(_experiment(run_copy), run_copy)
    assert f"{weights.name} was {NOT_MADE_HERE}" in outcome.text and "training it again" in outcome.text
    assert weights.read_bytes() == (reference_run / "encoders" / weights.name).read_bytes()
    assert _same_file(run_copy, reference_run, "leaderboard.csv")


def test_a_forged_report_is_drawn_again(run_copy, reference_run):
    board = run_copy / "leaderboard.md"
    board.write_text(board.read_text().replace("mse", "mse (state of the art)"))
    inputs = json.loads((run_copy / "report_inputs.json").read_text())
    inputs["outputs"]["leaderboard.md"] = hashlib.sha256(board.read_bytes()).hexdigest()
    (run_copy / "report_inputs.json").write_text(json.dumps(inputs))

    outcome = _run(_experiment(run_copy), run_copy)
    assert "report rebuilt: the earlier report was not drawn on this machine" in outcome.text
    assert _same_file(run_copy, reference_run, "leaderboard.md")


@pytest.fixture
def other_machine(tmp_path, monkeypatch) -> Path:
    """From here on "this machine" has a ledger of its own, in which nothing the session made is noted."""
    monkeypatch.setenv("LVEFBENCH_STATE", str(tmp_path / "other-machine"))
    return state_dir()


def test_a_received_directory_is_computed_again(run_copy, reference_run, other_machine):
    assert not made_here_file(next((run_copy / "jobs").glob("*/result.json")))
    report = cli("report", run_copy)
    assert f"note: 3 of its results were {NOT_MADE_HERE}" in report.text
    assert "Results not made here.</strong> 3 of the results" in (run_copy / "report.html").read_text()

    outcome = _run(_experiment(run_copy), run_copy)
    assert f"stored records in {run_copy} were {NOT_MADE_HERE}" in outcome.text
    assert "0 already done, 3 to run" in outcome.text
    assert f".pt was {NOT_MADE_HERE}" in outcome.text  # the stage-1 weights
    assert "(rebuilt: not made on this machine)" in outcome.text  # the features
    assert _same_file(run_copy, reference_run, "leaderboard.csv")  # computed here, to the same numbers
    again = _run(_experiment(run_copy), run_copy)  # now made here
    assert NOT_MADE_HERE not in again.text and "3 already done, 0 to run" in again.text
    assert "Results not made here" not in (run_copy / "report.html").read_text()


def test_trust_results_reuses_a_received_directory(run_copy, other_machine):
    outcome = _run(_experiment(run_copy), run_copy, "--trust-results")
    assert "--trust-results: trusted" in outcome.text and "3 already done, 0 to run" in outcome.text
    # Redrawn only because report.html shows where the experiment file now lies (manifest.json's source), not
    # because its report_inputs.json was received: that is trusted too.
    assert "report rebuilt: manifest changed" in outcome.text and "not drawn on this machine" not in outcome.text
    again = _run(_experiment(run_copy), run_copy).text
    assert NOT_MADE_HERE not in again and "report unchanged, not rebuilt" in again  # noted: no flag needed again


def test_a_received_scored_model_is_named_in_the_report_until_trusted(run_copy, tmp_path, monkeypatch):
    """A model the sender scored with ``score`` cannot be computed again here: report.html names it."""
    truth = pd.read_csv(_job(run_copy, "mse") / "predictions.csv")
    pd.DataFrame({"FileName": truth["FileName"], "EF_pred": truth["EF"]}).to_csv(tmp_path / "perfect.csv", index=False)
    assert cli("score", run_copy, tmp_path / "perfect.csv", "--name", "oracle-like").code == 0
    monkeypatch.setenv("LVEFBENCH_STATE", str(tmp_path / "other-machine"))  # received by another machine

    outcome = _run(_experiment(run_copy), run_copy)
    assert "0 already done, 3 to run" in outcome.text
    assert f"left out of the tables: external/oracle-like/result.json, {NOT_MADE_HERE}" in outcome.text
    assert "oracle-like" not in (run_copy / "leaderboard.csv").read_text()
    again = _run(_experiment(run_copy), run_copy)
    assert "report unchanged" in again.text and "oracle-like" not in (run_copy / "leaderboard.csv").read_text()
    assert "note: 1 of its results" in cli("report", run_copy).text  # viewing the run as it is: drawn, and named
    assert "Results not made here.</strong> 1 of the results" in (run_copy / "report.html").read_text()
    trusted = _run(_experiment(run_copy), run_copy, "--trust-results")
    assert "report rebuilt" in trusted.text and "oracle-like" in (run_copy / "leaderboard.csv").read_text()
    assert "Results not made here" not in (run_copy / "report.html").read_text()


def test_score_takes_labels_only_from_jobs_made_here(run_copy, tmp_path, other_machine):
    truth = pd.read_csv(_job(run_copy, "mse") / "predictions.csv")
    pd.DataFrame({"FileName": truth["FileName"], "EF_pred": 10.0}).to_csv(tmp_path / "mine.csv", index=False)
    outcome = cli("score", run_copy, tmp_path / "mine.csv", "--name", "mine")
    assert outcome.code == 1 and "no finished job made on this machine" in " ".join(outcome.text.split())
    assert not (run_copy / "external").exists()


def test_a_result_moved_to_another_job_is_not_reused(run_copy):
    """Every byte of it made here, but for another job: its record names that job."""
    mse, gaussian = _job(run_copy, "mse"), _job(run_copy, "gaussian")
    for path in gaussian.iterdir():
        path.unlink()
    for path in mse.iterdir():
        shutil.copy(path, gaussian / path.name)
    outcome = _run(_experiment(run_copy), run_copy)
    assert f"damaged {gaussian.name}: its result.json is that of {mse.name}" in outcome.text
    assert "2 already done, 1 to run" in outcome.text


def test_the_ledger_holds_digests_only_outside_the_run(run_copy, other_machine):
    record = next((run_copy / "jobs").glob("*/result.json"))
    vouch_file(record)
    notes = [path for path in other_machine.rglob("*") if path.is_file()]
    assert len(notes) == 1 and notes[0].stat().st_size == 0 and len(notes[0].parent.name + notes[0].name) == 64
    assert all(folder.stat().st_mode & 0o777 == 0o700 for folder in [other_machine, *other_machine.rglob("*")]
               if folder.is_dir())
    link = record.parent / "linked.json"
    link.symlink_to(record)
    renamed = record.parent / "renamed.json"
    shutil.copy(record, renamed)
    assert made_here_file(record) and not made_here_file(link)  # a link is never taken for the file
    assert not made_here_file(renamed)  # a record is noted under its name: a cache entry cannot pass for another


def test_forged_tuning_is_not_reused(tmp_path, synthetic_root):
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, trials=3)
    out = tmp_path / "run"
    _run(experiment, out)
    honest = {path.name: json.loads(path.read_text())["params"] for path in (out / "tuning").glob("*.json")}
    predictions = {job.name: (job / "predictions.csv").read_bytes() for job in (out / "jobs").iterdir()}

    # A forged winner: other parameters, stored with the identity the run looks for.
    for path in (out / "tuning").glob("*.json"):
        stored = json.loads(path.read_text())
        stored["params"] = {name: value * 10 if isinstance(value, float) else value
                            for name, value in stored["params"].items()}
        path.write_text(json.dumps(stored))
    shutil.rmtree(out / "jobs")
    outcome = _run(experiment, out)
    assert f"its stored winner was {NOT_MADE_HERE}" in outcome.text
    assert "ledger (received" not in outcome.text  # its own trials are reused: none runs again
    assert {path.name: json.loads(path.read_text())["params"] for path in (out / "tuning").glob("*.json")} == honest

    # Forged trials in the directory's own optuna.db: the worst trial made the best.
    with sqlite3.connect(out / "optuna.db") as db:
        db.execute("UPDATE trial_values SET value = -1000 - value")
    shutil.rmtree(out / "jobs")
    shutil.rmtree(out / "tuning")
    outcome = _run(experiment, out)
    assert "trials not in this machine's ledger" in outcome.text and "instead" in outcome.text
    assert {path.name: json.loads(path.read_text())["params"] for path in (out / "tuning").glob("*.json")} == honest
    assert {job.name: (job / "predictions.csv").read_bytes() for job in (out / "jobs").iterdir()} == predictions


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, synthetic_root) -> Path:
    """A run of the tiny experiment that tunes (3 trials per model), made on this machine."""
    folder = tmp_path_factory.mktemp("tuned")
    experiment = write_experiment(folder / "experiment.toml", synthetic_root=synthetic_root, trials=3)
    _run(experiment, folder / "run")
    return folder / "run"


def _enqueue_the_senders_parameters(db: Path) -> None:
    import optuna

    for summary in optuna.get_all_study_summaries(f"sqlite:///{db}"):
        study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
        for _ in range(3):
            study.enqueue_trial({"lr": 1e-7, "dropout": 0.5})


def _flip_the_direction(db: Path) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE study_directions SET direction = 'MAXIMIZE'")


def _mark_every_trial_interrupted(db: Path) -> None:
    """Interrupted trials do not count towards the budget (the sender's trials would then fill it), yet the
    sampler learns from a completed or pruned one."""
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                           "SELECT trial_id, 'interrupted', 'true' FROM trials")


@pytest.mark.parametrize("forge", [_enqueue_the_senders_parameters, _flip_the_direction,
                                   _mark_every_trial_interrupted])
def test_a_study_this_machine_did_not_make_is_not_resumed(tuned_run, tmp_path, forge):
    out = Path(shutil.copytree(tuned_run, tmp_path / "run"))
    honest = {path.name: path.read_bytes() for path in (out / "tuning").glob("*.json")}
    forge(out / "optuna.db")
    shutil.rmtree(out / "jobs")
    shutil.rmtree(out / "tuning")
    outcome = _run(_experiment(tuned_run), out)
    assert "in the run directory's optuna.db" in outcome.text and "instead" in outcome.text
    tuned = {path.name: json.loads(path.read_bytes()) for path in (out / "tuning").glob("*.json")}
    assert {name: record["params"] for name, record in tuned.items()} == \
        {name: json.loads(record)["params"] for name, record in honest.items()}


def test_an_optuna_db_with_a_trigger_is_refused_before_any_work(tuned_run, tmp_path):
    """SQLite keeps triggers in the database file: one in a received optuna.db would run inside the run's
    process whenever it stores a trial (here: flipping the sign of every value, so the worst trial wins)."""
    out = Path(shutil.copytree(tuned_run, tmp_path / "run"))
    with sqlite3.connect(out / "optuna.db") as connection:
        connection.execute("CREATE TRIGGER flip AFTER INSERT ON trial_values BEGIN UPDATE trial_values "
                           "SET value = -NEW.value WHERE trial_value_id = NEW.trial_value_id; END")
    status = cli("status", out)  # it only reads, which runs no trigger; but a view would answer with anything
    assert status.code == 1 and "trigger flip" in " ".join(status.text.split())
    shutil.rmtree(out / "jobs")
    outcome = cli(*run_args(_experiment(tuned_run), out))
    text = " ".join(outcome.text.split())  # errors are wrapped to the terminal's width
    assert outcome.code == 1 and "is not a database as Optuna makes it" in text
    assert "trigger flip" in text and "stage 1" not in text and "start " not in text  # before any work
    assert not (out / "jobs").exists()


def test_a_kept_optuna_schema_that_would_let_a_trigger_in_is_made_again(tmp_path, monkeypatch):
    """The schema Optuna makes is kept in the user's cache (making it took a second of every start). A kept one
    forged to list a received optuna.db's trigger would let that trigger in: Optuna's schema holds tables and
    indexes only, so such a kept schema is made again, and the trigger refused."""
    import optuna

    from benchmark.errors import StoreError
    from benchmark.orchestration import storage

    monkeypatch.setenv("LVEFBENCH_CACHE", str(tmp_path / "cache"))
    storage._optuna_schema.cache_clear()
    honest = storage._optuna_schema()
    kept = next((tmp_path / "cache").glob("optuna-schema-*.json"))
    received = tmp_path / "optuna.db"
    optuna.storages.RDBStorage(f"sqlite:///{received}").engine.dispose()
    with sqlite3.connect(received) as connection:
        connection.execute("CREATE TRIGGER flip AFTER INSERT ON trial_values BEGIN UPDATE trial_values "
                           "SET value = -NEW.value WHERE trial_value_id = NEW.trial_value_id; END")
        trigger = connection.execute("SELECT type, name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    kept.write_text(json.dumps(sorted(honest, key=str) + [list(row) for row in trigger]))
    storage._optuna_schema.cache_clear()
    try:
        with pytest.raises(StoreError, match="trigger flip"):
            storage.check_sqlite_schema(f"sqlite:///{received}")
        assert storage._optuna_schema() == honest
    finally:
        storage._optuna_schema.cache_clear()  # the next test's process-wide schema is made from its own cache


def test_a_feature_cache_entry_under_another_key_is_not_reused(run_copy, reference_run):
    """Made here, every byte, but for another role: renamed to the test role's key, it would pass the
    training features off as the test features."""
    entries = sorted((run_copy / "cache").glob("*.json"))
    roles = {json.loads(path.read_text())["role"]: path for path in entries}
    train, test = roles["train"], roles["test"]
    for suffix in (".json", ".npz"):
        shutil.copy(train.with_suffix(suffix), test.with_suffix(suffix))
    shutil.rmtree(run_copy / "jobs")
    outcome = _run(_experiment(run_copy), run_copy)
    assert "test: 2 clips (rebuilt: its metadata is that of another entry)" in outcome.text
    assert _same_file(run_copy, reference_run, "leaderboard.csv")


def test_a_ledger_that_cannot_be_kept_stops_the_run_before_any_work(experiment, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("LVEFBENCH_STATE", str(tmp_path / "a-file"))
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 2 and "cannot keep the ledger of results made here" in " ".join(outcome.text.split())
    assert not (tmp_path / "run").exists()
    (tmp_path / "shared").mkdir(mode=0o777)
    (tmp_path / "shared").chmod(0o777)  # anyone could add a note: anyone could vouch for a result
    monkeypatch.setenv("LVEFBENCH_STATE", str(tmp_path / "shared"))
    outcome = cli("validate", experiment)
    assert outcome.code == 2 and "is not yours alone" in " ".join(outcome.text.split())


def test_a_relative_state_folder_is_ignored(tmp_path, monkeypatch):
    """A relative ``$LVEFBENCH_STATE`` would read a ledger out of whatever folder a command runs in (a received
    one could ship its own notes)."""
    monkeypatch.setenv("LVEFBENCH_STATE", "state")
    monkeypatch.setenv("XDG_STATE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_dir() == tmp_path / ".local" / "state" / "lvefbench"


def test_a_job_run_again_leaves_nothing_of_an_earlier_attempt(run_copy):
    """A traceback of an earlier failure, or a model.pt beside a head that stores none (the prior), would travel
    with the new result: to the storage, the artifact store and whoever re-evaluates the model."""
    prior = _job(run_copy, "prior")
    assert not (prior / "model.pt").exists()
    (prior / "model.pt").write_bytes(b"not this job's model")
    (prior / "traceback.txt").write_text("an earlier failure")
    (prior / "result.json").unlink()
    _run(_experiment(run_copy), run_copy)
    assert sorted(path.name for path in prior.iterdir()) == ["predictions.csv", "result.json", "samples.npz"]
