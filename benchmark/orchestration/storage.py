"""The Optuna storage that tuning studies and shared-storage workers use, and the names in it."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import time
import warnings
from pathlib import Path

from benchmark.errors import ConfigError, StoreError
from benchmark.identity import user_cache
from benchmark.store import RunDir, atomic_write_json, file_problem
from registry.errors import did_you_mean

JOURNAL_SUFFIXES = (".log", ".journal")
SQLITE_HEADER = b"SQLite format 3\x00"  # the first bytes of every SQLite database file


SCHEMA_ATTEMPTS = 5


SCHEMA_RACE = ("already exists", "alembic_version", "duplicate key")  # errors of a concurrent table creation


MAX_RETRY = 3
GRACE_BEATS = 3  # a claim whose heartbeats stopped this many beats ago is a dead worker's


def optuna_module():
    """optuna, quiet: heartbeats and their retry helpers are marked experimental, and asking for a shared
    storage is opting in to them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def local_storage(url: str):
    """The storage of one run's own tuning studies (``RUN_DIR/optuna.db`` by default). With ``train.workers``
    several processes tune in it at once: sqlite then serialises their writes, and each waits for the lock."""
    optuna = optuna_module()
    check_sqlite_schema(url)
    return optuna.storages.RDBStorage(url, engine_kwargs=_engine_settings(url))


SCHEMA_QUERY = "SELECT type, name, sql FROM sqlite_master"


def check_sqlite_schema(url: str) -> None:
    """Refuse (StoreError) an existing sqlite storage file whose schema is not the one Optuna creates. An
    ``optuna.db`` can arrive with a run directory, and SQLite keeps triggers and views in the file itself: a
    trigger runs inside this process whenever it stores a trial (it could rewrite every value tuning records)
    and a view answers reads with anything. The file is read only, which runs no trigger."""
    path = _sqlite_file(url)
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return
    # Tables not made yet are fine (another worker may be creating them now); anything else is not.
    odd = sorted(f"{kind} {name}" for kind, name, _ in _sqlite_schema(f"file:{path}?mode=ro") - _optuna_schema())
    if odd:
        raise StoreError(f"{path} is not a database as Optuna makes it (its schema differs: {', '.join(odd[:5])}): "
                         "a trigger or view in it would run inside this process. Move it away, or name another "
                         "storage; it may have come with a received run directory.")


def _sqlite_schema(uri: str) -> frozenset[tuple[str, str, str]]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return frozenset(db.execute(SCHEMA_QUERY))


@functools.cache
def _optuna_schema() -> frozenset[tuple[str, str, str]]:
    """The schema of a new sqlite storage, as this Optuna makes it: made in memory once per Optuna and SQLAlchemy
    version and kept in the user's cache (``identity.user_cache``), since making it took a second of every run's
    start, a rerun with nothing to do included. Optuna's schema holds tables and indexes only: a kept one that
    holds a trigger or a view (which would let such a thing in a received optuna.db through) is made again."""
    from importlib.metadata import version

    kept = user_cache() / f"optuna-schema-{version('optuna')}-sqlalchemy-{version('sqlalchemy')}.json"
    try:
        rows = frozenset(tuple(row) for row in json.loads(kept.read_text()))
        if rows and all(len(row) == 3 and row[0] in ("table", "index") for row in rows):
            return rows
    except (OSError, ValueError, TypeError):  # not made yet, or damaged: made again
        pass
    engine = optuna_module().storages.RDBStorage("sqlite:///:memory:").engine
    try:  # SQLAlchemy keeps one connection to an in-memory database per thread: the storage's tables are read back
        with engine.connect() as connection:
            rows = frozenset(tuple(row) for row in connection.exec_driver_sql(SCHEMA_QUERY))
    finally:
        engine.dispose()
    with contextlib.suppress(OSError, StoreError):  # only a cache: without it the schema is made each time
        atomic_write_json(kept, sorted(rows, key=lambda row: [str(part) for part in row]))
    return rows


def _engine_settings(url: str) -> dict:
    # sqlite serialises writers; waiting for the lock beats failing with "database is locked".
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def open_storage(spec: str, run_dir: str | Path, heartbeat: int = 10):
    """The Optuna storage of ``--storage``/``tune.storage``: a URL (sqlite, PostgreSQL, MySQL) as an
    RDB storage with heartbeats every ``heartbeat`` s and a grace of three beats; a ``.log``/``.journal``
    path as a journal file; any other path as a sqlite file."""
    optuna = optuna_module()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if heartbeat < 1:
        raise ConfigError(f"--heartbeat {heartbeat}: must be a whole number of seconds, at least 1")
    if "://" not in spec and Path(spec).suffix in JOURNAL_SUFFIXES:
        Path(spec).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(Path(spec).resolve())))
    url = storage_url(spec, run_dir)
    engine = _engine_settings(url)
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            check_sqlite_schema(url)
            storage = RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                                 grace_period=GRACE_BEATS * heartbeat,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
            if url.startswith("sqlite"):
                _serialise_sqlite(storage.engine)
            return storage
        except (ImportError, ModuleNotFoundError) as error:
            raise ConfigError(f"storage {safe_url(url)}: its database driver is missing ({error}). For PostgreSQL "
                              "install it with pip install 'psycopg[binary]'.") from None
        except Exception as error:  # sqlalchemy's errors: the URL is what the user can fix
            if attempt + 1 < SCHEMA_ATTEMPTS and any(sign in str(error) for sign in SCHEMA_RACE):
                time.sleep(0.2 * (attempt + 1))  # workers meeting an empty database raced to create its tables
                continue
            raise ConfigError(f"cannot open the storage {safe_url(url)}: {type(error).__name__}: "
                              f"{redact(str(error), url)}") from None


