"""A rerun with no changed result does not redraw the report; a changed result, a damaged output or a
missing record does, and says why."""
from __future__ import annotations

import json
import shutil

from faults.faultkit import cli, run_args

from benchmark.identity import vouch_file
from benchmark.orchestration.report_inputs import INPUTS_FILE


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
