"""Figures of a run, one PNG per function: agreement, calibration, posteriors, diffusion trajectories.

matplotlib is imported on first use with the non-interactive Agg backend, so headless machines and
commands that never plot do not pay for it.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from benchmark.evaluation.leaderboard import JobResult
from benchmark.store import atomic_write_bytes, safe_name

LEVELS = np.linspace(0.0, 1.0, 21)


@dataclass(frozen=True)
class PosteriorExamples:
    """Samples of a few test items; the oracle posterior is a Gaussian mixture per item, (n, M) arrays."""

    ids: Sequence[str]
    y: np.ndarray  # (n,)
    samples: np.ndarray  # (n, K)
    oracle_weights: np.ndarray | None = None
    oracle_means: np.ndarray | None = None
    oracle_stds: np.ndarray | None = None


@dataclass(frozen=True)
class Trajectories:
    """Reverse-diffusion paths in EF units, one (steps, K) array per case (first step = pure noise)."""

    labels: Sequence[str]  # e.g. "confident", "ambiguous"
    ids: Sequence[str]
    y: np.ndarray  # (cases,)
    paths: Sequence[np.ndarray]


def confident_and_ambiguous(spread: np.ndarray) -> tuple[int, int]:
    """Indices of the items with the narrowest and the widest predictive spread."""
    spread = np.asarray(spread, dtype=float)
    return int(np.nanargmin(spread)), int(np.nanargmax(spread))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


def predicted_vs_true(path: str | Path, y: np.ndarray, predicted: np.ndarray, title: str = "") -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter(y, predicted, s=10, alpha=0.6)
    low, high = float(np.min([y, predicted])) - 2, float(np.max([y, predicted])) + 2
    axis.plot([low, high], [low, high], color="black", linewidth=1, label="identity")
    axis.set(xlim=(low, high), ylim=(low, high), xlabel="true EF (%)", ylabel="predicted EF (%)", title=title)
    axis.legend(loc="upper left")
    return _save(figure, path)


def bland_altman(path: str | Path, y: np.ndarray, predicted: np.ndarray, title: str = "") -> Path:
    """Difference (predicted - true) against the pair mean, with bias and 95% limits of agreement."""
    plt = _pyplot()
    y, predicted = np.asarray(y, dtype=float), np.asarray(predicted, dtype=float)
    difference, average = predicted - y, (predicted + y) / 2
    bias, spread = difference.mean(), 1.96 * difference.std(ddof=1)
    figure, axis = plt.subplots(figsize=(5.5, 4))
    axis.scatter(average, difference, s=10, alpha=0.6)
    axis.axhline(bias, color="black", label=f"bias {bias:+.2f}")
    for limit in (bias - spread, bias + spread):
        axis.axhline(limit, color="grey", linestyle="--")
    axis.plot([], [], color="grey", linestyle="--", label=f"limits ±{spread:.2f}")
    axis.set(xlabel="mean of predicted and true EF (%)", ylabel="predicted - true (%)", title=title)
    axis.legend(loc="upper right")
    return _save(figure, path)


def reliability_diagram(path: str | Path, pits: Mapping[str, np.ndarray], title: str = "") -> Path:
    """Observed frequency of PIT <= level against the level, one line per model (diagonal = calibrated)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], color="black", linewidth=1, label="calibrated")
    for model, pit in pits.items():
        pit = np.asarray(pit, dtype=float)
        axis.plot(LEVELS, (pit[:, None] <= LEVELS[None, :]).mean(axis=0), marker="o", markersize=3, label=model)
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="predictive quantile level",
             ylabel="fraction of targets below", title=title or "Reliability (PIT)")
    axis.legend(loc="upper left", fontsize="small")
    return _save(figure, path)


