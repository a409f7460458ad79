"""Cross-attention: the video feature queries one token per tabular attribute."""
from __future__ import annotations

import torch
from torch import nn

from benchmark.api import range_problems
from registry import Categorical, hookimpl

from ._tabular import TabularFusion

# Searched 2-4; heads must divide embed_dim, and 256 heads already leave 8 dimensions each at its widest.
RANGES = {"heads": (1, 256)}


class CrossAttentionFusion(TabularFusion):
    """The video feature attends over tabular attribute tokens; the result is concatenated to it."""

    def __init__(self, feature_dim: int, tabular_dim: int = 0, embed_dim: int = 64, heads: int = 4):
        super().__init__(feature_dim, tabular_dim, embed_dim)
        if heads < 1:
            raise ValueError(f"cross_attention: heads must be at least 1, got {heads}")
        if tabular_dim:
            if embed_dim % heads:
                raise ValueError(f"cross_attention: embed_dim {embed_dim} must be divisible by heads {heads}")
            # Token p = value_p * w_p + b_p: each attribute gets its own learned direction and offset,
            # so the attention can tell attributes apart without a separate position embedding.
            self.token_weight = nn.Parameter(torch.randn(tabular_dim, embed_dim) * embed_dim ** -0.5)
            self.token_bias = nn.Parameter(torch.zeros(tabular_dim, embed_dim))
            self.query = nn.Linear(feature_dim, embed_dim)
            self.attention = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
            self.norm = nn.LayerNorm(embed_dim)
            self.out_dim = feature_dim + embed_dim

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        return {**TabularFusion.parameter_problems(params), **range_problems(params, RANGES)}

    def fuse(self, feature, tabular):
        tokens = tabular.unsqueeze(-1) * self.token_weight + self.token_bias  # (B, P, E)
        query = self.query(feature).unsqueeze(1)  # (B, 1, E)
        attended, _ = self.attention(query, tokens, tokens, need_weights=False)
        return torch.cat([feature, self.norm(attended.squeeze(1) + query.squeeze(1))], dim=1)


@hookimpl
def register_fusions(registry):
    registry.add("cross_attention", CrossAttentionFusion, metadata={"needs_tabular": True},
                 search_space={"embed_dim": Categorical((32, 64)), "heads": Categorical((2, 4))})
