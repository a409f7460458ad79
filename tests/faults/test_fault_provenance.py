"""Provenance: a stored result is reused only while everything it depends on is unchanged. A changed label,
video, plugin source or search space reruns exactly the jobs and studies it affects, and the run says why;
a moved data folder reruns nothing; a stored file changed after the fact is found, never scored."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from faultkit import MODELS, cli, leaderboard, run_args, write_experiment

PLUGIN = '''
from torch.nn import functional as F

from benchmark.api import PointHead
from registry import hookimpl


class Plug(PointHead):
    """A point head whose loss the test edits."""

    criterion = staticmethod(F.{loss})


@hookimpl
def register_heads(registry):
    registry.add("plug", Plug)
'''


@pytest.fixture
def data(tmp_path, synthetic_root, reference_run):
    """A copy of the session's generated Pediatric-format data, used as real data (so it can be edited);
    the reference run has generated it. ``copytree`` keeps the files' modification times."""
    (generated,) = synthetic_root.glob("echonet_pediatric-*")
    return shutil.copytree(generated, tmp_path / "data")


def run(experiment, out, *extra):
    outcome = cli(*run_args(experiment, out, *extra))
    assert outcome.code == 0, outcome.text
    return outcome


def set_ef(data, item_id: str, ef: float) -> None:
    """Rewrite one row's EF in A4C/FileList.csv, leaving every other byte as it was."""
    path = data / "A4C" / "FileList.csv"
    with path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    column = rows[0].index("EF")
    (row,) = [row for row in rows[1:] if row[rows[0].index("FileName")] == item_id]
    row[column] = f"{ef:.2f}"
    with path.open("w", newline="") as stream:
        csv.writer(stream).writerows(rows)


def an_item(out, role: str) -> str:
    splits = pd.read_csv(out / "splits.csv", dtype=str)
    return splits.loc[splits["role"] == role, "id"].iloc[0]


def predictions(out, model: str) -> pd.DataFrame:
    manifest = json.loads((out / "manifest.json").read_text())
    (job,) = [job for job in manifest["jobs"] if job.startswith(f"{model}__")]
    return pd.read_csv(out / "jobs" / job / "predictions.csv", dtype={"FileName": str}).set_index("FileName")


def test_changed_labels_and_videos_recompute_what_they_affect(tmp_path, data):
    experiment, out = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=data), \
        tmp_path / "run"
    run(experiment, out)

    test_item = an_item(out, "test")
    set_ef(data, test_item, 12.5)
    outcome = run(experiment, out)
    assert "0 already done, 3 to run" in outcome.out, outcome.out
    assert "mse (seed 0, fold0) runs again: test data changed" in outcome.out, outcome.out
    assert "stage 1 fold0/seed 0: reused" in outcome.out  # trained on TRAIN only: still valid
    assert re.search(r"features fold0/seed 0/train: \d+ clips \(hit\)", outcome.out), outcome.out
    assert re.search(r"features fold0/seed 0/test: \d+ clips \(miss\)", outcome.out), outcome.out
    assert predictions(out, "mse").loc[test_item, "EF"] == pytest.approx(12.5)

    set_ef(data, an_item(out, "train"), 12.5)
    outcome = run(experiment, out)
    assert "mse (seed 0, fold0) runs again: train data changed" in outcome.out, outcome.out
    assert "reused" not in outcome.out, "stage 1 saw a changed training label and must train again"

    video = next((data / "A4C" / "Videos").glob(an_item(out, "train")))
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: the same bytes
    outcome = run(experiment, out)
    assert "3 already done, 0 to run" in outcome.out, outcome.out

    stat = video.stat()
    damaged = bytearray(video.read_bytes())
    damaged[-2] ^= 0xFF  # a replaced video: same name and size, and its old modification time put back
    video.write_bytes(bytes(damaged))
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    outcome = run(experiment, out)
    assert "gaussian (seed 0, fold0) runs again: train data changed" in outcome.out, outcome.out
    assert "0 already done, 3 to run" in outcome.out


