"""Training of a fusion + head on precomputed features: AdamW, a cosine schedule, gradient clipping,
optional weight averaging and early stopping on the validation split."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from benchmark.config import TrainConfig
from benchmark.device import autocast, grad_scaler, resolve_device, seed_everything
from benchmark.encoding.feature_set import FeatureSet
from benchmark.errors import BenchmarkError
from benchmark.predictive import fair_crps
from benchmark.progress import progress_bar
from benchmark.training.checks import HeadError, check_loss, checked
from benchmark.training.model import EVAL_BATCH, Model, TrainedModel
from benchmark.training.scaling import FeatureScaler, TargetScaler, feature_scaler_for, wants_raw_targets

MONITOR_SAMPLES = 8  # samples for the validation CRPS, and the MAE of heads without a closed-form mean


@dataclass
class _Split:
    """A split's clip rows as tensors on the training device, targets standardised."""

    features: torch.Tensor
    tabular: torch.Tensor | None
    target: torch.Tensor

    @classmethod
    def of(cls, data: FeatureSet, scaler: TargetScaler, feature_scaler: FeatureScaler,
           device: torch.device) -> "_Split":
        tabular = data.clip_tabular()
        return cls(feature_scaler(torch.from_numpy(data.features)).to(device),
                   None if tabular is None else torch.from_numpy(tabular).to(device),
                   torch.as_tensor(scaler.standardise(data.clip_ef()), dtype=torch.float32).to(device))

    def rows(self, index) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        return self.features[index], None if self.tabular is None else self.tabular[index], self.target[index]

    def __len__(self) -> int:
        return len(self.target)


def train_model(fusion: nn.Module, head: nn.Module, train: FeatureSet, val: FeatureSet, settings: TrainConfig,
                seed: int, epochs: int | None = None,
                on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                trial=None, quiet: bool = False, name: str | None = None,
                feature_scaler: FeatureScaler | None = None) -> TrainedModel:
    """Fit ``fusion`` + ``head`` on ``train``, stop early on ``val`` and keep the best epoch's weights.

    Features are standardised with ``feature_scaler``, by default one fitted on ``train``'s clips (none
    for a head that declares ``feature_scale = "raw"``).

    Build the modules right after ``seed_everything(seed)`` (``build_model`` does) so that their
    initial weights are reproducible too.

    ``on_epoch(epoch, logs)`` receives train_loss, val_loss (and val_mae or val_crps when monitored) and lr;
    the validation figures only every ``settings.validate_every`` epochs and at the last, the only epochs at
    which the best weights are kept, early stopping is decided and a trial is reported.
    With an Optuna ``trial`` the monitored value is reported each epoch and the trial pruned when
    Optuna says so. ``settings.patience`` = 0 trains every epoch (the best is still restored).
    A NaN loss raises ``HeadError`` naming the head.
    """
    name = name or type(head).__name__
    if not (train.n_items and val.n_items):
        raise BenchmarkError(f"training {name!r} needs training and validation items; got {train.n_items} "
                             f"and {val.n_items}. Check the split protocol.")
    device = resolve_device(settings.device)
    seed_everything(seed, device)
    scaler = TargetScaler.fit(train.ef, raw=wants_raw_targets(head))
    feature_scaler = feature_scaler_for(head, train.features) if feature_scaler is None else feature_scaler
    module = Model(fusion, head).to(device)
    trained = TrainedModel(fusion, head, scaler, name, feature_scaler=feature_scaler)
    parameters = [p for p in module.parameters() if p.requires_grad]
    if not parameters:  # e.g. an oracle head: nothing to fit
        return trained
    train_rows, val_rows = (_Split.of(data, scaler, feature_scaler, device) for data in (train, val))
    epochs = epochs or settings.epochs
    steps = math.ceil(len(train_rows) / settings.batch_size)
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    loss_scaler = grad_scaler(device, settings.amp)
    shuffle = torch.Generator().manual_seed(seed)
    averaged = _moving_average(module, settings.ema)
    evaluated = module if averaged is None else averaged.module
    best_value, best_state = math.inf, _snapshot(evaluated)

    progress = progress_bar(range(1, epochs + 1), quiet=quiet, desc=f"train {name}", unit="epoch", leave=False)
    for epoch in progress:
        module.train()
        total = 0.0
        for step, index in enumerate(torch.randperm(len(train_rows), generator=shuffle).split(settings.batch_size)):
            features, tabular, target = train_rows.rows(index.to(device))
            with autocast(device, settings.amp):
                loss = head.loss(module(features, tabular), target)
            check_loss(name, loss, epoch, step)
            optimizer.zero_grad(set_to_none=True)
            loss_scaler.scale(loss).backward()
            if settings.grad_clip > 0:
                loss_scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
            loss_scaler.step(optimizer)
            loss_scaler.update()
            schedule.step()
            if averaged is not None:
                averaged.update_parameters(module)
            total += float(loss.detach()) * len(index)
        validated = epoch % settings.validate_every == 0 or epoch == epochs
        logs = {"train_loss": total / len(train_rows),
                **(_validate(evaluated, val_rows, scaler, settings, seed, name) if validated else {}),
                "lr": optimizer.param_groups[0]["lr"]}
        trained.history.append(logs)
        progress.set_postfix({key: f"{value:.4g}" for key, value in logs.items() if key != "lr"})
        if on_epoch is not None:
            on_epoch(epoch, logs)
        if not validated:
            continue
        value = logs[f"val_{settings.monitor}"]
        if value < best_value:
            best_value, best_state, trained.best_epoch = value, _snapshot(evaluated), epoch
        if trial is not None:
            _report(trial, value, epoch)
        if settings.patience > 0 and epoch - trained.best_epoch >= settings.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return trained


