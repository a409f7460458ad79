"""``status``: where a run stands: each job pending, running (on which worker), done, failed or damaged (its
stored files changed after it finished; the next run recomputes it), each encoder stage of a shared run
(pending, running on which worker, done and where its files are), and the tuning trials of each model
against the budget. Works on a run directory (its own storage, if it has
one) or on a storage shared by workers (every run in it). A target that is neither is a usage error (exit 2)."""
from __future__ import annotations

from pathlib import Path

HELP = ("progress of a run or of a shared storage: jobs and encoder stages pending / running (where) / done / "
        "failed, tuning trials")


def add_arguments(parser) -> None:
    parser.add_argument("target", help="a run directory, or a storage (postgresql://..., sqlite:///..., a "
                        "journal file) to show every run in it")
    parser.add_argument("--storage", default="", help="for a run directory: the storage its workers share "
                        "(default: tune.storage of the run, else the run directory alone)")


def run(args) -> int:
    from benchmark.evaluation.run_records import read_manifest
    from benchmark.orchestration.cluster import JobBoard, jobs_studies, open_board
    from benchmark.orchestration.storage import open_storage, safe_url
    from benchmark.store import RunDir

    target = Path(args.target)
    if target.is_dir():
        run_dir = RunDir(target)
        manifest = read_manifest(run_dir) if run_dir.manifest.is_file() else None
        recorded = (manifest or {}).get("config", {}).get("tune", {}).get("storage", "")
        if recorded and not args.storage:
            # A received run directory is data: what its manifest names is not connected to, nor created.
            from benchmark.errors import ConfigError

            raise ConfigError(f"{run_dir.manifest} records that its workers shared the storage "
                              f"{safe_url(recorded)}; status opens a storage only when you name it: add "
                              "--storage URL (with the password, where it has one)")
        spec = args.storage
        if not spec:
            if manifest is None:
                from benchmark.errors import ConfigError

                raise ConfigError(f"{target} has no manifest.json: not a run directory (or the run never started)")
            _show_local(run_dir, manifest)
            return 0
        boards = [open_board(open_storage(spec, target), run_dir)]
    elif "://" not in args.target and not target.is_file():
        from benchmark.errors import ConfigError

        raise ConfigError(f"{target} is neither a run directory nor a storage file; give the run directory, "
                         "or the storage URL (postgresql://..., sqlite:///...) the workers use")
    else:
        storage = open_storage(args.target, Path.cwd())
        boards = [JobBoard(storage, name) for name in jobs_studies(storage)]
        if not boards:
            print(f"{safe_url(args.target)}: no run has started in this storage yet")
    for board in boards:
        _show_board(board)
    return 0


def _show_board(board) -> None:
    from benchmark.orchestration.cluster import tuning_progress

    manifest = board.manifest()
    if manifest is None:  # the worker that created the study stores the manifest in it the next instant
        print(f"jobs study {board.name!r}: a worker is starting this run")
        return
    _print(f"{manifest['experiment']} (jobs study {board.name!r})", board.states(manifest["jobs"]),
           tuning_progress(board.storage, manifest))
    if manifest.get("stages"):
        _show_stages(board.storage, manifest)


def _show_stages(storage, manifest) -> None:
    """The encoder stages of a shared run, and whether workers on other machines can use them."""
    from benchmark.orchestration.stages import FILES, StageClaims, stages_study_name

    stages = StageClaims(storage, stages_study_name(manifest["experiment"], manifest["stages"]))
    states = stages.states(manifest["stages"])
    print()
    _print_claims(f"{len(states)} encoder stages", states, "encoder stage", ("done", "running", "pending", "failed"))
    records = [record for trial in stages.study.get_trials(deepcopy=False)
               for record in trial.user_attrs.get(FILES, {}).values()]
    hosts = sorted({record.get("host") for record in records if "store" not in record})
    if hosts:
        print(f"stages stored in the workers' own run folders (no --artifacts) on {', '.join(hosts)}: workers on "
              "other machines compute their own; give every worker --artifacts PATH_OR_URL to share them")


def _show_local(run_dir, manifest) -> None:
    """A run without shared storage: its result files, and the tuning studies in its own optuna.db."""
    from benchmark.evaluation.run_records import read_result
    from benchmark.orchestration.cluster import ClaimState, tuning_progress
    from benchmark.orchestration.storage import check_sqlite_schema

    states = []
    for job in manifest["jobs"]:
        if not run_dir.is_done(job):
            states.append(ClaimState(job, "pending"))
            continue
        record = read_result(run_dir.result(job))
        problem = run_dir.damage(job, record) if record["status"] == "ok" else None
        if problem:  # its stored files changed after it finished: the next run computes it again
            states.append(ClaimState(job, "damaged", detail=problem))
        elif record["status"] == "ok":
            states.append(ClaimState(job, "done", detail=f"{record['seconds']:.1f} s"))
        else:
            states.append(ClaimState(job, "failed", detail=record.get("error", "")))
    if run_dir.optuna_db.is_file():
        check_sqlite_schema(run_dir.optuna_storage)  # a view in a received one could show any progress
    progress = tuning_progress(run_dir.optuna_storage, manifest) if run_dir.optuna_db.is_file() else []
    _print(f"{manifest['experiment']} ({run_dir.root}, one process)", states, progress)


def _print(title: str, states, progress) -> None:
    from tabulate import tabulate

    _print_claims(f"{title}: {len(states)} jobs", states, "job", ("done", "running", "pending", "failed", "damaged"))
    if progress:
        print()
        print(tabulate([(p.model, f"{p.finished}/{p.budget}", p.running) for p in progress],
                       headers=["tuning", "trials finished", "running"], tablefmt="simple"))


def _print_claims(title: str, states, header: str, counted: tuple[str, ...]) -> None:
    """``title: 3 done, 1 running, ...`` and one row per job or stage."""
    from tabulate import tabulate

    print(f"{title}: " + ", ".join(f"{sum(state.state == name for state in states)} {name}" for name in counted))
    print(tabulate([(s.name, s.state, s.worker, s.detail) for s in states],
                   headers=[header, "state", "worker", "detail"], tablefmt="simple"))
