"""A per-frame 2-D CNN with cardiac-cycle pooling over time: the CPU encoder built for EF.

EF = (EDV - ESV) / EDV compares the cavity at its largest and smallest over the beat. So each frame
goes through a small 2-D CNN (the T frames of a batch as B*T images) whose last maps are made
non-negative and summed over space with a learned weighting of positions: soft "areas" of whatever
each channel has learnt to light up, such as the LV blood pool. Their logarithms turn ratios into
differences; after a short running mean over time, the temporal maximum, minimum, mean and standard
deviation of each log-area expose end-diastole, end-systole and the amplitude of the cycle (max - min
of a cavity channel is log(EDA / ESA), a monotone step from EF). A small MLP maps these statistics to
the feature. Sharing the 2-D weights across frames keeps it small enough to train in about a minute
per seed on two CPU cores.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.api import InputSpec, LoadReport, load_weights_file
from plugins.encoders._stages import stage_problems
from registry import hookimpl

TEMPORAL_STATISTICS = 4  # max, min, mean, std over time
AREA_FLOOR = 1e-3  # keeps log(area) finite where a channel is silent in a frame
# descriptors: 32 by default; each has a weight per final-map position. channels: a frame is grey (1) or
# colour (3), all a video gives.
RANGES = {"descriptors": (1, 1024), "channels": (1, 3)}


class FramePool(nn.Module):
    """Per-frame 2-D CNN, located log-areas, max/min/mean/std over time: (B, C, T, H, W) -> (B, feature_dim)."""

    def __init__(self, width: int = 16, depth: int = 3, descriptors: int = 32, feature_dim: int = 64,
                 size: int = 112, channels: int = 1, smooth: int = 3):
        super().__init__()
        if min(width, depth, descriptors, feature_dim, channels) < 1:
            raise ValueError(f"frame_pool: width, depth, descriptors, feature_dim and channels must be positive, "
                             f"got {width}, {depth}, {descriptors}, {feature_dim}, {channels}")
        if smooth < 1 or smooth % 2 == 0:
            raise ValueError(f"frame_pool: smooth must be an odd number of frames (1 = off), got {smooth}")
        self.feature_dim = feature_dim
        self.smooth = smooth
        # Grey input: echo is grey, and one channel is a third of the first layer's work.
        self.input_spec = InputSpec(frames=None, size=size, channels=channels)
        layers, have = [], channels
        for stage in range(depth):
            out = width * 2 ** stage
            layers += [nn.Conv2d(have, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True), nn.Conv2d(out, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            have = out
        self.frames = nn.Sequential(*layers)
        self.areas = nn.Conv2d(have, descriptors, 1)
        side = size
        for _ in range(depth):
            side = (side + 1) // 2  # each stage's stride-2 convolution
        # Where each descriptor looks: a learned weighting over the final map (softmax over positions,
        # uniform at first). The LV sits in a roughly fixed part of the apical sector, so a descriptor
        # can measure the LV cavity without the other dark chambers.
        self.where = nn.Parameter(torch.zeros(descriptors, side * side))
        statistics = TEMPORAL_STATISTICS * descriptors
        # Standardising the statistics over the batch: at initialisation they barely differ between
        # clips, and without it the first epochs are spent scaling them up.
        self.project = nn.Sequential(nn.BatchNorm1d(statistics), nn.Linear(statistics, feature_dim), nn.ReLU(),
                                     nn.Linear(feature_dim, feature_dim))

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        return stage_problems(params, width=16, depth=3, ranges=RANGES)

    def frame_descriptors(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, T, descriptors): log of each channel's soft area in every frame."""
        batch, channels, time, height, width = clip.shape
        images = clip.transpose(1, 2).reshape(batch * time, channels, height, width)
        maps = F.softplus(self.areas(self.frames(images))).flatten(2)  # (B*T, descriptors, positions)
        if maps.shape[-1] != self.where.shape[-1]:
            raise ValueError(f"frame_pool was built for {self.input_spec.size}-pixel frames, got {height}x{width}")
        areas = (maps * self.where.softmax(-1)).sum(-1)
        return torch.log(areas + AREA_FLOOR).view(batch, time, -1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        descriptors = self.frame_descriptors(clip)
        if self.smooth > 1:
            # A running mean over ``smooth`` frames before taking extremes: speckle changes from frame to
            # frame, and the maximum and minimum of noisy areas would be biased by it.
            descriptors = F.avg_pool1d(descriptors.transpose(1, 2), self.smooth, stride=1, padding=self.smooth // 2,
                                       count_include_pad=False).transpose(1, 2)
        # std over a single frame is undefined; zero is its limit for a static clip.
        spread = descriptors.std(1) if descriptors.shape[1] > 1 else torch.zeros_like(descriptors[:, 0])
        statistics = torch.cat([descriptors.amax(1), descriptors.amin(1), descriptors.mean(1), spread], dim=1)
        return self.project(statistics)

    def load_weights(self, path: str | Path, strict: bool = True) -> LoadReport:
        return load_weights_file(self, path, strict=strict)


@hookimpl
def register_encoders(registry):
    registry.add("frame_pool", FramePool, metadata={"cpu_friendly": True})
