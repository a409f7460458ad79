"""Heteroscedastic Gaussian regression: a mean and a standard deviation per item."""
from __future__ import annotations

import torch
from torch.distributions import Normal
from torch.nn import functional as F

from benchmark.api import TRUNK_SEARCH_SPACE, TrunkHead
from registry import FloatParam, hookimpl

MIN_STD = 1e-3  # keeps the NLL finite when the network is overconfident on a training point


class GaussianHead(TrunkHead):
    """Heteroscedastic Gaussian (mean and std) trained by NLL, optionally beta-NLL.

    ``beta_nll`` > 0 weights each item's NLL by its detached variance to the power beta (Seitzer et
    al., ICLR 2022), which stops high-variance items from starving the mean of gradient; 0 is plain NLL.
    """

    outputs = 2

    def __init__(self, condition_dim: int, beta_nll: float = 0.0, **trunk):
        super().__init__(condition_dim, **trunk)
        if not 0 <= beta_nll <= 1:
            raise ValueError(f"gaussian: beta_nll must be in [0, 1], got {beta_nll}")
        self.beta_nll = beta_nll

    def parameters_of(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_std = self.features(condition).unbind(-1)
        return mean, F.softplus(raw_std) + MIN_STD

    def mean(self, condition: torch.Tensor) -> torch.Tensor:
        return self.parameters_of(condition)[0]

    def std(self, condition: torch.Tensor) -> torch.Tensor:
        return self.parameters_of(condition)[1]

    def mixture(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The one-component mixture (log weights, means, stds), each (B, 1): exact closed forms."""
        mean, std = self.parameters_of(condition)
        return torch.zeros_like(mean)[:, None], mean[:, None], std[:, None]

    def distribution(self, condition: torch.Tensor) -> Normal:
        return Normal(*self.parameters_of(condition))

    def log_prob(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distribution(condition).log_prob(y)

    def cdf(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distribution(condition).cdf(y)

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        predicted = self.distribution(condition)
        nll = -predicted.log_prob(target)
        if self.beta_nll:
            nll = nll * predicted.variance.detach() ** self.beta_nll
        return nll.mean()

    def sample(self, condition: torch.Tensor, n: int) -> torch.Tensor:
        mean, std = self.parameters_of(condition)
        return mean[:, None] + std[:, None] * torch.randn(mean.shape[0], n, device=mean.device)


@hookimpl
def register_heads(registry):
    registry.add("gaussian", GaussianHead, metadata={"probabilistic": True},
                 search_space={**TRUNK_SEARCH_SPACE, "beta_nll": FloatParam(0.0, 1.0)})
