"""What a run checks about its directory before touching it.

``--fresh`` deletes a whole folder, and ``--out`` can name any folder: only a directory this tool made
(it holds a ``manifest.json`` of a run) is ever deleted, never the current directory or one above it.
A directory whose results came from real data must not quietly continue on the synthetic stand-in (its
real leaderboard would be replaced by synthetic numbers when the data folder has gone missing).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from benchmark.config import Experiment
from benchmark.data.prepare import uses_stand_in
from benchmark.errors import ConfigError, StoreError
from benchmark.store import RunDir, read_json

MANIFEST_KEYS = ("experiment", "config", "jobs")  # what build_manifest always records


def check_fresh(run: RunDir) -> None:
    """``--fresh`` may delete ``run.root`` only if it is a run directory; refuse (exit 2) anything else."""
    root = run.root
    if not root.exists():
        return
    resolved = root.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise ConfigError(f"--fresh would delete {root}, which is the current directory or holds it. "
                          "Give --out a run directory of its own.")
    if not root.is_dir() or (any(root.iterdir()) and previous_manifest(run) is None):
        raise ConfigError(f"--fresh refused to delete {root}: it holds no manifest.json of a run, so it is not a "
                          "run directory this tool made. Choose another --out, or delete it yourself.")


def start_over(run: RunDir, say: Callable[[str], None], keep: str) -> None:
    """``--fresh`` after ``check_fresh``: delete everything in ``run.root`` but ``keep`` (the lock this process
    holds, so that no other run can start in the directory while it is emptied)."""
    say(f"--fresh: deleting the run directory {run.root.resolve()} (all but the lock this run holds)")
    for child in run.root.iterdir():
        if child.name != keep:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def previous_manifest(run: RunDir) -> dict[str, Any] | None:
    """The manifest a run wrote into ``run``, or None when there is none (or the file is not one)."""
    try:
        manifest = read_json(run.manifest)
    except (OSError, ValueError, StoreError):
        return None
    return manifest if isinstance(manifest, dict) and all(key in manifest for key in MANIFEST_KEYS) else None


def refuse_stand_in_over_real(experiment: Experiment, run: RunDir) -> None:
    """Exit 2 when ``run`` holds results of real data and this run would use the synthetic stand-in."""
    manifest = previous_manifest(run)
    if manifest is None or manifest.get("synthetic") is not False or not uses_stand_in(experiment.dataset):
        return
    raise ConfigError(f"{run.root} holds results on real data ({manifest.get('data_root', 'dataset.root')}), but "
                      f"{experiment.dataset.root} does not exist now, so this run would switch to the synthetic "
                      "stand-in and replace them. Restore the data folder, or start over with --fresh or another --out.")
