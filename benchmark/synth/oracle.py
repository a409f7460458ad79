"""The exact posterior of EF per video, as a mixture of normals, and the ``oracle.csv`` sidecar.

Generative model (``patients``, ``anatomy``): the label is y = EF_geom(s) + e, e ~ N(0, sigma^2), where
EF_geom(s) is the area-length EF of the traced frames with the lateral segment in state s. The posterior
is the Bayes bound given the simulation's variables (the heart's geometry and motion, everything but s),
not given the pixels: speckle, resolution and frame sampling hide part of those from any model, so a
learned head cannot reach it exactly. When the video shows the segment, s is known too and

    p(y | variables) = N(y; EF_geom(s), sigma^2).

When it is hidden (ambiguous videos), s is independent of the image, because its prior depends only on
sex and the weight-for-height residual, which do not shape the image. Hence

    p(y | variables)          = (1 - pi) N(y; EF_geom(0), sigma^2) + pi N(y; EF_geom(1), sigma^2),  pi = P(s=1)
    p(y | variables, tabular) = the same with pi = P(s=1 | written Sex, Weight, Height, Age).

Posteriors are per item: a CAMUS 2-chamber view never shows the segment (it lies in the 4-chamber plane),
so its posterior is the mixture even when the patient's 4-chamber view shows it.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INFORMATION_SETS = ("vision", "vision_tabular")
COLUMNS = ("id", "information", "component", "weight", "mean", "std", "ambiguous")
MIN_STD = 1e-3  # EF points; a noiseless label (label_noise = 0) is a point mass, kept finite for densities


def posterior_rows(item_id: str, ef_by_state: tuple[float, float], hidden_state: int, ambiguous: bool,
                   prior_vision: float, prior_tabular: float, label_noise: float) -> list[list]:
    rows = []
    for information, prior in zip(INFORMATION_SETS, (prior_vision, prior_tabular)):
        if ambiguous:
            components = [(1.0 - prior, ef_by_state[0]), (prior, ef_by_state[1])]
        else:
            components = [(1.0, ef_by_state[hidden_state])]
        rows += [[item_id, information, k, f"{weight:.10f}", f"{mean:.8f}", f"{label_noise:.6f}",
                  "yes" if ambiguous else "no"] for k, (weight, mean) in enumerate(components)]
    return rows


def write(path: Path, rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)


@dataclass(frozen=True)
class Mixtures:
    """Mixtures of normals for N items, padded to C components with zero weight: arrays (N, C)."""

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cumulative = np.cumsum(self.weights, axis=1)
        cumulative[:, -1] = 1.0  # guard against rounding in the written weights
        choice = (rng.random((len(self.weights), n, 1)) > cumulative[:, None, :]).sum(axis=2)
        rows = np.arange(len(self.weights))[:, None]
        return self.means[rows, choice] + self.stds[rows, choice] * rng.standard_normal(choice.shape)

    def component_entropy(self) -> np.ndarray:
        """Entropy (nats) of the component choice: 0 for a single component, log 2 for an even split."""
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(self.weights > 0, -self.weights * np.log(self.weights), 0.0)
        return terms.sum(axis=1)


def read(path: Path, information: str) -> tuple[dict[str, list[tuple[float, float, float]]], dict[str, str]]:
    """Components (weight, mean, std) per id for one information set, and the ``ambiguous`` flag per id."""
    if information not in INFORMATION_SETS:
        raise ValueError(f"information must be one of {', '.join(INFORMATION_SETS)}, got {information!r}")
    components: dict[str, list[tuple[float, float, float]]] = {}
    ambiguous: dict[str, str] = {}
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for row in reader:
            ambiguous[row["id"]] = row["ambiguous"]
            if row["information"] == information:
                components.setdefault(row["id"], []).append(
                    (float(row["weight"]), float(row["mean"]), float(row["std"])))
    return components, ambiguous


def stack(components: list[list[tuple[float, float, float]]]) -> Mixtures:
    width = max(len(c) for c in components)
    padded = np.zeros((len(components), width, 3))
    padded[:, :, 2] = 1.0
    for i, parts in enumerate(components):
        padded[i, :len(parts)] = parts
    return Mixtures(weights=padded[:, :, 0], means=padded[:, :, 1], stds=np.maximum(padded[:, :, 2], MIN_STD))
