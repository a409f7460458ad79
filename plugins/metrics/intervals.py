"""Central prediction intervals from the samples: coverage (PICP) and mean width at 90% and 95%."""
from __future__ import annotations

from functools import partial

import numpy as np

from benchmark.api import INTERVAL_LEVELS, Items, add_metric, interval_columns, weighted_mean
from registry import hookimpl


def coverage(items: Items, weights: np.ndarray, level: float) -> np.ndarray:
    low, high = (items[column] for column in interval_columns(level))
    inside = (low <= items["EF"]) & (items["EF"] <= high)
    return weighted_mean(inside.astype(float), weights)


def width(items: Items, weights: np.ndarray, level: float) -> np.ndarray:
    low, high = (items[column] for column in interval_columns(level))
    return weighted_mean(high - low, weights)


@hookimpl
def register_metrics(registry):
    for offset, level in enumerate(INTERVAL_LEVELS):
        percent = round(level * 100)
        # Coverage is best at its nominal level, not at an extreme: direction "target".
        add_metric(registry, f"picp{percent}", partial(coverage, level=level), label=f"PICP{percent}",
                   direction="target", target=level, probabilistic=True, order=70 + 2 * offset,
                   description=f"Fraction of targets inside the central {percent}% sample interval.")
        # Narrower is better only at equal coverage (a point head has width 0): no best is marked.
        add_metric(registry, f"width{percent}", partial(width, level=level), label=f"Width{percent}",
                   direction="min", probabilistic=True, order=71 + 2 * offset, ranked=False,
                   description=f"Mean width of the central {percent}% sample interval (EF points).")
