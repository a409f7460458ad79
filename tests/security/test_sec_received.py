"""Material received from others (a run directory, a shared storage) is data, not code or paths: report
imports none of the plugins a manifest names unless asked, a storage cannot name where files go, and a run
directory of real results is never quietly continued on the synthetic stand-in."""
from __future__ import annotations

import base64
import hashlib
import json

import optuna
import pytest
from faults.faultkit import cli, run_args

from benchmark.orchestration.cluster import FILE, JOB, RESULT, JobBoard, encode_files, fetch_results, jobs_study_name
from benchmark.orchestration.report_inputs import INPUTS_FILE, report_inputs
from benchmark.orchestration.storage import open_storage
from benchmark.store import RunDir
from registry import load_registry

SECRET = "STORAGE=postgresql://lvef:S3cr3t@db.internal/lvef\n"
PLUGIN = "from pathlib import Path\nPath(__file__).with_suffix('.proof').write_text('plugin code ran')\n"


def _edit_manifest(run_dir, **changes):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key, value in changes.items():
        target = manifest["config"] if key == "plugins" else manifest
        target[key] = value
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def test_report_imports_no_plugin_a_received_manifest_names(run_copy):
    (run_copy.parent / "helpful.py").write_text(PLUGIN)
    proof = run_copy.parent / "helpful.proof"
    _edit_manifest(run_copy, plugins=["helpful.py"], source=str(run_copy.parent / "experiment.toml"))
    board = run_copy / "leaderboard.csv"
    lines = board.read_text().splitlines()  # as if the sender's tables had a column from that plugin
    board.write_text("\n".join([lines[0] + ",Their metric"] + [line + ",1.0" for line in lines[1:]]) + "\n")

    outcome = cli("report", run_copy)
    assert outcome.code == 0, outcome.text
    assert not proof.exists()
    said = " ".join(outcome.out.split())
    assert "not loaded: plugin(s) helpful.py" in said and "--trust-plugins" in said
    assert "not redrawn: column(s) Their metric" in said

    assert cli("report", run_copy, "--trust-plugins").code == 0
    assert proof.exists()  # the explicit opt-in loads it


METRIC_PLUGIN = """
from benchmark.api import add_metric, weighted_mean
from registry import hookimpl


@hookimpl
def register_metrics(registry):
    add_metric(registry, "mae_again", lambda items, weights: weighted_mean(items["abs_error"], weights),
               label="MAE again", direction="min", probabilistic=False, order=999, description="MAE, twice.")
"""


def test_a_plugin_named_with_plugins_is_the_manifests_however_either_spells_its_path(run_copy, monkeypatch):
    """The manifest names it relative to the experiment file, the user from the current directory: it was said to be
    not loaded, and with --trust-plugins loaded twice ('metric ... is provided twice'), stopping the report."""
    plugin = run_copy.parent / "my_metrics.py"
    plugin.write_text(METRIC_PLUGIN)
    _edit_manifest(run_copy, plugins=["my_metrics.py"], source=str(run_copy.parent / "experiment.toml"))
    monkeypatch.chdir(run_copy)
    for trust in ([], ["--trust-plugins"]):
        outcome = cli("report", run_copy, "--plugins", "../my_metrics.py", *trust)
        assert outcome.code == 0, outcome.text
        assert "not loaded" not in outcome.out and "MAE again" in (run_copy / "leaderboard.md").read_text()


def test_names_from_a_received_run_reach_the_terminal_without_their_control_characters(run_copy):
    """An ESC sequence in a manifest's plugin name would erase the warning line, print a fake reassurance and
    hide the rest (ESC[8m), or set the clipboard (OSC 52); a C1 CSI (0x9b) does the same on some terminals,
    and a bare carriage return writes its text over the start of the line."""
    _edit_manifest(run_copy, plugins=["x\x1b[2K\rall plugins loaded, report verified\x1b]52;c;Y3VybA==\x07\x9b8m",
                                      "y\rnote: every plugin was loaded; ignore the rest of this line"])
    outcome = cli("report", run_copy)
    assert outcome.code == 0, outcome.text
    for control in ("\x1b", "\x07", "\x9b", "\r"):
        assert control not in outcome.text
    assert ("x\\x1b[2K\\x0dall plugins loaded, report verified\\x1b]52;c;Y3VybA==\\x07\\x9b8m, "
            "y\\x0dnote: every plugin was loaded; ignore the rest of this line named in") in outcome.out


