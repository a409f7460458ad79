"""End-to-end fine-tuning of the encoder together with one model's fusion and head (for GPU users).

With ``[encoder] finetune = true`` each trained model first updates a copy of its (split, seed) stage-1
encoder jointly with its fusion and head on random training clips for ``finetune_epochs`` epochs (encoder
learning rate = ``train.lr`` x ``lr_mult``); the job then caches that encoder's features and trains the
fusion and head on them with early stopping on VAL, exactly as without fine-tuning.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
from torch import nn

from benchmark.config import TrainConfig
from benchmark.device import autocast, grad_scaler, seed_everything
from benchmark.encoding.stage1 import freeze
from benchmark.training.checks import check_loss
from benchmark.training.scaling import FeatureScaler, TargetScaler


def finetune(encoder: nn.Module, fusion: nn.Module, head: nn.Module, loader: Iterable, tabular: np.ndarray | None,
             scaler: TargetScaler, settings: TrainConfig, lr_mult: float, epochs: int, seed: int,
             device: torch.device, name: str, feature_scaler: FeatureScaler = FeatureScaler()) -> list[float]:
    """Train encoder, fusion and head on ``loader`` batches ``(clip, target, item index, ...)``; returns
    the mean loss per epoch and leaves the encoder frozen. ``tabular`` rows are indexed by item index;
    the encoder's features pass ``feature_scaler`` (fixed) on their way to the fusion."""
    seed_everything(seed, device)
    modules = nn.ModuleList([encoder, fusion, head]).to(device).train()
    optimizer = torch.optim.AdamW([
        {"params": [p for p in encoder.parameters() if p.requires_grad], "lr": settings.lr * lr_mult},
        {"params": [p for module in (fusion, head) for p in module.parameters() if p.requires_grad],
         "lr": settings.lr},
    ], weight_decay=settings.weight_decay)
    steps = epochs * math.ceil(len(loader.dataset) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    loss_scaler = grad_scaler(device, settings.amp)
    table = None if tabular is None else torch.as_tensor(tabular, dtype=torch.float32)
    history = []
    for epoch in range(1, epochs + 1):
        total, count = 0.0, 0
        for step, (clip, target, item, *_) in enumerate(loader):
            clip = clip.to(device)
            rows = None if table is None else table[item].to(device)
            target = torch.as_tensor(scaler.standardise(target.double().numpy()), dtype=torch.float32, device=device)
            with autocast(device, settings.amp):
                loss = head.loss(fusion(feature_scaler(encoder(clip)), rows), target)
            check_loss(name, loss, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            loss_scaler.scale(loss).backward()
            if settings.grad_clip > 0:
                loss_scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(modules.parameters(), settings.grad_clip)
            loss_scaler.step(optimizer)
            loss_scaler.update()
            schedule.step()
            total, count = total + float(loss.detach()) * len(clip), count + len(clip)
        history.append(total / max(count, 1))
    freeze(encoder)
    return history
