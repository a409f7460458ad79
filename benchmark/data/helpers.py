"""Shared pieces of the dataset loaders: checked CSV reading, EF and video validation, exclusions.

Loaders collect every problem with one item as an ``Exclusion`` (listed in ``excluded.csv``) instead of
dropping it silently; so are the smaller losses that leave the item in: an unusable LV tracing frame, an
implausible tabular value. Problems with a whole file (wrong root, missing columns, duplicate ids) are
``DataError``s that name the file and say what was expected.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.config import N_FOLDS
from benchmark.contracts import DatasetIndex, Exclusion, Item, Split, Tracing
from benchmark.data.tabular import implausible
from benchmark.data.video import check_video
from benchmark.errors import ConfigError, DataError
from benchmark.store import atomic_write_text, csv_text, file_stamp
from registry.errors import did_you_mean


def require_root(root: str | Path, expected: Sequence[str], dataset: str) -> Path:
    """``root`` as a Path, or an error listing what a ``dataset`` root must contain."""
    root = Path(root)
    if any(not (root / entry).exists() for entry in expected):
        raise wrong_root(root, dataset, ", ".join(expected))
    return root


def find_root(root: str | Path, expected: Sequence[str], dataset: str, nested: str) -> tuple[Path, str | None]:
    """The folder holding ``expected``: ``root`` itself, or the one folder one or two levels below it that
    does (downloads unpack into nested folders), with a note saying which was used. Otherwise an error
    naming ``nested``, an example of the layout looked for."""
    root = Path(root)
    if all((root / entry).exists() for entry in expected):
        return root, None
    below = [path for pattern in ("*", "*/*") for path in sorted(root.glob(pattern))] if root.is_dir() else []
    found = [path for path in below if path.is_dir() and all((path / entry).exists() for entry in expected)]
    if len(found) == 1:
        return found[0], f"{dataset}: {root} holds no {expected[0]}; using {found[0]}, which does"
    if len(found) > 1:
        raise DataError(f"{dataset}: {root} holds {expected[0]} in several folders ({', '.join(map(str, found))}); "
                        "point dataset.root at the one to use")
    raise wrong_root(root, dataset, f"{', '.join(expected)}, directly or one or two folders down (as in {nested})")


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
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a readable CSV: {undecodable_row(path)} is not UTF-8 text; "
                        "save the file as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{path} is not a readable CSV ({' '.join(str(error).split())})") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; columns found: "
                        f"{', '.join(frame.columns) or 'none'}")
    return frame


def undecodable_row(path: Path) -> str:
    """Where the first byte that is not UTF-8 sits: ``row N (byte 0xE9 at character C)`` (the header is row 1)."""
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"row {number} (byte 0x{line[error.start]:02X} at character {error.start + 1})"
    return "a row"  # pandas decodes in chunks: a sequence cut at a chunk end can fail where lines do not


def check_unique(ids: Sequence[str], path: Path | str, column: str, rows: Sequence[int] | None = None) -> None:
    """Each id once, compared case-insensitively and without ``.avi`` (``a``, ``a.avi`` and ``a.AVI`` name
    one video); ``rows`` (CSV row numbers of ``ids``) are named in the error."""
    positions: dict[str, list[int]] = {}
    for position, key in enumerate(ids):
        positions.setdefault(strip_avi(key).casefold(), []).append(position)
    duplicated = [places for places in positions.values() if len(places) > 1]
    if duplicated:
        named = [ids[places[0]] + (f" (rows {', '.join(str(rows[p]) for p in places)})" if rows else "")
                 for places in duplicated[:5]]
        raise DataError(f"{path}: duplicate {column} {', '.join(named)}{' ...' if len(duplicated) > 5 else ''}; "
                        "each video must appear once")


def listed_videos(table: pd.DataFrame, path: Path, builder: IndexBuilder) -> list[tuple[int, str, dict]]:
    """(CSV row number, FileName, row) of each row of a FileList that names a video, each video once.

    A row with an empty FileName names no video: it is excluded, naming its row; so is one naming a path (``../x``,
    ``/x``), which would read a video outside ``Videos/`` (any ``.avi`` on the machine) as this item's. The same
    video listed twice (``a``, ``a.avi`` and ``a.AVI`` are one file) is an error naming both rows.
    """
    listed = []
    for row_number, row in enumerate(table.to_dict("records"), start=2):
        file_name = text_or_none(row["FileName"])
        if file_name is None:
            builder.exclude("", path, f"empty FileName: row {row_number}")
        elif "/" in file_name or "\\" in file_name:
            builder.exclude(file_name, path, f"FileName names a path, not a video in Videos/: row {row_number}")
        else:
            listed.append((row_number, file_name, row))
    check_unique([name for _, name, _ in listed], path, "FileName", [number for number, _, _ in listed])
    return listed


def ef_problem(ef: float) -> str | None:
    """Why an EF value is unusable, or None."""
    if math.isnan(ef):
        return "EF missing or not a number"
    if not 0.0 <= ef <= 100.0:
        return f"EF {ef:g} outside [0, 100]"
    return None


def index_problems(index: Any) -> list[str]:
    """What in a dataset's ``load()`` result breaks the ``Item`` contract, each naming the item and field; [] if
    nothing. Asked of every load, not only by ``check_dataset``: a repeated id would silently drop an item (items
    are looked up by id), and an EF given as a fraction (0.55) or a number id would run, and be scored, wrong."""
    if not isinstance(index, DatasetIndex):
        return [f"load() returned {type(index).__name__}, not a DatasetIndex"]
    problems, seen = [], set()
    for position, item in enumerate(index.items):
        if not isinstance(item, Item):
            problems.append(f"items[{position}] is {type(item).__name__}, not an Item")
            continue
        name = f"item {item.id!r}"
        if not isinstance(item.id, str) or not item.id:
            problems.append(f"items[{position}].id {item.id!r} is not a non-empty str")
        elif item.id in seen:
            problems.append(f"{name} appears twice (ids must be unique)")
        seen.add(item.id)
        for key in ("patient", "fold", "visit"):
            value = getattr(item, key)
            if not isinstance(value, str) or (key == "patient" and not value):
                problems.append(f"{name}: {key} {value!r} is not a{' non-empty' if key == 'patient' else ''} str")
        if not _is_real(item.ef) or ef_problem(float(item.ef)):  # the range the loaders exclude by, too
            problems.append(f"{name}: ef {item.ef!r} is not a number in [0, 100] (EF is in percent)")
        for key, value in item.subgroups.items():
            if not isinstance(key, str) or not isinstance(value, str):
                problems.append(f"{name}: subgroups[{key!r}] = {value!r}: subgroup names and values are str")
        for key, value in item.tabular.items():
            if not isinstance(key, str) or not (value is None or isinstance(value, str) or _is_real(value)):
                problems.append(f"{name}: tabular[{key!r}] = {value!r}: a value is a finite number, a str or None "
                                "(missing)")
    efs = [item.ef for item in index.items if isinstance(item, Item) and _is_real(item.ef)]
    if efs and max(efs) <= 1:  # no heart ejects at most 1%: these are fractions
        problems.append(f"every ef is at most 1 (the largest is {max(efs)!r}): EF is in percent (55, not 0.55)")
    return problems


def _is_real(value: Any) -> bool:
    """A real number, not a bool (True is 1 to Python, never an EF), NaN or an infinity."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)  # numpy's too


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
    """A finite float, or None (empty, not a number, NaN or infinite)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
    """``check_video`` results (problem, frame count) cached per file stat (``file_stamp``).

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

    def check(self, path: Path) -> tuple[str | None, int]:
        try:
            stat = os.stat(path)
        except OSError:
            return "missing video", 0
        key = str(Path(path).resolve())
        stamp = file_stamp(stat)
        cached = self._cache.get(key)
        if cached is not None and cached[:-2] == stamp:  # an older cache's stamps had two entries
            return cached[-2], cached[-1]
        reason, frames = check_video(path)
        self._cache[key] = [*stamp, reason, frames]
        self._dirty = True
        return reason, frames

    def save(self) -> None:
        if self.cache_file and self._dirty:
            atomic_write_text(self.cache_file, json.dumps(self._cache))
            self._dirty = False


