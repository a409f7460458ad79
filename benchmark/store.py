"""Atomic file writes and the run directory layout.

Every file the benchmark produces is written to a temporary sibling, flushed to disk and renamed into
place, so a crash (even kill -9) leaves either the old file or the complete new one, never half of one.
A job counts as finished only when its ``result.json`` exists, and that file is written last; it records
the row count and SHA-256 of each file the tables are built from, so a file changed or cut short later
(by a sync tool, an editor, a disk) is found and the job counted as damaged instead of scored.

What is written is kept safe to share: names that become paths are checked (``check_name``, ``inside``),
result files get the umask's mode, and CSV text cannot run as a spreadsheet formula (``csv_text``).
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from benchmark.errors import ConfigError, StoreError

# A temporary sits beside its final file as ".<final name>.<writer pid>.<random>.tmp"; the pid lets a later
# run tell the leftovers of a killed writer from the files of a live one (another worker, same folder).
TEMPORARY_SUFFIX = ".tmp"
TEMPORARY_NAME = re.compile(r"\.(?P<final>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp")

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection). A quote in front makes
# it text; cells that already start with a quote get one too, so reading strips exactly one back.
FORMULA_START = ("=", "+", "-", "@")
CSV_ESCAPE = "'"
# The files of a job that the tables and plots are built from: checked against result.json before use.
SCORED_FILES = ("predictions.csv", "samples.npz", "trajectories.npz")


def safe_name(text: str) -> str:
    """``text`` as a file or folder name: anything but letters, digits, ``_.-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def check_name(value: str, key: str) -> str:
    """``value`` if it can name a file or folder as it is: no path separator, no ``..``, no control
    character. Names come from experiment files, the command line and shared storages, so one like
    ``../../x`` must never steer a write out of the run directory. The error names ``key``."""
    problems = [problem for problem, found in (
        ("is empty", not value),
        ("is '.', the folder it would be made in", value == "."),  # runs/. is every run's parent folder
        ("contains a path separator", "/" in value or "\\" in value),
        ("contains '..'", ".." in value),
        ("contains a control character", any(ord(char) < 32 or ord(char) == 127 for char in value)),
    ) if found]
    if problems:
        raise ConfigError(f"{key} {value!r} {' and '.join(problems)}: it names files and folders, so use "
                          "letters, digits, spaces and punctuation other than / and \\")
    return value


def nearest_existing(path: str | Path) -> Path:
    """``path``, or its nearest ancestor that exists: where a folder about to be made would take its room."""
    existing = Path(path).resolve()
    while not existing.exists():
        existing = existing.parent
    return existing


def folder_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot be made or written into, or None; asked before any work. The nearest folder that exists
    must take a new entry, tried with an empty temporary folder removed at once: permission bits say nothing for
    root, nor on a read-only or virtual file system such as /proc."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        Path(tempfile.mkdtemp(dir=existing, prefix=".write-check-")).rmdir()
    except OSError as error:
        return f"nothing can be created in {existing}: {error.strerror or error}"
    return None


def file_problem(path: str | Path, example: str = "") -> str | None:
    """Why a file cannot be written at ``path``, or None: a folder is there, or its folder cannot be made or written
    into (``folder_problem``). ``example``: a file name to suggest inside such a folder."""
    path = Path(path)
    if path.is_dir():
        return f"is a folder; name a file in it{f', e.g. {path / example}' if example else ''}"
    return folder_problem(path.parent)


def inside(root: str | Path, path: str | Path) -> Path:
    """``path`` after checking that it lies inside ``root`` and is reached from it without following a
    symbolic link: the guard of every path the tool reads or writes in a run directory. The tool never makes
    a link there, so one in a received run directory (``external -> another run's job``, ``plots -> ~``,
    ``excluded.csv -> ../../.env``) was planted, and following it would read or write outside ``root``.
    Nor does it make FIFOs or devices, and opening a FIFO blocks: what exists on the way must be a folder or
    a regular file."""
    root, path = Path(root), Path(path)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise StoreError(f"refused to use {path}: it lies outside {root}") from None
    if ".." in parts:
        raise StoreError(f"refused to use {path}: '..' leads outside {root}")
    step = root
    for part in parts:
        step = step / part
        try:
            mode = step.lstat().st_mode
        except OSError:  # not there (yet): the rest of the way is made by the tool
            break
        if stat.S_ISLNK(mode):
            raise StoreError(f"refused to use {path}: {step} is a symbolic link, which could lead outside {root} "
                             "(the tool makes no links in a run directory); remove the link to go on")
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise StoreError(f"refused to use {path}: {step} is {_kind(mode)}, which the tool never makes in a "
                             "run directory; remove it to go on")
    return path


