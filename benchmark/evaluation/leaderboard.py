"""Leaderboard, subgroup table and paired tests from per-job results, and the files that hold them.

Input: one ``JobResult`` per (model, seed) job with its per-item frame (``predictions.csv``). Every
metric is recomputed from the per-item columns by the aggregate in its registry metadata, so the whole
test set, subgroups and bootstrap replicates all come from the same stored numbers and ``report``
rebuilds identical tables. Output file contract (run directory):

- ``leaderboard.csv`` / ``.json``: dataset, encoder, fusion, head, n_seeds, then ``<metric>`` and
  ``<metric>_std`` for each metric (registry names), then model, status, error,
  ``<metric>_ci_low`` / ``<metric>_ci_high`` (95% patient-bootstrap CI of the mean over seeds), and
  ``samples_outside`` / ``samples_min`` / ``samples_max`` (share of the predictive samples outside
  ``EF_RANGE``, and their extremes). Each ``.json`` row also carries ``per_seed``, ``subgroups`` and
  ``paired_tests``: that model's rows of the tables below.
- ``leaderboard.md`` / ``.tex``: the same, labelled, mean ± std, best value bold, with a protocol line;
  the ``.md`` adds the CIs, a per-seed table, the subgroup tables, the samples outside ``EF_RANGE`` and
  the paired tests (``benchmark.evaluation.display`` lays them out, for the HTML report too).
- ``subgroups.csv``: dataset, encoder, fusion, head, subgroup, group, then ``<metric>``/``<metric>_std``,
  then model, n_items, n_seeds.
- ``paired_tests.csv``: each model against the baseline on per-item absolute error and CRPS, each p-value
  with its Holm-adjusted value over the family of comparisons in the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.evaluation.predictions_file import subgroup_columns
from benchmark.evaluation.stats import PatientBootstrap, holm, paired_test, seed_summary

KEY_COLUMNS = ("dataset", "encoder", "fusion", "head")
PAIRED_LOSSES = {"abs_error": "absolute error", "crps": "CRPS"}
SCORE_NOTES = ("crps", "nll", "nll_kde", "pit")
P_VALUES = ("wilcoxon_p", "bootstrap_p")  # each gets a Holm-adjusted column ``<name>_holm`` beside it
SIGNIFICANCE = 0.05
HEADLINE = ("mae", "crps", "calibration")  # the metrics of the subgroup tables and the forest plot
EF_RANGE = (0.0, 100.0)  # EF is a percentage: samples outside it are impossible values
SAMPLE_COLUMNS = ("samples_outside", "samples_min", "samples_max")


@dataclass(frozen=True)
class SampleRange:
    """How many of a job's predictive samples fall outside ``EF_RANGE``, and the extremes of all of them."""

    count: int
    outside: int
    low: float
    high: float

    @classmethod
    def of(cls, samples: np.ndarray) -> SampleRange:
        samples = np.asarray(samples, dtype=float)
        outside = int(((samples < EF_RANGE[0]) | (samples > EF_RANGE[1])).sum())
        if not samples.size:
            return cls(0, 0, float("nan"), float("nan"))
        return cls(int(samples.size), outside, float(np.nanmin(samples)), float(np.nanmax(samples)))

    @staticmethod
    def pooled(ranges: Sequence[SampleRange]) -> SampleRange | None:
        """One range over several jobs' samples (the splits of a seed, the seeds of a model)."""
        if not ranges:
            return None
        return SampleRange(sum(r.count for r in ranges), sum(r.outside for r in ranges),
                           float(np.nanmin([r.low for r in ranges])), float(np.nanmax([r.high for r in ranges])))

    @property
    def share(self) -> float:
        return self.outside / self.count if self.count else float("nan")


@dataclass
class JobResult:
    """What one finished (or failed) job contributes to the tables."""

    dataset: str
    encoder: str
    fusion: str
    head: str
    model: str  # the experiment's model label (unique per experiment)
    seed: int
    status: Literal["ok", "failed"] = "ok"
    error: str = ""
    items: pd.DataFrame | None = None  # id, patient, item score columns, subgroup columns
    notes: Mapping[str, str] = field(default_factory=dict)  # ItemScores.notes
    samples: SampleRange | None = None  # None where no samples were stored (an external model)

    def keys(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in KEY_COLUMNS}


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str
    direction: str  # "min", "max" or "target"
    aggregate: Any = None  # (items, weights (B, N)) -> (B,); every registered metric has one (its contract)
    target: float | None = None
    ranked: bool = True

    def best(self, values: np.ndarray) -> np.ndarray:
        """Mask of the best finite values (ties all best); none for an unranked metric."""
        values = np.asarray(values, dtype=float)
        finite = np.isfinite(values)
        if not finite.any() or not self.ranked:
            return np.zeros(len(values), dtype=bool)
        badness = {"min": values, "max": -values}.get(self.direction)
        if badness is None:
            badness = np.abs(values - self.target)
        return finite & np.isclose(badness, np.nanmin(np.where(finite, badness, np.nan)))


