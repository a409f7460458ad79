"""Training of a fusion + head on precomputed features, and its predictive distribution in EF units.

The encoder is frozen by the time this runs, so a job trains only the small fusion and head on cached
features: ``train_model`` fits them with AdamW, a cosine schedule, gradient clipping and early stopping
on the validation split; ``TrainedModel.predict`` draws K samples per item (pooling the test-time clips
of a video) and maps any closed forms the head has back to EF units.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from .config import ModelConfig, TrainConfig
from .contracts import Predictive
from .device import autocast, grad_scaler, resolve_device, seed_everything
from .errors import BenchmarkError
from .scoring import fair_crps, mixture_predictive
from .store import atomic_write_bytes

EVAL_BATCH = 1024  # rows per forward pass when nothing is trained: memory is small, speed matters
MONITOR_SAMPLES = 8  # samples for the validation CRPS, and the MAE of heads without a closed-form mean


class HeadError(BenchmarkError):
    """A head misbehaved: a NaN loss, or samples / closed forms of the wrong shape or not finite."""


# --------------------------------------------------------------------------- inputs
@dataclass
class FeatureSet:
    """Cached encoder features of one split.

    ``ids``, ``ef`` and ``tabular`` have one entry per item (video). ``features`` has one row per clip;
    ``clip_item[c]`` is the item index of clip row ``c`` (None: one clip per item, in order).
    """

    ids: list[str]
    features: np.ndarray
    ef: np.ndarray
    tabular: np.ndarray | None = None
    clip_item: np.ndarray | None = None

    def __post_init__(self):
        self.ids = list(self.ids)
        self.features = np.ascontiguousarray(self.features, dtype=np.float32)
        self.ef = np.asarray(self.ef, dtype=np.float64)
        n = len(self.ids)
        if self.features.ndim != 2:
            raise ValueError(f"features must be (clips, feature_dim), got shape {self.features.shape}")
        if self.ef.shape != (n,):
            raise ValueError(f"ef must have one value per id ({n}), got shape {self.ef.shape}")
        if self.tabular is not None:
            self.tabular = np.ascontiguousarray(self.tabular, dtype=np.float32)
            if self.tabular.ndim != 2 or len(self.tabular) != n:
                raise ValueError(f"tabular must be (items={n}, columns), got shape {self.tabular.shape}")
        if self.clip_item is None:
            if len(self.features) != n:
                raise ValueError(f"{len(self.features)} feature rows for {n} ids: give clip_item to say "
                                 "which item each clip belongs to")
            self.clip_item = np.arange(n)
        self.clip_item = np.asarray(self.clip_item, dtype=np.int64)
        if self.clip_item.shape != (len(self.features),):
            raise ValueError(f"clip_item needs one entry per feature row ({len(self.features)}), "
                             f"got shape {self.clip_item.shape}")
        if n and (self.clip_item.min() < 0 or self.clip_item.max() >= n):
            raise ValueError(f"clip_item values must index the {n} ids")
        missing = np.flatnonzero(self.clips_per_item == 0)
        if missing.size:
            raise ValueError(f"{missing.size} item(s) have no clip, e.g. {self.ids[missing[0]]!r}")

    @property
    def n_items(self) -> int:
        return len(self.ids)

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    @property
    def tabular_dim(self) -> int:
        return 0 if self.tabular is None else self.tabular.shape[1]

    @property
    def clips_per_item(self) -> np.ndarray:
        return np.bincount(self.clip_item, minlength=self.n_items)

    @property
    def single_clip(self) -> bool:
        return len(self.features) == self.n_items and bool(np.all(self.clips_per_item == 1))

    def clip_tabular(self) -> np.ndarray | None:
        return None if self.tabular is None else self.tabular[self.clip_item]

    def clip_ef(self) -> np.ndarray:
        return self.ef[self.clip_item]


@dataclass(frozen=True)
class TargetScaler:
    """EF standardisation fitted on the training split; identity for heads trained on raw EF."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, ef: np.ndarray, raw: bool = False) -> "TargetScaler":
        if raw:
            return cls()
        std = float(np.std(ef))
        return cls(float(np.mean(ef)), std if std > 0 else 1.0)

    def standardise(self, ef):
        return (ef - self.mean) / self.std

    def to_ef(self, z):
        return z * self.std + self.mean


@dataclass(frozen=True)
class FeatureScaler:
    """Video-feature standardisation fitted on the training clips; empty is the identity.

    Encoders give features on their own scales (an area-length encoder mixes shares of a few percent
    with log volumes), and an MLP learns little from a feature whose spread is 0.02: standardised, the
    cue that the lateral wall is hidden is as loud as the rest. Imported models keep the identity,
    since they were trained on raw features.
    """

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @classmethod
    def fit(cls, features: np.ndarray) -> "FeatureScaler":
        std = features.std(axis=0)
        return cls(tuple(features.mean(axis=0).tolist()), tuple(np.where(std > 0, std, 1.0).tolist()))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if not self.mean:
            return features
        if features.shape[-1] != len(self.mean):
            raise ValueError(f"the feature scaler was fitted on {len(self.mean)} features, got {features.shape[-1]}")
        mean, std = (torch.tensor(v, dtype=features.dtype, device=features.device) for v in (self.mean, self.std))
        return (features - mean) / std