def _kind(mode: int) -> str:
    """What a file that is not a regular one is, in words, from its stat mode."""
    kinds = {"p": "a FIFO", "d": "a folder", "c": "a device", "b": "a device", "s": "a socket"}
    return kinds.get(stat.filemode(mode)[0], "a special file")


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A stream whose bytes replace ``path`` in one step when the block ends; if the block or the write fails,
    ``path`` is left as it was and nothing partial is kept."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMPORARY_SUFFIX,
                                             dir=path.parent)
        # mkstemp makes the file private (0600); the result is an ordinary file and gets the umask's mode.
        os.fchmod(handle, 0o666 & ~_umask())
    except OSError as error:
        raise StoreError(f"cannot write {path}: {error.strerror or error}. Check that the output "
                         "directory is writable (or choose another with --out).") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
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


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_writer(path) as stream:
        stream.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def csv_text(frame) -> str:
    """``frame`` as CSV with formula-like text cells quoted (numbers, and text that is a number, untouched)."""
    frame = frame.copy()
    for name in frame.columns:
        if _is_text(frame[name]):
            frame[name] = frame[name].map(csv_cell)
    return frame.to_csv(index=False)


def read_csv_table(path: str | Path, **options):
    """A CSV written by ``csv_text``, with the quotes it added removed."""
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(read_regular(path)), **options)
    for name in frame.columns:
        if _is_text(frame[name]):
            frame[name] = frame[name].map(_unescape_cell)
    return frame


def _is_text(column) -> bool:
    import pandas as pd

    return column.dtype == object or pd.api.types.is_string_dtype(column)


def csv_cell(value: Any) -> Any:
    """One CSV cell as written: text that a spreadsheet would run as a formula gets a leading quote."""
    if not isinstance(value, str) or not value.startswith((*FORMULA_START, CSV_ESCAPE)) or _is_number(value):
        return value
    return CSV_ESCAPE + value


def _unescape_cell(value: Any) -> Any:
    return value[1:] if isinstance(value, str) and value.startswith(CSV_ESCAPE) else value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (setting it to read it would
    briefly give files of other threads the wrong mode)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(read_regular(path))
    except json.JSONDecodeError as error:
        raise StoreError(f"{path} is not valid JSON ({error}); delete it to recompute that step") from None


def file_records(directory: str | Path, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "rows"}}`` for each of ``names`` present in ``directory``. Each must be a regular file
    (``open_regular``): a link planted in a received job folder under a name the job does not write would
    otherwise have the digest of what it points at recorded, and vouched for."""
    records = {}
    for name in names:
        path = Path(directory) / name
        if os.path.lexists(path):
            data = read_regular(path, f"record {name} in result.json")
            records[name] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": _rows(name, data)}
    return records


def file_stamp(stat: os.stat_result) -> list[int]:
    """What tells a file changed without reading it: size, modification and change times, inode."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def open_regular(path: str | Path, doing: str = "") -> BinaryIO:
    """``path`` opened for reading, refused with a StoreError unless it is a regular file. Whoever shares a
    folder can put anything under a name: a symbolic link is not followed (it could lead to any file, or to
    /dev/zero, which reads without end) and a FIFO is not waited on (opening one blocks until a writer
    comes). Other failures (a missing file, no permission) raise OSError.

    ``doing``: what the file is opened for, where the tool is about to hand it on (to a shared storage, an artifact
    store, a result's records): a link planted in a received run directory would hand on what it points at
    (``model.pt -> ~/.ssh/id_rsa``), and the error says ``refused to {doing}: ...``. What is handed on is read
    from this one opening, so nothing put in the file's place after the check is read instead."""
    try:
        try:
            handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as error:
            if error.errno == errno.ELOOP:  # what O_NOFOLLOW gives for a link
                raise StoreError(f"{path} is a symbolic link, not a regular file") from None
            raise
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            os.close(handle)
            raise StoreError(f"{path} is {_kind(mode)}, not a regular file")
    except StoreError as error:
        if not doing:
            raise
        raise StoreError(f"refused to {doing}: {error}; the tool makes only regular files in a run directory, so "
                         "this one was put there: remove it to go on") from None
    return os.fdopen(handle, "rb")  # O_NONBLOCK changes nothing for a regular file


