"""Shared pieces of the dataset loaders: checked CSV reading, EF and video validation, exclusions.

Loaders collect every problem with one item as an ``Exclusion`` (listed in ``excluded.csv``) instead of
dropping it silently; problems with a whole file (wrong root, missing columns, duplicate ids) are
``DataError``s that name the file and say what was expected.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.config import N_FOLDS
from benchmark.contracts import DatasetIndex, Exclusion, Item, Split, Tracing
from benchmark.data.video import check_video
from benchmark.errors import ConfigError, DataError
from benchmark.store import atomic_write_text, csv_text
from registry.errors import did_you_mean


def require_root(root: str | Path, expected: Sequence[str], dataset: str) -> Path:
    """``root`` as a Path, or an error listing what a ``dataset`` root must contain."""
    root = Path(root)
    if any(not (root / entry).exists() for entry in expected):
        raise wrong_root(root, dataset, ", ".join(expected))
    return root


def wrong_root(root: Path, dataset: str, expected: str) -> DataError:
    """The error for a root that is not a ``dataset`` download: what is there and what should be."""
    found = sorted(p.name for p in root.iterdir())[:10] if root.is_dir() else []
    where = f"{root} does not exist" if not root.exists() else f"{root} holds {', '.join(found) or 'nothing'}"
    return DataError(f"{dataset}: {where}, but a {dataset} root must contain {expected}. "
                     "Point dataset.root at the folder you downloaded.")


def read_table(path: Path, required: Sequence[str], text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV with at least the ``required`` columns; ``text_columns`` are kept as strings."""
    try:
        frame = pd.read_csv(path, dtype={column: str for column in text_columns}, keep_default_na=True)
    except FileNotFoundError:
        raise DataError(f"{path} is missing; expected a CSV with columns {', '.join(required)}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable CSV ({' '.join(str(error).split())})") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; columns found: "
                        f"{', '.join(frame.columns) or 'none'}")
    return frame


def check_unique(ids: Iterable[str], path: Path | str, column: str) -> None:
    counts = Counter(ids)
    duplicated = sorted(key for key, count in counts.items() if count > 1)
    if duplicated:
        raise DataError(f"{path}: duplicate {column} {', '.join(duplicated[:5])}"
                        f"{' ...' if len(duplicated) > 5 else ''}; each video must appear once")


def ef_problem(ef: float) -> str | None:
    """Why an EF value is unusable, or None."""
    if math.isnan(ef):
        return "EF missing or not a number"
    if not 0.0 <= ef <= 100.0:
        return f"EF {ef:g} outside [0, 100]"
    return None


def as_ef(value) -> float:
    """EF as a float; NaN when empty or not a number (then ``ef_problem`` excludes the item)."""
    number = number_or_none(value)
    return math.nan if number is None else number


