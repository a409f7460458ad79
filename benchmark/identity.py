"""Content hashes that identify what a stored result depends on: configs, data, code and weights.

A stored result (job, stage-1 encoder, feature cache entry, tuning study) is named by the hash of
everything that can change it, and never by where things lie: moving or copying the data folder or a weight
file reruns nothing, while changing a label, a video, a plugin's source or a checkpoint's bytes does.
And a stored result is reused only where this machine made it (the ledger, at the end of this module).
"""
from __future__ import annotations

import ast
import errno
import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import stat
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from benchmark.errors import StoreError
from benchmark.store import atomic_write_text, file_stamp, is_regular

# A factory defined by the engine itself has only its own module hashed, not every engine module it reaches.
ENGINE_PACKAGES = ("benchmark", "registry")

# The engine's own code that turns data and settings into stored results, per kind of result (paths under
# the ``benchmark`` package). Tables, plots, the report and the orchestration are left out: they are redrawn
# from the stored predictions on every run, or decide only what runs where.
STAGE_ONE_ENGINE = ("data", "encoding", "contracts.py", "device.py")
# ``synth/oracle.py`` reads and samples the posteriors the oracle head serves (through the plugin API);
# ``orchestration/checkpoint_models.py`` chooses the tabular columns and transform a checkpoint model is fed.
JOB_ENGINE = STAGE_ONE_ENGINE + ("training", "api", "components.py", "predictive.py", "evaluation/scoring.py",
                                 "evaluation/predictions_file.py", "evaluation/pooling.py", "evaluation/conformal.py",
                                 "orchestration/jobs.py", "orchestration/checkpoint_models.py", "synth/oracle.py")
TUNING_ENGINE = JOB_ENGINE + ("orchestration/tuning.py",)
ENGINE_ROOT = Path(__file__).resolve().parent
# The installed libraries that compute a kind of result, as the engine's code does: another version may give other
# numbers (a kernel, a decoder, a sampler changed), so an upgrade recomputes what it computes and the log names it,
# rather than leaving results of the old version under a manifest that records the new one. A library only drawing
# or writing the report is left out, as the report's code is. (OpenCV is installed under either name.)
STAGE_ONE_LIBRARIES = ("torch", "torchvision", "timm", "numpy", "pandas", "decord", "opencv-python-headless",
                       "opencv-python", "SimpleITK", "nibabel")
JOB_LIBRARIES = STAGE_ONE_LIBRARIES + ("scipy",)  # the closed-form CRPS and NLL, the Student-t of evidential heads
TUNING_LIBRARIES = JOB_LIBRARIES + ("optuna",)  # its samplers choose the trials


def stable_hash(parts: Mapping[str, Any]) -> str:
    """A stable hash of JSON-able ``parts`` (keys sorted; other values by their text)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def weights_hash(module: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        shape = tensor.shape
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FileDigests:
    """SHA-256 of files' bytes by resolved path, read again only when a file's stat changes (size, modification
    and change times, inode), as git's index does: any write, replacement or copy changes one of them, and the
    change time cannot be set back by hand, so a file rewritten with its old size and modification time is read
    again too. With ``cache_file`` the digests are kept between processes (the data's videos: reading every
    byte of a 10,000-video dataset takes a while), in a JSON file written atomically and merged with what
    other processes wrote meanwhile."""

    def __init__(self, cache_file: Path | None = None):
        self.cache_file = cache_file
        self._known: dict[str, list] = self._stored()
        self._new: dict[str, list] = {}

    def digest(self, path: str | Path) -> str:
        """The SHA-256 of ``path``'s bytes (OSError if it cannot be read)."""
        path = Path(path).resolve()
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read until someone writes, a device never ends
            raise OSError(errno.EINVAL, "not a regular file, so it has no content to name it by", str(path))
        stamp = file_stamp(info)  # taken before reading: a file changed meanwhile is read again next time
        known = self._known.get(str(path))
        if known is not None and known[:-1] == stamp:
            return known[-1]
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        self._known[str(path)] = self._new[str(path)] = [*stamp, digest.hexdigest()]
        return digest.hexdigest()

    def read_since_saved(self) -> tuple[int, int]:
        """How many files were read (not known from their stat) since the last ``save``, and their bytes."""
        return len(self._new), sum(entry[0] for entry in self._new.values())

    def save(self) -> None:
        """Keep the digests read here, and drop those of files that no longer exist."""
        if self.cache_file is None or not self._new:
            return
        merged = {path: entry for path, entry in {**self._stored(), **self._new}.items() if os.path.exists(path)}
        atomic_write_text(self.cache_file, json.dumps(merged))
        self._new = {}

    def _stored(self) -> dict[str, list]:
        try:
            stored = json.loads(self.cache_file.read_text()) if self.cache_file else {}
        except (OSError, ValueError):  # none yet, or damaged: it only costs reading the files again
            return {}
        return stored if isinstance(stored, dict) else {}


