"""Negative log-likelihood: exact from the head's log density, and a KDE estimate from samples.

Two metrics so that a number is never ambiguous: ``nll`` exists only for heads with a closed-form
density (NaN otherwise); ``nll_kde`` estimates it the same way for every head with spread, which
makes it comparable across heads (NaN for point predictions, whose density is undefined).
"""
from __future__ import annotations

import numpy as np

from benchmark.api import Items, add_metric, weighted_mean
from registry import hookimpl


def nll(items: Items, weights: np.ndarray) -> np.ndarray:
    return weighted_mean(items["nll"], weights)


def nll_kde(items: Items, weights: np.ndarray) -> np.ndarray:
    return weighted_mean(items["nll_kde"], weights)


@hookimpl
def register_metrics(registry):
    add_metric(registry, "nll", nll, label="NLL", direction="min", probabilistic=True, order=60, needs=("log_prob",),
               description="Negative log-likelihood from the head's closed-form density (nats).")
    add_metric(registry, "nll_kde", nll_kde, label="NLL (KDE)", direction="min", probabilistic=True,
               order=61, needs=("probabilistic",),
               description="Negative log-likelihood of a Gaussian KDE of the samples (nats).")