def metric_specs(records: Iterable[Any] | None = None) -> list[MetricSpec]:
    """Metric specs from registry records (default: every registered metric), in column order."""
    if records is None:
        import registry

        records = registry.default().records("metric")
    records = sorted(records, key=lambda record: (record.metadata.get("order", 1000), record.name))
    return [MetricSpec(record.name, record.metadata.get("label", record.name),
                       record.metadata.get("direction", "min"), record.metadata.get("aggregate"),
                       record.metadata.get("target"), record.metadata.get("ranked", True))
            for record in records]


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy(dtype=float) for name in frame.columns
            if pd.api.types.is_numeric_dtype(frame[name])}


def _value(spec: MetricSpec, columns: Mapping[str, np.ndarray]) -> float:
    """An aggregate metric on a set of item columns (NaN for an empty set)."""
    size = len(columns["EF"]) if "EF" in columns else 0
    return float(spec.aggregate(columns, np.ones((1, size)))[0]) if size else float("nan")


# --------------------------------------------------------------------------- tables
def _metric_columns(specs: Sequence[MetricSpec], suffixes: Sequence[str] = ("", "_std")) -> list[str]:
    return [f"{spec.name}{suffix}" for spec in specs for suffix in suffixes]


def _by_model(results: Sequence[JobResult]) -> dict[str, list[JobResult]]:
    groups: dict[str, list[JobResult]] = {}
    for result in results:
        groups.setdefault(result.model, []).append(result)
    return {model: sorted(group, key=lambda r: r.seed) for model, group in groups.items()}


def build_leaderboard(results: Sequence[JobResult], specs: Sequence[MetricSpec], n_boot: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """One row per model: contract columns, then model, status, error and CI columns."""
    rows = []
    for model, group in _by_model(results).items():
        ok = [result for result in group if result.status == "ok"]
        failed = [result for result in group if result.status != "ok"]
        row: dict[str, Any] = {**group[0].keys(), "n_seeds": len(ok)}
        extra: dict[str, Any] = {"model": model,
                                 "status": "failed" if not ok else "partial" if failed else "ok",
                                 "error": "; ".join(f"seed {r.seed}: {r.error}" for r in failed)}
        with_items = [r for r in ok if r.items is not None]
        columns = [_columns(r.items) for r in with_items]
        bootstrap = PatientBootstrap([r.items["patient"] for r in with_items], n_boot=n_boot, seed=seed)
        for spec in specs:
            values, interval = [_value(spec, c) for c in columns], bootstrap.interval(columns, spec.aggregate)
            row[spec.name], row[f"{spec.name}_std"] = seed_summary(values)
            extra[f"{spec.name}_ci_low"], extra[f"{spec.name}_ci_high"] = interval
        pooled = SampleRange.pooled([r.samples for r in ok if r.samples is not None])
        if pooled is not None:
            extra.update(samples_outside=pooled.share, samples_min=pooled.low, samples_max=pooled.high)
        rows.append({**row, **extra})
    columns = [*KEY_COLUMNS, "n_seeds", *_metric_columns(specs), "model", "status", "error",
               *_metric_columns(specs, ("_ci_low", "_ci_high")), *SAMPLE_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def build_per_seed(results: Sequence[JobResult], specs: Sequence[MetricSpec]) -> pd.DataFrame:
    """One row per model x seed: each metric on that seed's test items, and its samples outside ``EF_RANGE``."""
    rows = []
    for model, group in _by_model(results).items():
        for result in group:
            row: dict[str, Any] = {"model": model, "seed": result.seed, "status": result.status}
            ok = result.status == "ok"
            columns = _columns(result.items) if ok and result.items is not None else None
            for spec in specs:
                row[spec.name] = _value(spec, columns) if columns is not None else np.nan
            row["samples_outside"] = result.samples.share if ok and result.samples is not None else np.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "seed", "status", *(spec.name for spec in specs), "samples_outside"])


