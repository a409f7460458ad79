"""``run``: the main job: train and compare every model of an experiment and write the leaderboard.

Exit code 3 when any job failed (after the leaderboard is written), so a sweep or CI can tell.
"""
from __future__ import annotations

import argparse
import sys

from benchmark.config import load_experiment

JOBS_FAILED = 3  # the run finished and wrote its tables, but some jobs have no result
HELP = "run an experiment: splits, encoder, tuning, every model x seed, leaderboard (resumes)"


def add_arguments(parser) -> None:
    parser.add_argument("experiment", help="the experiment TOML file")
    parser.add_argument("--out", help="run directory (default runs/<name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a key, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--fresh", action="store_true", help="start over: delete what a run made in the run "
                        "directory (other files are kept; refused for a non-empty folder that is not a run directory)")
    parser.add_argument("--storage", default="", help="Optuna storage shared by every worker of the run: a URL "
                        "(postgresql://..., sqlite:///...), a .log journal file or a sqlite file path (default: "
                        "tune.storage; without either, one process and sqlite in the run directory)")
    parser.add_argument("--heartbeat", type=_seconds, default=10, metavar="SECONDS",
                        help="with a storage: a worker silent for three heartbeats is dead and its work is retried")
    parser.add_argument("--artifacts", default="", metavar="PATH_OR_URL", help="with a storage: where workers "
                        "share encoder stages and trained models, a folder every worker reaches or s3://bucket/prefix "
                        "(default: tune.artifacts; without either, the run directory, shared by workers on one machine)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only one line per step")
    parser.add_argument("--trust-checkpoint", action="store_true", help="unpickle checkpoints ([encoder] weights, "
                        "[[models]] checkpoint) that hold more than tensors and plain data: this runs code from "
                        "the files, so only for files you trust")
    parser.add_argument("--trust-results", action="store_true", help="reuse the stored results of a run directory "
                        "this machine did not make (your own, copied from another machine, or one from a sender you "
                        "trust); without it they are computed again")


def _seconds(text: str) -> int:
    """--heartbeat as the parser takes it, refused with the usage (exit 2) before any work: the storage refused a
    count below 1 only once the data were loaded and the run directory made (after --fresh had emptied it)."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, got {text!r}") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, at least 1, got {seconds}")
    return seconds


def run(args) -> int:
    from benchmark.encoding.weights import trusting_checkpoints
    from benchmark.orchestration.runner import failed_jobs, run_experiment

    experiment = load_experiment(args.experiment, args.overrides)
    with trusting_checkpoints(args.trust_checkpoint):
        run_dir = run_experiment(experiment, out=args.out, fresh=args.fresh, storage=args.storage, quiet=args.quiet,
                                 heartbeat=args.heartbeat, artifacts=args.artifacts,
                                 trust_results=args.trust_results)
    failed = failed_jobs(run_dir)
    if failed:
        print(f"failed: {len(failed)} job(s) failed: {', '.join(failed)}; the leaderboard lists them, "
              f"each has its traceback.txt; a rerun retries them (exit {JOBS_FAILED})", file=sys.stderr)
        return JOBS_FAILED
    return 0
