"""Deep evidential regression (Amini et al., NeurIPS 2020): a Normal-Inverse-Gamma prior per item."""
from __future__ import annotations

import math

import torch
from torch.distributions import StudentT
from torch.nn import functional as F

from benchmark.api import TRUNK_SEARCH_SPACE, TrunkHead
from registry import FloatParam, hookimpl

MIN_EVIDENCE = 1e-3  # keeps nu and beta away from 0, where the NIG likelihood is undefined


class EvidentialHead(TrunkHead):
    """NIG(gamma, nu, alpha, beta) per item, trained by its marginal NLL plus the evidence regulariser.

    Marginalising the Gaussian's mean and variance over the NIG gives a Student-t predictive:
    df 2 alpha, location gamma, scale^2 beta (1 + nu) / (nu alpha). alpha is kept above 1, so its variance
    beta (1 + nu) / (nu (alpha - 1)) always exists. ``regulariser`` is the paper's lambda on
    |y - gamma| (2 nu + alpha), which takes evidence away from items the mean gets wrong.
    """

    outputs = 4

    def __init__(self, condition_dim: int, regulariser: float = 0.01, **trunk):
        super().__init__(condition_dim, **trunk)
        if regulariser < 0:
            raise ValueError(f"evidential: regulariser must be at least 0, got {regulariser}")
        self.regulariser = regulariser

    def evidence(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """gamma, nu > 0, alpha > 1, beta > 0, each (B,)."""
        gamma, raw_nu, raw_alpha, raw_beta = self.features(condition).unbind(-1)
        return (gamma, F.softplus(raw_nu) + MIN_EVIDENCE, F.softplus(raw_alpha) + 1 + MIN_EVIDENCE,
                F.softplus(raw_beta) + MIN_EVIDENCE)

    def distribution(self, condition: torch.Tensor) -> StudentT:
        gamma, nu, alpha, beta = self.evidence(condition)
        return StudentT(2 * alpha, gamma, torch.sqrt(beta * (1 + nu) / (nu * alpha)))

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        gamma, nu, alpha, beta = self.evidence(condition)
        omega = 2 * beta * (1 + nu)
        # The NIG marginal NLL (the paper's eq. 8), which equals -log StudentT(...).log_prob(target).
        nll = (0.5 * torch.log(math.pi / nu) - alpha * torch.log(omega)
               + (alpha + 0.5) * torch.log(nu * (target - gamma) ** 2 + omega)
               + torch.lgamma(alpha) - torch.lgamma(alpha + 0.5))
        return (nll + self.regulariser * (target - gamma).abs() * (2 * nu + alpha)).mean()

    def mean(self, condition: torch.Tensor) -> torch.Tensor:
        return self.evidence(condition)[0]

    def std(self, condition: torch.Tensor) -> torch.Tensor:
        _, nu, alpha, beta = self.evidence(condition)
        return torch.sqrt(beta * (1 + nu) / (nu * (alpha - 1)))

    def log_prob(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distribution(condition).log_prob(y)

    def cdf(self, condition: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Student-t CDF through scipy (torch has none), returned on the condition's device."""
        from scipy.stats import t as student_t

        predicted = self.distribution(condition)
        values = student_t.cdf(y.detach().double().cpu().numpy(), predicted.df.detach().double().cpu().numpy(),
                               predicted.loc.detach().double().cpu().numpy(),
                               predicted.scale.detach().double().cpu().numpy())
        return torch.as_tensor(values, dtype=y.dtype, device=condition.device)

    def sample(self, condition: torch.Tensor, n: int) -> torch.Tensor:
        return self.distribution(condition).sample((n,)).T


@hookimpl
def register_heads(registry):
    registry.add("evidential", EvidentialHead, metadata={"probabilistic": True, "paper": "arXiv 1910.02600"},
                 search_space={**TRUNK_SEARCH_SPACE, "regulariser": FloatParam(1e-3, 1e-1, log=True)})
