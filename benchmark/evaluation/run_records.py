"""What a run directory's ``manifest.json``, each ``result.json`` and each job's scored files (``predictions.csv``,
``samples.npz``, ``trajectories.npz``) must hold when read back.

A run directory may be received from someone else: a file that lacks a field, or holds one of another type,
is an error naming the file and the field, never a KeyError deep in the report, nor a value taken
as something else (a string of job ids read letter by letter). The manifest's ``config`` is checked as an
experiment file is (``config.from_dict``), so a received ``evaluate.bootstrap`` is bounded like one typed by
hand.
"""
from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from benchmark.config import from_dict
from benchmark.errors import ConfigError, StoreError, shown
from benchmark.evaluation.predictions_file import read_predictions
from benchmark.evaluation.scoring import SCORE_COLUMNS
from benchmark.identity import made_here_file
from benchmark.store import RunDir, read_arrays, read_json

# The fields every reader of a result uses, and their types (bool is no int: JSON's true is not a seed).
RESULT_FIELDS: dict[str, type] = {
    "job": str, "model": str, "head": str, "fusion": str, "encoder": str, "dataset": str, "seed": int, "split": str,
    "status": str}
STATUSES = ("ok", "failed")
TYPE_WORDS = {str: "a text", int: "a whole number"}


def result_paths(run: RunDir, manifest: dict[str, Any], own_only: bool = False) -> list[Path]:
    """Every stored result a report reads: each finished job's ``result.json`` in plan order, then each model
    scored with ``score``; with ``own_only``, only those this machine made (``identity``'s ledger)."""
    paths = [run.result(job) for job in manifest["jobs"] if run.is_done(job)] + run.external_results()
    return [path for path in paths if made_here_file(path)] if own_only else paths


def received_results(run: RunDir, manifest: dict[str, Any]) -> list[str]:
    """The stored results this machine did not make (not in ``identity``'s ledger: received or copied, and not
    trusted with ``run --trust-results``), relative to the run directory."""
    return [str(path.relative_to(run.root)) for path in result_paths(run, manifest) if not made_here_file(path)]


def test_data(manifest: dict[str, Any]) -> dict[str, Any]:
    """The content of each split's TEST items as the run's manifest names it: what ``score`` scored a model's
    predictions against (the labels it took), recorded with them, so that once it changes they are known stale."""
    identity = manifest.get("identity")  # a received manifest may lack it: then no recorded content matches
    data = identity.get("data") if isinstance(identity, dict) else None
    if not isinstance(data, dict):
        return {}
    return {split: roles.get("test") for split, roles in data.items() if isinstance(roles, dict)}


def read_manifest(run: RunDir) -> dict[str, Any]:
    """``run``'s manifest.json, checked: a StoreError naming the field if it is not one a run writes."""
    path = run.manifest
    if not path.is_file():
        raise StoreError(f"{run.root} has no manifest.json: it is not a run directory (or the run never started)")
    manifest = read_json(path)
    _require(isinstance(manifest, dict), path, "", "is not a JSON object")
    jobs = manifest.get("jobs")
    _require(isinstance(jobs, list) and all(isinstance(job, str) for job in jobs), path, "jobs",
             "is not a list of job ids")
    _require(isinstance(manifest.get("protocol"), dict), path, "protocol", "is not a JSON object")
    config = manifest.get("config")
    _require(isinstance(config, dict), path, "config", "is not a JSON object")
    try:
        from_dict(config, source=f"{path}: config")
    except ConfigError as error:  # named by its key path, as in an experiment file
        raise StoreError(str(error)) from None
    return manifest


def read_result(path: Path) -> dict[str, Any]:
    """A result.json, checked: the fields every reader uses are there with their types, a failed result says
    why, and the files an ok result vouches for are recorded by SHA-256."""
    record = read_json(path)
    _require(isinstance(record, dict), path, "", "is not a JSON object")
    for field, kind in RESULT_FIELDS.items():
        value = record.get(field)
        _require(isinstance(value, kind) and not isinstance(value, bool), path, field,
                 f"is {shown(value, width=40)}, not {TYPE_WORDS[kind]}" if field in record else "is missing")
    _require(record["status"] in STATUSES, path, "status", f"is {record['status']!r}, not one of {', '.join(STATUSES)}")
    if record["status"] == "failed":
        _require(isinstance(record.get("error"), str), path, "error", "is missing from a failed result")
    files = record.get("files", {})
    _require(isinstance(files, dict) and all(isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                                             for entry in files.values()),
             path, "files", "is not a table of file name -> {sha256, ...}")
    notes = record.get("notes", {})  # how each score was computed: shown in every table file and the report
    _require(isinstance(notes, dict) and all(isinstance(text, str) for text in notes.values()),
             path, "notes", "is not a table of score -> text")
    return record


