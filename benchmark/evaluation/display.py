"""The run's tables as people read them: cells with their text, the number they sort by, and the best mark.

``leaderboard.md``, ``leaderboard.tex`` and ``report.html`` lay out the same tables from these, so a
number reads the same everywhere; only the markup differs (``board_files`` and ``html``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.evaluation.leaderboard import (
    EF_RANGE,
    HEADLINE,
    KEY_COLUMNS,
    PAIRED_LOSSES,
    SIGNIFICANCE,
    MetricSpec,
    Tables,
)

SUBGROUP_ORDER = ("ambiguous", "sex", "age_bin", "view", "quality")  # the synthetic benchmark's point first


@dataclass(frozen=True)
class Cell:
    text: str
    value: float | None = None  # what a sortable table orders by; None sorts by the text
    best: bool = False  # the best value of its column (shown bold)
    detail: str = ""  # a second line where there is room (the HTML report): the 95% CI

    @property
    def sort_key(self) -> str:
        return self.text if self.value is None or not np.isfinite(self.value) else repr(float(self.value))


@dataclass(frozen=True)
class Table:
    key: str  # an identifier: the HTML element id, and what tests look tables up by
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    note: str = ""
    level: int = 2  # heading level of the title
    numeric: list[bool] = field(default_factory=list)  # per column: sort numerically


def number(value: float) -> str:
    """3 decimals below 1, else 2: the precision of every table."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.{3 if abs(value) < 1 else 2}f}"


def mean_std(mean: float, std: float) -> str:
    """'mean ± std' with the std at the mean's precision."""
    digits = 3 if abs(mean) < 1 else 2
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if np.isfinite(std) else "")


def interval(low: float, high: float) -> str:
    return f"[{number(low)}, {number(high)}]" if np.isfinite(low) and np.isfinite(high) else ""


def _text(value: Any) -> Cell:
    return Cell(str(value))


def _numeric(value: float, text: str | None = None) -> Cell:
    return Cell(number(value) if text is None else text, float(value))


def leaderboard_table(board: pd.DataFrame, specs: Sequence[MetricSpec]) -> Table:
    """Keys, model, seeds, then 'mean ± std' per metric (its CI as detail); best bold, 'failed' for failures."""
    ok = (board["status"] != "failed").to_numpy()
    best = {spec.name: spec.best(np.where(ok, board[spec.name].to_numpy(dtype=float), np.nan)) for spec in specs}
    rows = []
    for index, row in enumerate(board.to_dict("records")):
        cells = [*(_text(row[key]) for key in KEY_COLUMNS), _text(row["model"]), _numeric(row["n_seeds"], str(row["n_seeds"]))]
        for spec in specs:
            mean, std = float(row[spec.name]), float(row[f"{spec.name}_std"])
            if not ok[index]:
                cells.append(Cell("failed"))
            elif not np.isfinite(mean):
                cells.append(Cell("n/a"))
            else:
                cells.append(Cell(mean_std(mean, std), mean, bool(best[spec.name][index]),
                                  interval(row[f"{spec.name}_ci_low"], row[f"{spec.name}_ci_high"])))
        rows.append(cells)
    return Table("leaderboard", "Leaderboard", [*KEY_COLUMNS, "model", "seeds", *(spec.label for spec in specs)], rows,
                 "Mean ± std over seeds; the best mean of each column in bold (PICP: closest to its nominal level), "
                 "reference rows (oracle, prior) included: bold claims no significant difference, the Holm-adjusted "
                 "paired tests against the baseline do.",
                 numeric=[False] * len(KEY_COLUMNS) + [False, True] + [True] * len(specs))


def ci_table(board: pd.DataFrame, specs: Sequence[MetricSpec]) -> Table:
    """Mean over seeds and its 95% patient-bootstrap CI, per model and metric."""
    rows = []
    for row in board[board["status"] != "failed"].to_dict("records"):
        cells = [_text(row["model"])]
        for spec in specs:
            mean = float(row[spec.name])
            ci = interval(row[f"{spec.name}_ci_low"], row[f"{spec.name}_ci_high"])
            cells.append(Cell(f"{number(mean)} {ci}".strip(), mean))
        rows.append(cells)
    return Table("confidence", "95% confidence intervals", ["model", *(spec.label for spec in specs)], rows,
                 "Mean over seeds [95% percentile interval]: patients are resampled with replacement (the same draws "
                 "for every seed), so an interval is the test-set sampling uncertainty of the mean.",
                 numeric=[False] + [True] * len(specs))


def per_seed_table(per_seed: pd.DataFrame, specs: Sequence[MetricSpec]) -> Table:
    rows = []
    for row in per_seed.to_dict("records"):
        failed = row["status"] != "ok"
        cells = [_text(row["model"]), _numeric(row["seed"], str(row["seed"]))]
        cells += [Cell("failed") if failed else _numeric(row[spec.name]) for spec in specs]
        cells.append(Cell("failed") if failed else _share(row["samples_outside"]))
        rows.append(cells)
    return Table("per_seed", "Per seed", ["model", "seed", *(spec.label for spec in specs), "outside [0, 100]"], rows,
                 "Each metric on one seed's test predictions; the leaderboard's mean ± std is over these rows.",
                 numeric=[False, True] + [True] * (len(specs) + 1))