def _moving_average(module: nn.Module, decay: float):
    """An exponential moving average of the weights (per step), or None for ``decay`` 0: the usual
    practice for diffusion models, whose samples from the last step's weights vary from step to step."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _validate(module: Model, rows: _Split, scaler: TargetScaler, settings: TrainConfig, seed: int,
              name: str) -> dict[str, float]:
    """Validation loss (and the monitored MAE or CRPS in EF units) with fixed randomness, so that
    epochs are compared on the same diffusion noise / samples rather than on luck."""
    module.eval()
    devices = [rows.target.device] if rows.target.device.type == "cuda" else []
    loss_sum, score_sum = 0.0, 0.0
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for index in torch.arange(len(rows), device=rows.target.device).split(EVAL_BATCH):
            features, tabular, target = rows.rows(index)
            condition = module(features, tabular)
            loss = module.head.loss(condition, target)
            if not torch.isfinite(loss):
                raise HeadError(f"head {name!r}: validation loss is {float(loss)}. Lower train.lr or check the head.")
            loss_sum += float(loss) * len(index)
            if settings.monitor == "mae":
                score_sum += float((_point(module.head, condition, name) - target).abs().sum())
            elif settings.monitor == "crps":
                score_sum += float(fair_crps(_draws(module.head, condition, name).double().cpu().numpy(),
                                             target.double().cpu().numpy()).sum())
    logs = {"val_loss": loss_sum / len(rows)}
    if settings.monitor != "loss":
        logs[f"val_{settings.monitor}"] = score_sum / len(rows) * scaler.std
    return logs


def _point(head: nn.Module, condition: torch.Tensor, name: str) -> torch.Tensor:
    if hasattr(head, "mean"):
        return checked(name, "mean", head.mean(condition), (len(condition),), finite=True)
    return _draws(head, condition, name).mean(dim=1)


def _draws(head: nn.Module, condition: torch.Tensor, name: str) -> torch.Tensor:
    return checked(name, f"sample(condition, {MONITOR_SAMPLES})", head.sample(condition, MONITOR_SAMPLES),
                    (len(condition), MONITOR_SAMPLES), finite=True)


def _report(trial, value: float, epoch: int) -> None:
    trial.report(value, epoch)
    if trial.should_prune():
        import optuna

        raise optuna.TrialPruned(f"pruned at epoch {epoch} (validation {value:.4g})")


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}
