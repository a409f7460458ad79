"""Figures of a run: posteriors, agreement, calibration, the forest plot and diffusion trajectories.

Every figure colours a model the same way (``style.model_colours``, leaderboard order). ``write_all``
draws them from what the run stored; ``benchmark.evaluation.report`` gathers those inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.evaluation.figures.agreement import bland_altman, predicted_vs_true
from benchmark.evaluation.figures.calibration import pit_histograms, reliability_diagram
from benchmark.evaluation.figures.forest import forest_plot
from benchmark.evaluation.figures.posterior import Components, ModelSamples, posterior_figure
from benchmark.evaluation.figures.style import model_colours
from benchmark.evaluation.figures.trajectories import Trajectories, oracle_labels, sampling_trajectories
from benchmark.evaluation.leaderboard import HEADLINE, JobResult, MetricSpec
from benchmark.store import safe_name


@dataclass
class FigureInputs:
    results: Sequence[JobResult]
    board: pd.DataFrame  # the leaderboard: model order, means and CIs
    specs: Sequence[MetricSpec]
    samples: Mapping[str, ModelSamples] = field(default_factory=dict)  # per model, its first finished seed
    oracle: Mapping[str, Components] = field(default_factory=dict)  # per item id, where the data has one
    trajectories: Mapping[str, Trajectories] = field(default_factory=dict)  # per model that records them
    reference: Collection[str] = ()  # models that are reference rows (oracle, prior), not competitors


def _pooled_items(results: Sequence[JobResult]) -> dict[str, pd.DataFrame]:
    """Per model, the test items of every finished seed, with a ``seed`` column."""
    frames: dict[str, list[pd.DataFrame]] = {}
    for result in sorted(results, key=lambda r: r.seed):
        if result.status == "ok" and result.items is not None:
            frames.setdefault(result.model, []).append(result.items.assign(seed=result.seed))
    return {model: pd.concat(parts, ignore_index=True) for model, parts in frames.items()}


def _slug(text: str) -> str:
    return safe_name(text).strip("_") or "model"


def write_all(plot_dir: str | Path, inputs: FigureInputs) -> list[Path]:
    """Every figure the inputs allow, as PNGs in ``plot_dir``; returns their paths in reading order."""
    plot_dir = Path(plot_dir)
    colours = model_colours(list(inputs.board["model"]))
    items = _pooled_items(inputs.results)
    written = []
    if inputs.samples:
        written.append(posterior_figure(plot_dir / "posterior.png", inputs.samples, inputs.oracle, colours))
    if items:
        pits = {model: frame["pit"].to_numpy(float) for model, frame in items.items()}
        seeds = max(frame["seed"].nunique() for frame in items.values())
        written += [predicted_vs_true(plot_dir / "pred_vs_true.png", items, colours),
                    bland_altman(plot_dir / "bland_altman.png", items, colours),
                    pit_histograms(plot_dir / "pit.png", pits, colours),
                    reliability_diagram(plot_dir / "reliability.png", pits, colours, seeds)]
    headline = [spec for spec in inputs.specs if spec.name in HEADLINE and spec.aggregate is not None]
    finite = [spec for spec in headline if np.isfinite(inputs.board[spec.name].to_numpy(float)).any()]
    if finite:
        written.append(forest_plot(plot_dir / "forest.png", inputs.board, finite, colours, inputs.reference))
    for model, paths in inputs.trajectories.items():
        test_ids = inputs.samples[model].ids if model in inputs.samples else paths.ids
        labels = oracle_labels(paths.ids, inputs.oracle, test_ids)
        written.append(sampling_trajectories(plot_dir / f"trajectories_{_slug(model)}.png", paths, labels,
                                             f"{model}: reverse-diffusion paths", colours[model]))
    return written
