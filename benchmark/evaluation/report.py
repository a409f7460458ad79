"""Tables and plots of a run, rebuilt from what its jobs stored (``report`` and the end of ``run``).

Nothing here trains or predicts: the leaderboard comes from each job's ``predictions.csv`` and
``result.json``, so ``report`` gives the same tables as the run that made them. Externally scored
models (``score``) live under ``external/`` and join the tables like any job.

A run directory may come from someone else, so ``report`` and ``score`` import no plugin its manifest
names unless told to (``trusted_registry``); the metrics such plugins add are then missing from the
rebuilt tables, and ``write_report`` names every column it could not redraw.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from benchmark.errors import StoreError
from benchmark.evaluation.board_files import write_tables
from benchmark.evaluation.figures import FigureInputs, write_all
from benchmark.evaluation.figures.posterior import ModelSamples
from benchmark.evaluation.figures.trajectories import Trajectories
from benchmark.evaluation.html import write_html
from benchmark.evaluation.leaderboard import JobResult, MetricSpec, SampleRange, Tables, metric_specs
from benchmark.evaluation.run_records import (
    read_job_arrays,
    read_job_predictions,
    read_job_samples,
    read_job_trajectories,
    read_manifest,
    read_result,
    received_results,
    result_paths,
    test_data,
)
from benchmark.identity import NOT_MADE_HERE
from benchmark.store import RunDir, check_name, damage, open_regular, read_csv_table
from registry import Registry, load_registry
from registry.manager import plugin_file

# An external model's predictions were scored against the test labels of the moment of ``score`` (its result.json
# records their content, ``test data``): once the run's test data changed, its numbers are the old labels'.
STALE_EXTERNAL = ("scored against test data that changed since (a label, video or the split's test items): "
                  "score it again with `score --replace`")


def load_results(run: RunDir, own_only: bool = False) -> list[JobResult]:
    """One JobResult per (model, seed): the test predictions of all its splits pooled (cv10 tests every
    item once across the ten folds). A job whose stored files are not the ones it wrote is counted as
    failed, naming the file, and so is an external model scored against other test data than the run's now;
    externally scored models are never pooled with trained ones."""
    manifest = read_manifest(run)
    records = [read_result(path) for path in result_paths(run, manifest, own_only)]
    trained = {record["model"] for record in records if not record.get("external")}
    scored_on = test_data(manifest)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in records:
        model = record["model"]
        if record.get("external") and model in trained:  # an old run's clash: shown apart, never merged
            model = f"{model} (external)"
        groups.setdefault((model, record["seed"]), []).append(record)
    results = []
    for (model, seed), group in groups.items():
        first = group[0]
        keys = dict(dataset=first["dataset"], encoder=first["encoder"], fusion=first["fusion"], head=first["head"],
                    model=model, seed=seed)
        errors = [f"{record['split']}: {record['error']}" for record in group if record["status"] != "ok"]
        errors += [STALE_EXTERNAL for record in group if record["status"] == "ok" and record.get("external")
                   and record.get("test data") != scored_on]
        errors += [f"{record['split']}: damaged: {problem}" for record in group if record["status"] == "ok"
                   and (problem := damage(_directory(run, record), record.get("files", {})))]
        if errors:
            results.append(JobResult(**keys, status="failed", error="; ".join(errors)))
            continue
        directories = [_directory(run, record) for record in group]
        frames = [read_job_predictions(directory / "predictions.csv") for directory in directories]
        results.append(JobResult(**keys, items=pd.concat(frames, ignore_index=True), notes=first.get("notes", {}),
                                 samples=_sample_range(directories)))
    return results


def _sample_range(directories: Sequence[Path]) -> SampleRange | None:
    """Where the predictive samples of a (model, seed) lie, over its splits; None without stored samples."""
    stored = [directory / "samples.npz" for directory in directories]
    if not all(path.is_file() for path in stored):
        return None
    return SampleRange.pooled([SampleRange.of(read_job_arrays(path, ("samples",))["samples"]) for path in stored])


def trusted_registry(run: RunDir, plugins: Sequence[str] = (), trust_manifest: bool = False,
                     say: Callable[[str], None] = print) -> Registry:
    """Built-ins, installed entry points and the ``plugins`` the user names (relative to the current
    directory); the plugins named in ``run``'s manifest only with ``trust_manifest``."""
    manifest = read_manifest(run)
    registry = load_registry(plugins, base_dir=Path.cwd())
    experiment_folder = Path(manifest["source"]).parent
    given = {_plugin_identity(plugin, Path.cwd()) for plugin in plugins}
    # A file the user names is the manifest's entry however either spells it: loading both would name its components
    # twice.
    named = [plugin for plugin in manifest["config"]["plugins"]
             if _plugin_identity(plugin, experiment_folder) not in given]
    if named and trust_manifest:
        before = len(registry.failures)
        registry.load_extra(named, base_dir=Path(manifest["source"]).parent, strict=False)
        for failure in registry.failures[before:]:
            say(f"warning: {failure}")
    elif named:
        say(f"not loaded: plugin(s) {', '.join(named)} named in {run.manifest} (plugin code runs when "
            "imported; load them with --trust-plugins, or name a copy you trust with --plugins)")
    return registry


def _plugin_identity(spec: str, base_dir: Path) -> str:
    """A ``plugins`` entry as the same plugin is named however it is spelt: a file by its resolved path."""
    path = plugin_file(spec, base_dir)
    return spec if path is None else str(path.resolve())


