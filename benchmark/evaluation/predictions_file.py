"""``predictions.csv``: the per-item file of a job (and of a model scored with ``score``), which every table and
figure is computed from. Its layout is part of what a job computes (``identity.JOB_ENGINE``): an edit here runs
the jobs again, rather than leaving their files in a layout the new reader may not expect."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.evaluation.scoring import ItemScores
from benchmark.store import atomic_write_text, csv_text, read_csv_table


def item_frame(ids: Sequence[str], patients: Sequence[str], scores: ItemScores,
               subgroups: Mapping[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """The per-item frame of one job: id, patient, score columns, then subgroup columns."""
    frame = pd.DataFrame({"id": list(ids), "patient": list(patients), **scores.columns})
    for name, values in (subgroups or {}).items():
        frame[name] = list(values)
    return frame


def write_predictions(path: str | Path, items: pd.DataFrame) -> Path:
    """``predictions.csv``: the CardioBench columns ``FileName,EF_pred[,view]`` first, then the rest."""
    frame = items.rename(columns={"id": "FileName"})
    leading = [column for column in ("FileName", "EF_pred", "view") if column in frame.columns]
    frame = frame[leading + [column for column in frame.columns if column not in leading]]
    return atomic_write_text(path, csv_text(frame))


def read_predictions(path: str | Path) -> pd.DataFrame:
    frame = read_csv_table(path, dtype={"FileName": str, "patient": str})
    return frame.rename(columns={"FileName": "id"})