# ------------------------------------------------------------------------------ index building
class IndexBuilder:
    """Collects items and exclusions; in ``strict`` mode the first exclusion is an error.

    ``min_traced_frames`` is the dataset's rule on traced frames (EchoNet-Dynamic's official filter: 2),
    applied after unusable tracing frames are dropped; ``traced_rule`` names it in the exclusion reason.
    """

    def __init__(self, dataset: str, strict: bool = False, check_videos: bool = True,
                 video_cache: str | Path | None = None, min_traced_frames: int = 0, traced_rule: str = ""):
        for key, problem in self.parameter_problems({"min_traced_frames": min_traced_frames}).items():
            raise ConfigError(f"{dataset}: {key} {problem}")
        self.dataset = dataset
        self.strict = strict
        self.check_videos = check_videos
        self.min_traced_frames = min_traced_frames
        self.traced_rule = traced_rule
        self.items: list[Item] = []
        self.excluded: list[Exclusion] = []
        self._checks = VideoChecks(video_cache)

    @staticmethod
    def parameter_problems(params: Mapping[str, Any]) -> dict[str, str]:
        """The rules on the options a dataset hands its builder as its own parameters (``min_traced_frames``):
        a dataset that takes them declares ``parameter_problems = IndexBuilder.parameter_problems``, so that
        `validate` asks before the data are loaded."""
        minimum = params.get("min_traced_frames", 0)
        if minimum < 0:
            return {"min_traced_frames": f"must be 0 (keep untraced videos) or a count of traced frames, got {minimum}"}
        return {}

    def exclude(self, item_id: str, file: Path | str, reason: str,
                dropped: Literal["item", "tracing", "value"] = "item", frame: int | None = None) -> None:
        if self.strict:
            raise DataError(f"{self.dataset}: {item_id} ({file}): {reason}. strict mode is on; "
                            "fix or remove the file, or set dataset.strict = false to list it in excluded.csv")
        self.excluded.append(Exclusion(id=item_id, file=str(file), reason=reason, dropped=dropped, frame=frame))

    def measurement(self, item_id: str, file: Path | str, name: str, value) -> float | None:
        """A numeric tabular cell as a float; None when empty, and when not a finite number or implausible,
        which is then noted in ``excluded.csv`` (the item stays, with the value missing)."""
        text = text_or_none(value)
        if text is None or text.lower() == "nan":  # the Pediatric export writes missing values as "nan"
            return None
        try:
            number = float(text)
        except ValueError:
            problem = f"{name} {text!r} is not a number"
        else:
            problem = implausible(name, number)
            if problem is None:
                return number
        self.exclude(item_id, file, f"value treated as missing: {problem}", dropped="value")
        return None

    def add(self, item: Item, source: Path | str, traced_in: TracingFile | None = None) -> bool:
        """Adds ``item`` unless its EF or video is unusable, or too few usable traced frames remain (then it
        is excluded). Tracing frames that ``traced_in`` found unusable, or that lie past the video's end, are
        dropped and listed. True if added."""
        for frame, reason in traced_in.defects_of(item.id) if traced_in else ():
            self.exclude(item.id, traced_in.path, reason, dropped="tracing", frame=frame)
        reason = ef_problem(item.ef)
        if reason is None and self.check_videos:
            reason, frames = self._checks.check(item.video)
            if reason is None:
                item = self._within(item, frames)
        if reason is not None:
            self.exclude(item.id, source if reason.startswith("EF") else item.video, reason)
            return False
        if len(item.tracings) < self.min_traced_frames:
            self.exclude(item.id, (traced_in and traced_in.path) or item.video,
                         f"fewer than {self.min_traced_frames} traced frames{self.traced_rule}")
            return False
        self.items.append(item)
        return True

    def _within(self, item: Item, frames: int) -> Item:
        """``item`` without the tracings of frames its ``frames``-frame video does not have (each listed)."""
        beyond = [tracing for tracing in item.tracings if tracing.frame >= frames]
        for tracing in beyond:
            self.exclude(item.id, item.video, f"traced frame past the video's end: frame {tracing.frame} of a "
                         f"{frames}-frame video (frames count from 0)", dropped="tracing", frame=tracing.frame)
        return replace(item, tracings=tuple(t for t in item.tracings if t.frame < frames)) if beyond else item

    def build(self, tabular_columns: Mapping[str, str], notes: Sequence[str] = ()) -> DatasetIndex:
        self._checks.save()
        check_unique([item.id for item in self.items], self.dataset, "id")
        dropped = [exclusion for exclusion in self.excluded if exclusion.dropped == "item"]
        if not self.items and not dropped:
            raise DataError(f"{self.dataset}: the label files list no videos; check dataset.root and dataset.view")
        if not self.items:
            raise DataError(f"{self.dataset}: every one of {len(dropped)} videos was excluded "
                            f"({summarise_reasons(dropped)}); check the root and file layout")
        return DatasetIndex(items=tuple(self.items), excluded=tuple(self.excluded),
                            tabular_columns=dict(tabular_columns), notes=tuple(notes))