def wants_raw_targets(head: nn.Module) -> bool:
    """Heads declaring ``target_scale = "raw"`` (the faithful MCSDR) train on EF in percent."""
    return getattr(head, "target_scale", "standard") == "raw"


def build_model(registry, model: ModelConfig, feature_dim: int, tabular_dim: int, seed: int,
                head_params: Mapping[str, Any] | None = None,
                fusion_params: Mapping[str, Any] | None = None) -> tuple[nn.Module, nn.Module]:
    """The fusion and head of ``model``; tuned parameters override the experiment's.

    Seeds first: the initial weights are part of what ``seed`` must reproduce.
    """
    seed_everything(seed)
    fusion = registry.build("fusion", model.fusion, feature_dim=feature_dim, tabular_dim=tabular_dim,
                            **{**model.fusion_params, **(fusion_params or {})})
    head = registry.build("head", model.head, condition_dim=fusion.out_dim,
                          **{**model.params, **(head_params or {})})
    return fusion, head


# --------------------------------------------------------------------------- the trained model
class _Model(nn.Module):
    """Fusion and head as one module: one parameter list, one state dict."""

    def __init__(self, fusion: nn.Module, head: nn.Module):
        super().__init__()
        self.fusion = fusion
        self.head = head

    def forward(self, features: torch.Tensor, tabular: torch.Tensor | None) -> torch.Tensor:
        return self.fusion(features, tabular)


