"""CRPS: closed form where the head's distribution has one, else the fair ensemble estimator."""
from __future__ import annotations

import numpy as np

from benchmark.api import Items, add_metric, weighted_mean
from registry import hookimpl


def crps(items: Items, weights: np.ndarray) -> np.ndarray:
    return weighted_mean(items["crps"], weights)


@hookimpl
def register_metrics(registry):
    add_metric(registry, "crps", crps, label="CRPS", direction="min", probabilistic=True, order=50,
               description="Continuous ranked probability score (EF points); fair estimator from samples.")
