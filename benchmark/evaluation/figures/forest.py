"""Forest plot: each headline metric per model with its 95% patient-bootstrap CI, the reference rows
(oracle, prior) as vertical lines."""
from __future__ import annotations

from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.evaluation.figures.style import pyplot, save
from benchmark.evaluation.leaderboard import MetricSpec


def forest_plot(path: str | Path, board: pd.DataFrame, specs: Sequence[MetricSpec], colours: Mapping[str, tuple],
                reference: Collection[str]) -> Path:
    """``board``: the leaderboard (means and ``_ci_low``/``_ci_high``); ``specs``: the metrics to draw, one
    panel each; ``reference``: the models drawn as lines, not rows."""
    board = board[board["status"] != "failed"]
    compared = board[~board["model"].isin(reference)]
    references = board[board["model"].isin(reference)]
    rows = max(len(compared), 1)
    figure, axes = pyplot().subplots(1, len(specs), figsize=(3.6 * len(specs), 0.45 * rows + 2.0), squeeze=False,
                                     sharey=True, layout="constrained")
    positions = np.arange(len(compared))[::-1]  # the leaderboard's first row on top
    for axis, spec in zip(axes.flat, specs):
        for position, row in zip(positions, compared.to_dict("records")):
            low, high = row[f"{spec.name}_ci_low"], row[f"{spec.name}_ci_high"]
            mean = row[spec.name]
            if np.isfinite(low) and np.isfinite(high):
                axis.plot([low, high], [position, position], color=colours[row["model"]], linewidth=2)
            axis.plot([mean], [position], "o", color=colours[row["model"]])
        for index, row in enumerate(references.to_dict("records")):
            axis.axvline(row[spec.name], color=colours[row["model"]], linestyle=("--", ":", "-.")[index % 3],
                         linewidth=1.2, label=row["model"])
        axis.set(title=spec.label, xlabel=f"{spec.label} ({'lower' if spec.direction == 'min' else 'higher'} "
                                           "is better)")
    axes.flat[0].set_yticks(positions, list(compared["model"]))
    if len(references):  # one legend for the reference lines, below the panels, clear of the rows
        handles, labels = axes.flat[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize="small",
                      title="reference rows", title_fontsize="small")
    figure.suptitle("Mean over seeds with 95% patient-bootstrap CI")
    return save(figure, path)
