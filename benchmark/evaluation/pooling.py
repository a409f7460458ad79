"""Pooling test predictions per patient visit, for protocols that score visits rather than videos
(EchoNet-Pediatric's published cross-validation averages the predictions of a visit's videos)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.contracts import Predictive


@dataclass
class Pooled:
    ids: list[str]  # one per visit
    members: list[list[int]]  # the item rows of each visit
    ef: np.ndarray
    predictive: Predictive


def pool_by_visit(visits: list[str], ef: np.ndarray, predictive: Predictive) -> Pooled:
    """One prediction per visit: the equal mixture of its videos' predictives (K samples taken from them in
    turn), point = mean of the videos' points, EF = mean of their labels. Closed forms are not carried over:
    visit-level probabilistic scores use the samples."""
    order = list(dict.fromkeys(visits))
    rows = {visit: [i for i, v in enumerate(visits) if v == visit] for visit in order}
    k = predictive.samples.shape[1]
    samples = np.stack([predictive.samples[members].T.reshape(-1)[:k] if len(members) > 1 else
                        predictive.samples[members[0]] for members in rows.values()])
    point = np.array([predictive.point[members].mean() for members in rows.values()])
    labels = np.array([np.mean(ef[members]) for members in rows.values()])
    return Pooled(order, list(rows.values()), labels, Predictive(samples=samples, point=point))