def test_a_moved_data_folder_reruns_nothing(tmp_path, data):
    out = tmp_path / "run"
    run(write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=data), out)
    before = leaderboard(out)

    moved = data.rename(tmp_path / "moved data")
    outcome = run(write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=moved), out)
    assert "3 already done, 0 to run" in outcome.out, outcome.out
    pd.testing.assert_frame_equal(leaderboard(out), before)


def test_an_edited_plugin_reruns_only_its_own_jobs(tmp_path, data):
    plugin = tmp_path / "plug.py"
    plugin.write_text(PLUGIN.format(loss="mse_loss"))
    models = MODELS.split("[[models]]\nhead = \"gaussian\"")[0] + '[[models]]\nhead = "plug"\nlabel = "plug"\n'
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=data,
                                  models=models, plugins=["plug.py"])
    out = tmp_path / "run"
    run(experiment, out)
    mse = predictions(out, "mse")

    plugin.write_text(PLUGIN.format(loss="l1_loss"))
    outcome = run(experiment, out)
    assert "2 already done, 1 to run" in outcome.out, outcome.out
    assert "plug (seed 0, fold0) runs again: head plug source changed" in outcome.out, outcome.out
    pd.testing.assert_frame_equal(predictions(out, "mse"), mse)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["identity"]["sources"]) >= {"head plug", "head mse", "fusion concat", "encoder tiny3d"}


TUNED = '''\
[[models]]
head = "mse"
label = "mse"
search_space = {{ lr = {{ float = [1e-4, 1e-2], log = true }}, width = {{ choices = {widths} }} }}

[[models]]
head = "gaussian"
label = "gaussian"
search_space = { lr = { float = [1e-4, 1e-2], log = true } }
'''


def test_a_changed_search_space_retunes_only_its_model(tmp_path, data):
    def experiment(widths):
        return write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=data,
                                models=TUNED.replace("{widths}", widths).replace("{{", "{").replace("}}", "}"),
                                trials=2)

    out = tmp_path / "run"
    first = run(experiment("[8, 16]"), out)
    assert "tuned mse" in first.out and "tuned gaussian" in first.out

    outcome = run(experiment("[32]"), out)
    tuned = json.loads((out / "tuning" / "mse__fold0.json").read_text())
    assert tuned["params"]["width"] == 32, "the new study must search the new space, not reuse the old best"
    assert "tuned mse" in outcome.out and "tuned gaussian" not in outcome.out, outcome.out
    assert "2 already done, 1 to run" in outcome.out
    assert "mse (seed 0, fold0) runs again: tuning changed" in outcome.out, outcome.out
    assert "mse is tuned again on fold0: width search space changed" in outcome.out, outcome.out


def test_a_changed_default_search_space_retunes_though_no_source_changed(tmp_path, synthetic_root, monkeypatch):
    """A stored winner is reused only for the space it was found in: the resolved space, the heads' defaults
    included, is part of the study's identity. Here the trunk heads' default space changes as an edit of
    benchmark/training/trunk.py would change it, with no plugin source changed: a range moved past the old
    winner, a parameter removed, one added."""
    from benchmark.training.trunk import TRUNK_SEARCH_SPACE
    from registry import FloatParam

    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, trials=2)
    out = tmp_path / "run"
    run(experiment, out)
    assert not 1e-2 <= json.loads((out / "tuning" / "mse__fold0.json").read_text())["params"]["lr"] <= 2e-2

    monkeypatch.setitem(TRUNK_SEARCH_SPACE, "lr", FloatParam(1e-2, 2e-2, log=True))
    monkeypatch.delitem(TRUNK_SEARCH_SPACE, "dropout")
    monkeypatch.setitem(TRUNK_SEARCH_SPACE, "weight_decay", FloatParam(1e-6, 1e-3, log=True))
    outcome = run(experiment, out)
    (said,) = [line for line in outcome.out.splitlines() if line.startswith("mse is tuned again on fold0: ")]
    assert said == ("mse is tuned again on fold0: dropout search space changed, lr search space changed, "
                    "weight_decay search space changed"), outcome.out
    winner = json.loads((out / "tuning" / "mse__fold0.json").read_text())["params"]
    assert 1e-2 <= winner["lr"] <= 2e-2 and "weight_decay" in winner and "dropout" not in winner, winner
    assert "mse (seed 0, fold0) runs again: tuning changed" in outcome.out, outcome.out