def build_subgroups(results: Sequence[JobResult], specs: Sequence[MetricSpec],
                    subgroups: Sequence[str] | None = None) -> pd.DataFrame:
    """Metrics per subgroup value: one row per model x subgroup x group (mean and std over seeds). ``subgroups``:
    the subgroup columns to read; by default every one the stored per-item frames have (a plugin dataset's too)."""
    rows = []
    for model, group in _by_model(results).items():
        ok = [result for result in group if result.status == "ok" and result.items is not None]
        if not ok:
            continue
        columns = [_columns(r.items) for r in ok]
        names = subgroup_columns(ok[0].items) if subgroups is None else subgroups
        for subgroup in [name for name in names if name in ok[0].items.columns]:
            labels = [r.items[subgroup].astype(str).where(r.items[subgroup].notna()).to_numpy() for r in ok]
            for value in sorted({label for run in labels for label in run if label is not None}):
                masks = [run == value for run in labels]
                subsets = [{name: values[mask] for name, values in c.items()} for c, mask in zip(columns, masks)]
                row: dict[str, Any] = {**ok[0].keys(), "subgroup": subgroup, "group": value}
                for spec in specs:
                    row[spec.name], row[f"{spec.name}_std"] = seed_summary([_value(spec, c) for c in subsets])
                rows.append({**row, "model": model, "n_items": int(masks[0].sum()), "n_seeds": len(ok)})
    columns = [*KEY_COLUMNS, "subgroup", "group", *_metric_columns(specs), "model", "n_items", "n_seeds"]
    return pd.DataFrame(rows, columns=columns)


def build_paired_tests(results: Sequence[JobResult], baseline: str, n_boot: int = 2000,
                       seed: int = 0) -> pd.DataFrame:
    """Each model against ``baseline`` on per-item losses averaged over seeds, matched by item id.

    The family for the Holm adjustment is every (model, loss) row of the table, one family per test:
    the Wilcoxon and bootstrap p-values are two tests of the same hypotheses, not more hypotheses.
    """
    groups = _by_model(results)
    columns = [*KEY_COLUMNS, "model", "baseline", "loss", "n_items", "n_patients", "mean_diff",
               "ci_low", "ci_high", *(name + suffix for name in P_VALUES for suffix in ("", "_holm"))]
    losses = {model: _mean_losses(group) for model, group in groups.items()}
    if losses.get(baseline) is None:
        return pd.DataFrame(columns=columns)
    rows = []
    for model, table in losses.items():
        if model == baseline or table is None:
            continue
        paired = table.merge(losses[baseline], left_index=True, right_index=True, suffixes=("_model", "_base"))
        for loss in PAIRED_LOSSES:
            test = paired_test(paired[f"{loss}_model"].to_numpy(), paired[f"{loss}_base"].to_numpy(),
                               paired["patient_model"].to_numpy(), n_boot=n_boot, seed=seed)
            rows.append({**groups[model][0].keys(), "model": model, "baseline": baseline, "loss": loss,
                         **vars(test)})
    table = pd.DataFrame(rows, columns=columns)
    for name in P_VALUES:
        table[f"{name}_holm"] = holm(table[name].to_numpy(dtype=float))
    return table


def _mean_losses(group: Sequence[JobResult]) -> pd.DataFrame | None:
    frames = [r.items[["id", "patient", *PAIRED_LOSSES]] for r in group
              if r.status == "ok" and r.items is not None]
    if not frames:
        return None
    stacked = pd.concat(frames).astype({"id": str, "patient": str})
    return stacked.groupby("id").agg({"patient": "first", **{loss: "mean" for loss in PAIRED_LOSSES}})


# --------------------------------------------------------------------------- all tables of a run
@dataclass
class Tables:
    """Every table of a run, built once: the files and the HTML report all show these."""

    board: pd.DataFrame  # build_leaderboard
    per_seed: pd.DataFrame  # build_per_seed
    subgroups: pd.DataFrame  # build_subgroups
    paired: pd.DataFrame | None  # build_paired_tests, None without a baseline
    notes: dict[str, dict[str, str]]  # per model: how its scores were computed (SCORE_NOTES)


def build_tables(results: Sequence[JobResult], specs: Sequence[MetricSpec], baseline: str = "", n_boot: int = 1000,
                 seed: int = 0, subgroups: Sequence[str] | None = None) -> Tables:
    notes = {model: {key: text for key, text in group[0].notes.items() if key in SCORE_NOTES}
             for model, group in _by_model([r for r in results if r.status == "ok"]).items()}
    return Tables(board=build_leaderboard(results, specs, n_boot=n_boot, seed=seed),
                  per_seed=build_per_seed(results, specs),
                  subgroups=build_subgroups(results, specs, subgroups),
                  paired=build_paired_tests(results, baseline, n_boot=max(n_boot, 1), seed=seed) if baseline else None,
                  notes=notes)
