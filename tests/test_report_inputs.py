"""A rerun with no changed result does not redraw the report; a changed result, a damaged output or a
missing record does, and says why."""
from __future__ import annotations

import json
import shutil

from faults.faultkit import cli, run_args

from benchmark.identity import vouch_file
from benchmark.orchestration.report_inputs import INPUTS_FILE, report_inputs
from benchmark.store import RunDir
from registry import load_registry


def _rerun(experiment, run):
    outcome = cli(*run_args(experiment, run))
    assert outcome.code == 0, outcome.text
    return outcome.text


def test_the_report_is_redrawn_only_when_what_it_reads_changed(experiment, reference_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    # This test's experiment file lies elsewhere than the reference run's, and so does its dataset root:
    # the manifest's configuration changed, and the report is redrawn once.
    assert "report rebuilt: manifest changed" in _rerun(experiment, run)
    board = run / "leaderboard.md"
    stamp = board.stat().st_mtime_ns

    assert "report unchanged, not rebuilt" in _rerun(experiment, run)
    assert board.stat().st_mtime_ns == stamp

    result = next(run.glob("jobs/*/result.json"))
    record = json.loads(result.read_text())
    record["notes"] = {**record.get("notes", {}), "edited": "by the test"}
    result.write_text(json.dumps(record))
    vouch_file(result)  # a result this machine made anew (else the run computes it again, to the same bytes)
    assert "report rebuilt: results changed" in _rerun(experiment, run)
    assert board.stat().st_mtime_ns != stamp

    board.write_text("edited by hand")
    assert "report rebuilt: leaderboard.md is missing or was changed" in _rerun(experiment, run)
    assert board.read_text() != "edited by hand"

    (run / INPUTS_FILE).unlink()
    assert "report rebuilt: no earlier report" in _rerun(experiment, run)
    assert "report unchanged, not rebuilt" in _rerun(experiment, run)


def test_a_changed_exclusion_or_environment_redraws_the_report(tmp_path, synthetic_root, reference_run):
    """report.html lists excluded.csv and the manifest's identities (packages, commit, data root ...): a video
    newly left out, which changes no job, or another torch version must not leave the old page in place."""
    from faults.faultkit import write_experiment

    (generated,) = synthetic_root.glob("echonet_pediatric-*")
    data = shutil.copytree(generated, tmp_path / "data")
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "none", root=data)
    run = tmp_path / "run"
    _rerun(experiment, run)

    with (data / "A4C" / "FileList.csv").open("a") as rows:
        rows.write("ghost.avi,50.0,F,3,15.0,90.0,3\n")  # a row whose video is missing: excluded, no job changes
    said = _rerun(experiment, run)
    assert "3 already done, 0 to run" in said and "report rebuilt: manifest, excluded.csv changed" in said, said
    assert "ghost.avi" in (run / "report.html").read_text()

    def inputs_with(**changed):  # the report's inputs were the manifest as the last run left it but for ``changed``
        manifest = json.loads((run / "manifest.json").read_text())
        (run / "manifest.json").write_text(json.dumps({**manifest, **changed}))
        return report_inputs(RunDir(run), load_registry(), None)["manifest"]

    drawn = json.loads((run / INPUTS_FILE).read_text())["inputs"]["manifest"]
    assert inputs_with(created="2000-01-01T00:00:00+00:00") == drawn  # every run writes its own time: no reason
    assert inputs_with(packages={"torch": "0.0.1"}) != drawn  # as a run under another torch writes it