def test_a_truncated_predictions_file_is_found_and_recomputed(tmp_path, reference_run):
    experiment, out = reference_run.parent / "experiment.toml", tmp_path / "run"
    shutil.copytree(reference_run, out)
    (job,) = out.glob("jobs/mse__*")
    lines = (job / "predictions.csv").read_text().splitlines(keepends=True)
    (job / "predictions.csv").write_text("".join(lines[:2]))  # header and one row: readable, but not whole

    report = cli("report", out)
    assert report.code == 0, report.text
    board = leaderboard(out).set_index("model")
    assert board.loc["mse", "status"] == "failed" and pd.isna(board.loc["mse", "mae"])
    assert f"{job / 'predictions.csv'} has 1 rows, but result.json records {len(lines) - 1}" in \
        board.loc["mse", "error"]
    status = cli("status", out)
    assert "damaged" in status.out and "1 damaged" in status.out

    outcome = run(experiment, out)
    assert f"damaged {job.name}: " in outcome.out and "2 already done, 1 to run" in outcome.out
    pd.testing.assert_frame_equal(leaderboard(out), leaderboard(reference_run))


def test_one_run_per_directory(tmp_path, experiment):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        outcome = cli(*run_args(experiment, out))
        assert outcome.code == 2, outcome.text
        message = " ".join(outcome.err.split())
        assert f"is in use by process {holder.pid} on {socket.gethostname()}" in message
        assert not (out / "manifest.json").exists(), "a refused run must start nothing"
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale, and the next run takes it over and releases it at the end.
    outcome = cli(*run_args(experiment, out))
    assert outcome.code == 0, outcome.text
    assert not (out / "run.lock").exists()


def test_report_works_from_another_directory(tmp_path, synthetic_root, reference_run, monkeypatch):
    """A run started with relative paths records them absolute, so `report` elsewhere keeps the oracle overlay."""
    (tmp_path / "started here").mkdir()
    monkeypatch.chdir(tmp_path / "started here")
    Path("data").symlink_to(synthetic_root)  # the session's generated data, named relatively
    write_experiment(Path("experiment.toml"), synthetic_root=Path("data"), root="no-such-dataset")
    run(Path("experiment.toml"), Path("run"))

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "started here" / "run"
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("oracle", "source", "data_root"):
        assert Path(manifest[key]).is_absolute() and Path(manifest[key]).exists(), (key, manifest[key])
    assert cli("report", out).code == 0


@pytest.fixture
def engine_copy(tmp_path, monkeypatch):
    """The engine's source files read from a copy the test may edit (the running code stays the same)."""
    from benchmark import identity

    copy = shutil.copytree(identity.ENGINE_ROOT, tmp_path / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(identity, "ENGINE_ROOT", copy)
    return copy


def test_edited_engine_code_reruns_what_it_computes(tmp_path, data, engine_copy):
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=data)
    out = tmp_path / "run"
    run(experiment, out)
    encoders = sorted(path.name for path in (out / "encoders").iterdir())

    with (engine_copy / "training" / "loop.py").open("a") as source:
        source.write("\n# an edit to the training loop\n")
    outcome = run(experiment, out)
    assert "0 already done, 3 to run" in outcome.out, outcome.out
    assert "mse (seed 0, fold0) runs again: training/loop.py engine source changed" in outcome.out, outcome.out
    assert "reused" in outcome.out and sorted(path.name for path in (out / "encoders").iterdir()) == encoders

    with (engine_copy / "encoding" / "stage1.py").open("a") as source:
        source.write("\n# an edit to stage 1\n")
    outcome = run(experiment, out)
    assert "encoding/stage1.py engine source changed" in outcome.out, outcome.out
    assert len(list((out / "encoders").iterdir())) == len(encoders) + 1  # trained anew, the old one kept

    (engine_copy / "evaluation" / "plots.py").write_text("# drawing code is not part of any result\n")
    assert "3 already done, 0 to run" in run(experiment, out).out


ORACLE = MODELS.split("[[models]]\nhead = \"gaussian\"")[0] + '''
[[models]]
head = "oracle"
fusion = "none"
label = "oracle"
'''