def summarise_reasons(excluded: Sequence[Exclusion]) -> str:
    """Exclusion counts by kind of reason, e.g. ``missing video: 2, truncated video: 1``."""
    counts = Counter(exclusion.reason.split(":")[0].split(" (")[0] for exclusion in excluded)
    return ", ".join(f"{reason}: {count}" for reason, count in sorted(counts.items())) or "none"


def summarise_exclusions(excluded: Sequence[Exclusion]) -> str:
    """One line for the run's log: items excluded, tracing frames and values dropped, each by reason."""
    parts = []
    for dropped, label in (("item", "excluded"), ("tracing", "tracing frame(s) dropped"),
                           ("value", "value(s) treated as missing")):
        of_kind = [exclusion for exclusion in excluded if exclusion.dropped == dropped]
        if of_kind:
            parts.append(f"{len(of_kind)} {label} ({summarise_reasons(of_kind)})")
    return "; ".join(parts)


EXCLUDED_COLUMNS = ["id", "file", "dropped", "frame", "reason"]


def write_excluded(path: Path, excluded: Sequence[Exclusion]) -> Path:
    frame = pd.DataFrame([(e.id, e.file, e.dropped, "" if e.frame is None else e.frame, e.reason)
                          for e in excluded], columns=EXCLUDED_COLUMNS)
    return atomic_write_text(path, csv_text(frame))


