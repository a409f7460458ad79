"""Bayes-optimal posterior of EF read from a synthetic dataset's oracle.csv (no training)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn as nn

from benchmark.api import ConfigError, DataError, Predictive, mixture_predictive, synthetic_oracle
from registry import hookimpl
from registry.errors import did_you_mean


class OracleHead(nn.Module):
    """Bayes-optimal posterior of EF read from a synthetic dataset's oracle.csv (no training).

    ``information`` is "vision" (everything the video shows) or "vision_tabular" (plus the tabular row).
    The runner calls ``predict_ids`` instead of training it.
    """

    def __init__(self, condition_dim: int = 0, oracle_path: str | Path | None = None,
                 information: str = "vision_tabular"):
        super().__init__()
        if information not in synthetic_oracle.INFORMATION_SETS:
            known = synthetic_oracle.INFORMATION_SETS
            raise ConfigError(f"oracle head: information must be one of {', '.join(known)}, got {information!r}."
                              f"{did_you_mean(str(information), known)}")
        if oracle_path is None or not Path(oracle_path).is_file():
            raise DataError(f"oracle head: no oracle sidecar at {oracle_path!r}. Only synthetic datasets "
                            "(dataset \"synthetic\" or `python -m benchmark synth`) have a known posterior; "
                            "remove the oracle model for real data.")
        self.oracle_path = Path(oracle_path)
        self.information = information
        self.components, _ = synthetic_oracle.read(self.oracle_path, information)

    def predict_ids(self, ids: list[str], n: int, seed: int) -> Predictive:
        """K = ``n`` draws per item from its exact posterior, with every closed form (CRPS included)."""
        mixtures = synthetic_oracle.stack([self._components(item_id) for item_id in ids])
        samples = mixtures.sample(n, np.random.default_rng(seed))
        return mixture_predictive(mixtures.weights, mixtures.means, mixtures.stds, samples)

    def _components(self, item_id: str) -> list[tuple[float, float, float]]:
        components = self.components.get(item_id)
        if components is None:
            raise DataError(f"{self.oracle_path}: no {self.information} posterior for item {item_id!r}; "
                            "the oracle only serves the synthetic dataset it was generated with")
        return components


@hookimpl
def register_heads(registry):
    registry.add("oracle", OracleHead, metadata={"probabilistic": True, "oracle": True, "needs_training": False})
