"""``report``: rebuild the leaderboard, subgroup table and plots of a run from its stored results."""
from __future__ import annotations

from benchmark.commands._plugins import add_plugin_arguments, registry_for

HELP = "rebuild tables and plots of a run directory from its stored results (or a shared storage's)"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory, e.g. runs/pediatric")
    parser.add_argument("--storage", default="", help="first copy every result the workers stored there "
                        "(postgresql://..., sqlite:///..., a journal file) into run_dir")
    parser.add_argument("--artifacts", default="", metavar="PATH_OR_URL", help="with --storage: the workers' "
                        "artifact store, to copy each job's model.pt too (default: tune.artifacts of the run; the "
                        "workers' own run folders on this machine are read without it)")
    add_plugin_arguments(parser)


def run(args) -> int:
    from benchmark.evaluation.report import write_report
    from benchmark.store import RunDir

    run_dir = RunDir(args.run_dir)
    if not args.storage and not run_dir.manifest.is_file():
        from benchmark.errors import ConfigError

        raise ConfigError(f"{run_dir.root} has no manifest.json: not a run directory (or the run never started); "
                          "give the directory `run` wrote, or --storage to collect a shared run's results")
    if args.storage:
        from benchmark.orchestration.artifacts import open_artifacts
        from benchmark.orchestration.cluster import fetch_results
        from benchmark.orchestration.storage import open_storage

        count = fetch_results(open_storage(args.storage, run_dir.root), run_dir,
                              models=open_artifacts(args.artifacts or _recorded_artifacts(run_dir), run_dir.root))
        print(f"{count} stored job results copied into {run_dir.root}")
    write_report(run_dir, registry_for(run_dir, args))
    return 0


def _recorded_artifacts(run_dir) -> str:
    """``tune.artifacts`` of the run, when its manifest is here already. A folder it names is used only where
    it exists: the manifest may have come with a received run directory, and nothing it names is created."""
    from pathlib import Path

    from benchmark.evaluation.run_records import read_manifest

    spec = read_manifest(run_dir)["config"]["tune"].get("artifacts", "") if run_dir.manifest.is_file() else ""
    if spec and not spec.startswith("s3://") and not Path(spec).is_dir():
        print(f"the run's tune.artifacts, {spec}, is no folder on this machine: trained models come only from "
              "the workers' run folders here (name the store with --artifacts)")
        return ""
    return spec
