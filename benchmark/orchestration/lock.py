"""One ``run`` per run directory at a time: ``run.lock`` names the host and process that holds it.

Two processes writing one directory would each write a manifest and a leaderboard the other overwrites.
Workers of a shared storage each have their own ``--out`` and share work through the storage, so they
never contend for a lock. A lock left by a process that died on this machine (kill -9, power cut) is
taken over; one from another machine cannot be checked from here, and the message says how to clear it.
"""
from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from benchmark.errors import ConfigError, StoreError
from benchmark.store import process_alive, read_json

LOCK_FILE = "run.lock"


class RunDirectoryBusy(ConfigError):
    """Another process runs in this directory (exit 2: nothing was started)."""


class RunLock:
    """``with RunLock(directory):`` holds the directory's lock for the block."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / LOCK_FILE
        self.holder = {"host": socket.gethostname(), "pid": os.getpid()}

    def __enter__(self) -> "RunLock":
        for _ in range(2):  # a stale lock is removed once, then taken
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._current()
                if holder is not None and holder.get("host") == self.holder["host"] and \
                        not process_alive(holder.get("pid")):
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunDirectoryBusy(self._busy(holder)) from None
            with os.fdopen(handle, "w") as stream:
                json.dump({**self.holder, "started": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                          stream)
            return self
        raise RunDirectoryBusy(self._busy(self._current()))

    def __exit__(self, *exc_info) -> None:
        holder = self._current() or {}
        if (holder.get("host"), holder.get("pid")) == (self.holder["host"], self.holder["pid"]):
            self.path.unlink(missing_ok=True)

    def _current(self) -> dict | None:
        try:
            holder = read_json(self.path)  # never waits on a FIFO planted under the lock's name
        except (OSError, ValueError, StoreError):
            return None
        return holder if isinstance(holder, dict) else None

    def _busy(self, holder: dict | None) -> str:
        who = (f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"
               if holder else "another process")
        return (f"{self.path.parent} is in use by {who}: one run per directory at a time. Wait for it to finish, "
                f"or give this run its own --out (workers sharing a --storage each need their own). If that "
                f"process is gone, delete {self.path}.")
