"""Reverse-diffusion paths of two test items, labelled by the oracle's ambiguity where the data has one."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from benchmark.evaluation.figures.posterior import Components, mixture_sd
from benchmark.evaluation.figures.style import ORACLE_COLOUR, pyplot, save, short_label

AMBIGUOUS_RATIO = 1.5  # an item is ambiguous when its oracle sd exceeds this multiple of the test items' median
BY_MODEL = {"confident": "narrowest spread of the model", "ambiguous": "widest spread of the model"}


@dataclass(frozen=True)
class Trajectories:
    """Reverse-diffusion paths in EF units, one (steps, K) array per case (first step = pure noise)."""

    labels: Sequence[str]  # how the job chose the case: "confident" / "ambiguous" by the model's own spread
    ids: Sequence[str]
    y: np.ndarray  # (cases,)
    paths: Sequence[np.ndarray]


def oracle_labels(ids: Sequence[str], oracle: Mapping[str, Components], test_ids: Sequence[str]) -> list[str] | None:
    """"ambiguous" or "confident" by the oracle posterior's sd against ``AMBIGUOUS_RATIO`` x its median over the
    test items, with the numbers; None unless the oracle knows every item."""
    known = [str(item) for item in test_ids if str(item) in oracle]
    if not known or not all(str(item) in oracle for item in ids):
        return None
    median = float(np.median([mixture_sd(oracle[item]) for item in known]))
    labels = []
    for item in ids:
        spread = mixture_sd(oracle[str(item)])
        tag = "ambiguous" if spread > AMBIGUOUS_RATIO * median else "confident"
        labels.append(f"{tag} by the oracle (sd {spread:.1f}, median {median:.1f})")
    return labels


def sampling_trajectories(path: str | Path, trajectories: Trajectories, labels: Sequence[str] | None,
                          title: str, colour: tuple) -> Path:
    """Each case's K reverse-diffusion paths over the sampling steps, ending at the samples. ``labels``: the
    oracle's, else the job's choice is named as what it is (the model's own spread)."""
    labels = labels or [BY_MODEL.get(str(label), str(label)) for label in trajectories.labels]
    cases = len(trajectories.paths)
    figure, axes = pyplot().subplots(1, cases, figsize=(5 * cases, 3.6), squeeze=False, sharey=True,
                                     layout="constrained")
    for axis, label, item_id, y, path_array in zip(axes.flat, labels, trajectories.ids, trajectories.y,
                                                    trajectories.paths):
        path_array = np.asarray(path_array, dtype=float)
        axis.plot(np.arange(len(path_array)), path_array, color=colour, alpha=0.35, linewidth=0.8)
        axis.axhline(y, color=ORACLE_COLOUR, linestyle="--", label="true EF")
        axis.set(xlabel="sampling step", ylabel="EF (%)")
        axis.set_title(f"{short_label(item_id)}: {label}", fontsize="small")
        axis.legend(loc="upper right", fontsize="small")
    figure.suptitle(title)
    return save(figure, path)
