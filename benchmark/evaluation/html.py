"""report.html: one self-contained page of a run, for a browser (tables, every figure, the identities).

Rendered with Jinja2 from ``templates/report.html.j2`` with autoescaping on: model labels, excluded
reasons and manifest values come from run directories that may have been received from anyone, so no
text of theirs may become markup. Figures are embedded as base64 data URIs and the page declares a
Content-Security-Policy that lets it load nothing from anywhere: it works offline and leaks nothing.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from benchmark.evaluation.display import Table, run_tables, show
from benchmark.evaluation.leaderboard import MetricSpec, Tables
from benchmark.store import atomic_write_text

TEMPLATE = "report.html.j2"
# What each figure shows, by file name (trajectories_<model>.png by prefix).
CAPTIONS = {
    "posterior": ("Posteriors on the same items",
                  ("Every model's predictive density on four test items: the two with the widest and the two with the "
                   "narrowest oracle posterior (or, without an oracle, predictive spread). Dashed black: the oracle "
                   "posterior; solid black: the true EF; samples outside 0-100 are counted in the panel.")),
    "pred_vs_true": ("Predicted vs true", ("Every seed's test items pooled, one panel per model, bars: 90% "
                                           "predictive interval.")),
    "bland_altman": ("Bland-Altman", ("Difference against mean, bias and 95% limits of agreement, bars: 90% "
                                      "predictive interval.")),
    "pit": ("PIT histograms", "Flat: calibrated; U-shaped: intervals too narrow; a hump: too wide."),
    "reliability": ("Reliability diagram", "Fraction of targets below each predictive quantile, all seeds pooled."),
    "forest": ("Forest plot", ("Headline metrics per model with their 95% patient-bootstrap CI; the reference rows "
                               "(oracle, prior) as vertical lines.")),
    "trajectories": ("Diffusion trajectories", ("Reverse-diffusion paths of two test items, labelled by the "
                                                "oracle's ambiguity where the data has an oracle.")),
}


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str
    uri: str  # data:image/png;base64,...


def figure(path: Path) -> Figure:
    stem = path.stem
    key = stem if stem in CAPTIONS else stem.split("_", 1)[0]
    title, caption = CAPTIONS.get(key, (stem, ""))
    if key == "trajectories":
        title = f"{title}: {stem.split('_', 1)[1]}"
    return Figure(path.name, title, caption, "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode())


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested manifest entries as (path, text) rows: ``identity / data / fold0 / test``."""
    if isinstance(value, Mapping):
        if not value:
            return [(prefix, "none")] if prefix else []
        return [row for key, item in value.items() for row in flatten(item, f"{prefix} / {key}" if prefix else str(key))]
    return [(prefix, show(value))]


IDENTITY_KEYS = ("experiment", "created", "source", "config_hash", "split_hash", "split_sources", "data_root",
                 "synthetic", "oracle", "device", "git", "machine", "identity", "packages")


def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("benchmark.evaluation", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render_html(tables: Tables, specs: Sequence[MetricSpec], manifest: Mapping[str, Any], figures: Sequence[Path],
                excluded: pd.DataFrame, received: Sequence[str] = ()) -> str:
    """The report page. ``received``: the results in it that the machine drawing it did not make (named in a
    warning at the top)."""
    laid_out: list[Table] = run_tables(tables, specs)
    failed = tables.board[tables.board["status"] != "ok"]
    return environment().get_template(TEMPLATE).render(
        title=f"{manifest.get('experiment', 'run')}: LVEF benchmark report",
        protocol=[(key, show(value)) for key, value in manifest.get("protocol", {}).items()],
        synthetic=bool(manifest.get("synthetic")),
        received=list(received),
        tables=laid_out,
        failed=[(row.model, row.error) for row in failed.itertuples()],
        notes=tables.notes,
        figures=[figure(path) for path in figures],
        excluded_columns=list(excluded.columns),
        excluded=[[show(value) for value in row] for row in excluded.itertuples(index=False)],
        identities=[row for key in IDENTITY_KEYS if key in manifest for row in flatten(manifest[key], key)],
    )


def write_html(path: str | Path, tables: Tables, specs: Sequence[MetricSpec], manifest: Mapping[str, Any],
               figures: Sequence[Path], excluded: pd.DataFrame, received: Sequence[str] = ()) -> Path:
    return atomic_write_text(path, render_html(tables, specs, manifest, figures, excluded, received))
