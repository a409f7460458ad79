"""Predicted against true EF, and Bland-Altman: one panel per model, every seed's test items pooled, each
point with its 90% predictive interval."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from benchmark.evaluation.figures.style import grid_of, pyplot, save
from benchmark.evaluation.leaderboard import EF_RANGE
from benchmark.evaluation.scoring import interval_columns

INTERVAL = 0.90
LOW, HIGH = interval_columns(INTERVAL)


def _panels(models: list[str]):
    rows, columns = grid_of(len(models))
    figure, axes = pyplot().subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False,
                                     layout="constrained")
    for axis in axes.flat[len(models):]:
        axis.set_visible(False)
    return figure, axes.flat


def _seeds(frame: pd.DataFrame) -> str:
    seeds = sorted(frame["seed"].unique())
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds pooled"


def _interval_bars(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True EF, predicted EF and the (2, n) distances from the prediction down and up to its interval's ends
    (clipped at 0: the point prediction may lie outside the interval of a skewed or multimodal predictive)."""
    y, predicted = frame["EF"].to_numpy(float), frame["EF_pred"].to_numpy(float)
    below, above = predicted - frame[LOW].to_numpy(float), frame[HIGH].to_numpy(float) - predicted
    return y, predicted, np.clip([below, above], 0, None)


def predicted_vs_true(path: str | Path, items: Mapping[str, pd.DataFrame], colours: Mapping[str, tuple]) -> Path:
    """``items``: per model, its test items over every seed (EF, EF_pred, lo90, hi90, seed)."""
    models = list(items)
    figure, axes = _panels(models)
    for axis, model in zip(axes, models):
        frame = items[model]
        y, predicted, bars = _interval_bars(frame)
        axis.errorbar(y, predicted, yerr=bars, fmt="o", markersize=3, elinewidth=0.6, alpha=0.6, color=colours[model])
        axis.plot(EF_RANGE, EF_RANGE, color="black", linewidth=0.8)
        axis.set(xlim=EF_RANGE, ylim=EF_RANGE, title=f"{model} ({_seeds(frame)})", xlabel="true EF (%)",
                 ylabel="predicted EF (%)")
        axis.title.set_fontsize("small")
    figure.suptitle(f"Predicted vs true EF, bars: {INTERVAL:.0%} predictive interval (axes clipped to "
                    f"{EF_RANGE[0]:g}-{EF_RANGE[1]:g})")
    return save(figure, path)


def bland_altman(path: str | Path, items: Mapping[str, pd.DataFrame], colours: Mapping[str, tuple]) -> Path:
    """Difference (predicted - true) against the pair mean, its 90% interval, bias and 95% limits of agreement."""
    models = list(items)
    figure, axes = _panels(models)
    for axis, model in zip(axes, models):
        frame = items[model]
        y, predicted, bars = _interval_bars(frame)
        difference, average = predicted - y, (predicted + y) / 2
        axis.errorbar(average, difference, yerr=bars, fmt="o", markersize=3, elinewidth=0.6, alpha=0.6,
                      color=colours[model])
        bias = difference.mean()
        spread = 1.96 * difference.std(ddof=1) if len(difference) > 1 else 0.0
        axis.axhline(bias, color="black", linewidth=1, label=f"bias {bias:+.2f}")
        for limit in (bias - spread, bias + spread):
            axis.axhline(limit, color="grey", linestyle="--", linewidth=0.8)
        axis.plot([], [], color="grey", linestyle="--", label=f"limits ±{spread:.2f}")
        # symmetric, wide enough for the points and the limits, clipped like the EF axis to stay readable
        reach = min(max(10.0, abs(bias) + spread, float(np.nanmax(np.abs(difference), initial=0.0))) + 3, 60.0)
        axis.set(xlim=EF_RANGE, ylim=(-reach, reach), title=f"{model} ({_seeds(frame)})",
                 xlabel="mean of predicted and true EF (%)", ylabel="predicted - true (%)")
        axis.title.set_fontsize("small")
        axis.legend(loc="upper right", fontsize="x-small")
    figure.suptitle(f"Bland-Altman, bars: {INTERVAL:.0%} predictive interval")
    return save(figure, path)
