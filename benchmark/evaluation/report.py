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

import numpy as np
import pandas as pd

from benchmark.errors import StoreError
from benchmark.evaluation.board_files import write_tables
from benchmark.evaluation.leaderboard import JobResult, SampleRange, metric_specs, read_predictions
from benchmark.store import RunDir, check_name, damage, read_csv_table, read_json
from registry import Registry, load_registry


def load_results(run: RunDir) -> list[JobResult]:
    """One JobResult per (model, seed): the test predictions of all its splits pooled (cv10 tests every
    item once across the ten folds). A job whose stored files are not the ones it wrote is counted as
    failed, naming the file; externally scored models are never pooled with trained ones."""
    if not run.manifest.is_file():
        raise StoreError(f"{run.root} has no manifest.json: it is not a run directory (or the run never started)")
    manifest = read_json(run.manifest)
    records = [read_json(run.result(job)) for job in manifest["jobs"] if run.is_done(job)]
    records += [read_json(path) for path in sorted((run.root / "external").glob("*/result.json"))]
    trained = {record["model"] for record in records if not record.get("external")}
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
        errors += [f"{record['split']}: damaged: {problem}" for record in group if record["status"] == "ok"
                   and (problem := damage(_directory(run, record), record.get("files", {})))]
        if errors:
            results.append(JobResult(**keys, status="failed", error="; ".join(errors)))
            continue
        directories = [_directory(run, record) for record in group]
        frames = [read_predictions(directory / "predictions.csv") for directory in directories]
        results.append(JobResult(**keys, items=pd.concat(frames, ignore_index=True), notes=first.get("notes", {}),
                                 samples=_sample_range(directories)))
    return results


def _sample_range(directories: Sequence[Path]) -> SampleRange | None:
    """Where the predictive samples of a (model, seed) lie, over its splits; None without stored samples."""
    stored = [directory / "samples.npz" for directory in directories]
    if not all(path.is_file() for path in stored):
        return None
    ranges = []
    for path in stored:
        with np.load(path) as arrays:
            ranges.append(SampleRange.of(arrays["samples"]))
    return SampleRange.pooled(ranges)


def trusted_registry(run: RunDir, plugins: Sequence[str] = (), trust_manifest: bool = False,
                     say: Callable[[str], None] = print) -> Registry:
    """Built-ins, installed entry points and the ``plugins`` the user names (relative to the current
    directory); the plugins named in ``run``'s manifest only with ``trust_manifest``."""
    if not run.manifest.is_file():
        raise StoreError(f"{run.root} has no manifest.json: it is not a run directory (or the run never started)")
    manifest = read_json(run.manifest)
    registry = load_registry(plugins, base_dir=Path.cwd())
    named = [plugin for plugin in manifest["config"]["plugins"] if plugin not in plugins]
    if named and trust_manifest:
        before = len(registry.failures)
        registry.load_extra(named, base_dir=Path(manifest["source"]).parent, strict=False)
        for failure in registry.failures[before:]:
            say(f"warning: {failure}")
    elif named:
        say(f"not loaded: plugin(s) {', '.join(named)} named in {run.manifest} (plugin code runs when "
            "imported; load them with --trust-plugins, or name a copy you trust with --plugins)")
    return registry


def write_report(run: RunDir, registry: Registry, say: Callable[[str], None] = print) -> pd.DataFrame:
    """Write every table and plot with the metrics of ``registry``; returns the leaderboard. A metric
    column of the previous leaderboard that ``registry`` cannot compute is named."""
    results = load_results(run)
    manifest = read_json(run.manifest)
    config = manifest["config"]
    previous = run.root / "leaderboard.csv"
    before = list(read_csv_table(previous).columns) if previous.is_file() else []
    write_tables(run.root, results, manifest["protocol"], baseline=config.get("baseline", ""),
                 specs=metric_specs(registry.records("metric")), n_boot=config["evaluate"]["bootstrap"],
                 seed=config["seeds"][0])
    _plots(run, results, manifest)
    say(f"leaderboard: {run.root / 'leaderboard.md'}")
    board = read_csv_table(run.root / "leaderboard.csv")
    lost = [column for column in before if column not in board.columns]
    if lost:
        say(f"not redrawn: column(s) {', '.join(lost)} of the previous leaderboard (their metrics come from "
            "plugins not loaded now)")
    return board


def _directory(run: RunDir, record: dict[str, Any]) -> Path:
    if record.get("external"):
        return run.root / "external" / check_name(record["job"], f"{run.root}/external: job")
    return run.job(record["job"])


def _plots(run: RunDir, results: list[JobResult], manifest: dict[str, Any]) -> list[Path]:
    from benchmark.evaluation.plots import PosteriorExamples, Trajectories, write_all
    from benchmark.synth.oracle import stack

    examples, trajectories = {}, {}
    oracle = _oracle_components(manifest.get("oracle", ""))
    for job in manifest["jobs"]:
        directory = run.job(job)
        if not run.is_done(job) or not (directory / "samples.npz").is_file():
            continue
        record = read_json(run.result(job))
        if record["status"] != "ok" or record["model"] in examples or run.damage(job, record):
            continue
        stored = np.load(directory / "samples.npz")
        frame = read_predictions(directory / "predictions.csv")
        chosen = _example_rows(frame)
        ids = [str(i) for i in stored["ids"][chosen]]
        posterior = {}
        found = [oracle.get(i) for i in ids]
        if ids and all(components is not None for components in found):
            mixture = stack(found)
            posterior = dict(oracle_weights=mixture.weights, oracle_means=mixture.means, oracle_stds=mixture.stds)
        examples[record["model"]] = PosteriorExamples(ids=ids, y=frame["EF"].to_numpy(float)[chosen],
                                                      samples=stored["samples"][chosen], **posterior)
        if (directory / "trajectories.npz").is_file():
            paths = np.load(directory / "trajectories.npz")
            trajectories[record["model"]] = Trajectories(labels=list(paths["labels"]), ids=list(paths["ids"]),
                                                         y=paths["y"], paths=list(paths["paths"]))
    return write_all(run.plots, results, examples, trajectories)


def _example_rows(frame: pd.DataFrame, count: int = 4) -> np.ndarray:
    """A few test items for the posterior plot, ambiguous ones first where the data marks them."""
    rows = np.arange(len(frame))
    if "ambiguous" in frame:
        flagged = frame["ambiguous"].astype(str).to_numpy() == "yes"
        rows = np.concatenate([rows[flagged][: count // 2], rows[~flagged]])
    return rows[:count]


def _oracle_components(path: str) -> dict[str, list[tuple[float, float, float]]]:
    """Per item id: the vision+tabular oracle posterior components, when the data has a sidecar."""
    if not path or not Path(path).is_file():
        return {}
    from benchmark.synth.oracle import read

    return read(Path(path), "vision_tabular")[0]
