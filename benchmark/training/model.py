"""A fusion + head as one model, and the trained model's predictive distribution in EF units.

``build_model`` makes the fusion and head of a model config; ``TrainedModel.predict`` draws K samples per
item (pooling the test-time clips of a video) and maps any closed forms the head has back to EF units;
``TrainedModel.save``/``load`` store it. Training itself is ``benchmark.training.loop``.
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

from benchmark.components import accepted
from benchmark.config import ModelConfig
from benchmark.contracts import Predictive
from benchmark.device import resolve_device, seed_everything
from benchmark.encoding.feature_set import FeatureSet
from benchmark.predictive import mixture_predictive
from benchmark.store import atomic_write_bytes
from benchmark.training.checks import checked
from benchmark.training.scaling import FeatureScaler, TargetScaler

EVAL_BATCH = 1024  # rows per forward pass when nothing is trained: memory is small, speed matters




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


def build_served_head(registry, model: ModelConfig, oracle_path: Path | None, training_ef: np.ndarray) -> nn.Module:
    """A head the runner serves without training (oracle, prior), given what it takes of the sidecar of exact
    posteriors and the training split's EF; it predicts by ``predict_ids``."""
    offered = {"oracle_path": oracle_path, "training_ef": training_ef}
    factory = registry.describe("head", model.head).factory
    return registry.build("head", model.head, condition_dim=0, **accepted(factory, offered), **model.params)


# --------------------------------------------------------------------------- the trained model
class Model(nn.Module):
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
        module = Model(self.fusion, self.head).eval()
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
                    out = checked(self.name, f"sample(condition, {n})", self.head.sample(conditions[batch], int(n)),
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
                    checked(self.name, name, value, tuple(log_weights.shape), finite=name != "mixture log weights")
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
                out.append(checked(self.model.name, what, function(*args), (len(condition),),
                                    finite=what != "log_prob").double().cpu().numpy())
        return np.concatenate(out) if out else np.empty(0)


def _conditions(module: Model, features: FeatureSet, feature_scaler: FeatureScaler,
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


