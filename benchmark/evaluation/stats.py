"""Statistics over seeds and test patients: mean/std, patient bootstrap CIs, paired tests.

Test items of one patient are correlated (several videos or visits), so every resampling draws
patients, not items: a replicate gives each item the number of times its patient was drawn as weight,
and the metric aggregates of ``benchmark.evaluation.scoring`` evaluate all replicates in one vectorised call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from benchmark.evaluation.scoring import Aggregate, Items

CI_LEVEL = 0.95


def seed_summary(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) over seeds; the std is NaN for a single seed."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore"):  # a metric undefined for a seed (NaN, inf) stays undefined
        std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        return float(values.mean()), std


def patient_counts(n_patients: int, n_boot: int, seed: int) -> np.ndarray:
    """(B, P) draw counts: each replicate draws P patients uniformly with replacement."""
    draws = np.random.default_rng(seed).integers(0, n_patients, size=(n_boot, n_patients))
    flat = (draws + n_patients * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_patients).reshape(n_boot, n_patients).astype(float)


class PatientBootstrap:
    """Patient resampling weights for the runs (one per seed) of one model, drawn once for every metric.

    The same patient draws apply to every seed, so an interval reflects test-set sampling of the
    reported mean over seeds.
    """

    def __init__(self, patients_per_run: Sequence[Sequence[str]], n_boot: int = 1000, seed: int = 0):
        patients_per_run = [np.asarray(patients, dtype=str) for patients in patients_per_run]
        universe = np.unique(np.concatenate(patients_per_run)) if patients_per_run else np.array([], dtype=str)
        counts = patient_counts(len(universe), n_boot, seed) if len(universe) and n_boot > 0 else None
        # an item's weight in a replicate is the number of times its patient was drawn
        self.weights = [] if counts is None else \
            [counts[:, np.searchsorted(universe, patients)] for patients in patients_per_run]

    def interval(self, items_per_run: Sequence[Items], aggregate: Aggregate,
                 level: float = CI_LEVEL) -> tuple[float, float]:
        """Percentile interval of the seed-averaged ``aggregate`` over the replicates."""
        if not self.weights:
            return float("nan"), float("nan")
        replicates = np.mean([aggregate(items, weights) for items, weights in zip(items_per_run, self.weights)],
                             axis=0)
        if not np.isfinite(replicates).any():
            return float("nan"), float("nan")
        with np.errstate(invalid="ignore"):  # an infinite replicate (e.g. NLL) makes that bound infinite
            low, high = np.nanquantile(replicates, [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    """Model minus baseline on one per-item loss; negative ``mean_diff`` means the model is better."""

    n_items: int
    n_patients: int
    mean_diff: float
    ci_low: float
    ci_high: float
    wilcoxon_p: float
    bootstrap_p: float


def paired_test(model_loss: np.ndarray, baseline_loss: np.ndarray, patients: Sequence[str],
                n_boot: int = 2000, seed: int = 0, level: float = CI_LEVEL) -> PairedTest:
    """Paired comparison of two per-item losses on the same items.

    Wilcoxon signed-rank on per-patient mean differences (patients are the independent units), and a
    paired patient bootstrap of the mean difference with a two-sided percentile p-value.
    """
    difference = np.asarray(model_loss, dtype=float) - np.asarray(baseline_loss, dtype=float)
    patients = np.asarray(patients, dtype=str)
    keep = np.isfinite(difference)
    difference, patients = difference[keep], patients[keep]
    universe, index = np.unique(patients, return_inverse=True)
    if len(universe) < 2:
        return PairedTest(len(difference), len(universe), float(np.mean(difference)) if len(difference)
                          else float("nan"), float("nan"), float("nan"), float("nan"), float("nan"))
    per_patient = np.bincount(index, weights=difference) / np.bincount(index)
    counts = patient_counts(len(universe), n_boot, seed)[:, index]
    replicates = counts @ difference / counts.sum(axis=1)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    # Share of replicates on each side of zero, with the +1 correction so that p is never 0.
    tail = min((replicates <= 0).sum(), (replicates >= 0).sum())
    bootstrap_p = min(1.0, 2 * (tail + 1) / (n_boot + 1))
    return PairedTest(len(difference), len(universe), float(difference.mean()), float(low), float(high),
                      _wilcoxon(per_patient), bootstrap_p)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are not part of the family).

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)); rejecting
    where the adjusted p is below alpha keeps the family-wise error rate at alpha under any dependence.
    """
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(p_values.shape, np.nan)
    present = np.flatnonzero(np.isfinite(p_values))
    order = present[np.argsort(p_values[present], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p_values[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def _wilcoxon(differences: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    if not np.any(differences != 0):
        return 1.0  # identical losses: no evidence of any difference
    return float(wilcoxon(differences).pvalue)