def mixture_density(grid: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Density of one Gaussian mixture (components (M,)) on a grid."""
    z = (grid[:, None] - means[None, :]) / stds[None, :]
    return (weights * np.exp(-0.5 * z**2) / (stds * math.sqrt(2 * math.pi))).sum(axis=1)


def posterior_examples(path: str | Path, examples: PosteriorExamples, title: str = "") -> Path:
    """One panel per item: histogram of the samples, the true EF, and the oracle posterior if known."""
    plt = _pyplot()
    n = len(examples.ids)
    columns = min(n, 3)
    rows = math.ceil(n / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        if index >= n:
            axis.set_visible(False)
            continue
        samples = np.asarray(examples.samples[index], dtype=float)
        axis.hist(samples, bins=20, density=True, alpha=0.6, label="samples")
        axis.axvline(examples.y[index], color="black", label="true EF")
        if examples.oracle_means is not None:
            low, high = min(samples.min(), examples.y[index]) - 10, max(samples.max(), examples.y[index]) + 10
            grid = np.linspace(low, high, 400)
            density = mixture_density(grid, np.asarray(examples.oracle_weights[index], dtype=float),
                                      np.asarray(examples.oracle_means[index], dtype=float),
                                      np.asarray(examples.oracle_stds[index], dtype=float))
            axis.plot(grid, density, color="tab:red", label="oracle posterior")
        axis.set(title=str(examples.ids[index]), xlabel="EF (%)")
        if index == 0:
            axis.legend(fontsize="small")
    if title:
        figure.suptitle(title, y=1.02)
    return _save(figure, path)


def sampling_trajectories(path: str | Path, trajectories: Trajectories, title: str = "") -> Path:
    """Each case's K reverse-diffusion paths over the sampling steps, ending at the samples."""
    plt = _pyplot()
    cases = len(trajectories.paths)
    figure, axes = plt.subplots(1, cases, figsize=(5 * cases, 3.5), squeeze=False, sharey=True)
    for axis, label, item_id, y, path_array in zip(axes.flat, trajectories.labels, trajectories.ids,
                                                    trajectories.y, trajectories.paths):
        path_array = np.asarray(path_array, dtype=float)
        axis.plot(np.arange(len(path_array)), path_array, color="tab:blue", alpha=0.35, linewidth=0.8)
        axis.axhline(y, color="black", linestyle="--", label="true EF")
        axis.set(title=f"{label}: {item_id}", xlabel="sampling step", ylabel="EF (%)")
        axis.legend(loc="upper right", fontsize="small")
    if title:
        figure.suptitle(title, y=1.02)
    return _save(figure, path)


def _slug(text: str) -> str:
    return safe_name(text).strip("_") or "model"


def write_all(plot_dir: str | Path, results: Sequence[JobResult],
              examples: Mapping[str, PosteriorExamples] | None = None,
              trajectories: Mapping[str, Trajectories] | None = None) -> list[Path]:
    """Every figure of a run from its job results (each model's lowest finished seed).

    ``examples`` and ``trajectories`` (by model label) hold what the per-item tables cannot: full
    sample sets, oracle posteriors and diffusion paths, recorded by the runner at evaluation time.
    """
    plot_dir = Path(plot_dir)
    first: dict[str, JobResult] = {}
    for result in sorted(results, key=lambda r: r.seed):
        if result.status == "ok" and result.items is not None:
            first.setdefault(result.model, result)
    written = []
    for model, result in first.items():
        y, predicted = result.items["EF"].to_numpy(float), result.items["EF_pred"].to_numpy(float)
        title = f"{model} (seed {result.seed})"
        written.append(predicted_vs_true(plot_dir / f"pred_vs_true_{_slug(model)}.png", y, predicted, title))
        written.append(bland_altman(plot_dir / f"bland_altman_{_slug(model)}.png", y, predicted, title))
    if first:
        written.append(reliability_diagram(plot_dir / "reliability.png",
                                           {model: r.items["pit"].to_numpy(float) for model, r in first.items()}))
    for model, example in (examples or {}).items():
        written.append(posterior_examples(plot_dir / f"posterior_{_slug(model)}.png", example, model))
    for model, paths in (trajectories or {}).items():
        written.append(sampling_trajectories(plot_dir / f"trajectories_{_slug(model)}.png", paths, model))
    return written