def read_job_predictions(path: Path) -> pd.DataFrame:
    """A job's predictions.csv (``read_predictions``), checked as a result.json is: the columns the tables read,
    each score a number, each test item once. The SHA-256 its result.json records vouches only that it is the file
    the sender meant, not that a job wrote it."""
    try:
        frame = read_predictions(path)
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors are ValueErrors
        _refuse(path, "", f"is not a readable CSV ({' '.join(str(error).split())})")
    for column in ("FileName", "patient", *SCORE_COLUMNS):
        _require(("id" if column == "FileName" else column) in frame.columns, path, column, "is missing")
    _require(len(frame) > 0, path, "", "holds no test item")
    repeated = frame["id"].isna() | frame["id"].duplicated()
    if repeated.any():
        _refuse(path, "FileName", f"is empty or repeated in row {_row(repeated)}")
    for column in SCORE_COLUMNS:
        text = pd.to_numeric(frame[column], errors="coerce").isna() & frame[column].notna()
        if text.any():
            value = shown(frame[column][text].iloc[0], width=40)
            _refuse(path, column, f"is {value} in row {_row(text)}, not a number")
    return frame


def read_job_arrays(path: Path, names: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays ``names`` (and those of ``optional`` it holds) of a job's .npz (``read_arrays``: never unpickled,
    none unpacked past ``MAX_ARRAY_BYTES``): an archive that is none, holds pickled objects, an entry too large or
    lacks one of ``names`` is an error naming it."""
    try:
        with read_arrays(path) as stored:
            for name in names:
                _require(name in stored.files, path, name, "is missing")
            arrays = {name: stored[name] for name in (*names, *optional) if name in stored.files}
    except (ValueError, OSError, EOFError, MemoryError, zipfile.BadZipFile) as error:
        _refuse(path, "", f"is not an archive of arrays ({' '.join(str(error).split())})")
    for name, array in arrays.items():  # numpy gives an entry that is no .npy as its bytes
        _require(isinstance(array, np.ndarray), path, name, "is not an array")
    return arrays


def read_job_samples(path: Path, ids: pd.Index) -> dict[str, np.ndarray]:
    """A job's samples.npz (``read_job_arrays``) whose ``ids`` are items of its predictions.csv (``ids``), with
    ``samples`` one row of numbers per id and a closed-form ``density`` one row per id on ``density_grid``."""
    arrays = read_job_arrays(path, ("ids", "samples"), ("density", "density_grid"))
    unknown = [str(item) for item in arrays["ids"] if str(item) not in ids]
    if unknown:
        _refuse(path, "ids", f"names {shown(unknown[0], width=40)}, which its predictions.csv does not hold")
    rows = len(arrays["ids"])
    _require(_numbers(arrays["samples"], 2) and len(arrays["samples"]) == rows, path, "samples",
             "is not one row of numbers per id")
    if "density" in arrays:
        grid = arrays.get("density_grid", np.empty(0, dtype=object))
        _require(_numbers(grid, 1), path, "density_grid", "is not a row of numbers")
        _require(_numbers(arrays["density"], 2) and arrays["density"].shape == (rows, grid.size), path, "density",
                 "is not one row of numbers per id, one for each point of density_grid")
    return arrays


def read_job_trajectories(path: Path) -> dict[str, np.ndarray]:
    """A job's trajectories.npz (``read_job_arrays``): per case its label, id, true EF ``y`` and the (steps, K)
    numbers of its reverse-diffusion ``paths``."""
    arrays = read_job_arrays(path, ("labels", "ids", "y", "paths"))
    cases = len(arrays["y"]) if arrays["y"].ndim == 1 else -1
    _require(_numbers(arrays["y"], 1), path, "y", "is not a row of numbers")
    _require(_numbers(arrays["paths"], 3) and len(arrays["paths"]) == cases, path, "paths",
             "is not a (steps, K) table of numbers for each case of y")
    for name in ("labels", "ids"):
        _require(arrays[name].ndim == 1 and len(arrays[name]) == cases, path, name, "is not one entry per case of y")
    return arrays


def _numbers(array: np.ndarray, ndim: int) -> bool:
    return array.dtype.kind in "fiu" and array.ndim == ndim


def _row(mask: pd.Series) -> int:
    """The CSV row of the first true entry of ``mask`` (the header is row 1)."""
    return int(np.argmax(mask.to_numpy())) + 2


def _require(holds: bool, path: Path, field: str, problem: str) -> None:
    if not holds:
        _refuse(path, field, problem)


def _refuse(path: Path, field: str, problem: str) -> NoReturn:
    where = f"`{field}` " if field else ""
    raise StoreError(f"{path}: {where}{problem}; no run of the benchmark wrote it so (damaged, or edited by hand): "
                     "delete it to recompute that step")