def subgroup_tables(subgroups: pd.DataFrame, specs: Sequence[MetricSpec]) -> list[Table]:
    """One table per subgroup column (ambiguous, sex, age bin, view, quality): a model per row, the headline
    metrics of each group side by side, each group's size in its header."""
    labels = {spec.name: spec.label for spec in specs}
    metrics = [name for name in HEADLINE if name in subgroups.columns]
    tables = []
    present = list(dict.fromkeys(subgroups["subgroup"]))
    for subgroup in sorted(present, key=lambda name: SUBGROUP_ORDER.index(name) if name in SUBGROUP_ORDER else 99):
        frame = subgroups[subgroups["subgroup"] == subgroup]
        groups = sorted(set(frame["group"].astype(str)), key=_natural)
        sizes = {group: int(frame.loc[frame["group"].astype(str) == group, "n_items"].max()) for group in groups}
        headers = ["model"] + [f"{labels[name]}: {group} (n={sizes[group]})" for name in metrics for group in groups]
        rows = []
        for model, by_model in frame.groupby("model", sort=False):
            values = by_model.set_index(by_model["group"].astype(str))
            cells = [_text(model)]
            for name in metrics:
                for group in groups:
                    if group not in values.index:
                        cells.append(Cell("n/a"))
                        continue
                    size = int(values.loc[group, "n_items"])
                    # a model scored on other items (an external one) says its own group size
                    extra = f" (n={size})" if size != sizes[group] else ""
                    cells.append(_numeric(values.loc[group, name], number(values.loc[group, name]) + extra))
            rows.append(cells)
        tables.append(Table(f"subgroup_{subgroup}", f"Subgroup: {subgroup.replace('_', ' ')}", headers, rows,
                            level=3, numeric=[False] + [True] * (len(headers) - 1)))
    return tables


def _natural(text: str) -> tuple:
    """Sort key that puts age bins in age order ("1-4" before "12-18"): digit runs compare as numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|\D+", text))


def _share(value: float) -> Cell:
    return Cell(f"{100 * value:.1f}%" if np.isfinite(value) else "n/a", float(value))


def _extremes(low: float, high: float) -> Cell:
    if not (np.isfinite(low) and np.isfinite(high)):
        return Cell("n/a")
    return Cell(f"{number(low)} to {number(high)}", float(high))


def sample_range_table(board: pd.DataFrame) -> Table:
    low, high = (f"{bound:g}" for bound in EF_RANGE)
    rows = [[_text(row["model"]), _share(row["samples_outside"]), _extremes(row["samples_min"], row["samples_max"])]
            for row in board[board["status"] != "failed"].to_dict("records")]
    return Table("outside", f"Samples outside [{low}, {high}] EF", ["model", "share outside", "range of samples"],
                 rows, "Share of all predictive samples (every test item, every seed) that are impossible EF values; "
                 "n/a: no samples stored (an external model).", numeric=[False, True, True])


def _adjusted(p_value: float) -> Cell:
    return Cell(f"{p_value:.3g}" + ("*" if p_value < SIGNIFICANCE else ""), float(p_value))


def paired_table(paired: pd.DataFrame) -> Table:
    rows = [[_text(row.model), _text(row.baseline), _text(PAIRED_LOSSES[row.loss]),
             _numeric(row.n_patients, str(row.n_patients)), _numeric(row.mean_diff, f"{row.mean_diff:+.3f}"),
             Cell(f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]", float(row.ci_low)),
             _numeric(row.wilcoxon_p, f"{row.wilcoxon_p:.3g}"), _adjusted(row.wilcoxon_p_holm),
             _numeric(row.bootstrap_p, f"{row.bootstrap_p:.3g}"), _adjusted(row.bootstrap_p_holm)]
            for row in paired.itertuples()]
    return Table("paired", "Paired tests against the baseline", ["model", "baseline", "loss", "patients", "mean diff",
                                                                 "95% CI", "Wilcoxon p", "(Holm)", "bootstrap p",
                                                                 "(Holm)"], rows,
                 "Mean diff = model - baseline per item (negative: model better); Wilcoxon signed-rank on "
                 "per-patient means; bootstrap resamples patients. Holm: the p-value adjusted over the "
                 f"{len(paired)} comparisons of this table (per test); * marks an adjusted p below "
                 f"{SIGNIFICANCE:g}, the only p-values to read as significant.",
                 numeric=[False, False, False] + [True] * 7)


def run_tables(tables: Tables, specs: Sequence[MetricSpec]) -> list[Table]:
    """Every table of a run in reading order, leaderboard first."""
    laid_out = [leaderboard_table(tables.board, specs), ci_table(tables.board, specs),
                per_seed_table(tables.per_seed, specs)]
    groups = subgroup_tables(tables.subgroups, specs)
    if groups:
        laid_out.append(Table("subgroups", "Subgroups", [], [],
                              "Headline metrics per group, mean over seeds; n = test items in the group. All metrics "
                              "are in subgroups.csv."))
        laid_out += groups
    laid_out.append(sample_range_table(tables.board))
    if tables.paired is not None and len(tables.paired):
        laid_out.append(paired_table(tables.paired))
    return laid_out


def protocol_text(protocol: Mapping[str, Any]) -> str:
    return "; ".join(f"{key.replace('_', ' ')}: {show(value)}" for key, value in protocol.items())


def show(value: Any) -> str:
    """A protocol or manifest value as text: yes/no, comma-separated lists, the rest as is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)