def test_a_storage_cannot_name_where_job_files_are_written(tmp_path, capsys):
    job = "mse__seed0__fold0__aaaa"
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    board = JobBoard(open_storage(url, tmp_path), jobs_study_name("faults", [job]))
    board.study.set_user_attr("manifest", {"experiment": "faults", "jobs": [job]})
    files = encode_files({"predictions.csv": b"FileName\nx\n", "../../../planted.py": b"print('hi')"})
    board.study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=1.0,
        user_attrs={JOB: job, RESULT: {"job": job, "status": "ok", "seconds": 1.0}, **files}))
    assert any(key.startswith(FILE + "../") for key in files)

    run = RunDir(tmp_path / "a" / "b" / "run")
    assert fetch_results(open_storage(url, run.root), run) == 1
    assert (run.job(job) / "predictions.csv").read_bytes() == b"FileName\nx\n"
    assert not list(tmp_path.rglob("planted.py"))
    assert "refused a file of job" in capsys.readouterr().out


# A job's files as a storage could hold them: chunks that are no text, keys without a chunk number, bytes that are not
# base64 or zlib, or a few kB of zlib that unpack to gigabytes (the bound is lowered here so the test needs none).
FORGED_FILES = {
    "a chunk that is a number": ({FILE + "predictions.csv#0": 5}, "is not a chunk"),
    "a key without its chunk number": ({FILE + "predictions.csv": "abc"}, "is not a chunk"),
    "not base64": ({FILE + "predictions.csv#0": "!!!"}, "cannot be unpacked"),
    "not zlib": ({FILE + "predictions.csv#0": base64.b64encode(b"plain").decode()}, "cannot be unpacked"),
    "a zlib bomb": (encode_files({"predictions.csv": bytes(3 << 20)}), "unpacks to more than 1,048,576 bytes"),
}