@dataclass
class TrainedModel:
    """A trained fusion + head with the target and feature scalers it was trained under."""

    fusion: nn.Module
    head: nn.Module
    scaler: TargetScaler
    name: str
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    feature_scaler: FeatureScaler = FeatureScaler()

    @property
    def device(self) -> torch.device:
        tensors = [*self.fusion.parameters(), *self.head.parameters(), *self.head.buffers()]
        return tensors[0].device if tensors else torch.device("cpu")

    def condition(self, features: torch.Tensor, tabular: torch.Tensor | None) -> torch.Tensor:
        """The head's condition for raw encoder features (B, D) and tabular rows (B, P) or None."""
        return self.fusion(self.feature_scaler(features), tabular)

    def predict(self, features: FeatureSet, samples: int, point: str = "mean", seed: int = 0) -> Predictive:
        """K = ``samples`` draws per item in EF units, plus the head's closed forms where it has them.

        An item with c clips is the equal mixture of its clips' predictives: each clip contributes
        ceil(K / c) draws, taken clip by clip in turn until K are collected, so every head and every
        item gets exactly K samples. Closed forms are those of the same mixture.
        """
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        if point not in ("mean", "median"):
            raise ValueError(f"point must be 'mean' or 'median', got {point!r}")
        module = _Model(self.fusion, self.head).eval()
        conditions = _conditions(module, features, self.feature_scaler, self.device)
        draws = self._draw(conditions, features, samples, seed)
        if hasattr(self.head, "mixture"):  # a Gaussian mixture: every closed form is exact, CRPS included
            weights, means, stds = self._item_mixtures(conditions, features)
            return mixture_predictive(weights, means, stds, draws,
                                      point=np.median(draws, axis=1) if point == "median" else None)
        closed = _MixtureForms(self, conditions, features)
        mean = closed.mean()
        if point == "median":
            point_estimate = np.median(draws, axis=1)
        else:
            point_estimate = mean if mean is not None else draws.mean(axis=1)
        return Predictive(samples=draws, point=point_estimate, mean=mean, std=closed.std(),
                          log_prob=closed.log_prob if hasattr(self.head, "log_prob") else None,
                          cdf=closed.cdf if hasattr(self.head, "cdf") else None)

    def _draw(self, conditions: torch.Tensor, features: FeatureSet, samples: int, seed: int) -> np.ndarray:
        counts = features.clips_per_item
        per_clip = -(-samples // counts[features.clip_item])  # ceil(K / clips of the clip's item)
        draws: list[np.ndarray | None] = [None] * len(conditions)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            for n in np.unique(per_clip):
                rows = np.flatnonzero(per_clip == n)
                for start in range(0, len(rows), EVAL_BATCH):
                    batch = rows[start:start + EVAL_BATCH]
                    out = _checked(self.name, f"sample(condition, {n})", self.head.sample(conditions[batch], int(n)),
                                   (len(batch), int(n)), finite=True)
                    for row, values in zip(batch, out.float().cpu().numpy()):
                        draws[row] = values
        pooled = np.empty((features.n_items, samples))
        order = np.argsort(features.clip_item, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for item, (start, count) in enumerate(zip(starts, counts)):
            clip_draws = np.stack([draws[row] for row in order[start:start + count]])  # (c, ceil(K/c))
            pooled[item] = clip_draws.T.reshape(-1)[:samples]  # clip by clip in turn
        return self.scaler.to_ef(pooled)

    def _item_mixtures(self, conditions: torch.Tensor, features: FeatureSet) -> tuple[np.ndarray, ...]:
        """Each item's mixture in EF units: its clips' components, each clip weighted 1 / clips."""
        parts = []
        with torch.no_grad():
            for start in range(0, len(conditions), EVAL_BATCH):
                log_weights, means, stds = self.head.mixture(conditions[start:start + EVAL_BATCH])
                for name, value in (("mixture log weights", log_weights), ("mixture means", means),
                                    ("mixture stds", stds)):
                    _checked(self.name, name, value, tuple(log_weights.shape), finite=name != "mixture log weights")
                parts.append([value.double().cpu().numpy() for value in (log_weights.exp(), means, stds)])
        weights, means, stds = (np.concatenate(column) for column in zip(*parts))
        means, stds = self.scaler.to_ef(means), stds * self.scaler.std
        counts = features.clips_per_item
        width = int(counts.max()) * weights.shape[1]
        pooled = [np.zeros((features.n_items, width)), np.zeros((features.n_items, width)),
                  np.ones((features.n_items, width))]
        filled = np.zeros(features.n_items, dtype=int)
        for row, item in enumerate(features.clip_item):
            columns = slice(filled[item], filled[item] + weights.shape[1])
            pooled[0][item, columns] = weights[row] / counts[item]
            pooled[1][item, columns], pooled[2][item, columns] = means[row], stds[row]
            filled[item] += weights.shape[1]
        return tuple(pooled)

    # ----------------------------------------------------------------- storage
    def state_dict(self) -> dict[str, Any]:
        return {"fusion": self.fusion.state_dict(), "head": self.head.state_dict(),
                "scaler": asdict(self.scaler), "feature_scaler": asdict(self.feature_scaler), "name": self.name,
                "best_epoch": self.best_epoch, "history": self.history}

    def save(self, path: str | Path) -> None:
        """Write atomically, so a killed run never leaves a half-written model behind."""
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path, fusion: nn.Module, head: nn.Module, device: str = "auto") -> "TrainedModel":
        """Restore into freshly built ``fusion`` and ``head`` (built with the parameters used in training)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        fusion.load_state_dict(state["fusion"])
        head.load_state_dict(state["head"])
        target = resolve_device(device)
        return cls(fusion.to(target), head.to(target), TargetScaler(**state["scaler"]), state["name"],
                   state["best_epoch"], list(state["history"]), FeatureScaler(**state["feature_scaler"]))


class _MixtureForms:
    """Closed forms of the equal mixture of an item's clips, in EF units, from the head's own."""

    def __init__(self, model: TrainedModel, conditions: torch.Tensor, features: FeatureSet):
        self.model = model
        self.conditions = conditions
        self.clip_item = features.clip_item
        self.counts = features.clips_per_item
        self.n_items = features.n_items

    def mean(self) -> np.ndarray | None:
        clip_mean = self._clip_mean
        return None if clip_mean is None else self._average(clip_mean)

    def std(self) -> np.ndarray | None:
        clip_mean = self._clip_mean
        if clip_mean is None or not hasattr(self.model.head, "std"):
            return None
        clip_std = self._per_clip("std", self.model.head.std) * self.model.scaler.std
        second_moment = self._average(clip_std**2 + clip_mean**2)
        return np.sqrt(np.maximum(second_moment - self._average(clip_mean) ** 2, 0.0))

    def log_prob(self, y: np.ndarray) -> np.ndarray:
        scaler = self.model.scaler
        z = torch.as_tensor(scaler.standardise(np.asarray(y, dtype=np.float64)[self.clip_item]), dtype=torch.float32)
        clip_lp = self._per_clip("log_prob", self.model.head.log_prob, z) - math.log(scaler.std)
        peak = np.full(self.n_items, -np.inf)
        np.maximum.at(peak, self.clip_item, clip_lp)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        total = np.bincount(self.clip_item, weights=np.exp(clip_lp - peak[self.clip_item]), minlength=self.n_items)
        with np.errstate(divide="ignore"):
            return peak + np.log(total / self.counts)

    def cdf(self, y: np.ndarray) -> np.ndarray:
        z = self.model.scaler.standardise(np.asarray(y, dtype=np.float64)[self.clip_item])
        return self._average(self._per_clip("cdf", self.model.head.cdf, torch.as_tensor(z, dtype=torch.float32)))

    @functools.cached_property
    def _clip_mean(self) -> np.ndarray | None:
        if not hasattr(self.model.head, "mean"):
            return None
        return self.model.scaler.to_ef(self._per_clip("mean", self.model.head.mean))

    def _average(self, per_clip: np.ndarray) -> np.ndarray:
        return np.bincount(self.clip_item, weights=per_clip, minlength=self.n_items) / self.counts

    def _per_clip(self, what: str, function: Callable, y: torch.Tensor | None = None) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(self.conditions), EVAL_BATCH):
                condition = self.conditions[start:start + EVAL_BATCH]
                args = (condition,) if y is None else (condition, y[start:start + EVAL_BATCH].to(condition.device))
                # log_prob may be -inf far in the tails; NaN is never a valid answer
                out.append(_checked(self.model.name, what, function(*args), (len(condition),),
                                    finite=what != "log_prob").double().cpu().numpy())
        return np.concatenate(out) if out else np.empty(0)


def _checked(name: str, what: str, value: Any, shape: tuple[int, ...], finite: bool) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise HeadError(f"head {name!r}: {what} returned {type(value).__name__}, expected a tensor of shape {shape}")
    if tuple(value.shape) != shape:
        raise HeadError(f"head {name!r}: {what} returned shape {tuple(value.shape)}, expected {shape}")
    bad = ~torch.isfinite(value) if finite else torch.isnan(value)
    if bool(bad.any()):
        kind = "non-finite" if finite else "NaN"
        raise HeadError(f"head {name!r}: {what} returned {int(bad.sum())} {kind} value(s) of {value.numel()}")
    return value


def _conditions(module: _Model, features: FeatureSet, feature_scaler: FeatureScaler,
                device: torch.device) -> torch.Tensor:
    rows = feature_scaler(torch.from_numpy(features.features))
    tabular = features.clip_tabular()
    tabular = None if tabular is None else torch.from_numpy(tabular)
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), EVAL_BATCH):
            batch_tab = None if tabular is None else tabular[start:start + EVAL_BATCH].to(device)
            out.append(module(rows[start:start + EVAL_BATCH].to(device), batch_tab))
    return torch.cat(out) if out else torch.empty(0, device=device)


# --------------------------------------------------------------------------- training
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

    Features are standardised with ``feature_scaler``, by default one fitted on ``train``'s clips.

    Build the modules right after ``seed_everything(seed)`` (``build_model`` does) so that their
    initial weights are reproducible too.

    ``on_epoch(epoch, logs)`` receives train_loss, val_loss (and val_mae or val_crps when monitored) and lr.
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
    feature_scaler = FeatureScaler.fit(train.features) if feature_scaler is None else feature_scaler
    module = _Model(fusion, head).to(device)
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

    from tqdm.auto import tqdm

    progress = tqdm(range(1, epochs + 1), desc=f"train {name}", unit="epoch", disable=quiet, leave=False)
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
        logs = {"train_loss": total / len(train_rows), **_validate(evaluated, val_rows, scaler, settings, seed, name),
                "lr": optimizer.param_groups[0]["lr"]}
        trained.history.append(logs)
        progress.set_postfix({key: f"{value:.4g}" for key, value in logs.items() if key != "lr"})
        if on_epoch is not None:
            on_epoch(epoch, logs)
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


def check_loss(name: str, loss: Any, epoch: int, step: int) -> None:
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise HeadError(f"head {name!r}: loss(condition, target) must return a scalar tensor, got {shape}")
    if not torch.isfinite(loss):
        raise HeadError(f"head {name!r}: training loss is {float(loss.detach())} at epoch {epoch}, batch {step + 1}. "
                        "Lower train.lr, tighten train.grad_clip or check the head's loss.")


def _validate(module: _Model, rows: _Split, scaler: TargetScaler, settings: TrainConfig, seed: int,
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
        return _checked(name, "mean", head.mean(condition), (len(condition),), finite=True)
    return _draws(head, condition, name).mean(dim=1)


def _draws(head: nn.Module, condition: torch.Tensor, name: str) -> torch.Tensor:
    return _checked(name, f"sample(condition, {MONITOR_SAMPLES})", head.sample(condition, MONITOR_SAMPLES),
                    (len(condition), MONITOR_SAMPLES), finite=True)


def _report(trial, value: float, epoch: int) -> None:
    trial.report(value, epoch)
    if trial.should_prune():
        import optuna

        raise optuna.TrialPruned(f"pruned at epoch {epoch} (validation {value:.4g})")


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


__all__ = ["FeatureSet", "FeatureScaler", "TargetScaler", "TrainedModel", "HeadError", "train_model", "build_model",
           "wants_raw_targets"]
