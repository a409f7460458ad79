"""Point-estimate metrics: MAE, RMSE, R2 and Pearson r of the point prediction (mean or median)."""
from __future__ import annotations

import numpy as np

from benchmark.api import Items, add_metric, weighted_mean, weighted_moments
from registry import hookimpl


def mae(items: Items, weights: np.ndarray) -> np.ndarray:
    return weighted_mean(items["abs_error"], weights)


def rmse(items: Items, weights: np.ndarray) -> np.ndarray:
    return np.sqrt(weighted_mean(items["abs_error"] ** 2, weights))


def r2(items: Items, weights: np.ndarray) -> np.ndarray:
    """1 - SS_res / SS_tot around the (weighted) mean of the targets."""
    var_y, _, _ = weighted_moments(items["EF"], items["EF"], weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - weighted_mean(items["abs_error"] ** 2, weights) / var_y


def pearson(items: Items, weights: np.ndarray) -> np.ndarray:
    var_y, var_pred, cov = weighted_moments(items["EF"], items["EF_pred"], weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(var_y * var_pred)


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