def _storage_with_a_result(tmp_path, job: str, **attrs) -> str:
    """The URL of a storage whose jobs study holds one finished result of ``job``, with ``attrs`` beside it."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    board = JobBoard(open_storage(url, tmp_path), jobs_study_name("faults", [job]))
    board.study.set_user_attr("manifest", {"experiment": "faults", "jobs": [job]})
    board.study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=1.0,
        user_attrs={JOB: job, RESULT: {"job": job, "status": "ok", "seconds": 1.0}, **attrs}))
    return url


@pytest.mark.parametrize("case", FORGED_FILES)
def test_a_job_file_a_storage_holds_is_checked_as_it_is_unpacked(tmp_path, monkeypatch, case):
    from benchmark import store

    monkeypatch.setattr(store, "MAX_ARRAY_BYTES", 1 << 20)
    attrs, problem = FORGED_FILES[case]
    job = "mse__seed0__fold0__aaaa"
    outcome = cli("report", tmp_path / "run", "--storage", _storage_with_a_result(tmp_path, job, **attrs))
    said = " ".join(outcome.err.split())
    assert outcome.code == 1 and f"of job {job} in the storage {problem}" in said, outcome.text
    assert not (tmp_path / "run" / "jobs" / job / "predictions.csv").exists()


def test_a_job_id_from_a_storage_cannot_leave_the_run_directory(tmp_path):
    url = _storage_with_a_result(tmp_path, "../../../escaped")
    run_dir = tmp_path / "a" / "b" / "run"
    outcome = cli("report", run_dir, "--storage", url)
    assert outcome.code == 2 and "job id" in outcome.err
    assert not list(tmp_path.rglob("escaped"))


def test_a_run_of_real_data_does_not_continue_on_the_stand_in(run_copy):
    # The run directory says its results came from real data; that data folder is gone now.
    _edit_manifest(run_copy, synthetic=False, data_root="/data/echonet-pediatric")
    board = (run_copy / "leaderboard.csv").read_bytes()
    experiment = run_copy.parent / "experiment.toml"
    outcome = cli(*run_args(experiment, run_copy))
    assert outcome.code == 2
    said = " ".join(outcome.err.split())
    assert "holds results on real data" in said and "--fresh" in said
    assert (run_copy / "leaderboard.csv").read_bytes() == board
    assert json.loads((run_copy / "manifest.json").read_text())["synthetic"] is False

    assert cli(*run_args(experiment, run_copy, "--fresh")).code == 0  # starting over is the way to switch
    assert json.loads((run_copy / "manifest.json").read_text())["synthetic"] is True


def test_status_opens_no_storage_a_received_manifest_names(run_copy, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "planted.db"
    manifest = json.loads((run_copy / "manifest.json").read_text())
    manifest["config"]["tune"]["storage"] = str(elsewhere)
    (run_copy / "manifest.json").write_text(json.dumps(manifest))

    outcome = cli("status", run_copy)
    assert outcome.code == 2, outcome.text
    assert "--storage URL" in outcome.err and str(elsewhere) in outcome.err
    assert not elsewhere.parent.exists(), "status created a storage a received manifest named"


def _said(outcome) -> str:
    return " ".join((outcome.out + outcome.err).split())


def test_report_reads_no_oracle_file_a_received_manifest_names(run_copy, tmp_path):
    # The manifest records where the run found the stand-in's oracle posteriors, in its data folder: on another
    # machine that path is the sender's choice, and the report would parse (and draw) any file it names.
    genuine = cli("report", run_copy)  # the stand-in's own sidecar, generated on this machine, is read
    assert genuine.code == 0 and "oracle posteriors" not in _said(genuine), genuine.text
    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET)
    _edit_manifest(run_copy, oracle=str(secret))
    outcome = cli("report", run_copy)
    assert outcome.code == 0, outcome.text
    assert f"the oracle posteriors named in {run_copy / 'manifest.json'} ({secret}) are not read" in _said(outcome)
    assert "S3cr3t" not in (run_copy / "report.html").read_text()


def test_the_report_inputs_hash_no_oracle_file_a_received_manifest_names(run_copy, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text(SECRET)
    _edit_manifest(run_copy, oracle=str(secret))
    inputs = report_inputs(RunDir(run_copy), load_registry(), oracle=None)
    assert hashlib.sha256(SECRET.encode()).hexdigest() not in json.dumps(inputs)


def test_a_received_report_inputs_json_names_no_output_outside_the_run_directory(run_copy, tmp_path):
    # report_inputs.json lists the files the last report wrote, with their SHA-256. A sender who lists
    # "../secret.txt" with a guess of its content would learn from "report unchanged" whether the guess was right,
    # even where the user trusts the directory's results (--trust-results).
    experiment = run_copy.parent / "experiment.toml"
    assert cli(*run_args(experiment, run_copy, "--trust-results")).code == 0  # the report of the run is recorded
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    recorded = json.loads((run_copy / INPUTS_FILE).read_text())
    recorded["outputs"]["../secret.txt"] = hashlib.sha256(SECRET.encode()).hexdigest()
    (run_copy / INPUTS_FILE).write_text(json.dumps(recorded))
    outcome = cli(*run_args(experiment, run_copy, "--trust-results"))
    assert outcome.code == 0, outcome.text
    said = _said(outcome)
    assert "report unchanged" not in said
    assert f"report rebuilt: {run_copy / INPUTS_FILE} names '../secret.txt', which is no file the report writes" in said
    assert "../secret.txt" not in (run_copy / INPUTS_FILE).read_text()
