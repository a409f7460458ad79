"""CARD (Han, Zheng & Zhou, NeurIPS 2022): diffusion whose forward process ends at N(f(x), I).

CARD's forward process is q(y_t | y_0, x) = N(sqrt(abar_t) y_0 + (1 - sqrt(abar_t)) f(x), (1 - abar_t) I)
around a mean network f(x). Subtracting f(x) gives y_t - f(x) = sqrt(abar_t) (y_0 - f(x)) + sqrt(1 - abar_t)
eps: the ordinary DDPM forward process on the residual y - f(x), and CARD's posterior
q(y_{t-1} | y_t, y_0, x) (its gamma_0, gamma_1, gamma_2 coefficients) is the ordinary one on that residual
shifted by f(x). So this head trains eps_theta(x, y_t, f(x), t) with the shared DDPM/DDIM core in
``_diffusion.py`` on the residual and adds f(x) back: DDPM is exactly CARD's sampler, DDIM its faster variant.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.api import MLPTrunk, range_problems
from plugins.heads._diffusion import SAMPLERS, Diffusion, Sampler
from registry import Categorical, FloatParam, IntParam, hookimpl

# CARD uses 100 (UCI) and 1000 (toy) timesteps: its linear schedule up to beta_end 0.175 drives the cumulative alpha
# product below float32's range soon after (2000 steps sampled non-finite EF), and its DDPM sampler runs every step.
# ``width`` and ``depth`` are the mean network's trunk's.
RANGES = {"timesteps": (1, 1000)}


class ConditionalLayer(nn.Module):
    """CARD's conditional linear layer: Linear(h) times a learned per-timestep scale, then softplus."""

    def __init__(self, in_dim: int, width: int, timesteps: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, width)
        self.scale = nn.Embedding(timesteps, width)
        nn.init.uniform_(self.scale.weight)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.scale(t) * self.linear(h))


class CARDHead(Diffusion):
    """CARD for a scalar target: a mean network f and a noise network eps_theta on [x, y_t, f(x)].

    f is jointly trained (CARD's ``joint_train`` option) rather than pretrained, because the engine trains
    one model per job: its loss is the MSE of f(x), added to the epsilon loss, and the diffusion sees f(x)
    through a stop-gradient, so the epsilon loss never moves f. f is an MLP trunk (``width``, ``depth``);
    eps_theta has three conditional layers of ``width`` (CARD's 128). The default schedule is CARD's for
    UCI regression: ``timesteps`` 100, linear beta from ``beta_start`` 1e-3 to ``beta_end`` 0.175 (its toy
    experiments use 1000, 1e-4, 0.02); ``sampler`` ddpm (CARD's, all T steps) or ddim (``steps``).
    """

    target_scale = "standardised"
    # validate refuses steps with ddpm, which runs all T
    read_only_with: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {"steps": ("sampler", ("ddim",))}

    def __init__(self, condition_dim: int, width: int = 128, depth: int = 2, timesteps: int = 100,
                 beta_start: float = 1e-3, beta_end: float = 0.175, sampler: Sampler = "ddpm", steps: int = 10):
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"card: need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        if sampler not in SAMPLERS:
            raise ValueError(f"card: unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        super().__init__(timesteps, "linear", beta_start, beta_end)
        self.mean_network = nn.Sequential(MLPTrunk(condition_dim, width, depth, dropout=0.0), nn.Linear(width, 1))
        self.condition_part = nn.Linear(condition_dim + 1, width)  # x and f(x) enter once per condition
        self.residual_part = nn.Linear(1, width, bias=False)  # y_t, per sample
        self.first_scale = nn.Embedding(timesteps, width)
        nn.init.uniform_(self.first_scale.weight)
        self.hidden = nn.ModuleList(ConditionalLayer(width, width, timesteps) for _ in range(2))
        self.final_layer = nn.Linear(width, 1)
        self.sampler, self.steps = sampler, steps

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        return {**MLPTrunk.parameter_problems(params), **range_problems(params, RANGES)}

    def guide(self, condition: torch.Tensor) -> torch.Tensor:
        """f(x), the mean network's estimate, which the diffusion refines. Not named ``mean``: the engine
        would take it for the closed-form mean of the samples, which it only approximates."""
        return self.mean_network(condition)[:, 0]

    def denoiser(self, condition: torch.Tensor, guide: torch.Tensor):
        """eps(residual (B, K), t) with the condition-only part computed once; t an int or a (B,) tensor."""
        memory = self.condition_part(torch.cat([condition, guide[:, None]], dim=-1))[:, None, :]  # (B, 1, W)

        def eps(residual: torch.Tensor, t) -> torch.Tensor:
            t = torch.as_tensor(t, device=residual.device).reshape(-1, 1)  # (B or 1, 1)
            y_t = residual + guide[:, None]  # eps_theta sees y_t itself, as in CARD
            h = F.softplus(self.first_scale(t) * (self.residual_part(y_t[..., None]) + memory))
            for layer in self.hidden:
                h = layer(h, t)
            return self.final_layer(h)[..., 0]

        return eps

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        guide = self.guide(condition)
        eps = self.denoiser(condition, guide.detach())
        diffusion = self.epsilon_loss(target - guide.detach(), lambda x_t, t: eps(x_t[:, None], t)[:, 0])
        return diffusion + F.mse_loss(guide, target)

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, n: int) -> torch.Tensor:
        """K = n samples per condition, (B, n): reverse diffusion from N(f(x), I)."""
        guide = self.guide(condition)
        noise = torch.randn(condition.shape[0], n, device=condition.device)
        residual = self.reverse(self.denoiser(condition, guide), noise, self.sampler, self.steps)
        return residual + guide[:, None]


@hookimpl
def register_heads(registry):
    registry.add(
        "card", CARDHead, metadata={"probabilistic": True, "paper": "arXiv 2206.07275"},
        search_space={"lr": FloatParam(1e-4, 3e-3, log=True), "width": Categorical((64, 128, 256)),
                      "depth": IntParam(1, 3)},
    )
