"""EchoNet-Dynamic: adult apical 4-chamber videos with the official TRAIN/VAL/TEST split."""
from __future__ import annotations

from pathlib import Path

from benchmark.api import (
    ConfigError,
    DataError,
    DatasetIndex,
    IndexBuilder,
    Item,
    Split,
    as_ef,
    listed_videos,
    read_table,
    require_root,
    strip_avi,
    tracings_if_present,
    unknown_protocol,
)
from registry import hookimpl

NAME = "echonet_dynamic"
PROTOCOLS = ("official",)
VIEWS = ("A4C",)
COLUMNS = ("FileName", "EF", "Split")
ROLES = {"TRAIN": "train", "VAL": "val", "TEST": "test"}
TABULAR: dict[str, str] = {}  # FileList.csv holds no patient attributes (its ESV/EDV are the label's)


class EchoNetDynamic:
    """EchoNet-Dynamic (FileList.csv, VolumeTracings.csv, Videos/*.avi), official split."""

    protocols = PROTOCOLS
    fold_protocols = ()  # dataset.fold chooses no split of this dataset; validate refuses it
    views = VIEWS  # the official release is apical 4-chamber only
    tabular_columns = TABULAR  # what load() gives; validate checks dataset.tabular against it
    parameter_problems = staticmethod(IndexBuilder.parameter_problems)

    def __init__(self, root, min_traced_frames: int = 2, strict: bool = False, check_videos: bool = True,
                 video_cache: str | None = None, view: str = "A4C"):
        if view.upper() != "A4C":
            raise ConfigError(f"{NAME} holds apical 4-chamber videos only: dataset.view must be \"A4C\", got {view!r}")
        self.root = Path(root)
        self.min_traced_frames = min_traced_frames
        self.builder_options = dict(strict=strict, check_videos=check_videos, video_cache=video_cache)

    def load(self) -> DatasetIndex:
        root = require_root(self.root, ["FileList.csv", "Videos"], NAME)
        file_list = root / "FileList.csv"
        table = read_table(file_list, COLUMNS, text_columns=["FileName", "Split"])
        tracings = tracings_if_present(root / "VolumeTracings.csv", "lines", self.min_traced_frames)
        builder = IndexBuilder(NAME, **self.builder_options, min_traced_frames=self.min_traced_frames,
                               traced_rule=" (official EchoNet filter)")
        for row_number, file_name, row in listed_videos(table, file_list, builder):
            name = strip_avi(file_name)
            fold = str(row["Split"]).strip().upper()
            if fold not in ROLES:
                raise DataError(f"{file_list} row {row_number} ({name}): Split {fold!r} is not one of "
                                "TRAIN, VAL, TEST")
            builder.add(Item(id=name, patient=name, ef=as_ef(row["EF"]), video=root / "Videos" / f"{name}.avi",
                             fold=fold, subgroups={"view": "A4C"}, tracings=tracings.of(name)), file_list, tracings)
        return builder.build(tabular_columns=TABULAR)

    def splits(self, index: DatasetIndex, protocol: str, **options) -> list[Split]:
        if protocol not in PROTOCOLS:
            raise unknown_protocol(NAME, protocol, PROTOCOLS)
        return [Split(name="official", roles={item.id: ROLES[item.fold] for item in index.items})]


@hookimpl
def register_datasets(registry):
    registry.add(NAME, EchoNetDynamic, metadata={
        "label_derived": ["ESV", "EDV"],
        "formats": {"FileList.csv": list(COLUMNS), "videos": ".avi"},
    })
