"""``predictions.csv``: the per-item file of a job (and of a model scored with ``score``), which every table and
figure is computed from. Its layout is part of what a job computes (``identity.JOB_ENGINE``): an edit here runs
the jobs again, rather than leaving their files in a layout the new reader may not expect."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.contracts import Item
from benchmark.errors import DataError
from benchmark.evaluation.scoring import SCORE_COLUMNS, ItemScores
from benchmark.store import atomic_write_text, csv_text, read_csv_table

# Every column of a per-item frame that is not a subgroup: a dataset's subgroup may take none of these names.
LAYOUT_COLUMNS = ("id", "FileName", "patient", *SCORE_COLUMNS)
# The built-in datasets' subgroups, in the order the files and tables show them; any other a dataset gives follows.
SUBGROUP_ORDER = ("sex", "age_bin", "quality", "view", "ambiguous")


def item_frame(ids: Sequence[str], patients: Sequence[str], scores: ItemScores,
               subgroups: Mapping[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """The per-item frame of one job: id, patient, score columns, then subgroup columns."""
    frame = pd.DataFrame({"id": list(ids), "patient": list(patients), **scores.columns})
    for name, values in (subgroups or {}).items():
        frame[name] = list(values)
    return frame


def subgroup_names(items: Sequence[Item]) -> list[str]:
    """Every subgroup any of ``items`` has, a plugin dataset's own among them (``_ordered``)."""
    return _ordered(name for item in items for name in item.subgroups)


def subgroup_columns(frame: pd.DataFrame) -> list[str]:
    """The subgroup columns of a per-item frame: every column but those of its layout (``_ordered``)."""
    return _ordered(column for column in frame.columns if column not in LAYOUT_COLUMNS)


def _ordered(names: Iterable[str]) -> list[str]:
    """Built-in subgroups in ``SUBGROUP_ORDER`` first, then the others in order of first appearance."""
    given = dict.fromkeys(names)
    return [*(name for name in SUBGROUP_ORDER if name in given),
            *(name for name in given if name not in SUBGROUP_ORDER)]


def check_subgroup_names(items: Sequence[Item], dataset: str) -> None:
    """A subgroup named as a column of ``predictions.csv`` (``EF``, ``crps``...) would overwrite that column in
    every job's file: refused before any work, naming the item."""
    for item in items:
        for name in item.subgroups:
            if name in LAYOUT_COLUMNS or not isinstance(name, str) or not name:
                raise DataError(f"{dataset}: item {item.id!r}: subgroup {name!r} is not a name a subgroup may "
                                f"take: predictions.csv holds the columns {', '.join(LAYOUT_COLUMNS)} beside the "
                                "subgroups. Rename it in the dataset.")


def write_predictions(path: str | Path, items: pd.DataFrame) -> Path:
    """``predictions.csv``: the CardioBench columns ``FileName,EF_pred[,view]`` first, then the rest."""
    frame = items.rename(columns={"id": "FileName"})
    leading = [column for column in ("FileName", "EF_pred", "view") if column in frame.columns]
    frame = frame[leading + [column for column in frame.columns if column not in leading]]
    return atomic_write_text(path, csv_text(frame))


def read_predictions(path: str | Path) -> pd.DataFrame:
    frame = read_csv_table(path, dtype={"FileName": str, "patient": str})
    return frame.rename(columns={"FileName": "id"})
