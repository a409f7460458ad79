"""Calibration: a PIT histogram per model, and the reliability diagram of every model, all seeds pooled."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from benchmark.evaluation.figures.style import grid_of, pyplot, save

LEVELS = np.linspace(0.0, 1.0, 21)
BINS = 10


def pit_histograms(path: str | Path, pits: Mapping[str, np.ndarray], colours: Mapping[str, tuple]) -> Path:
    """``pits``: per model, the PIT of every test item of every seed. Flat = calibrated; U = too narrow;
    a hump = too wide."""
    models = list(pits)
    rows, columns = grid_of(len(models))
    figure, axes = pyplot().subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False,
                                     sharex=True, layout="constrained")
    for axis in axes.flat[len(models):]:
        axis.set_visible(False)
    for axis, model in zip(axes.flat, models):
        pit = np.asarray(pits[model], dtype=float)
        pit = pit[np.isfinite(pit)]
        axis.hist(pit, bins=BINS, range=(0, 1), density=True, color=colours[model], alpha=0.8)
        axis.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        axis.set(xlim=(0, 1), title=f"{model} (n={len(pit)})", xlabel="PIT")
        axis.title.set_fontsize("small")
    figure.suptitle("PIT histograms, all seeds pooled (dashed: calibrated)")
    return save(figure, path)


def reliability_diagram(path: str | Path, pits: Mapping[str, np.ndarray], colours: Mapping[str, tuple],
                        seeds: int) -> Path:
    """Observed frequency of PIT <= level against the level, one line per model (diagonal = calibrated)."""
    figure, axis = pyplot().subplots(figsize=(4.8, 4.8), layout="constrained")
    axis.plot([0, 1], [0, 1], color="black", linewidth=1, label="calibrated")
    for model, pit in pits.items():
        pit = np.asarray(pit, dtype=float)
        pit = pit[np.isfinite(pit)]
        axis.plot(LEVELS, (pit[:, None] <= LEVELS[None, :]).mean(axis=0), marker="o", markersize=3, label=model,
                  color=colours[model])
    pooled = f"all {seeds} seeds pooled" if seeds > 1 else "1 seed"
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="predictive quantile level", ylabel="fraction of targets below",
             title=f"Reliability (PIT), {pooled}")
    axis.legend(loc="upper left", fontsize="small")
    return save(figure, path)
