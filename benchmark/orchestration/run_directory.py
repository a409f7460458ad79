"""What a run checks about its directory before touching it.

``--out`` can name any folder, and a ``manifest.json`` can be copied anywhere: ``--fresh`` empties only a
directory that holds a run's manifest (never the current directory or one above it), and of it deletes only
what a run makes there, by name; a user's notebook or a folder of figures kept beside them stays.
A directory whose results came from real data must not quietly continue on the synthetic stand-in (its
real leaderboard would be replaced by synthetic numbers when the data folder has gone missing).
A directory received from someone, or copied from another machine, holds records this machine did not write:
the run names them and computes them again, unless the user trusts them (``ledger``).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from benchmark.config import Experiment
from benchmark.errors import ConfigError, StoreError
from benchmark.identity import NOT_MADE_HERE, made_here_file, vouch_file
from benchmark.orchestration.storage import check_sqlite_schema, local_storage
from benchmark.orchestration.tuning import trust_trials
from benchmark.store import TEMPORARY_NAME, RunDir, folder_problem, inside, read_json

MANIFEST_KEYS = ("experiment", "config", "jobs")  # what build_manifest always records
# What a run makes at the top of its run directory (the folders with all they hold): all that --fresh deletes.
RUN_FOLDERS = ("jobs", "external", "plots", "cache", "encoders", "tuning", "artifacts")
RUN_FILES = ("manifest.json", "splits.csv", "excluded.csv", "leaderboard.md", "leaderboard.csv", "leaderboard.json",
             "leaderboard.tex", "subgroups.csv", "paired_tests.csv", "report.html", "report_inputs.json",
             "timings.json", "training_log.csv", "optuna.db")
# The records by which a run reuses what its directory holds (jobs, scored models, features, stage-1 weights,
# tuning winners, the report): each is trusted only where this machine wrote it (``ledger``).
RECORDS = ("jobs/*/result.json", "external/*/result.json", "cache/*.json", "encoders/*.pt", "tuning/*.json",
           "report_inputs.json")


def check_out(run: RunDir, key: str) -> None:
    """Refuse (exit 2) a run directory that cannot be one, before any work: a file in its place, or a place where
    no folder can be made (``key`` names the setting that chose it)."""
    if run.root.exists() and not run.root.is_dir():
        raise ConfigError(f"{key}: {run.root} is a file, not a folder. Choose a run directory with --out.")
    problem = folder_problem(run.root)
    if problem:
        raise ConfigError(f"{key}: {run.root} cannot be a run directory: {problem}. Choose a writable place with "
                          "--out.")


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


# What a run writes into its directory before its manifest.json: a run stopped in between leaves only these.
BEFORE_MANIFEST = ("splits.csv", "excluded.csv")


def check_not_foreign(run: RunDir) -> None:
    """Refuse (exit 2) to run into a folder that is not a run directory (no run's manifest.json) but holds files or
    folders a run writes: a run would replace the user's ``report.html``, ``timings.json`` or ``splits.csv`` and
    write into their ``jobs/`` or ``plots/``. The files a run writes before its manifest are passed over where
    this machine wrote them (a run stopped then resumes)."""
    root = run.root
    if not root.is_dir() or previous_manifest(run) is not None:
        return
    taken = sorted(child.name for child in root.iterdir() if child.name in (*RUN_FOLDERS, *RUN_FILES)
                   and not (child.name in BEFORE_MANIFEST and made_here_file(child)))
    if taken:
        raise ConfigError(f"{root} holds {', '.join(taken)} but no manifest.json of a run, so it is not a run "
                          "directory this tool made, and a run would write over them. Choose another --out (a new "
                          "or empty folder, or a run directory).")


def start_over(run: RunDir, say: Callable[[str], None], keep: str) -> None:
    """``--fresh`` after ``check_fresh``: delete what a run made in ``run.root``, each named as it goes, but
    ``keep`` (the lock this process holds, so that no other run can start in the directory while it is
    emptied); anything else is named and left in place."""
    say(f"--fresh: deleting the run directory {run.root.resolve()} (what a run made in it)")
    for child in sorted(run.root.iterdir()):
        if child.name == keep:
            continue
        if not _made_by_a_run(child.name):
            say(f"--fresh: kept {child}: a run makes no file or folder of that name")
            continue
        say(f"--fresh: deleting {child}")
        # A link is removed, never followed: its target was not made by this run.
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def received_records(run: RunDir) -> list[Path]:
    """The records in ``run`` that this machine did not write (a planted link counts as one)."""
    return [path for pattern in RECORDS for path in sorted(run.root.glob(pattern)) if not made_here_file(path)]


def check_received(run: RunDir, say: Callable[[str], None], trust: bool) -> None:
    """Name the records in ``run`` that this machine did not write, which the run computes again; with ``trust``
    (``run --trust-results``: the user's own directory from another machine, or a sender they trust) note them,
    and the trials of the directory's own tuning studies, as made here, so that they are reused."""
    if run.optuna_db.is_file():  # before any work: a trigger in a received one would run once tuning writes
        check_sqlite_schema(run.optuna_storage)
    received = received_records(run)
    if trust:
        trusted = []
        for path in received:
            try:
                vouch_file(inside(run.root, path))  # never through a planted link
            except (OSError, StoreError) as error:
                say(f"--trust-results: not trusted {path}: {error}")
            else:
                trusted.append(path)
        trials = trust_trials(local_storage(run.optuna_storage)) if run.optuna_db.is_file() else 0
        say(f"--trust-results: trusted {len(trusted)} stored records and {trials} tuning trials this machine did "
            "not make")
    elif received:
        say(f"{len(received)} stored records in {run.root} were {NOT_MADE_HERE}, e.g. "
            f"{received[0].relative_to(run.root)}: jobs, features, stage-1 weights, tuning and the report are "
            "computed again here, and models scored with `score` are left out of the tables; --trust-results "
            "reuses them")


def _made_by_a_run(name: str) -> bool:
    return name in RUN_FOLDERS or name in RUN_FILES or TEMPORARY_NAME.fullmatch(name) is not None


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
    if manifest is None or manifest.get("synthetic") is not False or not experiment.dataset.uses_stand_in:
        return
    raise ConfigError(f"{run.root} holds results on real data ({manifest.get('data_root', 'dataset.root')}), but "
                      f"{experiment.dataset.root} does not exist now, so this run would switch to the synthetic "
                      "stand-in and replace them. Restore the data folder, or start over with --fresh or another --out.")
