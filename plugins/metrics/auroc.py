"""AUROC for reduced ejection fraction (EF < 50 and EF < 40), scored by P(EF < threshold), ties broken
by the negated point estimate."""
from __future__ import annotations

from functools import partial

import numpy as np

from benchmark.api import THRESHOLDS, Items, add_metric, threshold_column
from registry import hookimpl


def auroc(items: Items, weights: np.ndarray, threshold: float) -> np.ndarray:
    """P(score of a positive > score of a negative), ties counted half, pairs weighted by item weights.

    Positives are items with EF < threshold. Items are ranked by the predictive P(EF < threshold)
    (closed-form CDF, else the fraction of samples below), and items of equal probability by -EF_pred:
    a point head's probabilities are all 0 or 1 and K samples give only K + 1 levels, so without the
    tie-break such heads would be ranked on a coarse score while continuous heads are not. For a point
    head the order is exactly that of -EF_pred. NaN when either class is absent.
    """
    positive = items["EF"] < threshold
    probability, lower_point = items[threshold_column(threshold)], -items["EF_pred"]

    def compare(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = score[positive][:, None], score[~positive][None, :]
        return pos > neg, pos == neg

    (above, tied), (above_point, tied_point) = compare(probability), compare(lower_point)
    wins = above + tied * (above_point + 0.5 * tied_point)
    pos_weights, neg_weights = weights[:, positive], weights[:, ~positive]
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((pos_weights @ wins) * neg_weights).sum(axis=1) / (
            pos_weights.sum(axis=1) * neg_weights.sum(axis=1))


@hookimpl
def register_metrics(registry):
    for order, threshold in enumerate(THRESHOLDS, start=90):
        add_metric(registry, f"auroc{threshold:g}", partial(auroc, threshold=threshold),
                   label=f"AUROC{threshold:g}", direction="max", probabilistic=True, order=order,
                   description=f"AUROC for EF < {threshold:g} scored by the predictive P(EF < {threshold:g}), "
                               "ties broken by the negated point estimate.")
