"""A small 3-D CNN that trains in minutes on two CPU cores: the default encoder for CPU experiments.

Each stage is Conv3d, BatchNorm, ReLU with a stride that halves space (and time from the second
stage on), doubling the width; global average pooling and a linear map give the feature.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from benchmark.api import InputSpec, LoadReport, load_weights_file
from plugins.encoders._stages import stage_problems
from registry import hookimpl


class Tiny3D(nn.Module):
    """Small 3-D CNN for CPU experiments (width/depth configurable): (B, 3, T, H, W) -> (B, feature_dim)."""

    def __init__(self, width: int = 16, depth: int = 4, feature_dim: int = 128, size: int = 112):
        super().__init__()
        if width < 1 or depth < 1 or feature_dim < 1:
            raise ValueError(f"tiny3d: width, depth and feature_dim must be positive, got {width}, {depth}, {feature_dim}")
        self.feature_dim = feature_dim
        self.input_spec = InputSpec(frames=None, size=size)  # normalised with training-split statistics
        layers, channels = [], 3
        for stage in range(depth):
            out = width * 2 ** stage
            # Keep full temporal resolution in the first stage: motion is what EF is about.
            stride = (1, 2, 2) if stage == 0 else (2, 2, 2)
            layers += [nn.Conv3d(channels, out, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm3d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.project = nn.Linear(channels, feature_dim)

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        return stage_problems(params, width=16, depth=4)

    def forward(self, clip):
        return self.project(self.features(clip).flatten(2).mean(-1))

    def load_weights(self, path: str | Path, strict: bool = True) -> LoadReport:
        return load_weights_file(self, path, strict=strict)


@hookimpl
def register_encoders(registry):
    registry.add("tiny3d", Tiny3D, metadata={"cpu_friendly": True, "default": True})
