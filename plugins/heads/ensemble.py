"""Deep ensemble (Lakshminarayanan et al., NeurIPS 2017): M heteroscedastic Gaussian heads, one mixture."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Normal
from torch.nn import functional as F

from benchmark.api import TRUNK_SEARCH_SPACE, TrunkHead, range_problems
from registry import IntParam, hookimpl

MIN_STD = 1e-3  # keeps each member's NLL finite when it is overconfident on a training point
# Deep ensembles use 5 (the paper; searched 3-8) to about 10 members; each is a whole trunk.
RANGES = {"members": (1, 32)}


class GaussianMember(TrunkHead):
    """One member: its own trunk, a mean and a softplus standard deviation."""

    outputs = 2

    def parameters_of(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_std = self.features(condition).unbind(-1)
        return mean, F.softplus(raw_std) + MIN_STD


class EnsembleHead(nn.Module):
    """A deep ensemble: M Gaussian heads, each on its own NLL; predicts their equal mixture (exact forms).

    ``members`` = M. Through ``mixture``, every closed form (CRPS included) is exact.

    Each member is initialised from its own seed, drawn from the generator the engine seeded for the job,
    so the ensemble is reproducible and the members differ. They see the same batches: the paper found
    random initialisation the source of diversity that matters. Summing the members' losses trains them
    independently (no parameter is shared); only the trainer's global gradient-norm clip couples them.
    """

    target_scale = "standardised"

    def __init__(self, condition_dim: int, members: int = 5, **trunk):
        super().__init__()
        if members < 1:
            raise ValueError(f"ensemble: members must be at least 1, got {members}")
        seeds = torch.randint(0, 2**31 - 1, (members,)).tolist()
        built = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                built.append(GaussianMember(condition_dim, **trunk))
        self.members = nn.ModuleList(built)

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        """The members' trunk sizes (``**trunk``) and ``members``."""
        return {**TrunkHead.parameter_problems(params), **range_problems(params, RANGES)}

    def mixture(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log weights (all log 1/M), means and stds, each (B, M)."""
        means, stds = zip(*(member.parameters_of(condition) for member in self.members))
        means, stds = torch.stack(means, dim=-1), torch.stack(stds, dim=-1)
        return torch.full_like(means, -math.log(len(self.members))), means, stds

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _, means, stds = self.mixture(condition)
        return -Normal(means, stds).log_prob(target[:, None]).mean(0).sum()

    def mean(self, condition: torch.Tensor) -> torch.Tensor:
        return self.mixture(condition)[1].mean(-1)

    def sample(self, condition: torch.Tensor, n: int) -> torch.Tensor:
        _, means, stds = self.mixture(condition)
        which = torch.randint(0, means.shape[1], (means.shape[0], n), device=means.device)
        return means.gather(1, which) + stds.gather(1, which) * torch.randn(which.shape, device=means.device)


@hookimpl
def register_heads(registry):
    registry.add("ensemble", EnsembleHead, metadata={"probabilistic": True, "paper": "arXiv 1612.01474"},
                 search_space={**TRUNK_SEARCH_SPACE, "members": IntParam(3, 8)})
