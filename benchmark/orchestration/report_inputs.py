"""The report of a run is rebuilt only when what it is made of changed.

A rerun that finds every job done would otherwise redraw every table and plot (bootstrap, matplotlib)
from the same files. What the report reads is hashed: the manifest (but its time), excluded.csv, every stored
result record (which holds the SHA-256 of each file the tables and plots read), externally scored
results, the metrics registered and the report code itself. The hash and the digests of the files the
report wrote go to ``report_inputs.json``; while both still hold, the report is not rebuilt and the run
says so. ``report`` (the command) always rebuilds.

This wraps ``evaluation.report.write_report`` and looks only at its inputs and outputs, not at how the
tables are made.
"""
from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.errors import ConfigError, StoreError
from benchmark.evaluation.run_records import read_manifest, received_results, result_paths
from benchmark.identity import engine_digests, file_digest, made_here_file, source_digest, stable_hash, vouch_file
from benchmark.store import RunDir, atomic_write_json, check_name, read_csv_table, read_json
from registry import Registry

INPUTS_FILE = "report_inputs.json"
# The report reads and shows all of manifest.json (report.html's identities: packages, commit, data root ...) but the
# time each run writes anew: with it, no rerun would ever reuse the report.
MANIFEST_VOLATILE = ("created",)
# The report's code (paths in the benchmark package): the evaluation stage, the oracle posteriors its figures
# draw and the CSV writing. Listed when hashed, so a file added or removed since start-up counts too.
REPORT_CODE = ("evaluation", "synth/oracle.py", "store.py")


def report_if_changed(run: RunDir, registry: Registry, oracle: Path | None, say: Callable[[str], None] = print):
    """``write_report`` unless its inputs and outputs are those recorded by the last one; the leaderboard.
    ``oracle``: the oracle posteriors of the run's data (the stand-in's sidecar in its data folder), or None."""
    inputs = report_inputs(run, registry, oracle)
    reason = _why_rebuild(run, inputs)
    if reason is None:
        say("report unchanged, not rebuilt")
        return read_csv_table(run.root / "leaderboard.csv")
    say(f"report rebuilt: {reason}")
    # Imported only to rebuild: the figures' plotting library is most of a rerun's start-up otherwise.
    from benchmark.evaluation.report import write_report

    before = _outputs(run)
    board = write_report(run, registry, say=say, oracle=oracle, own_only=True)
    written = {name: file_digest(run.root / name) for name, stamp in _outputs(run).items() if before.get(name) != stamp}
    vouch_file(atomic_write_json(run.root / INPUTS_FILE, {"inputs": inputs, "outputs": written}))
    return board


def report_inputs(run: RunDir, registry: Registry, oracle: Path | None) -> dict[str, Any]:
    """Digests of everything the report is made of, by part. ``oracle`` is the run's own (``report_if_changed``),
    never the path manifest.json records: a received one could name any file."""
    manifest = read_manifest(run)
    return {
        "manifest": stable_hash({key: value for key, value in manifest.items() if key not in MANIFEST_VOLATILE}),
        # report.html lists it: an item newly left out (a video gone) changes no job, yet the page must show it
        "excluded.csv": file_digest(run.excluded) if run.excluded.is_file() else "",
        "results": {str(path.relative_to(run.root)): file_digest(path)
                    for path in result_paths(run, manifest, own_only=True)},
        "received": received_results(run, manifest),  # left out: trusting one draws it in
        "oracle": file_digest(oracle) if oracle is not None and oracle.is_file() else "",
        "metrics": {record.name: source_digest(record) for record in registry.records("metric")},
        "code": stable_hash(engine_digests(REPORT_CODE)),
    }


def _why_rebuild(run: RunDir, inputs: dict[str, Any]) -> str | None:
    """Why the report must be drawn again, in words; None when it need not."""
    path = run.root / INPUTS_FILE
    if not path.is_file():
        return "no earlier report"
    if not made_here_file(path):  # received or copied: its digests sit beside the files they vouch for
        return "the earlier report was not drawn on this machine"
    recorded = read_json(path)
    if not isinstance(recorded, dict) or not all(isinstance(recorded.get(part), dict) for part in ("inputs", "outputs")):
        return f"{path} is not as the report writes it"
    before = recorded["inputs"]
    changed = [part for part in inputs if before.get(part) != inputs[part]]
    if changed:
        return f"{', '.join(changed)} changed"
    for name, digest in recorded["outputs"].items():
        output = _output(run, name)
        if output is None:
            return f"{path} names {name!r}, which is no file the report writes"
        if not output.is_file() or file_digest(output) != digest:
            return f"{name} is missing or was changed"
    return None


def _output(run: RunDir, name: str) -> Path | None:
    """The file of the run directory that ``name`` (from report_inputs.json, which may be received) stands for, or
    None where it is none that the report writes: a file in the run directory or in its ``plots/``, reached without
    a link and not a FIFO (``RunDir.path``). ``../x`` or ``/etc/x`` would have the digest of any file compared."""
    parts = name.split("/")
    try:
        if len(parts) > 2 or parts[:-1] not in ([], ["plots"]):
            return None
        return run.path(*parts[:-1], check_name(parts[-1], "output"))
    except (ConfigError, StoreError):
        return None


def _outputs(run: RunDir) -> dict[str, tuple[int, int, int]]:
    """(inode, size, modification time) of each regular file in the run directory and its plots (a link is not
    followed): what changed across ``write_report`` is what it wrote (its writes are atomic renames, a new inode
    each)."""
    stamps = {}
    for path in [*run.root.glob("*"), *run.plots.glob("*")]:
        try:
            status = path.lstat()
        except FileNotFoundError:  # removed since listed
            continue
        if stat.S_ISREG(status.st_mode) and path.name != INPUTS_FILE:
            stamps[str(path.relative_to(run.root))] = (status.st_ino, status.st_size, status.st_mtime_ns)
    return stamps
