"""Vision only: the condition is the video feature; tabular attributes are ignored."""
from __future__ import annotations

from torch import nn

from registry import hookimpl


class NoFusion(nn.Module):
    """Vision only: the video feature is the condition; tabular attributes are ignored."""

    def __init__(self, feature_dim: int, tabular_dim: int = 0):
        super().__init__()
        self.out_dim = feature_dim

    def forward(self, feature, tabular=None):
        return feature


@hookimpl
def register_fusions(registry):
    registry.add("none", NoFusion, metadata={"needs_tabular": False})