# SQLAlchemy's database dialects (an Optuna RDB storage takes any of them, with a +driver suffix).
DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")


def check_storage(spec: str, where: str) -> None:
    """Refuse a storage the run could not open, before it creates its directory: an unknown URL scheme, a
    database that does not answer, a file whose folder cannot be made. Writes nothing. ``where``: the file
    and key (or the option) to name."""
    if not spec:
        return
    if "://" not in spec:
        _check_file(Path(spec), spec, where)
        return
    dialect = spec.split("://", 1)[0].split("+", 1)[0]
    if dialect not in DIALECTS:
        raise ConfigError(f"{where} = {safe_url(spec)!r}: {dialect!r} is not a database URL scheme."
                          f"{did_you_mean(dialect, DIALECTS)} Use sqlite:///path, postgresql://user@host/db or "
                          "mysql://..., or a file path.")
    if dialect != "sqlite":
        _connect(spec, where)
    elif (path := _sqlite_file(spec)) is not None:
        _check_file(path, spec, where)
    else:
        raise ConfigError(f"{where} = {spec!r}: an in-memory database lives as long as one process, so no other worker "
                          "shares it and no rerun resumes its trials; name a file (sqlite:///path/optuna.db) or a "
                          "database server")


def _sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL with any driver (``sqlite:///PATH``, ``sqlite+pysqlite:///PATH``, an SQLite
    ``file:PATH`` URI with ``uri=true``), parsed as SQLAlchemy parses it; None for another database or an in-memory
    one. (A schema check that knew ``sqlite:///`` only was skipped for the same file named another way.)"""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return None
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        database = database[len("file:"):]
    return Path(database)


def _check_file(path: Path, spec: str, where: str) -> None:
    """A storage file (sqlite, or an Optuna journal by its suffix) must be one or be creatable: not a folder, not
    a file holding something else, in a folder that takes files."""
    if path.suffix not in JOURNAL_SUFFIXES and path.is_file() and path.stat().st_size and not _is_sqlite(path):
        problem = f"{path} holds something other than an SQLite database; name a new file or an Optuna database"
    else:
        problem = file_problem(path, "optuna.db")
    if problem:
        raise ConfigError(f"{where} = {spec!r}: {problem}")


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return True  # unreadable here: opening it will say why


def _connect(url: str, where: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, **_engine_settings(url))
        with engine.connect():
            pass
        engine.dispose()
    except (ImportError, ModuleNotFoundError) as error:
        raise ConfigError(f"{where} = {safe_url(url)!r}: its database driver is missing ({error}). For PostgreSQL "
                          "install it with pip install 'psycopg[binary]'.") from None
    except Exception as error:  # sqlalchemy's errors: the URL is what the user can fix
        raise ConfigError(f"{where} = {safe_url(url)!r}: cannot connect: {type(error).__name__}: "
                          f"{redact(str(error), url)}") from None


def _serialise_sqlite(engine) -> None:
    """Make sqlite transactions exclusive from their first statement. The pysqlite driver begins a
    transaction only at the first write, so two workers could both read one trial as WAITING and both
    take it; with BEGIN IMMEDIATE (SQLAlchemy's documented recipe for pysqlite) the second one waits and
    then reads it RUNNING. PostgreSQL and MySQL lock the row (SELECT ... FOR UPDATE) instead."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while the tables were checked predate the listeners


def safe_url(url: str) -> str:
    """The URL with its password replaced by ``***``: what the manifest, tuning records, logs and
    messages show (a run directory is shared, the database password is not)."""
    return redact(url, url)


def redact(text: str, url: str) -> str:
    """``text`` with every occurrence of ``url``'s password (``user:PASSWORD@`` or ``password=``) as ``***``. The URL
    is split by hand, not by urllib, which raises on a URL it cannot parse (``postgresql://u:p@[::1/db``, an IPv6
    host left open): the message that names such a URL must still hide its password."""
    if "://" not in url:
        return text
    from urllib.parse import parse_qs

    rest = url.split("://", 1)[1]
    credentials = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[0]  # user:password of the host part
    secrets = [credentials.split(":", 1)[1]] if ":" in credentials else []
    query = rest.split("?", 1)[1].split("#", 1)[0] if "?" in rest else ""
    secrets += [value for key, values in parse_qs(query).items() if key.lower() == "password" for value in values]
    for secret in sorted(set(filter(None, secrets)), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def study_name(*parts: str) -> str:
    """A stable study name, e.g. ``study_name("pediatric", "tiny3d", "mcsdr+concat")``."""
    return "/".join(parts)


def storage_url(storage: str, run_dir: str | Path) -> str:
    """``--storage`` as given when it is a URL, a path as a sqlite file, empty as ``RUN_DIR/optuna.db``."""
    if "://" in storage:
        return storage
    path = Path(storage) if storage else RunDir(run_dir).optuna_db
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"
