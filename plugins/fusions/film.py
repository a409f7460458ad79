"""FiLM: the tabular attributes scale and shift every channel of the video feature."""
from __future__ import annotations

from torch import nn

from registry import Categorical, hookimpl

from ._tabular import TabularFusion, tabular_mlp


class FiLMFusion(TabularFusion):
    """Feature-wise linear modulation of the video feature by the tabular attributes."""

    def __init__(self, feature_dim: int, tabular_dim: int = 0, embed_dim: int = 64):
        super().__init__(feature_dim, tabular_dim, embed_dim)
        if tabular_dim:
            self.tabular_encoder = tabular_mlp(tabular_dim, embed_dim)
            self.modulation = nn.Linear(embed_dim, 2 * feature_dim)
            # Start as the identity so training begins from the vision-only condition.
            nn.init.zeros_(self.modulation.weight)
            nn.init.zeros_(self.modulation.bias)

    def fuse(self, feature, tabular):
        scale, shift = self.modulation(self.tabular_encoder(tabular)).chunk(2, dim=1)
        return feature * (1 + scale) + shift


@hookimpl
def register_fusions(registry):
    registry.add("film", FiLMFusion, metadata={"needs_tabular": True},
                 search_space={"embed_dim": Categorical((32, 64, 128))})
