"""Calibration error: how far the PIT distribution is from uniform, over quantile levels."""
from __future__ import annotations

import numpy as np

from benchmark.api import Items, add_metric
from registry import hookimpl

LEVELS = np.linspace(0.05, 0.95, 19)


def calibration_error(items: Items, weights: np.ndarray) -> np.ndarray:
    """mean over levels a of |P(PIT <= a) - a|: the coverage error of the predictive a-quantiles.

    PIT is the closed-form CDF at the target, or the randomised ensemble rank, so point predictions
    get a PIT of 0 or 1 and the largest errors, as they should.
    """
    below = (items["pit"][:, None] <= LEVELS[None, :]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = weights @ below / weights.sum(axis=1, keepdims=True)
    return np.abs(observed - LEVELS).mean(axis=1)


@hookimpl
def register_metrics(registry):
    add_metric(registry, "calibration", calibration_error, label="CalErr", direction="min",
               probabilistic=True, order=80,
               description="Mean |PIT coverage - level| over levels 0.05..0.95 (0 = calibrated).")
