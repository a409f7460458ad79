"""Disk faults: an output directory that cannot be written, and a disk that fills up mid-run. The run
stops with a message naming the file it could not write and what to do; nothing partial is left under a
final name, and once there is room again the rerun finishes with the undisturbed leaderboard."""
from __future__ import annotations

import errno
import fnmatch
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from faultkit import assert_complete_files, cli, leaderboard, run_args, temporaries

from benchmark import store


class FullDisk:
    """Stands in for ``os`` and ``tempfile`` inside ``benchmark.store``: the disk fills up when a file whose
    final path matches ``fills_at`` is written; from then on every write stores half its bytes and
    fails with ENOSPC, as a real full disk does."""

    def __init__(self, fills_at: str):
        self.fills_at, self.full = fills_at, False
        self.os, self.tempfile = _Os(self), _Tempfile(self)

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(store, "os", self.os)
        monkeypatch.setattr(store, "tempfile", self.tempfile)


class _Tempfile:
    def __init__(self, disk: FullDisk):
        self.disk = disk

    def __getattr__(self, name):  # the pre-flight's write check (mkdtemp) sees a disk with room
        return getattr(tempfile, name)

    def mkstemp(self, prefix: str, suffix: str, dir):
        final = Path(dir) / prefix[1:].rsplit(".", 2)[0]  # store's prefix is ".<final name>.<pid>."
        if fnmatch.fnmatch(str(final), self.disk.fills_at):
            self.disk.full = True
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dir)


class _Os:
    def __init__(self, disk: FullDisk):
        self.disk = disk

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, handle, mode):
        stream = os.fdopen(handle, mode)
        return _FillingStream(stream) if self.disk.full else stream


class _FillingStream:
    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def write(self, data: bytes) -> int:
        self.stream.write(data[: len(data) // 2])
        self.stream.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fills_at, jobs_done", [
    ("*/cache/*.npz", 0),  # feature caching
    ("*/jobs/*/predictions.csv", 0),  # the first job's results
    ("*/leaderboard.csv", 3),  # the tables, after every job (mse, gaussian, prior)
])
def test_full_disk(tmp_path, experiment, reference_run, monkeypatch, fills_at, jobs_done):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        FullDisk(fills_at).install(patch)
        outcome = cli(*run_args(experiment, out))
    assert outcome.code == 1, outcome.text
    message = " ".join(outcome.err.split())
    assert message.startswith("failed: cannot write ") and ": No space left on device." in message
    target = message.split("cannot write ", 1)[1].split(":", 1)[0]
    assert fnmatch.fnmatch(target, fills_at), f"the message must name the file that did not fit: {message}"
    assert "Nothing partial was kept; free space or fix permissions and rerun (finished work is kept)" in message
    assert not Path(target).exists(), "a file that did not fit must not appear under its final name"
    assert temporaries(out) == [] and not (out / "leaderboard.csv").exists()
    assert_complete_files(out)
    assert len(list(out.glob("jobs/*/result.json"))) == jobs_done

    outcome = cli(*run_args(experiment, out))  # room again
    assert outcome.code == 0, outcome.text
    pd.testing.assert_frame_equal(leaderboard(out), leaderboard(reference_run))


def test_output_directory_blocked_by_a_file(tmp_path, experiment):
    blocker = tmp_path / "results"
    blocker.write_text("not a directory")
    outcome = cli(*run_args(experiment, blocker / "run"))
    assert outcome.code == 2  # refused before any work: the data are not loaded
    message = " ".join(outcome.err.split())
    assert f"--out: {blocker / 'run'} cannot be a run directory: {blocker} is a file, not a folder" in message
    assert "Choose a writable place with --out" in message and "dataset" not in outcome.out


def test_output_directory_without_write_permission(tmp_path, experiment, monkeypatch):
    # Simulated, because root (as in many CI containers) may write anywhere regardless of chmod.
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    # Files are refused; the settings' folders (checked with mkdtemp before any work) lie elsewhere.
    monkeypatch.setattr(store, "tempfile", type("NoWrite", (), {"mkstemp": staticmethod(refuse),
                                                                "mkdtemp": staticmethod(tempfile.mkdtemp)}))
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 1
    message = " ".join(outcome.err.split())
    assert f"cannot write {tmp_path / 'run'}/" in message and "Permission denied" in message
    assert "Check that the output directory is writable (or choose another with --out)" in message
    assert not list((tmp_path / "run").rglob("*.*")), "nothing may be written where writing is refused"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_output_directory(tmp_path, experiment):
    tmp_path.joinpath("locked").mkdir()
    tmp_path.joinpath("locked").chmod(0o500)
    try:
        outcome = cli(*run_args(experiment, tmp_path / "locked" / "run"))
    finally:
        tmp_path.joinpath("locked").chmod(0o700)
    assert outcome.code == 2  # refused before any work
    assert "Choose a writable place with --out" in " ".join(outcome.err.split())