def test_changed_oracle_posteriors_rerun_the_oracle_jobs(tmp_path, synthetic_root, reference_run):
    """The oracle's predictions are read from the stand-in's oracle.csv: a changed posterior there (or the code that
    reads and samples it, benchmark/synth/oracle.py) reruns the oracle's job and nothing else, instead of leaving
    the old posterior's numbers in the leaderboard beside figures drawn with the new one."""
    synthetic = shutil.copytree(synthetic_root, tmp_path / "synthetic")
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic, models=ORACLE)
    out = tmp_path / "run"
    run(experiment, out)

    (sidecar,) = synthetic.glob("echonet_pediatric-*/oracle.csv")
    item = an_item(out, "test")
    table = pd.read_csv(sidecar, dtype={"id": str})
    table.loc[table["id"] == item, "mean"] = 97.0
    table.to_csv(sidecar, index=False)
    outcome = run(experiment, out)
    assert "2 already done, 1 to run" in outcome.out, outcome.out
    assert "oracle (seed 0, fold0) runs again: oracle changed" in outcome.out, outcome.out
    assert predictions(out, "oracle").loc[item, "EF_pred"] == pytest.approx(97.0, abs=1.0)

    from benchmark.identity import JOB_ENGINE, engine_digests
    assert "synth/oracle.py" in engine_digests(JOB_ENGINE), "the oracle head's reading and sampling code"


def test_an_external_model_scored_against_changed_test_data_is_not_shown_as_scored(tmp_path, data):
    """``score`` scores external predictions against the run's test labels of that moment. Once a test label
    changes, the jobs run again on the new labels; the external row's numbers (its EF, errors, CRPS) would still
    be the old labels', shown beside them: the row is failed, saying to score it again, until it is."""
    experiment, out = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=data), \
        tmp_path / "run"
    run(experiment, out)
    external = tmp_path / "external.csv"
    predictions(out, "mse")[["EF_pred"]].to_csv(external)
    assert cli("score", out, external, "--name", "theirs").code == 0
    assert leaderboard(out).set_index("model").loc["theirs", "status"] == "ok"

    test_item = an_item(out, "test")
    set_ef(data, test_item, 12.5)
    outcome = run(experiment, out)
    row = leaderboard(out).set_index("model").loc["theirs"]
    assert row["status"] == "failed" and pd.isna(row["mae"]), row
    assert "scored against test data that changed since" in row["error"] and "score it again" in row["error"], row

    assert cli("score", out, external, "--name", "theirs", "--replace").code == 0
    row = leaderboard(out).set_index("model").loc["theirs"]
    assert row["status"] == "ok", row
    assert pd.read_csv(out / "external" / "theirs" / "predictions.csv", dtype={"FileName": str}).set_index(
        "FileName").loc[test_item, "EF"] == pytest.approx(12.5)
    assert outcome.code == 0


def test_another_library_version_recomputes_what_that_library_computes(tmp_path, data, monkeypatch):
    """Results of one torch version were reused under another, with manifest.json then recording the new version
    beside them: a library that computes a stage is part of its identity, and the log names it. One that only
    tunes (optuna) leaves an untuned run's stage 1 and jobs as they were."""
    from benchmark import identity

    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=data)
    out = tmp_path / "run"
    run(experiment, out)
    encoders = sorted(path.name for path in (out / "encoders").iterdir())
    installed = identity._version

    def upgraded(library: str, version: str):
        monkeypatch.setattr(identity, "_version", lambda name: version if name == library else installed(name))

    upgraded("optuna", "99.0")
    assert "3 already done, 0 to run" in run(experiment, out).out

    upgraded("scipy", "99.0")
    outcome = run(experiment, out)
    assert "0 already done, 3 to run" in outcome.out, outcome.out
    assert "mse (seed 0, fold0) runs again: scipy version changed" in outcome.out, outcome.out
    assert sorted(path.name for path in (out / "encoders").iterdir()) == encoders  # stage 1 does not use scipy

    upgraded("torch", "99.0")
    outcome = run(experiment, out)
    assert "mse (seed 0, fold0) runs again: scipy version changed, torch version changed" in outcome.out, outcome.out
    assert len(list((out / "encoders").iterdir())) == len(encoders) + 1  # trained anew, the old one kept
