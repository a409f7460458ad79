"""AUROC for reduced ejection fraction (EF < 50 and EF < 40), scored by P(EF < threshold)."""
from __future__ import annotations

from functools import partial

import numpy as np

from benchmark.api import THRESHOLDS, Items, add_metric, threshold_column
from registry import hookimpl


def auroc(items: Items, weights: np.ndarray, threshold: float) -> np.ndarray:
    """P(score of a positive > score of a negative), ties counted half, pairs weighted by item weights.

    Positives are items with EF < threshold; the score is the predictive P(EF < threshold) (closed-form
    CDF, else the fraction of samples below). NaN when either class is absent.
    """
    positive = items["EF"] < threshold
    score = items[threshold_column(threshold)]
    pos_score, neg_score = score[positive], score[~positive]
    wins = (pos_score[:, None] > neg_score[None, :]) + 0.5 * (pos_score[:, None] == neg_score[None, :])
    pos_weights, neg_weights = weights[:, positive], weights[:, ~positive]
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((pos_weights @ wins) * neg_weights).sum(axis=1) / (
            pos_weights.sum(axis=1) * neg_weights.sum(axis=1))


@hookimpl
def register_metrics(registry):
    for order, threshold in enumerate(THRESHOLDS, start=90):
        add_metric(registry, f"auroc{threshold:g}", partial(auroc, threshold=threshold),
                   label=f"AUROC{threshold:g}", direction="max", probabilistic=True, order=order,
                   description=f"AUROC for EF < {threshold:g} scored by the predictive P(EF < {threshold:g}).")
