"""MCSDR's fusion: an MLP embedding of the tabular attributes concatenated to the video feature."""
from __future__ import annotations

import torch

from registry import Categorical, hookimpl

from ._tabular import TabularFusion, tabular_mlp


class ConcatFusion(TabularFusion):
    """Concatenate the video feature with an MLP embedding of the tabular attributes (MCSDR)."""

    def __init__(self, feature_dim: int, tabular_dim: int = 0, embed_dim: int = 64):
        super().__init__(feature_dim, tabular_dim, embed_dim)
        if tabular_dim:
            # The attribute name matches MCSDR's checkpoint keys (tabular_encoder.0/2.*) for import.
            self.tabular_encoder = tabular_mlp(tabular_dim, embed_dim)
            self.out_dim = feature_dim + embed_dim

    def fuse(self, feature, tabular):
        return torch.cat([feature, self.tabular_encoder(tabular)], dim=1)


@hookimpl
def register_fusions(registry):
    registry.add("concat", ConcatFusion, metadata={"needs_tabular": True},
                 search_space={"embed_dim": Categorical((32, 64, 128))})
