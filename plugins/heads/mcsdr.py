"""The MCSDR head: a conditional diffusion model over the scalar target (arXiv 2602.08202)."""
from __future__ import annotations

import torch
from torch import nn

from benchmark.diffusion import SAMPLERS, SCHEDULES, Diffusion, SinusoidalEmbedding
from benchmark.noise_predictors import PREDICTORS
from registry import Categorical, FloatParam, IntParam, hookimpl


class MCSDRHead(Diffusion):
    """Conditional diffusion (DDPM training, DDIM/DDPM sampling) over EF, as in MCSDR.

    The state dict matches the reference's ``regressor_state_dict`` (without ``tabular_encoder``, which
    lives in the ``concat`` fusion): schedule buffers, ``time_mlp.1`` and ``noise_predictor.*``.
    Parameters: ``predictor`` legacy_attention (published; ``width``, ``heads``), deep_attention
    (``layers`` blocks attending over ``tokens`` condition tokens) or mlp (``depth``, ``dropout``);
    ``time_dim`` of the sinusoidal embedding; ``timesteps`` T and beta ``schedule`` (linear 1e-4..0.02 or
    cosine); ``sampler`` ddim (``steps``, ``eta``) or ddpm (all T steps); ``clip_x0`` = [low, high] clamps
    every x0 prediction, in the units the head is trained on (standardised, or EF % when faithful);
    ``point`` mean or median of the samples. ``faithful`` reproduces the reference: raw EF targets
    (``target_scale == "raw"``) and its DDIM sigma (differs only for eta > 0).
    """

    def __init__(self, condition_dim: int, predictor: str = "legacy_attention", width: int = 256,
                 heads: int = 8, time_dim: int = 64, timesteps: int = 1000, schedule: str = "linear",
                 sampler: str = "ddim", steps: int = 10, eta: float = 0.0,
                 clip_x0: tuple[float, float] | list[float] | None = None, point: str = "mean",
                 faithful: bool = False, depth: int = 2, layers: int = 4, tokens: int = 4,
                 dropout: float = 0.0):
        if schedule not in SCHEDULES:
            raise ValueError(f"mcsdr: unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        super().__init__(timesteps, schedule)
        if predictor not in PREDICTORS:
            raise ValueError(f"mcsdr: unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
        if sampler not in SAMPLERS:
            raise ValueError(f"mcsdr: unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if point not in ("mean", "median"):
            raise ValueError(f"mcsdr: point must be 'mean' or 'median', got {point!r}")
        if clip_x0 is not None and (len(clip_x0) != 2 or not clip_x0[0] < clip_x0[1]):
            raise ValueError(f"mcsdr: clip_x0 must be [low, high] with low < high, got {clip_x0!r}")
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.GELU())
        options = {"legacy_attention": {"heads": heads},
                   "deep_attention": {"heads": heads, "layers": layers, "tokens": tokens},
                   "mlp": {"depth": depth, "dropout": dropout}}[predictor]
        self.noise_predictor = PREDICTORS[predictor](condition_dim, time_dim=time_dim, width=width, **options)
        self.sampler, self.steps, self.eta, self.point, self.faithful = sampler, steps, eta, point, faithful
        self.clip_x0 = tuple(clip_x0) if clip_x0 is not None else None
        self.target_scale = "raw" if faithful else "standardised"

    def loss(self, condition: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        memory = self.noise_predictor.prepare(condition)

        def predict(x_t, t):  # one sample per condition, each with its own timestep
            return self.noise_predictor(x_t[:, None], self.time_mlp(t)[:, None, :], memory)[:, 0]

        return self.epsilon_loss(target, predict)

    def denoiser(self, condition: torch.Tensor):
        """eps(x_t (B, K), t) with the condition-only work done here, once, for every sample and step."""
        memory = self.noise_predictor.prepare(condition)

        def eps(x_t, t):
            time = self.time_mlp(torch.tensor([t], device=x_t.device))[None]  # (1, 1, E), broadcast
            return self.noise_predictor(x_t, time, memory)

        return eps

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, n: int, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None, record: bool = False) -> torch.Tensor:
        """K = n samples per condition, (B, n); or the whole trajectory (S+1, B, n) when ``record``.
        ``noise`` (B, n) fixes the starting point, ``generator`` the randomness of eta > 0 and DDPM."""
        if noise is None:
            noise = torch.randn(condition.shape[0], n, generator=generator, device=condition.device)
        return self.reverse(self.denoiser(condition), noise, self.sampler, self.steps, self.eta,
                              self.clip_x0, self.faithful, generator, record)

    def point_estimate(self, samples: torch.Tensor) -> torch.Tensor:
        """The point prediction from samples (B, K): their mean (the reference) or median."""
        return samples.mean(dim=-1) if self.point == "mean" else samples.median(dim=-1).values


@hookimpl
def register_heads(registry):
    registry.add(
        "mcsdr", MCSDRHead,
        metadata={"probabilistic": True, "paper": "arXiv 2602.08202"},
        search_space={
            "lr": FloatParam(1e-4, 1e-3, log=True),
            "predictor": Categorical(tuple(PREDICTORS)),
            "width": Categorical((128, 256, 512)),
            "time_dim": Categorical((32, 64)),
            "steps": IntParam(10, 50, log=True),
        },
    )