def is_regular(path: str | Path) -> bool:
    """Whether a regular file stands at ``path`` itself: a link to one is not (it is never followed), nor a FIFO."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_regular(path: str | Path, doing: str = "") -> bytes:
    """The bytes of ``path``, refused (StoreError) unless it is a regular file (``open_regular``)."""
    with open_regular(path, doing) as stream:
        return stream.read()


# The most bytes one array of a stored .npz (or a job file a shared storage hands, ``cluster.decode_files``) may
# unpack to: a job's samples are at most its test items times K <= 10,000 floats (400 MB for 10,000 items), a
# feature cache entry less; a few kB of compressed zeros can claim gigabytes (a zip bomb). The zip reader stops at
# the size an entry declares, so checking that bounds it.
MAX_ARRAY_BYTES = 1 << 30


def open_arrays(data: bytes):
    """The arrays of the ``.npz`` ``data``, never unpickled; a ValueError, before anything is unpacked, when an
    entry declares more than ``MAX_ARRAY_BYTES``."""
    import numpy as np

    arrays = np.load(io.BytesIO(data), allow_pickle=False)
    for entry in arrays.zip.infolist():
        if entry.file_size > MAX_ARRAY_BYTES:
            arrays.close()
            raise ValueError(f"{entry.filename} unpacks to {entry.file_size:,} bytes, more than {MAX_ARRAY_BYTES:,}")
    return arrays


def read_arrays(path: str | Path):
    """The arrays of a stored ``.npz``, read as ``read_regular`` reads (``open_arrays``)."""
    return open_arrays(read_regular(path))


def damage(directory: str | Path, records: dict[str, dict[str, Any]]) -> str | None:
    """What is wrong with the stored files of ``records`` in ``directory`` (the first problem, naming the
    file), or None when every file is the one that was written. The names come from a result.json, which
    may come from a shared storage: one that is not a plain file name (``/etc/x``, ``../x``) is damage, and
    so is anything in the folder that is not a regular file; neither is read. A file the tables read
    (``SCORED_FILES``) that ``records`` leaves out is damage too: an empty record must not vouch for it."""
    unrecorded = [name for name in SCORED_FILES if name not in records and os.path.lexists(Path(directory) / name)]
    if unrecorded:
        return f"{Path(directory) / unrecorded[0]} is not recorded in result.json, so it cannot be checked"
    for name, record in sorted(records.items()):
        try:
            path = Path(directory) / check_name(str(name), "stored file name")
        except ConfigError as error:
            return f"result.json of {directory} names a file that was refused: {error}"
        try:
            data = read_regular(path)
        except StoreError as error:
            return str(error)
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
        try:
            with open_arrays(data) as arrays:
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

    def path(self, *parts: str) -> Path:
        """``root/parts``, refused if a symbolic link lies on the way (``inside``): every file and folder of
        the run directory is reached through here, so a planted link never steers a read or a write."""
        return inside(self.root, self.root.joinpath(*parts))

    manifest = property(lambda self: self.path("manifest.json"))
    splits = property(lambda self: self.path("splits.csv"))
    excluded = property(lambda self: self.path("excluded.csv"))
    jobs = property(lambda self: self.path("jobs"))
    external = property(lambda self: self.path("external"))  # models scored with ``score``
    plots = property(lambda self: self.path("plots"))
    cache = property(lambda self: self.path("cache"))
    encoders = property(lambda self: self.path("encoders"))
    tuning = property(lambda self: self.path("tuning"))
    optuna_db = property(lambda self: self.path("optuna.db"))
    optuna_storage = property(lambda self: f"sqlite:///{self.optuna_db.resolve()}")

    def job(self, job_id: str) -> Path:
        """A job's folder; ``job_id`` may come from a manifest or a shared storage, so it is checked."""
        return self.path("jobs", check_name(job_id, "job id"))

    def external_results(self) -> list[Path]:
        """The result.json of each model scored with ``score``: in ``external/<name>/``, reached without a link."""
        if not self.external.is_dir():
            return []
        return [self.path("external", folder.name, "result.json") for folder in sorted(self.external.iterdir())
                if (folder / "result.json").is_file()]

    def result(self, job_id: str) -> Path:
        return self.job(job_id) / "result.json"

    def is_done(self, job_id: str) -> bool:
        return self.result(job_id).is_file()

    def damage(self, job_id: str, record: dict[str, Any]) -> str | None:
        """What is wrong with a finished job's stored files (None: all as written)."""
        return damage(self.job(job_id), record.get("files", {}))

    def remove_temporaries(self) -> list[Path]:
        """Delete what atomic writes of killed processes left under temporary names: never renamed into
        place, so nothing counts on them. Only files named exactly as ``atomic_write_bytes`` names them
        are candidates (a user's own ``.notes.tmp`` is not one), and those of writers still alive on this
        machine are kept."""
        stale = sorted(path for path in self.root.rglob(f".*{TEMPORARY_SUFFIX}")
                       if path.is_file() and (name := TEMPORARY_NAME.fullmatch(path.name))
                       and not process_alive(int(name["pid"])))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale


def process_alive(pid: object) -> bool:
    """Whether a process with this id exists on this machine (a temporary's writer, a lock's holder)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