def write_report(run: RunDir, registry: Registry, say: Callable[[str], None] = print,
                 oracle: Path | None = None, own_only: bool = False) -> pd.DataFrame:
    """Write every table and plot with the metrics of ``registry``; returns the leaderboard. A metric
    column of the previous leaderboard that ``registry`` cannot compute is named. ``oracle``: the oracle
    posteriors of the run's data, which ``run`` knows; without it (``report``, ``score``) the path manifest.json
    records, if it is a synthetic stand-in's sidecar (``recorded_oracle``). ``own_only`` (``run``): the results
    this machine did not make are left out of the tables, and named; otherwise (``report``, viewing a run as it
    is) they are drawn, and the page and the log name them."""
    results = load_results(run, own_only)
    manifest = read_manifest(run)
    config = manifest["config"]
    previous = run.root / "leaderboard.csv"
    before = list(read_csv_table(previous).columns) if previous.is_file() else []
    specs = metric_specs(registry.records("metric"))
    tables = write_tables(run.root, results, manifest["protocol"], baseline=config.get("baseline", ""), specs=specs,
                          n_boot=config["evaluate"]["bootstrap"], seed=config["seeds"][0])
    oracle = recorded_oracle(run, manifest, say) if oracle is None else oracle
    figures = write_all(run.plots, _figure_inputs(run, results, tables, specs, manifest, registry, oracle))
    received = received_results(run, manifest)
    html = write_html(run.root / "report.html", tables, specs, manifest, figures, _excluded(run),
                      [] if own_only else received)
    say(f"leaderboard: {run.root / 'leaderboard.md'}; report: {html}")
    if received and own_only:
        say(f"left out of the tables: {', '.join(received)}, {NOT_MADE_HERE} (score a model again here, or "
            "reuse them with --trust-results)")
    elif received:
        say(f"note: {len(received)} of its results were {NOT_MADE_HERE}, e.g. {received[0]}: their numbers are "
            "as whoever made them stored them (report.html says so too)")
    board = read_csv_table(run.root / "leaderboard.csv")
    lost = [column for column in before if column not in board.columns]
    if lost:
        say(f"not redrawn: column(s) {', '.join(lost)} of the previous leaderboard (their metrics come from "
            "plugins not loaded now)")
    return board


def _excluded(run: RunDir) -> pd.DataFrame:
    """The run's excluded.csv (items left out, frames or values dropped); empty where there is none."""
    return read_csv_table(run.excluded, dtype=str) if run.excluded.is_file() else pd.DataFrame()


def _directory(run: RunDir, record: dict[str, Any]) -> Path:
    if record.get("external"):
        return run.path("external", check_name(record["job"], f"{run.root}/external: job"))
    return run.job(record["job"])


def _figure_inputs(run: RunDir, results: list[JobResult], tables: Tables, specs: list[MetricSpec],
                   manifest: dict[str, Any], registry: Registry, oracle: Path | None) -> FigureInputs:
    """What the figures need beyond the tables: each model's samples (and closed-form density) on its first
    finished job, the oracle posteriors, the diffusion paths, and which rows are references."""
    samples, trajectories = {}, {}
    for job in manifest["jobs"]:  # in plan order: the first split's lowest seed comes first
        directory = run.job(job)
        if not run.is_done(job) or not (directory / "samples.npz").is_file():
            continue
        record = read_result(run.result(job))
        if record["status"] != "ok" or record["model"] in samples or run.damage(job, record):
            continue
        truth = read_job_predictions(directory / "predictions.csv").set_index("id")["EF"]
        stored = read_job_samples(directory / "samples.npz", truth.index)
        ids = [str(item) for item in stored["ids"]]
        closed_form = {"density": stored["density"], "grid": stored["density_grid"]} if "density" in stored else {}
        samples[record["model"]] = ModelSamples(ids=ids, y=truth.loc[ids].to_numpy(float),
                                                samples=stored["samples"], **closed_form)
        if (directory / "trajectories.npz").is_file():
            paths = read_job_trajectories(directory / "trajectories.npz")
            trajectories[record["model"]] = Trajectories(labels=list(paths["labels"]), ids=list(paths["ids"]),
                                                         y=paths["y"], paths=list(paths["paths"]))
    untrained = {record.name for record in registry.records("head") if not record.metadata.get("needs_training", True)}
    reference = set(tables.board.loc[tables.board["head"].isin(untrained), "model"])
    return FigureInputs(results, tables.board, specs, samples, _oracle_components(oracle), trajectories, reference)


def recorded_oracle(run: RunDir, manifest: dict[str, Any], say: Callable[[str], None]) -> Path | None:
    """The oracle posteriors manifest.json names, where ``report`` may read them: a received manifest could name
    any file (``~/.ssh/id_rsa``), so only the sidecar of a synthetic stand-in generated on this machine is read:
    ``oracle.csv`` beside the ``SYNTHETIC.md`` of a complete generation, a regular file (not a link, not a FIFO).
    Anything else is named and left out of the figures."""
    named = manifest.get("oracle")
    if not named:
        return None
    from benchmark.synth.generate import ORACLE, read_marker

    path = Path(str(named))
    if not path.is_absolute() or path.name != ORACLE or read_marker(path.parent) is None:
        problem = "it is not the oracle.csv of a synthetic stand-in generated on this machine"
    else:
        try:
            open_regular(path).close()
            return path
        except StoreError as error:
            problem = str(error)
        except OSError as error:
            problem = f"it cannot be read ({error.strerror or error})"
    say(f"note: the oracle posteriors named in {run.manifest} ({named}) are not read: {problem}; the figures "
        "leave them out")
    return None


def _oracle_components(path: Path | None) -> dict[str, list[tuple[float, float, float]]]:
    """Per item id: the vision+tabular oracle posterior components, when the data has a sidecar."""
    if path is None or not path.is_file():
        return {}
    from benchmark.synth.oracle import read

    return read(path, "vision_tabular")[0]
