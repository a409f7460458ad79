"""Per-item scores of a predictive distribution, and the weighted aggregates metrics are built from.

Every built-in metric is an aggregate of per-item columns (absolute error, CRPS, log density, PIT,
interval bounds, P(EF < threshold)). The columns are computed once from the ``Predictive`` while its
samples and closed forms exist, stored in each job's ``predictions.csv``, and every later number (whole
test set, subgroups, bootstrap replicates, seeds) is an aggregate of them. Aggregates take item weights
``(B, N)`` so that one call evaluates B bootstrap replicates at once; plain evaluation uses one row of
ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from benchmark.contracts import Predictive
from benchmark.predictive import fair_crps

INTERVAL_LEVELS = (0.90, 0.95)
THRESHOLDS = (50.0, 40.0)
KDE_FLOOR = 0.5  # EF points: the narrowest kernel, so a near-degenerate ensemble gets a finite density
PIT_SEED = 0  # randomised PIT is reproducible: the same predictions always give the same PIT
DENSITY_GRID = np.linspace(0.0, 100.0, 201)  # EF points where a closed-form density is stored for the figures

Items = Mapping[str, np.ndarray]
Aggregate = Callable[[Items, np.ndarray], np.ndarray]


@dataclass
class ItemScores:
    """Per-item columns (each (N,)) and, per column, why it is NaN or how it was computed."""

    columns: dict[str, np.ndarray]
    notes: dict[str, str] = field(default_factory=dict)


def interval_columns(level: float) -> tuple[str, str]:
    percent = round(level * 100)
    return f"lo{percent}", f"hi{percent}"


def threshold_column(threshold: float) -> str:
    return f"p_lt{threshold:g}"


# --------------------------------------------------------------------------- CRPS


# --------------------------------------------------------------------------- densities and PIT
def kde_log_density(samples: np.ndarray, y: np.ndarray, floor: float = KDE_FLOOR) -> np.ndarray:
    """log of a Gaussian KDE of each item's samples at y, Silverman's bandwidth, at least ``floor``.

    Items whose samples are all equal have no density: NaN.
    """
    samples = np.asarray(samples, dtype=float)
    k = samples.shape[1]
    std = samples.std(axis=1, ddof=1) if k > 1 else np.zeros(len(samples))
    q75, q25 = np.percentile(samples, [75, 25], axis=1)
    spread = np.minimum(std, (q75 - q25) / 1.349)
    spread = np.where(spread > 0, spread, std)  # a zero IQR with spread elsewhere falls back to std
    bandwidth = np.maximum(0.9 * spread * k ** (-0.2), floor)
    z = (np.asarray(y, dtype=float)[:, None] - samples) / bandwidth[:, None]
    log_kernel = -0.5 * z**2
    peak = log_kernel.max(axis=1, keepdims=True)
    log_mean = peak[:, 0] + np.log(np.exp(log_kernel - peak).mean(axis=1))
    log_density = log_mean - np.log(bandwidth * math.sqrt(2 * math.pi))
    return np.where(np.ptp(samples, axis=1) > 0, log_density, np.nan)  # exact test, unlike std > 0


def randomised_pit(samples: np.ndarray, y: np.ndarray, seed: int = PIT_SEED) -> np.ndarray:
    """PIT from an ensemble: (#{X < y} + U (#{X = y} + 1)) / (K + 1), U ~ Uniform(0, 1).

    For a calibrated ensemble the rank of y among the K + 1 values is uniform; the uniform jitter
    spreads ties (point masses, duplicated samples) so the PIT is exactly Uniform(0, 1).
    """
    samples = np.asarray(samples, dtype=float)
    y = np.asarray(y, dtype=float)[:, None]
    below = (samples < y).sum(axis=1)
    ties = (samples == y).sum(axis=1)
    jitter = np.random.default_rng(seed).uniform(size=len(samples))
    return (below + jitter * (ties + 1)) / (samples.shape[1] + 1)


# --------------------------------------------------------------------------- per-item scores
# The columns ``item_scores`` gives, in its order: every job's predictions.csv holds them all.
SCORE_COLUMNS = ("EF", "EF_pred", "abs_error", "sd", "crps", "nll", "nll_kde", "pit",
                 *(name for level in INTERVAL_LEVELS for name in interval_columns(level)),
                 *(threshold_column(threshold) for threshold in THRESHOLDS))


def item_scores(y: np.ndarray, predictive: Predictive) -> ItemScores:
    """Every per-item column the built-in metrics aggregate, with notes on how each was obtained."""
    y = np.asarray(y, dtype=float)
    samples = np.asarray(predictive.samples, dtype=float)
    point = np.asarray(predictive.point, dtype=float)
    if samples.ndim != 2 or samples.shape[0] != len(y) or point.shape != y.shape:
        raise ValueError(f"predictive shapes samples {samples.shape}, point {point.shape} do not match "
                         f"{len(y)} targets; samples must be (N, K) and point (N,)")
    columns: dict[str, np.ndarray] = {"EF": y, "EF_pred": point, "abs_error": np.abs(point - y),
                                      "sd": samples.std(axis=1, ddof=1) if samples.shape[1] > 1 else 0 * y}
    notes: dict[str, str] = {}
    if predictive.crps is not None:
        columns["crps"], notes["crps"] = np.asarray(predictive.crps(y), dtype=float), "closed form"
    else:
        columns["crps"], notes["crps"] = fair_crps(samples, y), f"fair ensemble estimator, K={samples.shape[1]}"
    if predictive.log_prob is not None:
        columns["nll"], notes["nll"] = -np.asarray(predictive.log_prob(y), dtype=float), "closed form"
    else:
        columns["nll"], notes["nll"] = np.full(len(y), np.nan), "no closed-form density (see NLL (KDE))"
    columns["nll_kde"] = -kde_log_density(samples, y)
    notes["nll_kde"] = (f"Gaussian KDE of the samples, Silverman bandwidth >= {KDE_FLOOR:g}"
                        if np.isfinite(columns["nll_kde"]).any() else
                        "undefined: point predictions (samples have zero spread)")
    if predictive.cdf is not None:
        columns["pit"], notes["pit"] = np.asarray(predictive.cdf(y), dtype=float), "closed-form CDF"
    else:
        columns["pit"], notes["pit"] = randomised_pit(samples, y), "randomised ensemble rank"
    for level in INTERVAL_LEVELS:
        low, high = interval_columns(level)
        # Weibull plotting positions p (K + 1): the k-th of K samples lies below a fraction k / (K + 1) of
        # the predictive on average, so the interval's expected coverage is the nominal level. The default
        # (linear, p (K - 1) + 1) covers 81% at "90%" for K = 20, even for the exact posterior.
        columns[low], columns[high] = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1,
                                                  method="weibull")
    for threshold in THRESHOLDS:
        if predictive.cdf is not None:
            probability = predictive.cdf(np.full(len(y), threshold))
        else:
            probability = (samples < threshold).mean(axis=1)
        columns[threshold_column(threshold)] = np.asarray(probability, dtype=float)
    return ItemScores(columns, notes)


def grid_density(predictive: Predictive, grid: np.ndarray = DENSITY_GRID) -> np.ndarray | None:
    """(N, G) density of each item's predictive on ``grid``, or None without a closed form. Stored with the
    samples, because the figures are drawn later (by ``report``) when the head is gone."""
    if predictive.log_prob is None:
        return None
    n = len(predictive.point)
    return np.exp(np.stack([np.asarray(predictive.log_prob(np.full(n, x)), dtype=float) for x in grid], axis=1))


def evaluate_aggregate(aggregate: Aggregate, y: np.ndarray, predictive: Predictive) -> float:
    """The metric value on the whole set: the aggregate with unit weights."""
    columns = item_scores(y, predictive).columns
    return float(aggregate(columns, np.ones((1, len(y))))[0])


# --------------------------------------------------------------------------- weighted statistics
def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) weighted means of one (N,) column under item weights (B, N)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return weights @ np.asarray(values, dtype=float) / weights.sum(axis=1)


def weighted_moments(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """(B,) weighted variances of x and y and their covariance (centred first for precision)."""
    x = np.asarray(x, dtype=float) - np.mean(x)
    y = np.asarray(y, dtype=float) - np.mean(y)
    mean_x, mean_y = weighted_mean(x, weights), weighted_mean(y, weights)
    var_x = weighted_mean(x * x, weights) - mean_x**2
    var_y = weighted_mean(y * y, weights) - mean_y**2
    cov = weighted_mean(x * y, weights) - mean_x * mean_y
    return var_x, var_y, cov


def add_metric(registry, name: str, aggregate: Aggregate, *, label: str, direction: str,
               probabilistic: bool, order: int, description: str, target: float | None = None,
               ranked: bool = True, needs: tuple[str, ...] = ()) -> None:
    """Register ``aggregate`` as a metric ``(y, predictive) -> float``.

    ``direction`` is "min", "max", or "target" (best closest to ``target``, e.g. interval coverage).
    ``ranked`` False: the leaderboard marks no best value (a quantity only meaningful beside another).
    ``needs``: what a head must have for the metric to be a number rather than NaN, each a closed form it
    defines (``"log_prob"``) or a metadata flag it sets (``"probabilistic"``); `validate` refuses it as
    ``tune.metric`` for a tuned model whose head lacks one.
    The metadata keeps the aggregate so the leaderboard can recompute the metric from stored per-item
    columns (subgroups, bootstrap), and ``order`` places its column.
    """
    if (direction == "target") != (target is not None):
        raise ValueError(f"metric {name!r}: a target value goes with direction 'target' and only with it")
    def metric(y: np.ndarray, predictive: Predictive) -> float:
        return evaluate_aggregate(aggregate, y, predictive)

    metric.__name__ = name
    # The metric's code is its aggregate's: its module is what a record's source digest reads (the report is redrawn
    # and a study retuned when that file changes), not this one, which every metric would then share.
    metric.__module__ = getattr(aggregate, "__module__", metric.__module__)
    registry.add(name, metric, description=description,
                 metadata={"label": label, "direction": direction, "probabilistic": probabilistic,
                           "order": order, "aggregate": aggregate, "target": target,
                           "ranked": ranked, "needs": list(needs)})
