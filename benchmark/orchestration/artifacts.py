"""The artifact store of shared runs: where workers keep files too large for the storage's rows (stage-1
weights, feature cache entries, trained models), through Optuna's artifact API.

``--artifacts`` / ``tune.artifacts`` names it: a folder every worker reaches (``FileSystemArtifactStore``)
or ``s3://bucket/prefix`` (``Boto3ArtifactStore``, any S3-compatible service; boto3 reads its endpoint and
keys from the environment). Without it a worker stores into its own run directory's ``artifacts/``, which
workers on the same machine read too; a worker elsewhere cannot, and computes what it needs itself.

A stored file is described in its trial by a record: the artifact id, the SHA-256 and size of its bytes
and where the store is (``store`` for a named one, ``host`` and ``folder`` for a run's own). The store is as
untrusted as the storage: an artifact id must be a plain name, a folder store's artifact must be a regular
file (not a link, not a FIFO), a download is read in chunks and refused as soon as it is longer than the
recorded size (or before it starts, if that size is more than the disk has free), and one whose bytes
differ from the recorded SHA-256 is refused; so is one that S3 fails to serve (no permission, a broken
connection). What comes back is only ever read as data (``torch.load(weights_only=True)``, numpy without
pickles) by the code that uses it. A record without a size (stored before sizes were recorded) is refused,
so its stage or model is computed again.
"""
from __future__ import annotations

import hashlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config import artifacts_problem
from benchmark.errors import ConfigError, StoreError
from benchmark.identity import file_digest
from benchmark.store import (
    atomic_writer,
    check_name,
    folder_problem,
    inside,
    is_regular,
    nearest_existing,
    open_regular,
)

RUN_FOLDER = "artifacts"  # a run directory's own store, when no shared one is named
CHUNK = 1 << 20  # bytes read at a time from an artifact, so that reading stops soon after its recorded size


@dataclass(frozen=True)
class Artifacts:
    """One worker's artifact store and how its records say where it is."""

    store: Any  # an optuna.artifacts store: open_reader, write, remove
    where: dict[str, str]

    @property
    def shared(self) -> bool:
        """Named with --artifacts, so every worker given the same setting reads it."""
        return "store" in self.where


class _Bucket:
    """``Boto3ArtifactStore`` with two changes. ``s3://bucket/prefix`` keeps the artifacts under ``prefix/``, so
    that one bucket can serve several benchmarks. And a failure of S3 or of the connection while reading (no
    permission, no endpoint, a stream cut off) is an OSError, which ``download`` refuses like a file it cannot
    read: the worker computes the stage itself instead of dying of a botocore error."""

    def __init__(self, store, prefix: str):
        self.store, self.prefix = store, prefix

    def open_reader(self, artifact_id: str):
        with _as_os_error():
            return _Body(self.store.open_reader(self.prefix + artifact_id))

    def write(self, artifact_id: str, content_body) -> None:
        self.store.write(self.prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self.prefix + artifact_id)


