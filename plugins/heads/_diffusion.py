"""A compact DDPM/DDIM core for diffusing one scalar per sample.

``Diffusion`` owns the noise schedule as buffers named exactly as in the MCSDR reference, so a head that
subclasses it loads the reference's ``regressor_state_dict`` without renaming. The samplers work on a
(B, K) tensor, B conditions times K samples at once, and call a denoiser ``eps(x_t, t_emb_index)`` that
the head builds after doing its condition-only work once (see ``plugins/heads/mcsdr.py``).
"""
from __future__ import annotations

import math
from typing import Callable, Literal, get_args

import torch
from torch import nn

# As parameter annotations, these let validate refuse a misspelt value by its key, with "did you mean".
Schedule = Literal["linear", "cosine"]
Sampler = Literal["ddim", "ddpm"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
SAMPLERS: tuple[str, ...] = get_args(Sampler)

# eps(x_t (B, K), t) -> predicted noise (B, K); t is one integer timestep shared by the whole batch.
Denoiser = Callable[[torch.Tensor, int], torch.Tensor]


def make_betas(schedule: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Noise variances beta_1..beta_T in float64 (the reference: linear 1e-4..0.02, T = 1000)."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if schedule == "cosine":  # Nichol & Dhariwal 2021: alphabar follows a squared cosine, offset s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        alphabar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - alphabar[1:] / alphabar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, (...,) -> (..., dim): [sin(t f_i), cos(t f_i)] with
    f_i = exp(-log(10000) i / (dim/2 - 1)), i = 0 .. dim/2 - 1, as in the reference."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))
    angles = t.to(torch.float32)[..., None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class SinusoidalEmbedding(nn.Module):
    """Parameter-free ``timestep_embedding`` as a module (``time_mlp.0`` in the reference)."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"the timestep embedding needs an even dimension >= 4, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(t, self.dim)


class Diffusion(nn.Module):
    """Forward process, epsilon loss and DDPM/DDIM samplers over (B, K) scalar samples."""

    def __init__(self, timesteps: int = 1000, schedule: Schedule = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02):
        super().__init__()
        betas = make_betas(schedule, timesteps, beta_start, beta_end)
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        buffers = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
            "posterior_variance": betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod),
            "sqrt_recip_alphas_cumprod": (1 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.to(torch.float32))
        self.timesteps = timesteps

    @property
    def sampling_steps(self) -> int:
        """How many times sampling runs the network, by the ``sampler`` and ``steps`` the head sets: the pre-flight
        holds them to its budget before it samples."""
        return self.timesteps if self.sampler == "ddpm" else self.steps

    # ------------------------------------------------------------------ training
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alphabar_t) x0 + sqrt(1 - alphabar_t) noise, for per-element timesteps t."""
        return self.sqrt_alphas_cumprod[t] * x0 + self.sqrt_one_minus_alphas_cumprod[t] * noise

    def epsilon_loss(self, x0: torch.Tensor, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        """Mean squared error of the predicted noise at uniformly drawn timesteps.

        ``predict(x_t (B,), t (B,)) -> eps (B,)``.
        """
        t = torch.randint(0, self.timesteps, x0.shape, device=x0.device)
        noise = torch.randn_like(x0)
        return torch.mean((predict(self.q_sample(x0, t, noise), t) - noise) ** 2)

    # ------------------------------------------------------------------ sampling
    def ddim_timesteps(self, steps: int, reference: bool = False) -> list[int]:
        """The S timesteps DDIM visits, from high to low; after the last one x0 is predicted.

        The project's grid is evenly spaced and ends at 0 (T = 1000, S = 10: 900, 800, .., 0). The
        reference's is ``reversed(linspace(-1, T - 1, S + 1).int())`` without its -1 end marker (999,
        899, .., 99): it starts at the last timestep, so x_T ~ N(0, 1) is the prior it was trained for,
        and predicts x0 from t = 99. Computed the way the reference does (float32 linspace, truncated),
        since any other rounding moves a step and changes the samples of the same weights and noise.
        """
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"DDIM steps must be between 1 and {self.timesteps}, got {steps}")
        if reference:
            return torch.linspace(-1, self.timesteps - 1, steps + 1).int().tolist()[:0:-1]
        stride = self.timesteps // steps
        return list(range(0, stride * steps, stride))[::-1]

    def reverse(self, eps: Denoiser, noise: torch.Tensor, sampler: str = "ddim", steps: int = 10,
               eta: float = 0.0, clip_x0: tuple[float, float] | None = None, faithful: bool = False,
               generator: torch.Generator | None = None, record: bool = False):
        """Run the reverse process from ``noise`` (B, K). Returns x_0, or every x_t (S+1, B, K) when
        ``record``. DDIM with ``faithful`` follows the reference: its timestep grid (``ddim_timesteps``)
        and its sigma (beta_t in place of 1 - alphabar_t / alphabar_prev, which differs for eta > 0)."""
        if sampler == "ddim":
            schedule = self.ddim_timesteps(steps, reference=faithful)
        elif sampler == "ddpm":
            schedule = list(range(self.timesteps))[::-1]
        else:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        x = noise
        trajectory = [x] if record else None
        for index, t in enumerate(schedule):
            prev = schedule[index + 1] if index + 1 < len(schedule) else -1
            predicted = eps(x, t)
            if sampler == "ddim":
                x = self._ddim_step(x, predicted, t, prev, eta, clip_x0, faithful, generator)
            else:
                x = self._ddpm_step(x, predicted, t, clip_x0, generator)
            if record:
                trajectory.append(x)
        return torch.stack(trajectory) if record else x

    def _predict_x0(self, x, eps, t, clip_x0):
        x0 = self.sqrt_recip_alphas_cumprod[t] * x - self.sqrt_recipm1_alphas_cumprod[t] * eps
        if clip_x0 is None:
            return x0, eps
        x0 = x0.clamp(*clip_x0)
        # Keep the step consistent: the noise implied by the clipped x0 moves x_t towards it.
        return x0, (x - self.sqrt_alphas_cumprod[t] * x0) / self.sqrt_one_minus_alphas_cumprod[t]

    def _ddim_step(self, x, eps, t, prev, eta, clip_x0, faithful_sigma, generator):
        x0, eps = self._predict_x0(x, eps, t, clip_x0)
        alphabar = self.alphas_cumprod[t]
        alphabar_prev = self.alphas_cumprod[prev] if prev >= 0 else torch.ones_like(alphabar)
        jump = self.betas[t] if faithful_sigma else 1 - alphabar / alphabar_prev
        sigma = eta * torch.sqrt((1 - alphabar_prev) / (1 - alphabar) * jump)
        x_prev = alphabar_prev.sqrt() * x0 + torch.sqrt((1 - alphabar_prev - sigma**2).clamp(min=0)) * eps
        if eta > 0:
            x_prev = x_prev + sigma * _randn_like(x, generator)
        return x_prev

    def _ddpm_step(self, x, eps, t, clip_x0, generator):
        x0, _ = self._predict_x0(x, eps, t, clip_x0)
        alphabar, alphabar_prev, beta = self.alphas_cumprod[t], self.alphas_cumprod_prev[t], self.betas[t]
        # Mean of q(x_{t-1} | x_t, x0), Ho et al. 2020 eq. 7.
        mean = (alphabar_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - alphabar_prev) * x) / (1 - alphabar)
        if t == 0:
            return mean
        return mean + self.posterior_variance[t].sqrt() * _randn_like(x, generator)


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
