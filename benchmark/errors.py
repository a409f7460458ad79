"""Errors the CLI turns into one clear paragraph and an exit code (2: usage or config, 1: runtime)."""
from __future__ import annotations

from typing import Any


class BenchmarkError(Exception):
    """A failure the user can act on; the message says what, where, and what to do."""

    exit_code = 1


class ConfigError(BenchmarkError):
    """The experiment file or a command-line override is wrong."""

    exit_code = 2


class DataError(BenchmarkError):
    """The dataset on disk is missing, malformed or inconsistent."""


class StoreError(BenchmarkError):
    """The run directory cannot be written or holds something inconsistent."""


def shown(value: Any, width: int = 60) -> str:
    """A value from a received file as an error message shows it: its repr, cut to ``width`` characters (a forged
    field may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."
