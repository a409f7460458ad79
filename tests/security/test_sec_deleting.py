"""What a run may delete: with --fresh only a run directory it made, never the current directory or a
folder of the user's; of temporaries only its own leftovers, and only once the configuration is sound."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from faults.faultkit import cli, run_args


def test_fresh_never_deletes_the_current_directory(tmp_path, experiment, monkeypatch):
    mine = tmp_path / "thesis.tex"
    mine.write_text("years of work")
    monkeypatch.chdir(tmp_path)
    outcome = cli(*run_args(experiment, tmp_path, "--fresh"))
    assert outcome.code == 2
    assert "current directory" in " ".join(outcome.err.split())  # the error is wrapped at the path's length
    assert mine.read_text() == "years of work" and experiment.is_file()


def test_fresh_never_deletes_a_folder_without_a_run_manifest(tmp_path, experiment):
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    (folder / "2024" / "beach.jpg").write_bytes(b"jpeg")
    outcome = cli(*run_args(experiment, folder, "--fresh"))
    assert outcome.code == 2
    assert "no manifest.json" in " ".join(outcome.err.split())
    assert (folder / "2024" / "beach.jpg").read_bytes() == b"jpeg"


def test_a_run_never_writes_over_files_of_a_folder_without_a_run_manifest(tmp_path, experiment):
    """Without --fresh too: a run into a folder of the user's replaced its report.html and timings.json and merged
    its jobs into the user's jobs/."""
    folder = tmp_path / "website"
    (folder / "jobs").mkdir(parents=True)
    (folder / "report.html").write_text("my report")
    (folder / "jobs" / "cv.pdf").write_bytes(b"pdf")
    outcome = cli(*run_args(experiment, folder))
    said = " ".join(outcome.err.split())
    assert outcome.code == 2 and "no manifest.json" in said and "jobs, report.html" in said, outcome.text
    assert (folder / "report.html").read_text() == "my report"
    assert sorted(path.name for path in folder.rglob("*")) == ["cv.pdf", "jobs", "report.html"]


def test_a_run_killed_before_its_manifest_resumes(run_copy):
    """What a run writes before its manifest.json (the split files, noted as made here) is no user's: the next run
    goes on."""
    for child in run_copy.iterdir():
        if child.name not in ("splits.csv", "excluded.csv"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    outcome = cli(*run_args(run_copy.parent / "experiment.toml", run_copy))
    assert outcome.code == 0, outcome.text
    assert (run_copy / "manifest.json").is_file()


@pytest.mark.parametrize("name", ["splits.csv", "excluded.csv"])
def test_a_run_never_writes_over_a_users_own_split_file(tmp_path, experiment, name):
    """A split file this machine did not write, in a folder without a run's manifest, is the user's: replaced by
    the run's before, now refused naming it."""
    folder = tmp_path / "analysis"
    folder.mkdir()
    (folder / name).write_text("id,patient,split,role\nmy,own,hand-made,split\n")
    outcome = cli(*run_args(experiment, folder))
    said = " ".join(outcome.err.split())
    assert outcome.code == 2 and f"holds {name} but no manifest.json" in said, outcome.text
    assert (folder / name).read_text() == "id,patient,split,role\nmy,own,hand-made,split\n"
    assert [path.name for path in folder.iterdir()] == [name]


def test_fresh_deletes_a_run_directory_and_says_so(run_copy):
    stale = run_copy / "jobs" / "stale-job"
    stale.mkdir()
    outcome = cli(*run_args(run_copy.parent / "experiment.toml", run_copy, "--fresh"))
    assert outcome.code == 0, outcome.text
    assert f"deleting the run directory {run_copy.resolve()}" in outcome.out
    assert not stale.exists() and (run_copy / "leaderboard.csv").is_file()


def test_a_users_tmp_file_in_the_run_directory_survives(run_copy):
    notes = run_copy / ".notes.tmp"  # not the atomic writer's ".<name>.<pid>.<random>.tmp"
    notes.write_text("draft")
    assert cli(*run_args(run_copy.parent / "experiment.toml", run_copy)).code == 0
    assert notes.read_text() == "draft"


def test_dead_temporaries_are_kept_when_the_run_stops_on_a_configuration_error(tmp_path, experiment):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    out = tmp_path / "run"
    out.mkdir()
    dead = out / f".result.json.{finished.pid}.abc123.tmp"
    dead.write_text("{")
    # A device that no machine has: found only after the data is prepared, as CUDA is looked at then.
    outcome = cli(*run_args(experiment, out, "--set", "train.device=cuda:99"))
    assert outcome.code == 2 and "cuda:99" in outcome.err
    assert dead.exists()
    assert not (out / "manifest.json").exists()


def test_fresh_deletes_only_what_a_run_makes_and_names_each_thing(run_copy):
    notebook, figures = run_copy / "analysis.ipynb", run_copy / "thesis_figures"
    notebook.write_text("my analysis")
    figures.mkdir()
    (figures / "fig1.svg").write_text("<svg/>")
    outcome = cli(*run_args(run_copy.parent / "experiment.toml", run_copy, "--fresh"))
    assert outcome.code == 0, outcome.text
    said = " ".join(outcome.out.split())
    assert notebook.read_text() == "my analysis" and (figures / "fig1.svg").read_text() == "<svg/>"
    assert f"--fresh: deleting {run_copy / 'jobs'}" in said and f"--fresh: deleting {run_copy / 'manifest.json'}" in said
    # Of an honest run directory nothing but the user's two things is kept.
    assert said.count("--fresh: kept") == 2
    assert f"--fresh: kept {notebook}: a run makes no file or folder of that name" in said
    assert f"--fresh: kept {figures}: a run makes no file or folder of that name" in said


def test_fresh_keeps_the_users_files_beside_a_copied_manifest(tmp_path, experiment):
    folder = tmp_path / "downloads"  # a received run unpacked flat into a folder of the user's
    folder.mkdir()
    (folder / "taxes.pdf").write_bytes(b"tax return")
    (folder / "manifest.json").write_text('{"experiment": "quick", "config": {}, "jobs": []}')
    outcome = cli(*run_args(experiment, folder, "--fresh"))
    assert outcome.code == 0, outcome.text
    assert (folder / "taxes.pdf").read_bytes() == b"tax return"