# ------------------------------------------------------------------------------ tracings
TRACING_COORDINATES = {"lines": ("X1", "Y1", "X2", "Y2"), "points": ("X", "Y")}
MIN_OUTLINE_POINTS = 3


@dataclass(frozen=True)
class TracingFile:
    """What a ``VolumeTracings.csv`` gives per video name (``.avi`` stripped): LV outlines ordered by frame,
    and the (frame, reason) of each traced frame whose rows could not make an outline."""

    path: Path | None = None
    outlines: Mapping[str, tuple[Tracing, ...]] = field(default_factory=dict)
    defects: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)

    def of(self, name: str) -> tuple[Tracing, ...]:
        return self.outlines.get(strip_avi(name), ())

    def defects_of(self, name: str) -> tuple[tuple[int, str], ...]:
        return self.defects.get(strip_avi(name), ())


def read_tracings(path: Path, kind: str) -> TracingFile:
    """The LV outlines of a ``VolumeTracings.csv``.

    ``kind`` ``"lines"`` (EchoNet-Dynamic, ``X1,Y1,X2,Y2``): a frame's rows are disc lines, the long axis
    first; the outline runs along the chords' (X1, Y1) ends and back along their (X2, Y2) ends, the polygon
    EchoNet rasterises. ``kind`` ``"points"`` (EchoNet-Pediatric, ``X,Y``): a frame's rows are its polygon
    points in order; a row whose ``Frame`` reads ``No Systolic`` or ``No Diastolic`` traces nothing.

    Real files have frames with too few rows, a missing coordinate, or a frame traced twice; such a frame
    is a defect of that frame only (the official loader draws what it has and carries on), so it is
    returned as a defect naming its rows, and the item decides with what remains. A row that cannot be
    attributed (no FileName, a Frame that is not a frame number) is an error naming it.
    """
    coordinates = TRACING_COORDINATES[kind]
    table = read_table(path, ["FileName", *coordinates, "Frame"], text_columns=["FileName", "Frame"])
    frames, traced = _tracing_frames(table, path, markers_allowed=kind == "points")
    _reject(traced & table["FileName"].isna().to_numpy(), table, path, "FileName", "is empty")
    values = np.column_stack([pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
                              for column in coordinates])
    names = table["FileName"].map(strip_avi).to_numpy()
    rows_of = pd.DataFrame({"name": names[traced], "frame": frames[traced]}).groupby(["name", "frame"]).indices
    positions = np.flatnonzero(traced)
    outlines: dict[str, list[Tracing]] = {}
    defects: dict[str, list[tuple[int, str]]] = {}
    for name, frame in sorted(rows_of):
        rows = positions[rows_of[name, frame]]
        problem = _frame_problem(table, values, rows, coordinates, kind)
        if problem is not None:
            defects.setdefault(name, []).append((int(frame), problem))
        else:
            outlines.setdefault(name, []).append(Tracing(frame=int(frame), polygon=_outline(values[rows], kind)))
    return TracingFile(path=path, outlines={name: tuple(found) for name, found in outlines.items()},
                       defects={name: tuple(found) for name, found in defects.items()})


