"""Standardisation of targets and features, fitted on the training split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class TargetScaler:
    """EF standardisation fitted on the training split; identity for heads trained on raw EF."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, ef: np.ndarray, raw: bool = False) -> "TargetScaler":
        if raw:
            return cls()
        std = float(np.std(ef))
        return cls(float(np.mean(ef)), std if std > 0 else 1.0)

    def standardise(self, ef):
        return (ef - self.mean) / self.std

    def to_ef(self, z):
        return z * self.std + self.mean


@dataclass(frozen=True)
class FeatureScaler:
    """Video-feature standardisation fitted on the training clips; empty is the identity.

    Encoders give features on their own scales (an area-length encoder mixes shares of a few percent
    with log volumes), and an MLP learns little from a feature whose spread is 0.02: standardised, the
    cue that the lateral wall is hidden is as loud as the rest. Imported models keep the identity,
    since they were trained on raw features.
    """

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @classmethod
    def fit(cls, features: np.ndarray) -> "FeatureScaler":
        std = features.std(axis=0)
        return cls(tuple(features.mean(axis=0).tolist()), tuple(np.where(std > 0, std, 1.0).tolist()))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if not self.mean:
            return features
        if features.shape[-1] != len(self.mean):
            raise ValueError(f"the feature scaler was fitted on {len(self.mean)} features, got {features.shape[-1]}")
        mean, std = (torch.tensor(v, dtype=features.dtype, device=features.device) for v in (self.mean, self.std))
        return (features - mean) / std


def wants_raw_targets(head: nn.Module) -> bool:
    """Heads declaring ``target_scale = "raw"`` (the faithful MCSDR) train on EF in percent."""
    return getattr(head, "target_scale", "standard") == "raw"


def feature_scaler_for(head: nn.Module, train_features: np.ndarray) -> FeatureScaler:
    """The identity for heads declaring ``feature_scale = "raw"`` (the faithful MCSDR: the reference feeds
    the encoder's features as they are); otherwise standardisation fitted on the training clips."""
    if getattr(head, "feature_scale", "standardised") == "raw":
        return FeatureScaler()
    return FeatureScaler.fit(train_features)
