"""Point-estimate metrics: MAE, RMSE, R2 and Pearson r of the point prediction (mean or median)."""
from __future__ import annotations

import numpy as np

from benchmark.api import Items, add_metric, weighted_mean, weighted_moments
from registry import hookimpl

# R2 and r of one or two items are artefacts (r = +-1 from any two points, R2 = -inf when their labels are
# equal): below this many distinct items, as in a small subgroup, they are undefined (NaN, an empty cell).
MIN_ITEMS_FOR_FIT = 3


def mae(items: Items, weights: np.ndarray) -> np.ndarray:
    return weighted_mean(items["abs_error"], weights)


def rmse(items: Items, weights: np.ndarray) -> np.ndarray:
    return np.sqrt(weighted_mean(items["abs_error"] ** 2, weights))


def r2(items: Items, weights: np.ndarray) -> np.ndarray:
    """1 - SS_res / SS_tot around the (weighted) mean of the targets; NaN below ``MIN_ITEMS_FOR_FIT``
    items or when the targets do not vary."""
    var_y, _, _ = weighted_moments(items["EF"], items["EF"], weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = 1 - weighted_mean(items["abs_error"] ** 2, weights) / var_y
    return _defined(value, weights, var_y)


def pearson(items: Items, weights: np.ndarray) -> np.ndarray:
    """Pearson r; NaN below ``MIN_ITEMS_FOR_FIT`` items or when targets or predictions do not vary."""
    var_y, var_pred, cov = weighted_moments(items["EF"], items["EF_pred"], weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = cov / np.sqrt(var_y * var_pred)
    return _defined(value, weights, np.minimum(var_y, var_pred))


def _defined(value: np.ndarray, weights: np.ndarray, variance: np.ndarray) -> np.ndarray:
    # A variance that is zero up to rounding (constant targets, a constant predictor) leaves a ratio of
    # rounding errors, which can be any number or +-inf.
    enough = (weights > 0).sum(axis=1) >= MIN_ITEMS_FOR_FIT
    varies = variance > 1e-12
    return np.where(enough & varies, value, np.nan)


@hookimpl
def register_metrics(registry):
    common = {"probabilistic": False}
    add_metric(registry, "mae", mae, label="MAE", direction="min", order=10,
               description="Mean absolute error of the point prediction (EF points).", **common)
    add_metric(registry, "rmse", rmse, label="RMSE", direction="min", order=20,
               description="Root mean squared error of the point prediction (EF points).", **common)
    add_metric(registry, "r2", r2, label="R2", direction="max", order=30,
               description="Coefficient of determination 1 - SS_res / SS_tot.", **common)
    add_metric(registry, "pearson", pearson, label="r", direction="max", order=40,
               description="Pearson correlation of point prediction and target.", **common)