def _frame_problem(table: pd.DataFrame, values: np.ndarray, rows: np.ndarray, coordinates: Sequence[str],
                   kind: str) -> str | None:
    """Why one frame's rows (table positions, ascending) make no outline, or None. CSV rows count the
    header as row 1."""
    blocks = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    if len(blocks) > 1:  # a frame's rows are consecutive; a second run of them is a second tracing
        spans = " and ".join(f"{block[0] + 2}-{block[-1] + 2}" for block in blocks)
        return f"frame listed twice: rows {spans}"
    bad = ~np.isfinite(values[rows])
    if bad.any():
        position, column = np.argwhere(bad)[0]
        value = table[coordinates[column]].iat[rows[position]]
        return (f"coordinate not a number: row {rows[position] + 2} {coordinates[column]} "
                f"{'(empty)' if pd.isna(value) else repr(value)}")
    points = len(_outline(values[rows], kind))
    if points < MIN_OUTLINE_POINTS:
        return (f"too few outline points: {points} from rows {rows[0] + 2}-{rows[-1] + 2}, a tracing needs at "
                f"least {MIN_OUTLINE_POINTS}")
    return None


def tracings_if_present(path: Path, kind: str, min_traced_frames: int) -> TracingFile:
    """``read_tracings`` of ``path``; nothing when the file is absent, unless the traced-frames filter needs it."""
    if path.is_file():
        return read_tracings(path, kind)
    if min_traced_frames > 0:
        raise DataError(f"{path} is missing, but min_traced_frames = {min_traced_frames} needs it. "
                        "Restore it, or set dataset.params.min_traced_frames = 0 to keep untraced videos.")
    return TracingFile()


def _tracing_frames(table: pd.DataFrame, path: Path, markers_allowed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each row's frame number, and which rows trace a frame (not a ``No Systolic``-like marker)."""
    text = table["Frame"].fillna("").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    marker = text.str.lower().str.startswith("no ").to_numpy() if markers_allowed else np.zeros(len(text), bool)
    valid = (numbers >= 0) & (np.mod(numbers, 1) == 0)
    expected = "is not a frame number (an integer >= 0" + (" or No Systolic/No Diastolic)" if markers_allowed else ")")
    _reject(~(valid | marker), table, path, "Frame", expected)
    return np.where(valid, numbers, -1).astype(np.int64), valid


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
