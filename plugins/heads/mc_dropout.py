"""MC dropout (Gal & Ghahramani, ICML 2016): dropout stays on at prediction; each pass is one sample."""
from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Normal
from torch.nn import functional as F

from benchmark.api import TRUNK_SEARCH_SPACE, TrunkHead
from registry import FloatParam, hookimpl

MIN_STD = 1e-3


class MCDropoutHead(TrunkHead):
    """A heteroscedastic Gaussian MLP whose dropout masks are never switched off.

    Each of the K samples is one stochastic forward pass (its own dropout masks) followed by one draw of
    that pass's Gaussian, so the samples carry the model uncertainty (spread of the passes) and the noise
    (Kendall & Gal, NeurIPS 2017). The predictive is a mixture over random masks: no closed form, so the
    head gives samples only.
    """

    outputs = 2

    def __init__(self, condition_dim: int, dropout: float = 0.1, **trunk):
        if not 0 < dropout < 1:
            raise ValueError(f"mc_dropout: dropout must be in (0, 1), got {dropout}")
        super().__init__(condition_dim, dropout=dropout, **trunk)

    def train(self, mode: bool = True) -> MCDropoutHead:
        """Keep every dropout layer in training mode whatever the engine asks: that is the method."""
        super().train(mode)
        for layer in self.modules():
            if isinstance(layer, nn.Dropout):
                layer.train(True)
        return self

    def parameters_of(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_std = self.features(condition).unbind(-1)
        return mean, F.softplus(raw_std) + MIN_STD

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -Normal(*self.parameters_of(condition)).log_prob(target).mean()

    def sample(self, condition: torch.Tensor, n: int) -> torch.Tensor:
        passes = condition.repeat_interleave(n, dim=0)  # (B * n, D): one pass per sample, own masks
        mean, std = self.parameters_of(passes)
        return (mean + std * torch.randn_like(mean)).view(condition.shape[0], n)


@hookimpl
def register_heads(registry):
    registry.add("mc_dropout", MCDropoutHead, metadata={"probabilistic": True, "paper": "arXiv 1506.02142"},
                 search_space={**TRUNK_SEARCH_SPACE, "dropout": FloatParam(0.05, 0.5)})
