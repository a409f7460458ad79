"""What every tabular-aware fusion shares: the input checks and the tabular MLP embedding.

Built with ``tabular_dim == 0`` (no patient attributes in the dataset) a fusion passes the video
feature through unchanged, so one experiment can name the same fusion for vision-only datasets.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

from benchmark.api import range_problems

# The tabular embedding's width: MCSDR's is 64 (searched 32-64); 2048, as wide as the widest video feature here.
RANGES = {"embed_dim": (1, 2048)}


def tabular_mlp(tabular_dim: int, width: int) -> nn.Sequential:
    """Linear, ReLU, Linear: MCSDR's ``tabular_encoder`` (its keys are ``0.*`` and ``2.*``)."""
    return nn.Sequential(nn.Linear(tabular_dim, width), nn.ReLU(), nn.Linear(width, width))


class TabularFusion(nn.Module, ABC):
    """Base class: ``fuse(feature, tabular)`` runs only when tabular attributes exist. ``embed_dim``, the width
    of the tabular embedding, is checked whether or not the dataset has attributes: an embedding of width 0
    would be built without complaint and pass the attributes on as nothing."""

    def __init__(self, feature_dim: int, tabular_dim: int, embed_dim: int = 1):
        super().__init__()
        if feature_dim < 1 or tabular_dim < 0:
            raise ValueError(f"{type(self).__name__}: feature_dim must be positive and tabular_dim >= 0, "
                             f"got {feature_dim} and {tabular_dim}")
        if embed_dim < 1:
            raise ValueError(f"{type(self).__name__}: embed_dim must be at least 1, got {embed_dim}")
        self.feature_dim = feature_dim
        self.tabular_dim = tabular_dim
        self.out_dim = feature_dim

    def forward(self, feature, tabular=None):
        if not self.tabular_dim:
            return feature
        if tabular is None:
            raise ValueError(f"{type(self).__name__} was built for {self.tabular_dim} tabular attributes "
                             "but received none")
        if tabular.shape[-1] != self.tabular_dim:
            raise ValueError(f"{type(self).__name__} expects {self.tabular_dim} tabular attributes, "
                             f"got a tensor of shape {tuple(tabular.shape)}")
        return self.fuse(feature, tabular.to(feature.dtype))

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        return range_problems(params, RANGES)

    @abstractmethod
    def fuse(self, feature, tabular):
        """The condition from the video feature (B, D) and the tabular attributes (B, P)."""