def text_or_none(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def number_or_none(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def age_bin(age: float | None, edges: Sequence[int]) -> str:
    """``"a-b"`` for the interval of ``edges`` holding ``age``; ``"unknown"`` when missing."""
    if age is None:
        return "unknown"
    for low, high in zip(edges[:-1], edges[1:]):
        if low <= age < high:
            return f"{low}" if high - 1 == low else f"{low}-{high - 1}"
    return f"{edges[-1]}+" if age >= edges[-1] else f"<{edges[0]}"


def normalise_sex(value) -> str:
    text = (text_or_none(value) or "").upper()
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}.get(text, "unknown")


# ------------------------------------------------------------------------------ video checks
class VideoChecks:
    """``check_video`` results cached per file size and modification time.

    Checking decodes two frames per video; for a 10,000-video dataset that is worth keeping between
    runs, so the cache can live in a JSON file (written atomically).
    """

    def __init__(self, cache_file: str | Path | None = None):
        self.cache_file = Path(cache_file) if cache_file else None
        self._cache: dict[str, list] = {}
        if self.cache_file and self.cache_file.is_file():
            try:
                self._cache = json.loads(self.cache_file.read_text())
            except json.JSONDecodeError:
                self._cache = {}  # a damaged cache only costs a recheck
        self._dirty = False

    def problem(self, path: Path) -> str | None:
        try:
            stat = os.stat(path)
        except OSError:
            return "missing video"
        key = str(Path(path).resolve())
        stamp = [stat.st_size, stat.st_mtime_ns]
        cached = self._cache.get(key)
        if cached is not None and cached[:2] == stamp:
            return cached[2]
        reason = check_video(path)
        self._cache[key] = [*stamp, reason]
        self._dirty = True
        return reason

    def save(self) -> None:
        if self.cache_file and self._dirty:
            atomic_write_text(self.cache_file, json.dumps(self._cache))
            self._dirty = False


# ------------------------------------------------------------------------------ index building
class IndexBuilder:
    """Collects items and exclusions; in ``strict`` mode the first exclusion is an error."""

    def __init__(self, dataset: str, strict: bool = False, check_videos: bool = True,
                 video_cache: str | Path | None = None):
        self.dataset = dataset
        self.strict = strict
        self.check_videos = check_videos
        self.items: list[Item] = []
        self.excluded: list[Exclusion] = []
        self._checks = VideoChecks(video_cache)

    def exclude(self, item_id: str, file: Path | str, reason: str) -> None:
        if self.strict:
            raise DataError(f"{self.dataset}: {item_id} ({file}): {reason}. strict mode is on; "
                            "fix or remove the file, or set dataset.strict = false to list it in excluded.csv")
        self.excluded.append(Exclusion(id=item_id, file=str(file), reason=reason))

    def add(self, item: Item, source: Path | str) -> bool:
        """Adds ``item`` unless its EF or video is unusable (then it is excluded). True if added."""
        reason = ef_problem(item.ef)
        if reason is None and self.check_videos:
            reason = self._checks.problem(item.video)
        if reason is not None:
            self.exclude(item.id, source if reason.startswith("EF") else item.video, reason)
            return False
        self.items.append(item)
        return True

    def build(self, tabular_columns: Mapping[str, str]) -> DatasetIndex:
        self._checks.save()
        check_unique((item.id for item in self.items), self.dataset, "id")
        if not self.items and not self.excluded:
            raise DataError(f"{self.dataset}: the label files list no videos; check dataset.root and dataset.view")
        if not self.items:
            raise DataError(f"{self.dataset}: every one of {len(self.excluded)} videos was excluded "
                            f"({summarise_reasons(self.excluded)}); check the root and file layout")
        return DatasetIndex(items=tuple(self.items), excluded=tuple(self.excluded),
                            tabular_columns=dict(tabular_columns))


def summarise_reasons(excluded: Sequence[Exclusion]) -> str:
    """Exclusion counts by kind of reason, e.g. ``missing video: 2, truncated video: 1``."""
    counts = Counter(exclusion.reason.split(":")[0].split(" (")[0] for exclusion in excluded)
    return ", ".join(f"{reason}: {count}" for reason, count in sorted(counts.items())) or "none"


def write_excluded(path: Path, excluded: Sequence[Exclusion]) -> Path:
    frame = pd.DataFrame([(e.id, e.file, e.reason) for e in excluded], columns=["id", "file", "reason"])
    return atomic_write_text(path, csv_text(frame))


# ------------------------------------------------------------------------------ tracings
TRACING_COORDINATES = {"lines": ("X1", "Y1", "X2", "Y2"), "points": ("X", "Y")}
MIN_OUTLINE_POINTS = 3


def read_tracings(path: Path, kind: str) -> dict[str, tuple[Tracing, ...]]:
    """LV outlines per video name (``.avi`` stripped) from a ``VolumeTracings.csv``, ordered by frame.

    ``kind`` ``"lines"`` (EchoNet-Dynamic, ``X1,Y1,X2,Y2``): a frame's rows are disc lines, the long axis
    first; the outline runs along the chords' (X1, Y1) ends and back along their (X2, Y2) ends, the polygon
    EchoNet rasterises. ``kind`` ``"points"`` (EchoNet-Pediatric, ``X,Y``): a frame's rows are its polygon
    points in order; a row whose ``Frame`` reads ``No Systolic`` or ``No Diastolic`` traces nothing.
    """
    coordinates = TRACING_COORDINATES[kind]
    table = read_table(path, ["FileName", *coordinates, "Frame"], text_columns=["FileName", "Frame"])
    frames, traced = _tracing_frames(table, path, markers_allowed=kind == "points")
    _reject(traced & table["FileName"].isna().to_numpy(), table, path, "FileName", "is empty")
    values = np.column_stack([_coordinate(table, path, column, traced) for column in coordinates])
    names = table["FileName"].map(strip_avi).to_numpy()
    rows_of = pd.DataFrame({"name": names[traced], "frame": frames[traced]}).groupby(["name", "frame"]).indices
    positions = np.flatnonzero(traced)
    tracings: dict[str, list[Tracing]] = {}
    for name, frame in sorted(rows_of):
        rows = positions[rows_of[name, frame]]
        outline = _outline(values[rows], kind)
        if len(outline) < MIN_OUTLINE_POINTS:
            raise DataError(f"{_row(table, path, rows[0])}: Frame {frame} has {len(outline)} outline point(s), "
                            f"a tracing needs at least {MIN_OUTLINE_POINTS}; fix or remove that frame's rows")
        tracings.setdefault(name, []).append(Tracing(frame=int(frame), polygon=outline))
    return {name: tuple(frame_tracings) for name, frame_tracings in tracings.items()}


def tracings_if_present(path: Path, kind: str, min_traced_frames: int) -> dict[str, tuple[Tracing, ...]]:
    """``read_tracings`` of ``path``; nothing when the file is absent, unless the traced-frames filter needs it."""
    if path.is_file():
        return read_tracings(path, kind)
    if min_traced_frames > 0:
        raise DataError(f"{path} is missing, but min_traced_frames = {min_traced_frames} needs it. "
                        "Restore it, or set dataset.params.min_traced_frames = 0 to keep untraced videos.")
    return {}


def _tracing_frames(table: pd.DataFrame, path: Path, markers_allowed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each row's frame number, and which rows trace a frame (not a ``No Systolic``-like marker)."""
    text = table["Frame"].fillna("").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    marker = text.str.lower().str.startswith("no ").to_numpy() if markers_allowed else np.zeros(len(text), bool)
    valid = (numbers >= 0) & (np.mod(numbers, 1) == 0)
    expected = "is not a frame number (an integer >= 0" + (" or No Systolic/No Diastolic)" if markers_allowed else ")")
    _reject(~(valid | marker), table, path, "Frame", expected)
    return np.where(valid, numbers, -1).astype(np.int64), valid


def _coordinate(table: pd.DataFrame, path: Path, column: str, traced: np.ndarray) -> np.ndarray:
    numbers = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    _reject(traced & ~np.isfinite(numbers), table, path, column, "is not a number")
    return numbers


def _reject(bad: np.ndarray, table: pd.DataFrame, path: Path, column: str, problem: str) -> None:
    """A DataError naming the first ``bad`` row (CSV row numbers count the header as row 1)."""
    if bad.any():
        position = int(np.argmax(bad))
        value = table[column].iat[position]
        raise DataError(f"{_row(table, path, position)}: {column} {'(empty)' if pd.isna(value) else repr(value)} "
                        f"{problem}")


def _row(table: pd.DataFrame, path: Path, position: int) -> str:
    name = text_or_none(table["FileName"].iat[position])
    return f"{path} row {position + 2}" + (f" ({name})" if name else "")


def _outline(values: np.ndarray, kind: str) -> np.ndarray:
    """The polygon of one frame's rows."""
    if kind == "lines":
        chords = values[1:]  # the first line is the long axis
        values = np.concatenate([chords[:, :2], chords[::-1, 2:]])
    return polygon_array(values)


def polygon_array(points) -> np.ndarray:
    """``points`` as a (P, 2) float64 copy, read-only like the frozen Tracing that holds it."""
    polygon = np.array(points, dtype=np.float64).reshape(-1, 2)
    polygon.flags.writeable = False
    return polygon


def strip_avi(name: str) -> str:
    name = str(name).strip()
    return name[:-4] if name.lower().endswith(".avi") else name


# ------------------------------------------------------------------------------ protocols
def unknown_protocol(dataset: str, protocol: str, protocols: Sequence[str]) -> ConfigError:
    return ConfigError(f"{dataset} has no protocol {protocol!r};{did_you_mean(protocol, protocols)} "
                       f"protocols: {', '.join(protocols)}")


def fold_split(index: DatasetIndex, test_fold: int, fold_of: Mapping[str, int] | None = None,
               name: str | None = None) -> Split:
    """TEST = ``test_fold``, VAL = the next fold (mod 10), TRAIN = the other eight.

    ``fold_of`` maps item id to fold; by default the item's own ``fold`` label (an integer).
    """
    if not 0 <= test_fold < N_FOLDS:
        raise ConfigError(f"dataset.fold must be between 0 and {N_FOLDS - 1}, got {test_fold}")
    val_fold = (test_fold + 1) % N_FOLDS
    roles = {}
    for item in index.items:
        fold = fold_of[item.id] if fold_of is not None else int(item.fold)
        roles[item.id] = "test" if fold == test_fold else "val" if fold == val_fold else "train"
    return Split(name=name or f"fold{test_fold}", roles=roles)


def cross_validation(index: DatasetIndex, fold_of: Mapping[str, int] | None = None) -> list[Split]:
    """The ten fold splits; pooling their test predictions tests every item exactly once."""
    return [fold_split(index, k, fold_of) for k in range(N_FOLDS)]
