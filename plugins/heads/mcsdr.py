"""The MCSDR head: a conditional diffusion model over the scalar target (arXiv 2602.08202).

Read top to bottom: the noise predictors (what eps is predicted from), then the head that trains and
samples them through the DDPM/DDIM core in ``_diffusion.py`` beside this file.

Noise predictors: eps from (noisy target y_t, time features, condition).

Each predictor splits its work in two so sampling is cheap:
``prepare(condition (B, D))`` does everything that depends only on the condition, once per condition;
``forward(y_t (B, K), time (B or 1, K or 1, E), memory)`` does the rest for all K samples of a step.
The first layer ``map_y_t`` acts on [y_t, time]; it is applied as ``y_t * w_y + (W_t time + b)`` so the
time part is computed once per step and broadcast, never on a (B*K, 1+E) concatenation.
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.api import MLPTrunk, range_problems
from plugins.heads._diffusion import SAMPLERS, SCHEDULES, Diffusion, Sampler, Schedule, SinusoidalEmbedding
from registry import Categorical, FloatParam, IntParam, hookimpl


# --------------------------------------------------------------------------- noise predictors
class NoisePredictor(nn.Module):
    """Shared input projections: ``map_y_t`` on [y_t, time] and ``map_cond`` on the condition."""

    def __init__(self, condition_dim: int, time_dim: int, width: int, cond_width: int):
        super().__init__()
        self.map_y_t = nn.Linear(1 + time_dim, width)
        self.map_cond = nn.Linear(condition_dim, cond_width)

    def query(self, y_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """map_y_t([y_t, time]) for y_t (B, K) and time (B or 1, K or 1, E) -> (B, K, width)."""
        weight = self.map_y_t.weight
        return y_t[..., None] * weight[:, 0] + F.linear(time, weight[:, 1:], self.map_y_t.bias)


class AttentionLayers:
    """Mixin: cross-attention from each sample's query to the condition tokens, residual + LayerNorm,
    then a 4x feed-forward layer, residual + LayerNorm (post-norm, as in the reference). A mixin so the
    legacy predictor keeps these parameters at its top level, where the reference has them."""

    def build_attention(self, width: int, heads: int) -> None:
        if width % heads:
            raise ValueError(f"attention width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.cross_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def _projections(self):
        return self.cross_attention.in_proj_weight.chunk(3), self.cross_attention.in_proj_bias.chunk(3)

    def keys_values(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition-only half of attention: tokens (B, S, W) -> keys, values (B, heads, S, W/heads)."""
        (_, w_k, w_v), (_, b_k, b_v) = self._projections()
        split = lambda x: x.unflatten(-1, (self.heads, -1)).transpose(1, 2)
        return split(F.linear(tokens, w_k, b_k)), split(F.linear(tokens, w_v, b_v))

    def attend(self, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of h (B, K, W) over precomputed keys/values, with output projection."""
        (w_q, _, _), (b_q, _, _) = self._projections()
        q = F.linear(h, w_q, b_q).unflatten(-1, (self.heads, -1))  # (B, K, heads, d)
        scores = torch.einsum("bkhd,bhsd->bkhs", q, keys) / math.sqrt(q.shape[-1])
        mixed = torch.einsum("bkhs,bhsd->bkhd", scores.softmax(dim=-1), values).flatten(-2)
        return self.cross_attention.out_proj(mixed)

    def single_token_attention(self, token: torch.Tensor) -> torch.Tensor:
        """With one key token the softmax is 1, so attention is out_proj(value(token)) whatever the query."""
        (_, _, w_v), (_, _, b_v) = self._projections()
        return self.cross_attention.out_proj(F.linear(token, w_v, b_v))

    def mix(self, h: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        h = self.norm1(h + attended)
        return self.norm2(h + self.ffn(h))


class AttentionBlock(AttentionLayers, nn.Module):
    """One attention layer of ``DeepAttention``."""

    def __init__(self, width: int, heads: int):
        nn.Module.__init__(self)
        self.build_attention(width, heads)


class LegacyAttention(AttentionLayers, NoisePredictor):
    """The published predictor: one cross-attention block whose single key is the projected condition.

    Parameter names match the reference (map_y_t, map_cond, cross_attention, norm1, norm2, ffn,
    final_layer), so its state dict loads unchanged.
    """

    def __init__(self, condition_dim: int, time_dim: int = 64, width: int = 256, heads: int = 8):
        NoisePredictor.__init__(self, condition_dim, time_dim, width, width)
        self.build_attention(width, heads)
        self.final_layer = nn.Linear(width, 1)

    def prepare(self, condition: torch.Tensor) -> torch.Tensor:
        return self.single_token_attention(self.map_cond(condition))[:, None, :]  # (B, 1, W)

    def forward(self, y_t: torch.Tensor, time: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.mix(self.query(y_t, time), memory))[..., 0]


class DeepAttention(NoisePredictor):
    """``layers`` attention blocks over ``tokens`` condition tokens, so attention depends on the query."""

    def __init__(self, condition_dim: int, time_dim: int = 64, width: int = 256, heads: int = 8,
                 layers: int = 4, tokens: int = 4):
        super().__init__(condition_dim, time_dim, width, tokens * width)
        self.tokens = tokens
        self.blocks = nn.ModuleList(AttentionBlock(width, heads) for _ in range(layers))
        self.final_layer = nn.Linear(width, 1)

    def prepare(self, condition: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        tokens = self.map_cond(condition).unflatten(-1, (self.tokens, -1))  # (B, S, W)
        return [block.keys_values(tokens) for block in self.blocks]

    def forward(self, y_t: torch.Tensor, time: torch.Tensor, memory) -> torch.Tensor:
        h = self.query(y_t, time)
        for block, (keys, values) in zip(self.blocks, memory):
            h = block.mix(h, block.attend(h, keys, values))
        return self.final_layer(h)[..., 0]


class MLPPredictor(NoisePredictor):
    """An MLP on [y_t, time, condition]: its first layer is map_y_t + map_cond, then the shared trunk."""

    def __init__(self, condition_dim: int, time_dim: int = 64, width: int = 256, depth: int = 2,
                 dropout: float = 0.0):
        super().__init__(condition_dim, time_dim, width, width)
        self.trunk = MLPTrunk(width, width, depth, dropout)
        self.final_layer = nn.Linear(width, 1)

    def prepare(self, condition: torch.Tensor) -> torch.Tensor:
        return self.map_cond(condition)[:, None, :]

    def forward(self, y_t: torch.Tensor, time: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.trunk(F.gelu(self.query(y_t, time) + memory)))[..., 0]


Predictor = Literal["legacy_attention", "deep_attention", "mlp"]  # annotated so that validate names a misspelt one
PREDICTORS = dict(zip(get_args(Predictor), (LegacyAttention, DeepAttention, MLPPredictor)))
# Sizes besides ``width`` and ``depth`` (the trunk's ranges: width is 256 in the reference, searched up to 512).
# The reference: 8 heads, time_dim 64 (or 32), T = 1000. Heads: 64-dimensional ones at width 2048 are 32, GPT-3
# has 96. time_dim: the sinusoidal embedding needs an even dimension >= 4; a width's worth is plenty. timesteps:
# 10x DDPM's 1000 (a DDPM pass runs all T). layers: UniFormer-S stacks 18 blocks, ViT-L 24. tokens: default 4;
# each is a ``width`` slice of the condition's projection.
RANGES = {"heads": (1, 256), "time_dim": (4, 2048), "timesteps": (1, 10000), "layers": (1, 24), "tokens": (1, 64)}


# --------------------------------------------------------------------------- the head
class MCSDRHead(Diffusion):
    """Conditional diffusion (DDPM training, DDIM/DDPM sampling) over EF, as in MCSDR.

    The state dict matches the reference's ``regressor_state_dict`` (without ``tabular_encoder``, which
    lives in the ``concat`` fusion): schedule buffers, ``time_mlp.1`` and ``noise_predictor.*``.
    Parameters: ``predictor`` legacy_attention (published; ``width``, ``heads``), deep_attention
    (``layers`` blocks attending over ``tokens`` condition tokens) or mlp (``depth``, ``dropout``);
    ``time_dim`` of the sinusoidal embedding; ``timesteps`` T and beta ``schedule`` (linear 1e-4..0.02 or
    cosine); ``sampler`` ddim (``steps``, ``eta``) or ddpm (all T steps); ``clip_x0`` = [low, high] clamps
    every x0 prediction, in the units the head is trained on (standardised, or EF % when faithful).
    ``faithful`` reproduces the reference: raw EF targets
    (``target_scale == "raw"``), raw encoder features (``feature_scale == "raw"``), its DDIM timestep
    grid (999, 899, .., 99, then the x0 prediction) and its DDIM sigma (differs only for eta > 0).
    Without it the head keeps the project's grid (900, .., 0), with which every figure in README was
    measured; standardised targets and features are what it is tuned for.
    """

    # What each predictor and sampler reads: validate refuses the others' parameters, which would be ignored.
    read_only_with: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "heads": ("predictor", ("legacy_attention", "deep_attention")), "layers": ("predictor", ("deep_attention",)),
        "tokens": ("predictor", ("deep_attention",)), "depth": ("predictor", ("mlp",)),
        "dropout": ("predictor", ("mlp",)), "steps": ("sampler", ("ddim",)), "eta": ("sampler", ("ddim",))}

    def __init__(self, condition_dim: int, predictor: Predictor = "legacy_attention", width: int = 256,
                 heads: int = 8, time_dim: int = 64, timesteps: int = 1000, schedule: Schedule = "linear",
                 sampler: Sampler = "ddim", steps: int = 10, eta: float = 0.0,
                 clip_x0: tuple[float, float] | list[float] | None = None,
                 faithful: bool = False, depth: int = 2, layers: int = 4, tokens: int = 4,
                 dropout: float = 0.0):
        if schedule not in SCHEDULES:
            raise ValueError(f"mcsdr: unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        super().__init__(timesteps, schedule)
        if predictor not in PREDICTORS:
            raise ValueError(f"mcsdr: unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
        if sampler not in SAMPLERS:
            raise ValueError(f"mcsdr: unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not 0 <= eta <= 1:  # DDIM's noise scale: 0 deterministic, 1 the DDPM posterior's variance
            raise ValueError(f"mcsdr: eta must be between 0 and 1, got {eta!r}")
        if clip_x0 is not None and (len(clip_x0) != 2 or not clip_x0[0] < clip_x0[1]):
            raise ValueError(f"mcsdr: clip_x0 must be [low, high] with low < high, got {clip_x0!r}")
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.GELU())
        options = {"legacy_attention": {"heads": heads},
                   "deep_attention": {"heads": heads, "layers": layers, "tokens": tokens},
                   "mlp": {"depth": depth, "dropout": dropout}}[predictor]
        self.noise_predictor = PREDICTORS[predictor](condition_dim, time_dim=time_dim, width=width, **options)
        self.sampler, self.steps, self.eta, self.faithful = sampler, steps, eta, faithful
        self.clip_x0 = tuple(clip_x0) if clip_x0 is not None else None
        self.target_scale = "raw" if faithful else "standardised"
        self.feature_scale = "raw" if faithful else "standardised"

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        problems = {**MLPTrunk.parameter_problems(params), **range_problems(params, RANGES)}
        # DDIM visits `steps` of the T timesteps: more fail only when sampling, after every job's work (a checkpoint
        # model, which has no pre-flight, at its test items)
        steps, timesteps = params.get("steps"), params.get("timesteps", 1000)
        if (params.get("sampler", "ddim") == "ddim" and isinstance(steps, int) and isinstance(timesteps, int)
                and "timesteps" not in problems and not 1 <= steps <= timesteps):
            problems["steps"] = f"must be between 1 and timesteps ({timesteps}) for DDIM, got {steps!r}"
        return problems

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


@hookimpl
def register_heads(registry):
    registry.add(
        "mcsdr", MCSDRHead,
        metadata={"probabilistic": True, "trajectories": True, "paper": "arXiv 2602.08202"},
        search_space={
            "lr": FloatParam(1e-4, 1e-3, log=True),
            "predictor": Categorical(tuple(PREDICTORS)),
            "width": Categorical((128, 256, 512)),
            "time_dim": Categorical((32, 64)),
            "steps": IntParam(10, 50, log=True),
        },
    )
