"""MCSDR's reference written out from its equations, independently of the project's code paths.

What the tests compare the ``faithful`` path with (facts from ../shared/reference/mcsdr.md and the public
reference code; nothing here imports the project): the ``DiffusionRegressorHead`` with ``LegacyAttention``
(tabular encoder, sinusoidal time embedding, one cross-attention block over one key), its DDIM loop over
``reversed(linspace(-1, T - 1, S + 1).int())`` that returns the x0 prediction at the end marker, its DDPM loop
(``p_sample``: the posterior mean written from eps, no noise at t = 0), and its tabular preprocessing (Sex
factorised, mean imputation, min-max scaling).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

T = 1000


def reference_grid(steps: int) -> list[int]:
    """The reference's timesteps, end marker -1 included: S = 10 gives 999, 899, .., 99, -1."""
    return list(reversed(torch.linspace(-1, T - 1, steps + 1).int().tolist()))


def reference_eps(w: dict[str, torch.Tensor], x: torch.Tensor, t: int, condition: torch.Tensor,
                  heads: int = 8) -> torch.Tensor:
    """LegacyAttention's noise prediction for rows x (N,) at timestep t, condition (N, D), in float64."""
    linear = lambda v, name: v @ w[name + ".weight"].T + w[name + ".bias"]
    norm = lambda v, name: F.layer_norm(v, (v.shape[-1],), w[name + ".weight"], w[name + ".bias"], 1e-5)
    half = w["time_mlp.1.weight"].shape[0] // 2
    frequencies = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - 1))
    time = F.gelu(linear(torch.cat([torch.sin(t * frequencies), torch.cos(t * frequencies)]), "time_mlp.1"))
    q = linear(torch.cat([x[:, None], time.expand(len(x), -1)], 1), "noise_predictor.map_y_t")
    kv = linear(condition, "noise_predictor.map_cond")
    width = q.shape[1]
    w_q, w_k, w_v = w["noise_predictor.cross_attention.in_proj_weight"].chunk(3)
    b_q, b_k, b_v = w["noise_predictor.cross_attention.in_proj_bias"].chunk(3)
    split = lambda v: v.view(len(x), heads, width // heads)
    # Each head's softmax runs over one key, so its weight is exactly 1, whatever q @ k.
    scores = (split(q @ w_q.T + b_q) * split(kv @ w_k.T + b_k)).sum(-1, keepdim=True) / math.sqrt(width // heads)
    attended = (scores[..., None].softmax(-2)[..., 0] * split(kv @ w_v.T + b_v)).reshape(len(x), width)
    h = norm(q + linear(attended, "noise_predictor.cross_attention.out_proj"), "noise_predictor.norm1")
    ffn = linear(F.gelu(linear(h, "noise_predictor.ffn.0")), "noise_predictor.ffn.2")
    return linear(norm(h + ffn, "noise_predictor.norm2"), "noise_predictor.final_layer")[:, 0]


def reference_ddim(regressor: dict[str, torch.Tensor], feature: torch.Tensor, tabular: torch.Tensor | None,
                   noise: torch.Tensor, steps: int = 10, eta: float = 0.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The reference's ``p_sample_loop(sampler="ddim")`` from ``noise`` (B, K): one row per sample, the
    condition repeated K times; a fresh N(0, 1) draw of shape (B, K) per step while t_prev >= 0."""
    w = {key: value.double() for key, value in regressor.items()}
    batch, samples = noise.shape
    condition = feature.double()
    if tabular is not None:
        hidden = torch.relu(tabular.double() @ w["tabular_encoder.0.weight"].T + w["tabular_encoder.0.bias"])
        condition = torch.cat([condition, hidden @ w["tabular_encoder.2.weight"].T + w["tabular_encoder.2.bias"]], 1)
    condition = condition.repeat_interleave(samples, 0)
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    alphabar = torch.cumprod(1 - betas, 0)
    x = noise.double().reshape(-1)
    times = reference_grid(steps)
    for t, t_prev in zip(times[:-1], times[1:]):
        eps = reference_eps(w, x, t, condition)
        x0 = (1 / alphabar[t]).sqrt() * x - (1 / alphabar[t] - 1).sqrt() * eps
        if t_prev < 0:
            x = x0
            break
        sigma = eta * ((1 - alphabar[t_prev]) / (1 - alphabar[t]) * betas[t]).sqrt()
        z = torch.randn(batch, samples, generator=generator).double().reshape(-1)
        x = alphabar[t_prev].sqrt() * x0 + (1 - alphabar[t_prev] - sigma**2).sqrt() * eps + sigma * z
    return x.reshape(batch, samples)


def reference_ddpm(eps, noise: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The reference's ``p_sample_loop(sampler="ddpm")`` from ``noise`` (B, K), in float64, for a noise predictor
    ``eps(x (B*K,), t)`` on one row per sample: for t = T-1 .. 0, mean = (x - beta_t eps / sqrt(1 - abar_t)) /
    sqrt(1 - beta_t), plus sqrt(posterior variance) times a fresh N(0, 1) draw of shape (B, K) while t > 0."""
    batch, samples = noise.shape
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    alphabar = torch.cumprod(1 - betas, 0)
    alphabar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphabar[:-1]])
    x = noise.double().reshape(-1)
    for t in reversed(range(T)):
        x = (x - betas[t] * eps(x, t) / (1 - alphabar[t]).sqrt()) / (1 - betas[t]).sqrt()
        if t > 0:
            variance = betas[t] * (1 - alphabar_prev[t]) / (1 - alphabar[t])
            x = x + variance.sqrt() * torch.randn(batch, samples, generator=generator).double().reshape(-1)
    return x.reshape(batch, samples)


def reference_tabular(train: pd.DataFrame, other: pd.DataFrame) -> np.ndarray:
    """The reference's preprocessing of ``other``'s columns with every statistic taken from ``train``:
    ``pd.factorize`` on Sex (codes by first appearance, NaN -> -1), mean imputation of the other columns,
    then min-max scaling of every column (a constant column scales by 1, as sklearn's MinMaxScaler)."""
    def encode(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        if "Sex" in frame:
            codes, _ = pd.factorize(pd.concat([train["Sex"], frame["Sex"]]))  # train's categories come first
            codes = codes[len(train):]
            seen = set(train["Sex"].dropna())
            frame["Sex"] = [code if sex in seen else -1 for code, sex in zip(codes, frame["Sex"])]
        numeric = [column for column in frame if column != "Sex"]
        frame[numeric] = frame[numeric].fillna(train[numeric].mean())
        return frame.astype(float)

    fitted = encode(train)
    low, high = fitted.min(), fitted.max()
    span = (high - low).where(high > low, 1.0)
    return ((encode(other) - low) / span).to_numpy(np.float32)
