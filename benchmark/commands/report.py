"""``report``: rebuild the leaderboard, subgroup table and plots of a run from its stored results."""
from __future__ import annotations

HELP = "rebuild tables and plots of a run directory from its stored results"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory, e.g. runs/pediatric")


def run(args) -> int:
    from ..report import write_report
    from ..store import RunDir

    write_report(RunDir(args.run_dir))
    return 0
