"""Stage 1: train the shared encoder once per seed, then freeze it for every head.

Objectives: ``l1`` or ``mse`` through a small MLP head (the loss reaches the encoder), or ``rnc``:
Rank-N-Contrast on the features plus L1 of an MLP head on *detached* features, as in the
CoReEcho/MCSDR reference (the ranking loss alone shapes the encoder; the head only monitors fit).
``tracings`` trains the encoder's LV segmentation (``encoder.segment``) on the traced end-diastolic and
end-systolic frames (``traced.TracedFrames`` batches), with no EF label: an encoder that measures the
cavity over the cycle (``area_length``) then carries EF in its features without learning it from labels.
``none`` freezes the encoder as it is (random or loaded weights). The learning rate follows a cosine
schedule over the epochs of stage 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import PretrainConfig
from benchmark.contracts import unable_to_segment
from benchmark.data.tracings import segmentation_losses
from benchmark.device import encoder_precision
from benchmark.errors import ConfigError

HEAD_WIDTH = 256
OBJECTIVES = ("none", "l1", "mse", "rnc", "tracings")


def rnc_loss(features: torch.Tensor, targets: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Rank-N-Contrast (Zha et al., 2023) for one view of a batch.

    For anchor i and positive j != i, the negatives are every k != i at least as far from y_i in
    label as y_j is: loss_ij = -log(exp(s_ij) / sum_{k: |y_i - y_k| >= |y_i - y_j|} exp(s_ik)),
    with similarity s = -||z_i - z_k||_2 / temperature. The mean over all (i, j) pairs is returned.
    """
    count = features.shape[0]
    if count < 2:  # a lone last batch has no pairs; zero keeps the graph and the epoch going
        return features.sum() * 0.0
    similarity = -torch.cdist(features, features) / temperature  # (N, N)
    label_distance = (targets.reshape(-1, 1) - targets.reshape(1, -1)).abs()  # (N, N)
    off_diagonal = ~torch.eye(count, dtype=torch.bool, device=features.device)
    # in_denominator[i, j, k]: k counts as a negative for the pair (i, j)
    in_denominator = (label_distance.unsqueeze(1) >= label_distance.unsqueeze(2)) & off_diagonal.unsqueeze(1)
    logits = similarity.unsqueeze(1).expand(count, count, count).masked_fill(~in_denominator, float("-inf"))
    log_probability = similarity - torch.logsumexp(logits, dim=2)  # (i, j)
    return -log_probability[off_diagonal].mean()


class RegressionHead(nn.Module):
    """The small MLP that reads EF from features during stage 1 (discarded afterwards)."""

    def __init__(self, feature_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, HEAD_WIDTH), nn.ReLU(), nn.Linear(HEAD_WIDTH, 1))

    def forward(self, features):
        return self.net(features).squeeze(-1)


def freeze(encoder: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm statistics and dropout fixed) and no gradients: features are reproducible."""
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder


def pretrain_encoder(encoder: nn.Module, train_loader, config: PretrainConfig, device, seed: int,
                     progress: bool = True, target_scale: tuple[float, float] | None = None,
                     precision: str = "float32") -> dict[str, list[float]]:
    """Train ``encoder`` on ``train_loader``, freeze it, return the mean loss per epoch by name (``loss``
    and its parts).

    Batches are ``(clip, target, ...)``; for ``tracings`` they are ``(frames, masks, ...)``. Targets are
    standardised with ``target_scale`` = (mean, std); by default the statistics of the EF labels of
    ``train_loader.dataset.items`` (no video is read for them), else of the first batch. ``precision``
    (``[encoder] precision``) is the arithmetic of the forward pass; losses and updates stay float32.
    """
    if config.objective not in OBJECTIVES:
        raise ConfigError(f"encoder.pretrain.objective must be one of {', '.join(OBJECTIVES)}, got {config.objective!r}")
    if config.objective == "none" or config.epochs == 0:
        freeze(encoder)
        return {}
    torch.manual_seed(seed)
    device = torch.device(device)
    encoder.to(device).train()
    encoder.requires_grad_(True)
    parameters = list(encoder.parameters())
    if config.objective == "tracings":
        losses = _segmentation_step(encoder)
    else:
        head = RegressionHead(encoder.feature_dim).to(device)
        parameters += list(head.parameters())
        losses = _regression_step(encoder, head, config, target_scale or _dataset_target_scale(train_loader))
    optimizer = torch.optim.AdamW(parameters, lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    history: dict[str, list[float]] = {}
    for epoch in range(config.epochs):
        totals: dict[str, float] = {}
        batches = 0
        for batch in train_loader:
            with encoder_precision(device, precision):
                parts = losses(batch[0].to(device), batch[1].to(device, torch.float32))
            loss = sum(parts.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for name, value in {"loss": loss.detach(), **parts}.items():
                totals[name] = totals.get(name, 0.0) + value.item()
            batches += 1
        if not batches:
            raise ValueError("stage 1: the training loader yielded no batches")
        schedule.step()
        for name, total in totals.items():
            history.setdefault(name, []).append(total / batches)
        if progress:
            print(f"stage 1 ({config.objective}) epoch {epoch + 1}/{config.epochs}: loss {history['loss'][-1]:.4f}")
    freeze(encoder)
    return history


def _segmentation_step(encoder):
    problem = unable_to_segment(encoder, type(encoder).__name__)
    if problem:
        raise ConfigError(f"encoder.pretrain.objective: {problem}")
    return lambda frames, masks: segmentation_losses(encoder.segment(frames).float(), masks)


def _regression_step(encoder, head, config: PretrainConfig, scale: tuple[float, float] | None):
    def losses(clip, target):
        nonlocal scale
        if scale is None:
            scale = _batch_scale(target)
        return _losses(encoder, head, clip, (target - scale[0]) / scale[1], config)
    return losses


def _losses(encoder, head, clip, target, config: PretrainConfig) -> dict[str, torch.Tensor]:
    features = encoder(clip).float()
    if config.objective == "rnc":
        return {"rnc": config.rnc_weight * rnc_loss(features, target, config.temperature),
                "l1": F.l1_loss(head(features.detach()).float(), target)}
    loss = F.l1_loss if config.objective == "l1" else F.mse_loss
    return {config.objective: loss(head(features).float(), target)}


def _dataset_target_scale(loader) -> tuple[float, float] | None:
    """Statistics of the training labels when the loader's dataset lists its ``Item`` records."""
    items = getattr(getattr(loader, "dataset", None), "items", None)
    if not items:
        return None
    return _batch_scale(torch.tensor([item.ef for item in items], dtype=torch.float32))


def _batch_scale(target: torch.Tensor) -> tuple[float, float]:
    std = float(target.std()) if target.numel() > 1 else 0.0
    return float(target.mean()), std if std > 0 else 1.0
