"""Atomic file writes and the run directory layout.

Every file the benchmark produces is written to a temporary sibling, flushed to disk and renamed into
place, so a crash (even kill -9) leaves either the old file or the complete new one, never half of one.
A job counts as finished only when its ``result.json`` exists, and that file is written last; it records
the row count and SHA-256 of each file the tables are built from, so a file changed or cut short later
(by a sync tool, an editor, a disk) is found and the job counted as damaged instead of scored.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from benchmark.errors import StoreError

# A temporary sits beside its final file as ".<final name>.<writer pid>.<random>.tmp"; the pid lets a later
# run tell the leftovers of a killed writer from the files of a live one (another worker, same folder).
TEMPORARY_SUFFIX = ".tmp"
# The files of a job that the tables and plots are built from: checked against result.json before use.
SCORED_FILES = ("predictions.csv", "samples.npz", "trajectories.npz")


def safe_name(text: str) -> str:
    """``text`` as a file or folder name: anything but letters, digits, ``_.-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMPORARY_SUFFIX,
                                             dir=path.parent)
    except OSError as error:
        raise StoreError(f"cannot write {path}: {error.strerror or error}. Check that the output "
                         "directory is writable (or choose another with --out).") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {error.strerror or error}. Nothing partial was kept; "
                         "free space or fix permissions and rerun (finished work is kept).") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise StoreError(f"{path} is not valid JSON ({error}); delete it to recompute that step") from None


def file_records(directory: str | Path, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "rows"}}`` for each of ``names`` present in ``directory``."""
    records = {}
    for name in names:
        path = Path(directory) / name
        if path.is_file():
            data = path.read_bytes()
            records[name] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": _rows(name, data)}
    return records


def damage(directory: str | Path, records: dict[str, dict[str, Any]]) -> str | None:
    """What is wrong with the stored files of ``records`` in ``directory`` (the first problem, naming the
    file), or None when every file is the one that was written."""
    for name, record in sorted(records.items()):
        path = Path(directory) / name
        try:
            data = path.read_bytes()
        except OSError as error:
            return f"{path} cannot be read ({error.strerror or error})"
        if hashlib.sha256(data).hexdigest() == record["sha256"]:
            continue
        rows = _rows(name, data)
        if rows != record["rows"]:
            found = "cannot be read" if rows is None else f"has {rows} rows"
            return f"{path} {found}, but result.json records {record['rows']}"
        return f"{path} differs from what was written (SHA-256 mismatch)"
    return None


def _rows(name: str, data: bytes) -> int | None:
    """Data rows of a stored table (CSV lines after the header; length of an archive's first array)."""
    if name.endswith(".csv"):
        return max(data.count(b"\n") - 1, 0)
    if name.endswith(".npz"):
        import numpy as np

        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                return len(arrays[arrays.files[0]]) if arrays.files else 0
        except Exception:  # any damage a zip or array header can have: no row count to give
            return None
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


class RunDir:
    """Paths of one run directory (``runs/<experiment>/`` by default)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    manifest = property(lambda self: self.root / "manifest.json")
    splits = property(lambda self: self.root / "splits.csv")
    excluded = property(lambda self: self.root / "excluded.csv")
    jobs = property(lambda self: self.root / "jobs")
    plots = property(lambda self: self.root / "plots")
    cache = property(lambda self: self.root / "cache")
    optuna_storage = property(lambda self: f"sqlite:///{(self.root / 'optuna.db').resolve()}")

    def job(self, job_id: str) -> Path:
        return self.jobs / job_id

    def result(self, job_id: str) -> Path:
        return self.job(job_id) / "result.json"

    def is_done(self, job_id: str) -> bool:
        return self.result(job_id).is_file()

    def damage(self, job_id: str, record: dict[str, Any]) -> str | None:
        """What is wrong with a finished job's stored files (None: all as written)."""
        return damage(self.job(job_id), record.get("files", {}))

    def remove_temporaries(self) -> list[Path]:
        """Delete what atomic writes of killed processes left under temporary names: never renamed into
        place, so nothing counts on them. Temporaries of writers still alive on this machine are kept."""
        stale = sorted(path for path in self.root.rglob(f".*{TEMPORARY_SUFFIX}") if not _writer_alive(path))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale


def _writer_alive(temporary: Path) -> bool:
    pid = temporary.name.rsplit(".", 3)[-3]  # ".<final name>.<pid>.<random>.tmp"
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
