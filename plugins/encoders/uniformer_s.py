"""UniFormer-S (video): the encoder of CoReEcho and MCSDR, key for key compatible with their checkpoints.

Four stages at widths 64/128/320/512. The first two use convolutional "relation aggregators"
(depthwise 5x5x5 convolutions) because global attention over the early, large token grids is too
costly; the last two use global multi-head self-attention over all T*H*W tokens. Only the first patch
embedding halves time, so a 16-frame clip keeps 8 time steps throughout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.api import InputSpec, LoadReport, load_weights_file
from registry import hookimpl

DEPTHS = (3, 4, 8, 3)
WIDTHS = (64, 128, 320, 512)
HEAD_DIM = 64
MLP_RATIO = 4
BLOCK_NORM_EPS = 1e-6

# Per-channel statistics on the 0-255 scale that each family of released weights was trained with.
NORMALISATIONS = {
    "coreecho": ((0.1274 * 255, 0.1279 * 255, 0.1291 * 255), (0.1956 * 255, 0.1956 * 255, 0.1966 * 255)),
    "kinetics": ((0.45 * 255,) * 3, (0.225 * 255,) * 3),
    "dataset": (None, None),  # the benchmark computes training-split statistics
}


class PatchEmbed(nn.Module):
    """Strided Conv3d to the next width, then LayerNorm over channels."""

    def __init__(self, in_dim: int, out_dim: int, kernel, stride, padding=0):
        super().__init__()
        self.proj = nn.Conv3d(in_dim, out_dim, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x):
        x = self.proj(x)
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class ConvMlp(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Conv3d(dim, dim * MLP_RATIO, 1)
        self.fc2 = nn.Conv3d(dim * MLP_RATIO, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class TokenMlp(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * MLP_RATIO)
        self.fc2 = nn.Linear(dim * MLP_RATIO, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: skip a residual branch for a random subset of the batch while training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        if not self.training or self.rate == 0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.rate
        return x * keep / (1 - self.rate)


class ConvBlock(nn.Module):
    """Stages 1-2: local relation aggregation with a depthwise 5x5x5 convolution."""

    def __init__(self, dim: int, dropout: float, drop_path: float):
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.attn = nn.Conv3d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = ConvMlp(dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.heads = dim // HEAD_DIM
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, HEAD_DIM).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.drop(self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim)))


class AttentionBlock(nn.Module):
    """Stages 3-4: global multi-head self-attention over all T*H*W tokens."""

    def __init__(self, dim: int, dropout: float, drop_path: float):
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = SelfAttention(dim, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = TokenMlp(dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.pos_embed(x)
        shape = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens.transpose(1, 2).reshape(shape)


class UniFormerS(nn.Module):
    """UniFormer-S video model (21 M parameters): clip (B, 3, T, H, W) -> (B, 512)."""

    feature_dim = WIDTHS[-1]

    def __init__(self, dropout: float = 0.1, drop_path: float = 0.0,
                 normalisation: Literal["coreecho", "kinetics", "dataset"] = "coreecho", size: int = 112):
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"uniformer_s: normalisation must be one of {', '.join(NORMALISATIONS)}, "
                             f"got {normalisation!r}")
        # DropPath divides by 1 - rate: 1 gives NaN features in stage 1, more drops every branch, a negative rate
        # scales them; only eval mode (the pre-flight's one clip) would not show it.
        if not 0 <= drop_path < 1:
            raise ValueError(f"uniformer_s: drop_path must be at least 0 and below 1, got {drop_path}")
        mean, std = NORMALISATIONS[normalisation]
        self.input_spec = InputSpec(frames=None, size=size, mean=mean, std=std)
        self.patch_embed1 = PatchEmbed(3, WIDTHS[0], (3, 4, 4), (2, 4, 4), (1, 0, 0))
        for stage in range(1, 4):
            setattr(self, f"patch_embed{stage + 1}", PatchEmbed(WIDTHS[stage - 1], WIDTHS[stage], (1, 2, 2), (1, 2, 2)))
        self.pos_drop = nn.Dropout(dropout)
        # Stochastic depth grows linearly with block index, as in the original training recipe.
        rates = torch.linspace(0, drop_path, sum(DEPTHS)).tolist()
        start = 0
        for stage, (depth, width) in enumerate(zip(DEPTHS, WIDTHS)):
            block = ConvBlock if stage < 2 else AttentionBlock
            blocks = [block(width, dropout, rates[start + i]) for i in range(depth)]
            setattr(self, f"blocks{stage + 1}", nn.ModuleList(blocks))
            start += depth
        self.norm = nn.BatchNorm3d(WIDTHS[-1])
        self.apply(_init_linear)

    def forward(self, clip):
        x = self.pos_drop(self.patch_embed1(clip))
        for stage in range(1, 5):
            if stage > 1:
                x = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"blocks{stage}"):
                x = block(x)
        return self.norm(x).flatten(2).mean(-1)

    def load_weights(self, path: str | Path, strict: bool = True) -> LoadReport:
        """Kinetics-400 (400-way ``head`` dropped), CoReEcho ``{'model': ...}`` or MCSDR ``best.pth``."""
        return load_weights_file(self, path, strict=strict)


def _init_linear(module: nn.Module) -> None:
    """The original recipe: small truncated-normal linear weights, so training from scratch matches it."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


@hookimpl
def register_encoders(registry):
    registry.add("uniformer_s", UniFormerS,
                 metadata={"feature_dim": UniFormerS.feature_dim, "cpu_friendly": False})
