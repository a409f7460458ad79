"""What a run directory's ``manifest.json`` and each ``result.json`` must hold when read back.

A run directory may be received from someone else: a file that lacks a field, or holds one of another type,
is an error naming the file and the field, never a KeyError deep in the report, nor a value taken
as something else (a string of job ids read letter by letter). The manifest's ``config`` is checked as an
experiment file is (``config.from_dict``), so a received ``evaluate.bootstrap`` is bounded like one typed by
hand.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.config import from_dict
from benchmark.errors import ConfigError, StoreError
from benchmark.identity import made_here_file
from benchmark.store import RunDir, read_json

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
                 f"is {_shown(value)}, not {TYPE_WORDS[kind]}" if field in record else "is missing")
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


def _require(holds: bool, path: Path, field: str, problem: str) -> None:
    if not holds:
        where = f"`{field}` " if field else ""
        raise StoreError(f"{path}: {where}{problem}; no run of the benchmark wrote it so (damaged, or edited by "
                         "hand): delete it to recompute that step")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
