"""The table files of a run directory: leaderboard.{md,csv,json,tex}, subgroups.csv and paired_tests.csv.

Their columns are described in ``benchmark.evaluation.leaderboard``; the markdown lays out the tables of
``benchmark.evaluation.display`` (the ones the HTML report shows).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from benchmark.evaluation.display import Table, leaderboard_table, protocol_text, run_tables
from benchmark.evaluation.leaderboard import JobResult, MetricSpec, Tables, build_tables, metric_specs
from benchmark.store import atomic_write_text, csv_text


def markdown_table(table: Table) -> str:
    from tabulate import tabulate

    rows = [[f"**{_markdown_escape(cell.text)}**" if cell.best else _markdown_escape(cell.text) for cell in row]
            for row in table.rows]
    # numbers are already formatted: tabulate would reparse them and drop trailing zeros
    return tabulate(rows, headers=[_markdown_escape(header) for header in table.headers], tablefmt="github",
                    disable_numparse=True)


def _markdown_escape(text: str) -> str:
    """A cell as text, whatever a received result.json names its model: a ``|`` or a line break would shift
    the table's columns, and markdown viewers render HTML tags and ``![x](url)`` (an image fetched from
    elsewhere; ``[x](url)``, a link). ``](`` is escaped, and a backslash first, so that none escapes it back."""
    text = _one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("](", "\\](")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_line(text: str) -> str:
    return "".join(" " if not character.isprintable() else character for character in str(text))


def _protocol_lines(protocol: Mapping[str, Any]) -> list[str]:
    lines = [f"**Protocol**: {_markdown_escape(protocol_text(protocol))}"]  # a received manifest's values
    if protocol.get("synthetic"):
        lines.append("> **Synthetic data.** These numbers come from the generated stand-in dataset, "
                     "not from patients, and say nothing about clinical performance.")
    return lines


def render_markdown(tables: Tables, specs: Sequence[MetricSpec], protocol: Mapping[str, Any]) -> str:
    """leaderboard.md: the protocol, the leaderboard, failed jobs, how scores were computed, then the CIs,
    per-seed, subgroup, out-of-range and paired-test tables."""
    main, *rest = run_tables(tables, specs)
    parts = ["# Leaderboard", "", *_protocol_lines(protocol), "", markdown_table(main), "",
             main.note + " 95% patient-bootstrap CIs: below."]
    failed = tables.board[tables.board["status"] != "ok"]
    if len(failed):
        parts += ["", "## Failed jobs", ""] + [f"- {_markdown_escape(row.model)}: {_markdown_escape(row.error)}"
                                               for row in failed.itertuples()]
    if tables.notes:
        labels = {spec.name: spec.label for spec in specs} | {"pit": "PIT"}
        parts += ["", "## How scores were computed", ""]
        parts += [f"- {_markdown_escape(model)}: " + "; ".join(f"{labels.get(key, key)} {_markdown_escape(text)}"
                                                           for key, text in sorted(by.items()))
                  for model, by in tables.notes.items()]  # the notes come from result.json files too
    for table in rest:
        parts += ["", "#" * table.level + " " + _markdown_escape(table.title)]
        if table.headers:
            parts += ["", markdown_table(table)]
        if table.note:
            parts += ["", table.note]
    return "\n".join(parts) + "\n"


def render_latex(tables: Tables, specs: Sequence[MetricSpec], protocol: Mapping[str, Any]) -> str:
    from tabulate import tabulate

    table = leaderboard_table(tables.board, specs)
    rows = [[_latex_escape(cell.text).replace("±", r"$\pm$") for cell in row] for row in table.rows]
    rows = [[rf"\textbf{{{text}}}" if cell.best else text for text, cell in zip(texts, row)]
            for texts, row in zip(rows, table.rows)]
    caption = _latex_escape(protocol_text(protocol))
    return f"% {caption}\n" + tabulate(rows, headers=[_latex_escape(h) for h in table.headers],
                                       tablefmt="latex_raw", disable_numparse=True) + "\n"


# Every character TeX gives a meaning, as text. ``^`` matters most: TeX reads ``^^5c`` as a backslash before
# anything else, so a label like ``x^^5cinput^^7b/etc/passwd^^7d`` would run \\input{/etc/passwd} in a paper.
LATEX_TEXT = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
              "}": r"\}", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}"}


def _latex_escape(text: str) -> str:
    return "".join(LATEX_TEXT.get(character, character) for character in _one_line(text))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def leaderboard_json(tables: Tables) -> str:
    """The leaderboard rows, each with that model's per-seed, subgroup and paired-test rows."""
    def rows_of(frame: pd.DataFrame | None, model: str) -> list[dict[str, Any]]:
        return [] if frame is None or not len(frame) else _records(frame[frame["model"] == model])

    rows = [{**row, "per_seed": rows_of(tables.per_seed, row["model"]),
             "subgroups": rows_of(tables.subgroups, row["model"]),
             "paired_tests": rows_of(tables.paired, row["model"])} for row in _records(tables.board)]
    return json.dumps(rows, indent=2) + "\n"


def write_tables(run_dir: str | Path, results: Sequence[JobResult], protocol: Mapping[str, Any],
                 baseline: str = "", specs: Sequence[MetricSpec] | None = None, n_boot: int = 1000,
                 seed: int = 0, subgroups: Sequence[str] | None = None) -> Tables:
    """Write leaderboard.{md,csv,json,tex}, subgroups.csv and (with a baseline) paired_tests.csv; returns the
    tables they hold."""
    run_dir = Path(run_dir)
    specs = metric_specs() if specs is None else list(specs)
    tables = build_tables(results, specs, baseline, n_boot=n_boot, seed=seed, subgroups=subgroups)
    atomic_write_text(run_dir / "leaderboard.md", render_markdown(tables, specs, protocol))
    atomic_write_text(run_dir / "leaderboard.csv", csv_text(tables.board))
    atomic_write_text(run_dir / "leaderboard.json", leaderboard_json(tables))
    atomic_write_text(run_dir / "leaderboard.tex", render_latex(tables, specs, protocol))
    atomic_write_text(run_dir / "subgroups.csv", csv_text(tables.subgroups))
    if tables.paired is not None:
        atomic_write_text(run_dir / "paired_tests.csv", csv_text(tables.paired))
    return tables
