"""The training split's EF distribution, whatever the video: the floor every head must beat."""
from __future__ import annotations

import numpy as np
import torch.nn as nn

from benchmark.api import ConfigError, Predictive, empirical_predictive
from registry import hookimpl


class PriorHead(nn.Module):
    """Predicts, for every test item, the empirical distribution of the training split's EF (its mean
    as the point). It sees no condition and nothing of VAL or TEST; the runner builds it with
    ``training_ef`` and calls ``predict_ids`` instead of training it. Every leaderboard has this row."""

    def __init__(self, condition_dim: int = 0, training_ef: np.ndarray | None = None):
        super().__init__()
        if training_ef is None or len(training_ef) == 0:
            raise ConfigError("prior head: it needs the training split's EF values (training_ef); the runner "
                              "passes them, a model built elsewhere must too")
        self.training_ef = np.asarray(training_ef, dtype=float)

    def predict_ids(self, ids: list[str], n: int, seed: int) -> Predictive:
        return empirical_predictive(self.training_ef, len(ids), n, seed)


@hookimpl
def register_heads(registry):
    registry.add("prior", PriorHead, metadata={"probabilistic": True, "needs_training": False},
                 description="The training split's EF distribution for every item (no input): the trivial floor.")