class _Body:
    """An S3 object's stream whose failures are OSErrors."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        with _as_os_error():
            return self.stream.read(size)

    def close(self) -> None:
        self.stream.close()


@contextmanager
def _as_os_error() -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as error:
        raise OSError(f"S3: {error}") from None


class _Folder:
    """``FileSystemArtifactStore``, except that an artifact is read only if it is a regular file: whoever
    writes the folder could put a FIFO in its place (opening it blocks for ever) or a link to /dev/zero."""

    def __init__(self, folder: Path):
        from optuna.artifacts import FileSystemArtifactStore

        self.folder, self.store = folder, FileSystemArtifactStore(folder)

    def open_reader(self, artifact_id: str):  # ``download`` has checked that the id is a plain name
        from optuna.artifacts.exceptions import ArtifactNotFound

        try:
            return open_regular(self.folder / artifact_id)
        except FileNotFoundError:
            raise ArtifactNotFound(f"{self.folder / artifact_id} does not exist") from None

    def write(self, artifact_id: str, content_body) -> None:
        self.store.write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(artifact_id)


def artifacts_machine_problem(spec: str) -> str | None:
    """What this machine says of an artifact store (``tune.artifacts``, ``--artifacts``) before any work, or None: a
    folder must take files, an S3 bucket needs boto3. Asked by `validate` and by `run` before it loads the data:
    ``open_artifacts`` found either only once the data were loaded and the run directory made."""
    if not spec or artifacts_problem(spec):
        return artifacts_problem(spec) if spec else None
    if spec.startswith("s3://"):
        import importlib.util

        if importlib.util.find_spec("boto3") is None:
            return f"is {spec!r}, and S3 needs boto3 (pip install boto3)"
        return None
    problem = folder_problem(spec)
    return f"is {spec!r}: {problem}" if problem else None


def open_artifacts(spec: str, run_root: str | Path) -> Artifacts:
    """The store ``spec`` names (a folder or ``s3://bucket/prefix``), or, for an empty ``spec``, the run
    directory's own ``artifacts/`` folder."""
    problem = artifacts_problem(spec)
    if problem:
        raise ConfigError(f"--artifacts {problem}")
    if spec.startswith("s3://"):
        return Artifacts(_s3_store(spec), {"store": spec})
    if not spec:  # made at the first upload: a run that only reads (``report``) leaves no empty folder
        folder = inside(run_root, Path(run_root) / RUN_FOLDER).resolve()
        return Artifacts(_Folder(folder), {"host": socket.gethostname(), "folder": str(folder)})
    folder = Path(spec).resolve()
    try:  # a named folder is checked at once, before any work
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot use the artifact folder {folder}: {error.strerror or error}") from None
    return Artifacts(_Folder(folder), {"store": spec})


def _s3_store(spec: str):
    from optuna.artifacts import Boto3ArtifactStore

    bucket, _, prefix = spec[len("s3://"):].partition("/")
    try:
        import boto3  # only S3 users need it
    except ImportError:
        raise ConfigError(f"--artifacts {spec}: S3 needs boto3 (pip install boto3); its endpoint and keys come "
                          "from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)") from None
    return _Bucket(Boto3ArtifactStore(bucket, client=boto3.client("s3")),
                   prefix.rstrip("/") + "/" if prefix.strip("/") else "")


def upload(artifacts: Artifacts, trial, path: Path) -> dict[str, Any]:
    """Store the file ``path`` as an artifact of ``trial``; returns its record for the trial's attributes. It
    must be a regular file (``open_regular``): a link planted in a received run directory would upload what it
    points at. The file is opened once: its bytes are copied, and hashed on the way, to a private file that is
    what Optuna uploads, so a link put in its place after the check uploads nothing else (Optuna opens the path
    it is given)."""
    from optuna.artifacts import upload_artifact

    if "folder" in artifacts.where:
        Path(artifacts.where["folder"]).mkdir(parents=True, exist_ok=True)
    # The system's temporary folder is sticky, and mkdtemp's folder is the user's own (0700): no one else can
    # rename or replace what is in it. The copy keeps the name, which Optuna records as the artifact's file name.
    doing = f"store {path.name} in the artifact store"
    with tempfile.TemporaryDirectory(prefix="lvefbench-upload-") as private, open_regular(path, doing) as source:
        copy, digest, size = Path(private) / path.name, hashlib.sha256(), 0
        with copy.open("wb") as written:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                written.write(chunk)
                size += len(chunk)
        artifact = upload_artifact(artifact_store=artifacts.store, file_path=str(copy), study_or_trial=trial)
    return {"artifact": artifact, "sha256": digest.hexdigest(), "size": size, **artifacts.where}


def download(record: dict[str, Any], mine: Artifacts, what: str, path: Path) -> bool:
    """Put the stored file ``record`` describes (``what`` names it in messages) at ``path``, unless it holds
    those bytes already; False where this worker cannot reach its store (another machine's run folder, or a
    store other than its own). The bytes stream to disk, never whole in memory; bytes other than the ones
    recorded are refused with a StoreError, and then ``path`` is left as it was."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    # Computed here, or fetched before (a link is not followed: one planted there is replaced by the download).
    if is_regular(path) and file_digest(path) == record.get("sha256"):
        return True
    store = _reader(record, mine)
    if store is None:
        return False
    artifact = str(record.get("artifact", ""))
    try:
        check_name(artifact, "artifact id")  # a name like ../x would read outside the store
    except ConfigError as error:
        raise StoreError(f"refused {what}: {error}") from None

    def refused(reason: str) -> StoreError:
        return StoreError(f"refused artifact {artifact} ({what}) from {describe(record)}: {reason}")

    size = record.get("size")
    if type(size) is not int or size < 0:  # without it nothing bounds the read (bool is no size either)
        raise refused("its record gives no size to bound the read (older versions of the benchmark recorded none)")
    room = nearest_existing(path.parent)  # atomic_writer makes the rest
    free = shutil.disk_usage(room).free
    if size > free:  # refused before a byte is read, not once the disk is full
        raise refused(f"its record gives {size} bytes and {room} has {free} bytes free")
    try:
        stream = store.open_reader(artifact)
    except ArtifactNotFound:
        return False
    except StoreError as error:  # not a regular file
        raise refused(str(error)) from None
    except OSError as error:  # no permission, a socket: refused like a changed artifact, not a crash
        raise refused(f"it cannot be read ({error.strerror or error})") from None
    try:
        with atomic_writer(path) as written:
            digest, left = hashlib.sha256(), size + 1  # one byte past the size tells a longer stream from one that ends
            while left > 0:
                try:
                    chunk = stream.read(min(left, CHUNK))
                except OSError as error:  # else taken for a failed write of ``path``
                    raise refused(f"it cannot be read ({error.strerror or error})") from None
                if not chunk:
                    break
                digest.update(chunk)
                written.write(chunk)
                left -= len(chunk)
            if left == 0:  # a stream without end, or far longer than recorded, is never held whole
                raise refused(f"it holds more than the {size} bytes recorded when it was stored")
            if digest.hexdigest() != record.get("sha256"):
                raise refused(f"its SHA-256 {digest.hexdigest()[:16]}... is not the {str(record.get('sha256'))[:16]}"
                              "... recorded when it was stored, so it was changed or damaged after upload")
    finally:
        stream.close()
    return True


def _reader(record: dict[str, Any], mine: Artifacts):
    """The store this worker reads ``record``'s artifact from: its own named store for a file stored in a
    named store, another run's folder on this machine for one stored there, else None."""
    if "store" in record:
        return mine.store if mine.shared else None
    folder = Path(str(record.get("folder", "")))
    if record.get("host") != socket.gethostname() or not folder.is_absolute() or folder.name != RUN_FOLDER:
        return None
    return mine.store if mine.where.get("folder") == str(folder) else _Folder(folder)


def describe(record: dict[str, Any]) -> str:
    """Where a record's store is, in words."""
    return str(record["store"]) if "store" in record else f"{record.get('folder')} on {record.get('host')}"
