"""Noise predictors of the MCSDR head: eps from (noisy target y_t, time features, condition).

Each predictor splits its work in two so sampling is cheap:
``prepare(condition (B, D))`` does everything that depends only on the condition, once per condition;
``forward(y_t (B, K), time (B or 1, K or 1, E), memory)`` does the rest for all K samples of a step.
The first layer ``map_y_t`` acts on [y_t, time]; it is applied as ``y_t * w_y + (W_t time + b)`` so the
time part is computed once per step and broadcast, never on a (B*K, 1+E) concatenation.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .mlp import MLPTrunk


class NoisePredictor(nn.Module):
    """Shared input projections: ``map_y_t`` on [y_t, time] and ``map_cond`` on the condition."""

    def __init__(self, condition_dim: int, time_dim: int, width: int, cond_width: int):
        super().__init__()
        self.map_y_t = nn.Linear(1 + time_dim, width)
        self.map_cond = nn.Linear(condition_dim, cond_width)

    def query(self, y_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """map_y_t([y_t, time]) for y_t (B, K) and time (B or 1, K or 1, E) -> (B, K, width)."""
        weight = self.map_y_t.weight
        return y_t[..., None] * weight[:, 0] + F.linear(time, weight[:, 1:], self.map_y_t.bias)


class AttentionLayers:
    """Mixin: cross-attention from each sample's query to the condition tokens, residual + LayerNorm,
    then a 4x feed-forward layer, residual + LayerNorm (post-norm, as in the reference). A mixin so the
    legacy predictor keeps these parameters at its top level, where the reference has them."""

    def build_attention(self, width: int, heads: int) -> None:
        if width % heads:
            raise ValueError(f"attention width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.cross_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def _projections(self):
        return self.cross_attention.in_proj_weight.chunk(3), self.cross_attention.in_proj_bias.chunk(3)

    def keys_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition-only half of attention: tokens (B, S, W) -> keys, values (B, heads, S, W/heads)."""
        (_, w_k, w_v), (_, b_k, b_v) = self._projections()
        split = lambda x: x.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        return split(F.linear(tokens, w_k, b_k)), split(F.linear(tokens, w_v, b_v))

    def attend(self, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of h (B, K, W) over precomputed keys/values, with output projection."""
        (w_q, _, _), (b_q, _, _) = self._projections()
        q = F.linear(h, w_q, b_q).unflatten(-1, (self.heads, -1))  # (B, K, heads, d)
        scores = torch.einsum("bkhd,bhsd->bkhs", q, keys) / math.sqrt(q.shape[-1])
        mixed = torch.einsum("bkhs,bhsd->bkhd", scores.softmax(dim=-1), values).flatten(-2)
        return self.cross_attention.out_proj(mixed)

    def single_token_attention(self, token: torch.Tensor) -> torch.Tensor:
        """With one key token the softmax is 1, so attention is out_proj(value(token)) whatever the query."""
        (_, _, w_v), (_, _, b_v) = self._projections()
        return self.cross_attention.out_proj(F.linear(token, w_v, b_v))

    def mix(self, h: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        h = self.norm1(h + attended)
        return self.norm2(h + self.ffn(h))


class AttentionBlock(AttentionLayers, nn.Module):
    """One attention layer of ``DeepAttention``."""

    def __init__(self, width: int, heads: int):
        nn.Module.__init__(self)
        self.build_attention(width, heads)


class LegacyAttention(AttentionLayers, NoisePredictor):
    """The published predictor: one cross-attention block whose single key is the projected condition.

    Parameter names match the reference (map_y_t, map_cond, cross_attention, norm1, norm2, ffn,
    final_layer), so its state dict loads unchanged.
    """

    def __init__(self, condition_dim: int, time_dim: int = 64, width: int = 256, heads: int = 8):
        NoisePredictor.__init__(self, condition_dim, time_dim, width, width)
        self.build_attention(width, heads)
        self.final_layer = nn.Linear(width, 1)

    def prepare(self, condition: torch.Tensor) -> torch.Tensor:
        return self.single_token_attention(self.map_cond(condition))[:, None, :]  # (B, 1, W)

    def forward(self, y_t: torch.Tensor, time: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.mix(self.query(y_t, time), memory))[..., 0]


class DeepAttention(NoisePredictor):
    """``layers`` attention blocks over ``tokens`` condition tokens, so attention depends on the query."""

    def __init__(self, condition_dim: int, time_dim: int = 64, width: int = 256, heads: int = 8,
                 layers: int = 4, tokens: int = 4):
        super().__init__(condition_dim, time_dim, width, tokens * width)
        self.tokens = tokens
        self.blocks = nn.ModuleList(AttentionBlock(width, heads) for _ in range(layers))
        self.final_layer = nn.Linear(width, 1)

    def prepare(self, condition: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        tokens = self.map_cond(condition).unflatten(-1, (self.tokens, -1))  # (B, S, W)
        return [block.keys_values(tokens) for block in self.blocks]

    def forward(self, y_t: torch.Tensor, time: torch.Tensor, memory) -> torch.Tensor:
        h = self.query(y_t, time)
        for block, (keys, values) in zip(self.blocks, memory):
            h = block.mix(h, block.attend(h, keys, values))
        return self.final_layer(h)[..., 0]


class MLPPredictor(NoisePredictor):
    """An MLP on [y_t, time, condition]: its first layer is map_y_t + map_cond, then the shared trunk."""

    def __init__(self, condition_dim: int, time_dim: int = 64, width: int = 256, depth: int = 2,
                 dropout: float = 0.0):
        super().__init__(condition_dim, time_dim, width, width)
        self.trunk = MLPTrunk(width, width, depth, dropout)
        self.final_layer = nn.Linear(width, 1)

    def prepare(self, condition: torch.Tensor) -> torch.Tensor:
        return self.map_cond(condition)[:, None, :]

    def forward(self, y_t: torch.Tensor, time: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.trunk(F.gelu(self.query(y_t, time) + memory)))[..., 0]


PREDICTORS = {"legacy_attention": LegacyAttention, "deep_attention": DeepAttention, "mlp": MLPPredictor}
