"""The MLP trunk every baseline head shares, so heads differ only in what they predict, not capacity."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from benchmark.contracts import range_problems
from registry import Categorical, FloatParam, IntParam

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}

# The default Optuna space of a trunk-based head; heads add their own parameters to it.
TRUNK_SEARCH_SPACE = {
    "lr": FloatParam(1e-4, 3e-3, log=True),
    "width": Categorical((64, 128, 256, 512)),
    "depth": IntParam(1, 4),
    "dropout": FloatParam(0.0, 0.3),
}
# The trunk's sizes. Width: 4x the widest searched (512, MCSDR's and UniFormer-S's widest too); a layer is then
# 2048^2 weights. Depth: 4x the deepest searched; an MLP without residual connections trains badly well before 16.
TRUNK_RANGES = {"width": (1, 2048), "depth": (1, 16)}


class MLPTrunk(nn.Sequential):
    """``depth`` blocks of Linear -> activation -> dropout, from ``in_dim`` to ``width`` features."""

    def __init__(self, in_dim: int, width: int = 256, depth: int = 2, dropout: float = 0.1,
                 activation: str = "gelu"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if depth < 1 or width < 1:
            raise ValueError(f"an MLP trunk needs depth >= 1 and width >= 1, got depth {depth}, width {width}")
        layers = []
        for index in range(depth):
            layers += [nn.Linear(in_dim if index == 0 else width, width), ACTIVATIONS[activation](),
                       nn.Dropout(dropout)]
        super().__init__(*layers)
        self.width = width

    @staticmethod
    def parameter_problems(params: Mapping[str, Any]) -> dict[str, str]:
        """Its ``width`` and ``depth`` outside ``TRUNK_RANGES`` (a head built on it asks this in its own)."""
        return range_problems(params, TRUNK_RANGES)


class TrunkHead(nn.Module):
    """A baseline head: the shared trunk followed by a linear layer with ``outputs`` numbers per item."""

    outputs = 1
    target_scale = "standardised"
    size_ranges: Mapping[str, tuple[float, float]] = {}  # a subclass's own sizes (MDN components), beside the trunk's

    @classmethod
    def parameter_problems(cls, params: Mapping[str, Any]) -> dict[str, str]:
        """The trunk's ``width`` and ``depth`` and the subclass's ``size_ranges`` outside their ranges."""
        return range_problems(params, {**TRUNK_RANGES, **cls.size_ranges})

    def __init__(self, condition_dim: int, width: int = 256, depth: int = 2, dropout: float = 0.1,
                 activation: str = "gelu"):
        super().__init__()
        self.trunk = MLPTrunk(condition_dim, width, depth, dropout, activation)
        self.out = nn.Linear(width, self.outputs)

    def features(self, condition: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(condition))


class PointHead(TrunkHead):
    """A point regressor; its "samples" repeat the point, so sample CRPS equals the absolute error."""

    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # set by each point head

    def mean(self, condition: torch.Tensor) -> torch.Tensor:
        return self.features(condition)[:, 0]

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.mean(condition), target)

    def sample(self, condition: torch.Tensor, n: int) -> torch.Tensor:
        return self.mean(condition)[:, None].expand(-1, n).contiguous()

