"""Mixture density network: a Gaussian mixture with M components per item."""
from __future__ import annotations

import math

import torch
from torch.distributions import Normal
from torch.nn import functional as F

from benchmark.api import TRUNK_SEARCH_SPACE, TrunkHead
from registry import IntParam, hookimpl

MIN_STD = 1e-3
# MDNs use 2-10 components (default 5); each is 3 outputs and a term of every closed form.
RANGES = {"components": (1, 100)}


class MDNHead(TrunkHead):
    """Mixture density network (M Gaussian components), the multimodal competitor to diffusion."""

    size_ranges = RANGES

    def __init__(self, condition_dim: int, components: int = 5, **trunk):
        if components < 1:
            raise ValueError(f"mdn: components must be at least 1, got {components}")
        self.outputs = 3 * components  # logits, means, raw stds
        super().__init__(condition_dim, **trunk)
        # Start the components at the quantiles of N(0, 1), the standardised target's scale, each
        # narrower than the whole: components that all start at 0 tend to collapse into one wide
        # Gaussian over separated modes (a known MDN local optimum).
        levels = (torch.arange(components) + 0.5) / components
        with torch.no_grad():
            _, mean_bias, std_bias = self.out.bias.chunk(3)
            mean_bias.copy_(torch.erfinv(2 * levels - 1) * math.sqrt(2))
            std_bias.fill_(math.log(math.expm1(1 / math.sqrt(components))))  # softplus^-1 of the std


    def mixture(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log weights, means and stds, each (B, M)."""
        logits, means, raw_std = self.features(condition).chunk(3, dim=-1)
        return logits.log_softmax(-1), means, F.softplus(raw_std) + MIN_STD

    def log_prob(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_weights, means, stds = self.mixture(condition)
        return torch.logsumexp(log_weights + Normal(means, stds).log_prob(y[:, None]), dim=-1)

    def cdf(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_weights, means, stds = self.mixture(condition)
        return (log_weights.exp() * Normal(means, stds).cdf(y[:, None])).sum(-1)

    def mean(self, condition: torch.Tensor) -> torch.Tensor:
        log_weights, means, _ = self.mixture(condition)
        return (log_weights.exp() * means).sum(-1)

    def std(self, condition: torch.Tensor) -> torch.Tensor:
        log_weights, means, stds = self.mixture(condition)
        weights = log_weights.exp()
        mean = (weights * means).sum(-1, keepdim=True)
        # Law of total variance: within-component variance plus the spread of component means.
        return (weights * (stds**2 + (means - mean) ** 2)).sum(-1).sqrt()

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(condition, target).mean()

    def sample(self, condition: torch.Tensor, n: int) -> torch.Tensor:
        log_weights, means, stds = self.mixture(condition)
        which = torch.multinomial(log_weights.exp(), n, replacement=True)  # (B, n)
        return means.gather(1, which) + stds.gather(1, which) * torch.randn(which.shape, device=means.device)


@hookimpl
def register_heads(registry):
    registry.add("mdn", MDNHead, metadata={"probabilistic": True},
                 search_space={**TRUNK_SEARCH_SPACE, "components": IntParam(2, 10)})
