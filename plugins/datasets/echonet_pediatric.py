"""EchoNet-Pediatric: children's A4C and PSAX videos with ten patient-level folds."""
from __future__ import annotations

from pathlib import Path

from benchmark.api import (
    N_FOLDS,
    ConfigError,
    DataError,
    DatasetIndex,
    IndexBuilder,
    Item,
    Split,
    age_bin,
    as_ef,
    cross_validation,
    find_root,
    fold_split,
    listed_videos,
    normalise_sex,
    number_or_none,
    read_table,
    strip_avi,
    tracings_if_present,
    unknown_protocol,
)
from registry import hookimpl

NAME = "echonet_pediatric"
VIEWS = ("A4C", "PSAX")
PROTOCOLS = ("fold", "cv10", "fold0")
COLUMNS = ("FileName", "EF", "Sex", "Age", "Weight", "Height", "Split")
TABULAR = {"Sex": "categorical", "Age": "numeric", "Weight": "numeric", "Height": "numeric"}
MEASUREMENTS = [name for name, kind in TABULAR.items() if kind == "numeric"]
AGE_EDGES = (0, 1, 5, 12, 19)
NESTED = "<root>/pediatric_echo_avi/pediatric_echo_avi/A4C/FileList.csv"  # how the download unpacks


class EchoNetPediatric:
    """EchoNet-Pediatric (A4C/ and PSAX/ each with FileList.csv and Videos/), integer folds 0-9."""

    protocols = PROTOCOLS
    fold_protocols = ("fold",)  # the protocols whose split dataset.fold chooses; validate refuses it for the others
    views = (*VIEWS, "both")
    tabular_columns = TABULAR  # what load() gives; validate checks dataset.tabular against it
    parameter_problems = staticmethod(IndexBuilder.parameter_problems)

    def __init__(self, root, view: str = "A4C", min_traced_frames: int = 0, strict: bool = False,
                 check_videos: bool = True, video_cache: str | None = None):
        self.root = Path(root)
        self.views = _views(view)
        self.min_traced_frames = min_traced_frames
        self.builder_options = dict(strict=strict, check_videos=check_videos, video_cache=video_cache)

    def load(self) -> DatasetIndex:
        root, note = find_root(self.root, [f"{view}/FileList.csv" for view in self.views], NAME, NESTED)
        builder = IndexBuilder(NAME, **self.builder_options, min_traced_frames=self.min_traced_frames)
        for view in self.views:
            self._load_view(root / view, view, builder)
        return builder.build(tabular_columns=TABULAR, notes=[note] if note else [])

    def _load_view(self, folder: Path, view: str, builder: IndexBuilder) -> None:
        file_list = folder / "FileList.csv"
        table = read_table(file_list, COLUMNS, text_columns=["FileName", "Split", "Sex"])
        tracings = tracings_if_present(folder / "VolumeTracings.csv", "points", self.min_traced_frames)
        for row_number, file_name, row in listed_videos(table, file_list, builder):
            name = strip_avi(file_name)
            fold = _fold(row["Split"], file_list, row_number, file_name)
            patient, accession = (name.split("-") + [""])[:2]
            tabular = {"Sex": normalise_sex(row["Sex"]),
                       **{key: builder.measurement(file_name, file_list, key, row[key]) for key in MEASUREMENTS}}
            item = Item(id=file_name, patient=patient, ef=as_ef(row["EF"]), video=folder / "Videos" / f"{name}.avi",
                        fold=str(fold), tabular=tabular, visit=f"{patient}-{accession}", tracings=tracings.of(name),
                        subgroups={"sex": tabular["Sex"], "age_bin": age_bin(tabular["Age"], AGE_EDGES),
                                   "view": view})
            builder.add(item, file_list, tracings)

    def splits(self, index: DatasetIndex, protocol: str, fold: int = 0, **options) -> list[Split]:
        if protocol == "fold":
            return [fold_split(index, int(fold))]
        if protocol == "fold0":
            return [fold_split(index, 0)]
        if protocol == "cv10":
            return cross_validation(index)
        raise unknown_protocol(NAME, protocol, PROTOCOLS)


def _views(view: str) -> tuple[str, ...]:
    chosen = VIEWS if view.lower() == "both" else (view.upper(),)
    if not set(chosen) <= set(VIEWS):
        raise ConfigError(f"{NAME}: dataset.view must be \"A4C\", \"PSAX\" or \"both\", got {view!r}")
    return chosen


def _fold(value, path: Path, row_number: int, file_name: str) -> int:
    # The fold column is an integer 0-9; "3.0" (a float export) is accepted, TRAIN/VAL/TEST is not.
    number = number_or_none(value)
    if number is None or number != int(number) or not 0 <= number < N_FOLDS:
        raise DataError(f"{path} row {row_number} ({file_name}): Split {value!r} is not an integer fold 0-9")
    return int(number)


@hookimpl
def register_datasets(registry):
    registry.add(NAME, EchoNetPediatric, metadata={
        "reference_tabular": ["Age", "Sex", "Weight", "Height"],  # MCSDR's tabular_cols, in its order
        "formats": {"FileList.csv": list(COLUMNS), "videos": ".avi"},
    })
