"""Quantile regression: monotone quantiles trained by the pinball loss, sampled by inverse-CDF interpolation."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from benchmark.api import TRUNK_SEARCH_SPACE, TrunkHead
from registry import IntParam, hookimpl

# At least two to interpolate between (default 19); 999 is a level every 0.1%, finer than any K samples resolve.
RANGES = {"levels": (2, 999)}


class QuantileHead(TrunkHead):
    """Non-crossing quantiles by the pinball loss; samples by inverse-CDF interpolation between them.

    ``levels`` quantiles at tau_j = j / (levels + 1), non-crossing by construction: the lowest is free
    and each next one adds a softplus step.

    The predictive is the distribution whose quantile function interpolates them linearly, extended to
    tau = 0 and 1 with the slope of the nearest segment: a mixture of uniforms, mass tau_{j+1} - tau_j
    on [q_j, q_{j+1}]. Its samples (inverse CDF at uniform draws), mean, std and CDF are exact. Its
    density is zero outside [q_0, q_{L+1}], a construction artefact, so no log_prob is given (an NLL
    would be infinite for any target beyond the extrapolated ends), and no closed-form CRPS: the engine's
    exact CRPS covers Gaussian mixtures only, so the fair sample CRPS scores this head.
    """

    size_ranges = RANGES

    def __init__(self, condition_dim: int, levels: int = 19, **trunk):
        if levels < 2:
            raise ValueError(f"quantile: levels must be at least 2, got {levels}")
        self.outputs = levels
        super().__init__(condition_dim, **trunk)
        self.register_buffer("tau", torch.arange(1, levels + 1, dtype=torch.float32) / (levels + 1))
        # Start at the quantiles of N(0, 1), the standardised target's scale: with zero biases the softplus
        # steps (0.69 each) would open a first predictive levels * 0.69 standard deviations wide.
        normal = torch.erfinv(2 * self.tau - 1) * math.sqrt(2)
        with torch.no_grad():
            self.out.bias.copy_(torch.cat([normal[:1], torch.log(torch.expm1(normal.diff()))]))


    def quantiles(self, condition: torch.Tensor) -> torch.Tensor:
        """(B, levels), increasing along the last axis."""
        raw = self.features(condition)
        return torch.cat([raw[:, :1], raw[:, :1] + F.softplus(raw[:, 1:]).cumsum(-1)], dim=-1)

    def knots(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The quantile function's knots: levels (L + 2,) from 0 to 1 and values (B, L + 2)."""
        q, tau = self.quantiles(condition), self.tau
        low = q[:, :1] - tau[0] * (q[:, 1:2] - q[:, :1]) / (tau[1] - tau[0])
        high = q[:, -1:] + (1 - tau[-1]) * (q[:, -1:] - q[:, -2:-1]) / (tau[-1] - tau[-2])
        return torch.cat([tau.new_zeros(1), tau, tau.new_ones(1)]), torch.cat([low, q, high], dim=-1)

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = target[:, None] - self.quantiles(condition)
        return torch.maximum(self.tau * error, (self.tau - 1) * error).sum(-1).mean()

    def sample(self, condition: torch.Tensor, n: int) -> torch.Tensor:
        levels, values = self.knots(condition)
        u = torch.rand(values.shape[0], n, device=values.device)
        segment = (torch.searchsorted(levels, u) - 1).clamp(0, len(levels) - 2)
        low, high = values.gather(1, segment), values.gather(1, segment + 1)
        share = (u - levels[segment]) / (levels[segment + 1] - levels[segment])
        return low + share * (high - low)

    def _segments(self, condition):
        levels, values = self.knots(condition)
        return levels.diff(), values[:, :-1], values[:, 1:]  # mass (S,), lower and upper ends (B, S)

    def mean(self, condition: torch.Tensor) -> torch.Tensor:
        mass, low, high = self._segments(condition)
        return (mass * (low + high) / 2).sum(-1)

    def std(self, condition: torch.Tensor) -> torch.Tensor:
        mass, low, high = self._segments(condition)
        second_moment = (mass * (low**2 + low * high + high**2) / 3).sum(-1)  # E[U^2] of each uniform
        return (second_moment - self.mean(condition) ** 2).clamp(min=0).sqrt()

    def cdf(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mass, low, high = self._segments(condition)
        inside = ((y[:, None] - low) / (high - low).clamp(min=1e-12)).clamp(0, 1)
        return (mass * inside).sum(-1)


@hookimpl
def register_heads(registry):
    registry.add("quantile", QuantileHead, metadata={"probabilistic": True},
                 search_space={**TRUNK_SEARCH_SPACE, "levels": IntParam(9, 39)})
