"""Split-conformal calibration of a predictive's central intervals on VAL (``[[models]] conformal = true``).

The intervals scored are the sample quantiles at (1 -+ level) / 2 (``scoring.item_scores``). Stretching an
item's samples about their median by a factor c stretches those quantiles by exactly c, so the conformity
score of a VAL item is the smallest c whose stretched interval holds its target: conformalised quantile
regression (Romano et al. 2019) with the residual normalised by the item's own half-width, in place of its
additive margin, so that the calibration is a transform of the samples. With n VAL items, the
ceil((n + 1) level)-th smallest score gives TEST coverage of at least ``level`` for data exchangeable with
VAL; one factor, the largest over ``INTERVAL_LEVELS``, serves every level at once.
The closed forms follow the same affine map exactly (CRPS is scale-equivariant).
"""
from __future__ import annotations

import math

import numpy as np

from benchmark.contracts import Predictive
from benchmark.evaluation.scoring import INTERVAL_LEVELS


def conformity_scores(samples: np.ndarray, y: np.ndarray, level: float) -> np.ndarray:
    """Per item, the stretch about the sample median its central ``level`` interval needs to hold y."""
    median = np.median(samples, axis=1)
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=1, method="weibull")
    below, above = median - low, high - median
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.where(y < median, (median - y) / below, (y - median) / above)
    return np.where(np.isnan(needed), 0.0, needed)  # 0 / 0: a target at a zero-width median is covered


def calibrated_stretch(samples: np.ndarray, y: np.ndarray, levels=INTERVAL_LEVELS) -> float:
    """The split-conformal stretch factor for every level in ``levels`` (may be below 1: narrowing)."""
    n = len(y)
    factors = []
    for level in levels:
        rank = math.ceil((n + 1) * level)
        if rank > n:
            raise ValueError(f"split conformal at level {level} needs at least {math.ceil(level / (1 - level))} "
                             f"calibration items, got {n}")
        factors.append(np.sort(conformity_scores(samples, y, level))[rank - 1])
    stretch = float(max(factors))
    if not 0 < stretch < math.inf:
        raise ValueError(f"split conformal: stretch {stretch} from VAL; predictives of zero spread (point "
                         "predictions) cannot be calibrated by stretching")
    return stretch


def stretched(predictive: Predictive, stretch: float) -> Predictive:
    """The predictive of m + stretch (Y - m) per item, m the median of its samples; the point is kept."""
    median = np.median(predictive.samples, axis=1)

    def back(y: np.ndarray) -> np.ndarray:  # the original predictive's value for a stretched one's y
        return median + (np.asarray(y, dtype=float) - median) / stretch

    return Predictive(
        samples=median[:, None] + stretch * (predictive.samples - median[:, None]),
        point=predictive.point,
        mean=None if predictive.mean is None else median + stretch * (predictive.mean - median),
        std=None if predictive.std is None else stretch * predictive.std,
        log_prob=None if predictive.log_prob is None else lambda y: predictive.log_prob(back(y)) - math.log(stretch),
        cdf=None if predictive.cdf is None else lambda y: predictive.cdf(back(y)),
        crps=None if predictive.crps is None else lambda y: stretch * predictive.crps(back(y)),
    )
