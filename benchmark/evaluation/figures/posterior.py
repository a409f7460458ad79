"""Every model's predictive on the same few test items (a row per item, a colour per model), with the
oracle posterior and the true EF; items chosen by the oracle's spread, so "ambiguous" is the data's
ambiguity, not a model's opinion."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from benchmark.evaluation.figures.style import ORACLE_COLOUR, outside_range, pyplot, save, short_label
from benchmark.evaluation.leaderboard import EF_RANGE

Components = Sequence[tuple[float, float, float]]  # (weight, mean, std) of a Gaussian mixture, EF units
PER_SIDE = 2  # items from each end of the spread ranking
GRID = np.linspace(EF_RANGE[0], EF_RANGE[1], 401)


@dataclass(frozen=True)
class ModelSamples:
    """A model's stored predictive on its first finished seed: K samples per test item, and for heads with a
    closed form its density on ``grid`` (see ``scoring.grid_density``)."""

    ids: Sequence[str]
    y: np.ndarray  # (N,) true EF
    samples: np.ndarray  # (N, K)
    density: np.ndarray | None = None  # (N, G)
    grid: np.ndarray | None = None  # (G,)

    def row(self, item_id: str) -> int:
        return list(map(str, self.ids)).index(item_id)


@dataclass(frozen=True)
class ChosenItem:
    id: str
    tag: str  # "ambiguous" / "confident" (by the oracle) or "wide" / "narrow" (by the models, without one)
    spread: float
    y: float


def mixture_density(grid: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Density of one Gaussian mixture (components (M,)) on a grid."""
    z = (grid[:, None] - means[None, :]) / stds[None, :]
    return (weights * np.exp(-0.5 * z**2) / (stds * math.sqrt(2 * math.pi))).sum(axis=1)


def mixture_sd(components: Components) -> float:
    weights, means, stds = (np.array(column, dtype=float) for column in zip(*components))
    mean = (weights * means).sum()
    return float(np.sqrt(max((weights * (stds**2 + means**2)).sum() - mean**2, 0.0)))


def choose_items(models: Mapping[str, ModelSamples], oracle: Mapping[str, Components],
                 per_side: int = PER_SIDE) -> tuple[list[ChosenItem], str]:
    """The items every model predicted with the widest and the narrowest spread, and the rule as a sentence.

    The spread is the oracle posterior's standard deviation where the data has an oracle for every such
    item; otherwise the models' sample standard deviation, averaged over models. Ties go by id.
    """
    common = sorted(set.intersection(*(set(map(str, stored.ids)) for stored in models.values())))
    if common and all(item in oracle for item in common):
        spread = {item: mixture_sd(oracle[item]) for item in common}
        tags, rule = ("ambiguous", "confident"), "oracle posterior sd"
    else:
        spread = {item: float(np.mean([np.std(stored.samples[stored.row(item)]) for stored in models.values()]))
                  for item in common}
        tags, rule = ("wide", "narrow"), "predictive sd averaged over the models (no oracle for these items)"
    ranked = sorted(common, key=lambda item: (spread[item], item))
    per_side = min(per_side, len(ranked) // 2) or min(len(ranked), 1)
    picks = [(item, tags[0]) for item in ranked[::-1][:per_side]] + [(item, tags[1]) for item in ranked[:per_side]]
    first = next(iter(models.values()))
    chosen = [ChosenItem(item, tag, spread[item], float(first.y[first.row(item)])) for item, tag in picks]
    return chosen, f"the {per_side} test items with the largest and the {per_side} with the smallest {rule}"


def predictive_density(stored: ModelSamples, row: int) -> np.ndarray | None:
    """The exact density where stored, else a Gaussian KDE of the samples inside ``EF_RANGE`` scaled by their
    share (outliers would otherwise widen the kernel until the shape is gone); None for a point prediction."""
    if stored.density is not None and stored.grid is not None:
        return np.interp(GRID, stored.grid, stored.density[row])
    samples = np.asarray(stored.samples[row], dtype=float)
    inside = samples[(samples >= EF_RANGE[0]) & (samples <= EF_RANGE[1])]
    if len(inside) < 2 or np.ptp(inside) == 0:
        return None
    from scipy.stats import gaussian_kde

    return gaussian_kde(inside)(GRID) * len(inside) / len(samples)


def posterior_figure(path: str | Path, models: Mapping[str, ModelSamples], oracle: Mapping[str, Components],
                     colours: Mapping[str, tuple]) -> Path:
    items, rule = choose_items(models, oracle)
    figure, axes = pyplot().subplots(len(items), 1, figsize=(8, 2.2 * len(items) + 1.2), sharex=True, squeeze=False,
                                     layout="constrained")
    for axis, item in zip(axes.flat, items):
        outside = []
        for model, stored in models.items():
            row = stored.row(item.id)
            count = outside_range(stored.samples[row])
            if count:
                outside.append(f"{model} {count}/{stored.samples.shape[1]}")
            density = predictive_density(stored, row)
            if density is None:  # a point prediction: a line where it lies
                axis.axvline(float(np.mean(stored.samples[row])), color=colours[model], linestyle=":", label=model)
            else:
                axis.plot(GRID, density, color=colours[model], linewidth=1.3, label=model)
        if item.id in oracle:
            weights, means, stds = (np.array(column, dtype=float) for column in zip(*oracle[item.id]))
            axis.plot(GRID, mixture_density(GRID, weights, means, stds), color=ORACLE_COLOUR, linestyle="--",
                      linewidth=1.6, label="oracle posterior")
        axis.axvline(item.y, color=ORACLE_COLOUR, linewidth=1.2, label="true EF")
        axis.set_title(f"{item.tag}: {short_label(item.id)} (sd {item.spread:.1f})", loc="left", fontsize="small")
        axis.set(xlim=EF_RANGE, ylabel="density")
        if outside:
            axis.text(0.99, 0.95, f"outside {EF_RANGE[0]:g}-{EF_RANGE[1]:g}: " + ", ".join(outside),
                      transform=axis.transAxes, ha="right", va="top", fontsize="x-small")
    axes.flat[-1].set_xlabel("EF (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 5), fontsize="small")
    # the rule below the panels: constrained layout keeps it clear of the legend above them
    figure.supxlabel(f"Items: {rule}.\nCurves: exact density where the head has a closed form, else a KDE of "
                     "its samples (dotted: a point prediction)", fontsize="small")
    return save(figure, path)