def user_cache() -> Path:
    """Where this user's caches of facts about files live: ``$LVEFBENCH_CACHE``, else ``$XDG_CACHE_HOME/lvefbench``,
    else ``~/.cache/lvefbench``. Deleting it only costs reading the files again."""
    if os.environ.get("LVEFBENCH_CACHE"):
        return Path(os.environ["LVEFBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lvefbench"


_FILE_DIGESTS = FileDigests()  # checkpoints, sources, results: for the rest of the process


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read once per process while its stat is unchanged."""
    return _FILE_DIGESTS.digest(path)


def item_digest(record: Iterable[Any], video_digests: Mapping[str, str]) -> str:
    """One dataset item: its label record (id, EF, tabular, tracings ...) and the content of its video files
    (file name -> SHA-256), not where they lie: a copy of the data elsewhere, or on another machine, names the
    same results."""
    digest = hashlib.sha256(json.dumps([str(value) for value in record]).encode())
    digest.update(json.dumps(sorted(video_digests.items())).encode())
    return digest.hexdigest()


def dataset_fingerprint(item_digests: Iterable[str]) -> str:
    """The content of a set of items (order-free): what a stage that reads exactly them depends on."""
    return hashlib.sha256("|".join(sorted(item_digests)).encode()).hexdigest()


def engine_digests(parts: Iterable[str]) -> dict[str, str]:
    """Digest of each engine source file under ``parts`` (folders or files of the ``benchmark`` package),
    keyed by its path in the package, so that a changed file is named when a result is recomputed."""
    files = set()
    for part in parts:
        where = ENGINE_ROOT / part
        files.update(where.rglob("*.py") if where.is_dir() else [where])
    return {path.relative_to(ENGINE_ROOT).as_posix(): file_digest(path)[:16] for path in sorted(files)}


def library_versions(names: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each library in ``names`` (None where it is not installed)."""
    return {name: _version(name) for name in names}


@functools.cache
def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def source_digest(record) -> str:
    """The code of a registered component: the source files of the module defining its factory and of
    the private modules of its own package it uses (``plugins.heads._diffusion`` for ``mcsdr``), plus the
    distribution's version for an installed entry point."""
    module = sys.modules.get(getattr(record.factory, "__module__", ""))
    digest = hashlib.sha256()
    for path in sorted(_source_files(module)):
        digest.update(f"{Path(path).name}|{file_digest(path)}|".encode())
    if record.origin.startswith("entry point") and module is not None:
        top = module.__name__.split(".")[0]
        for distribution in sorted(importlib.metadata.packages_distributions().get(top, [])):
            digest.update(f"{distribution}=={importlib.metadata.version(distribution)}|".encode())
    return digest.hexdigest()[:32]


def _source_files(module: ModuleType | None) -> set[str]:
    """Files of ``module`` and, transitively, of the modules of its own plugin it refers to (``_plugin_module``):
    by the names it holds, and by every import statement in its source, those inside functions included (a helper
    imported where it is used is not among the names until then)."""
    if module is None:
        return set()
    files: dict[str, str | None] = {}
    pending: list[tuple[str, ModuleType | None]] = [(module.__name__, module)]
    while pending:
        name, current = pending.pop()
        if name in files:
            continue
        files[name] = path = getattr(current, "__file__", None) if current is not None else _module_file(name)
        used = set()
        if current is not None:
            for value in vars(current).values():
                named = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
                used.add(named if isinstance(named, str) else "")
        if path and path.endswith(".py"):
            package = current.__package__ if current is not None else name.rpartition(".")[0]
            used |= _imported_names(path, file_digest(path), package or "")
        for other in sorted(used - set(files) - {""}):
            loaded = sys.modules.get(other)
            if _plugin_module(module, other, getattr(loaded, "__file__", None) or _module_file(other)):
                pending.append((other, loaded))
    return {path for path in files.values() if path}


@functools.lru_cache(maxsize=256)
def _imported_names(path: str, digest: str, package: str) -> frozenset[str]:
    """The modules an import statement anywhere in ``path`` names (with, for ``from a import b``, ``a.b`` too, as
    ``b`` may be a module); read once per content (``digest``)."""
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_bytes(), filename=path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                    else node.module or ""
            except (ImportError, ValueError):  # a relative import above the top-level package: it would fail too
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(names)


def _module_file(name: str) -> str | None:
    """Where the module ``name`` would be imported from, found without importing anything: a top-level module, or
    one whose package is imported already (a package not imported is no plugin's: its plugin module imports it)."""
    parent = name.rpartition(".")[0]
    if parent and parent not in sys.modules:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location else None


def _plugin_module(module: ModuleType, name: str, path: str | None) -> bool:
    """Whether the module ``name`` (its file at ``path``) is code of the plugin that ``module`` belongs to: a
    module of its top-level package (``plugins.heads._diffusion`` for ``plugins.heads.mcsdr``), or, for a plugin
    that is a single module (a ``.py`` file the experiment names, or a module run from its folder), a module in its
    folder it imports (a helper beside it, which ``python -m`` finds in the current folder). The engine is not
    (each stage hashes the engine code it runs; an engine-defined factory has only its own module hashed), nor is
    an installed library."""
    top = module.__name__.split(".")[0]
    if top in ENGINE_PACKAGES:
        return name == module.__name__
    if name == top or name.startswith(top + "."):
        return True
    if hasattr(sys.modules.get(top), "__path__") or name.split(".")[0] in ENGINE_PACKAGES:
        return False  # a package's plugin: its own package only
    here = getattr(module, "__file__", None)
    if not (here and path):
        return False
    where = Path(path).resolve()
    return where.is_relative_to(Path(here).resolve().parent) and not any(where.is_relative_to(root)
                                                                       for root in _library_roots())


@functools.cache
def _library_roots() -> tuple[Path, ...]:
    """Where installed code lies (the standard library, site-packages): a library there is no plugin's own code,
    even where a plugin's folder holds it (a virtual environment inside the project)."""
    return tuple(Path(sysconfig.get_paths()[name]).resolve() for name in ("stdlib", "platstdlib", "purelib", "platlib"))


# Which stored results this machine made: the ledger a run directory cannot write for itself.
# A run directory's records vouch for the files beside them (a job's ``result.json`` holds the SHA-256 of its
# predictions, a feature cache entry's metadata that of its arrays), but whoever edits a directory can edit both.
# So each record the engine writes, or fetches from the workers' storage and checks, is also noted here, by the
# SHA-256 of its name and bytes, in the user's state folder, outside every run directory. A run reuses a stored
# result only when its record is in the ledger under the name it is found by (a record moved to another job,
# cache key or stage-1 name is not); one made elsewhere (a run directory received from someone, or copied from
# another machine) is computed again, unless the user trusts it (``run --trust-results`` notes it here).
#
# Nothing secret is kept: a note is an empty file named by a digest, so the ledger only says "this machine wrote
# a record with exactly this name and these bytes". Deleting it costs computing existing run directories again.

# How messages name a record that is not in the ledger.
NOT_MADE_HERE = "not made on this machine (not in its ledger: received, copied, or made before the ledger existed)"
LEDGER = "made-here"


def state_dir() -> Path:
    """The user's state folder for the benchmark: ``$LVEFBENCH_STATE``, else ``$XDG_STATE_HOME/lvefbench``, else
    ``~/.local/state/lvefbench``. Kept apart from the caches (``user_cache``), which may be deleted freely. A
    relative value is ignored, as the XDG rules say: it would name another ledger in every folder run from."""
    for variable, below in (("LVEFBENCH_STATE", ()), ("XDG_STATE_HOME", ("lvefbench",))):
        value = os.environ.get(variable, "")
        if os.path.isabs(value):
            return Path(value, *below)
    return Path.home() / ".local" / "state" / "lvefbench"


def ledger_problem() -> str | None:
    """Why the ledger cannot be kept (None: it can), checked before any work: a run that cannot note its results
    would fail after them. Its folders must be this user's own and writable by nobody else, since whoever can add a
    note there can vouch for any record."""
    folder = state_dir() / LEDGER
    try:
        _make_private(folder)
        probe = folder / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        return (f"cannot keep the ledger of results made here in {folder} ({error.strerror or error}); set "
                "LVEFBENCH_STATE to a folder of yours")
    for each in (folder.parent, folder):
        info = each.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            return (f"{each} (the ledger of results made here) is not yours alone (owner {info.st_uid}, mode "
                    f"{stat.S_IMODE(info.st_mode):o}): whoever can write there could vouch for any result. Make it "
                    "yours with mode 700, or set LVEFBENCH_STATE to a folder of yours")
    return None


def _make_private(folder: Path) -> None:
    """``folder`` (in the state folder), each folder from the state folder down to it made with mode 700."""
    root = state_dir()
    root.parent.mkdir(parents=True, exist_ok=True)  # (~/.local/state: the user's own, left as it is)
    root.mkdir(mode=0o700, exist_ok=True)
    path = root
    for part in folder.relative_to(root).parts:
        path = path / part
        path.mkdir(mode=0o700, exist_ok=True)


def _note(digest: str) -> Path:
    return state_dir() / LEDGER / digest[:2] / digest[2:]  # 256 folders: none grows to millions of names


def _named(name: str, digest: str) -> str:
    """What the ledger keys a stored file by: its name (a job's folder holds result.json, but a cache entry, a
    stage-1 file or a tuning winner is named by what it is for) and the SHA-256 of its bytes."""
    return hashlib.sha256(f"{name}\0{digest}".encode()).hexdigest()


def _vouch_digest(digest: str) -> None:
    note = _note(digest)
    if not note.parent.is_dir():
        _make_private(note.parent)
    note.touch(exist_ok=True)  # one name per digest: processes noting the same record at once do not collide


def vouch(data: bytes) -> None:
    """Note that this machine made a record (a tuning trial's) with exactly these bytes."""
    _vouch_digest(hashlib.sha256(data).hexdigest())


def made_here(data: bytes) -> bool:
    return _note(hashlib.sha256(data).hexdigest()).is_file()


def vouch_stored(name: str, digest: str) -> None:
    """Note that this machine holds a file named ``name`` with bytes of SHA-256 ``digest`` (checked as fetched)."""
    _vouch_digest(_named(name, digest))


def vouch_file(path: str | Path) -> Path:
    """Note that this machine wrote the regular file ``path`` (just written by the engine); returns ``path``."""
    if not is_regular(path):
        raise StoreError(f"{path} is not a regular file")
    vouch_stored(Path(path).name, file_digest(path))
    return Path(path)


def made_here_file(path: str | Path) -> bool:
    """Whether this machine wrote the regular file ``path``, under its name, as it is now (False when it cannot be
    read, or is a link)."""
    try:  # read once per process while its stat holds (``file_digest``): a run asks at its start and at reuse
        return is_regular(path) and _note(_named(Path(path).name, file_digest(path))).is_file()
    except OSError:  # gone meanwhile
        return False
