import json
import os

import pytest

from benchmark import store
from benchmark.errors import StoreError


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "result.json"
    store.atomic_write_json(path, {"a": 1})
    store.atomic_write_json(path, {"a": 2, "b": [1.5]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1.5]}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    store.atomic_write_text(path, "old")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StoreError, match="No space left on device.*Nothing partial was kept"):
        store.atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.atomic_write_text(path, "data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory_is_a_clear_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="cannot write"):
            store.atomic_write_text(tmp_path / "x" / "y.txt", "data")
    finally:
        tmp_path.chmod(0o700)


def test_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot write .*--out"):
        store.atomic_write_text(blocker / "inside.txt", "data")


def test_run_dir_marks_jobs_done_only_when_result_exists(tmp_path):
    run = store.RunDir(tmp_path)
    assert not run.is_done("job")
    store.atomic_write_json(run.result("job"), {"status": "ok"})
    assert run.is_done("job")
    assert run.optuna_storage.startswith("sqlite:///")


def test_corrupt_json_is_reported_with_its_path(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{")
    with pytest.raises(StoreError, match="bad.json is not valid JSON"):
        store.read_json(path)


def test_only_a_regular_file_is_opened(tmp_path):
    (tmp_path / "file").write_bytes(b"data")
    with store.open_regular(tmp_path / "file") as stream:
        assert stream.read() == b"data"
    (tmp_path / "link").symlink_to(tmp_path / "file")  # not followed, even to a regular file
    (tmp_path / "folder").mkdir()
    for name, kind in (("link", "a symbolic link"), ("folder", "a folder")):
        with pytest.raises(StoreError, match=f"{name} is {kind}, not a regular file"):
            store.open_regular(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        store.open_regular(tmp_path / "missing")


def test_an_archive_entry_past_the_bound_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    """A zip bomb: a few kB that unpack to gigabytes. Every .npz reader goes through open_arrays (a job's files,
    the row count that tells a changed file, the feature cache); the bound is lowered so the test needs no gigabytes."""
    import io

    import numpy as np

    monkeypatch.setattr(store, "MAX_ARRAY_BYTES", 1 << 20)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, samples=np.zeros((2, 100_000)))
    data = buffer.getvalue()
    unpacked = []
    monkeypatch.setattr(np.lib.format, "read_array", lambda *args, **kwargs: unpacked.append(args))
    with pytest.raises(ValueError, match=r"samples.npy unpacks to 1,600,\d+ bytes, more than 1,048,576"):
        store.open_arrays(data)
    (tmp_path / "samples.npz").write_bytes(data)
    damage = store.damage(tmp_path, {"samples.npz": {"sha256": "0" * 64, "rows": 2}})
    assert damage == f"{tmp_path / 'samples.npz'} cannot be read, but result.json records 2"
    assert not unpacked
