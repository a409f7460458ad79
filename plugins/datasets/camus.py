"""CAMUS: 2- and 4-chamber half-cycle sequences of 500 adults, EF per patient (2019 or 2023 release)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.api import (
    MIN_OUTLINE_POINTS,
    N_FOLDS,
    ConfigError,
    DataError,
    DatasetIndex,
    IndexBuilder,
    Item,
    Split,
    Tracing,
    VideoReadError,
    age_bin,
    as_ef,
    cross_validation,
    normalise_sex,
    number_or_none,
    polygon_array,
    read_metaimage,
    require_root,
    unknown_protocol,
    wrong_root,
)
from registry import hookimpl

NAME = "camus"
PROTOCOLS = ("official", "cv10")
VIEWS = {"2CH": "2CH", "A2C": "2CH", "4CH": "4CH", "A4C": "4CH"}
TABULAR = {"Sex": "categorical", "Age": "numeric"}
QUALITY_ORDER = ("good", "medium", "poor")
AGE_EDGES = (0, 45, 65)
SPLIT_FILES = {"train": "subgroup_training.txt", "val": "subgroup_validation.txt", "test": "subgroup_testing.txt"}
# Where each release keeps its patients, the sequence file suffix and the EF key of Info_*.cfg.
RELEASES = {
    "2023": ("database_nifti", "half_sequence.nii.gz", "EF"),
    "2019": ("training", "sequence.mhd", "LVef"),
}
MASK_SUFFIX = {"2023": ".nii.gz", "2019": ".mhd"}  # the ED/ES ground truth, in the release's image format
LV_CAVITY = 1  # ground-truth label of the LV endocardium (cavity)
TRACED_PHASES = ("ED", "ES")


class Camus:
    """CAMUS 2019 (MetaImage) or 2023 (NIfTI) release, official 400/50/50 split or 10 balanced folds."""

    protocols = PROTOCOLS

    def __init__(self, root, view: str = "4CH", release: str = "auto", strict: bool = False,
                 check_videos: bool = True, video_cache: str | None = None):
        self.root = Path(root)
        self.views = _views(view)
        self.release = release
        self.builder_options = dict(strict=strict, check_videos=check_videos, video_cache=video_cache)

    def detect_release(self) -> str:
        if self.release != "auto":
            if self.release not in RELEASES:
                raise ConfigError(f"{NAME}: release must be \"auto\", \"2019\" or \"2023\", got {self.release!r}")
            return self.release
        for release, (folder, _, _) in RELEASES.items():
            if (self.root / folder).is_dir():
                return release
        raise wrong_root(self.root, NAME, "database_nifti/ (2023 release) or training/ (2019 release)")

    def load(self) -> DatasetIndex:
        release = self.detect_release()
        folder, sequence_suffix, ef_key = RELEASES[release]
        patients_dir = require_root(self.root, [folder], NAME) / folder
        builder = IndexBuilder(NAME, **self.builder_options)
        patients = sorted(p for p in patients_dir.iterdir() if p.is_dir() and p.name.startswith("patient"))
        if not patients:
            raise DataError(f"{NAME}: {patients_dir} holds no patientNNNN folders; "
                            f"expected the {release} release layout")
        for patient_dir in patients:
            for view in self.views:
                self._add(patient_dir, view, release, sequence_suffix, ef_key, builder)
        return builder.build(tabular_columns=TABULAR)

    def _add(self, patient_dir: Path, view: str, release: str, suffix: str, ef_key: str,
             builder: IndexBuilder) -> None:
        patient = patient_dir.name
        item_id = f"{patient}_{view}"
        info_path = patient_dir / f"Info_{view}.cfg"
        if not info_path.is_file():
            builder.exclude(item_id, info_path, "missing Info file")
            return
        info = read_info(info_path)
        if ef_key not in info:
            raise DataError(f"{info_path}: no {ef_key} key; keys found: {', '.join(info) or 'none'}. "
                            f"Is this the {release} release (dataset.params.release)?")
        age = number_or_none(info.get("Age"))
        sex = normalise_sex(info.get("Sex"))
        quality = (info.get("ImageQuality") or "unknown").lower()
        tracings = mask_tracings(info, info_path, patient_dir / f"{patient}_{view}", release)
        item = Item(id=item_id, patient=patient, ef=as_ef(info[ef_key]), fold="",
                    video=patient_dir / f"{patient}_{view}_{suffix}", visit=patient,
                    tabular={"Sex": sex, "Age": age}, tracings=tracings,
                    subgroups={"sex": sex, "age_bin": age_bin(age, AGE_EDGES), "quality": quality, "view": view})
        builder.add(item, info_path)

    def splits(self, index: DatasetIndex, protocol: str, **options) -> list[Split]:
        if protocol == "official":
            return [self._official(index)]
        if protocol == "cv10":
            return cross_validation(index, balanced_folds(index))
        raise unknown_protocol(NAME, protocol, PROTOCOLS)

    def _official(self, index: DatasetIndex) -> Split:
        folder = self.root / "database_split"
        role_of_patient = {}
        for role, file_name in SPLIT_FILES.items():
            path = folder / file_name
            if not path.is_file():
                raise DataError(f"{NAME}: the official split needs {path} (one patientNNNN per line, from the "
                                "2023 CAMUS_public release); copy database_split/ there or use protocol \"cv10\"")
            for patient in path.read_text().split():
                role_of_patient[patient] = role
        return Split(name="official", roles={item.id: role_of_patient[item.patient]
                                             for item in index.items if item.patient in role_of_patient})


def read_info(path: Path) -> dict[str, str]:
    """The ``Key: value`` lines of a CAMUS ``Info_*.cfg``."""
    info = {}
    for line in path.read_text().splitlines():
        key, separator, value = line.partition(":")
        if separator:
            info[key.strip()] = value.strip()
    return info


def mask_tracings(info: dict[str, str], info_path: Path, stem: Path, release: str) -> tuple[Tracing, ...]:
    """The LV outlines of the ED and ES ground-truth masks ``<stem>_ED_gt``/``_ES_gt``, at those frames of
    the view's sequence (which runs from ED to ES; ``Info_*.cfg`` numbers its frames from 1).

    A phase whose mask is missing or has no LV region gets no tracing (the label, EF, does not depend on
    it); a mask file that cannot be read is an error naming it.
    """
    tracings = []
    for phase in TRACED_PHASES:
        path = Path(f"{stem}_{phase}_gt{MASK_SUFFIX[release]}")
        if not path.is_file():
            continue
        try:
            # SimpleITK reads both formats upright; benchmark.data.video's nibabel path turns only 3-D NIfTI upright.
            mask = read_metaimage(path)
        except VideoReadError as error:
            raise DataError(f"{path}: the {phase} ground-truth mask cannot be read ({error}); replace or remove "
                            "the file") from error
        outline = lv_outline(mask[0, ..., 0])
        if outline is not None:
            tracings.append(Tracing(frame=frame_index(info, phase, info_path), polygon=outline))
    return tuple(sorted(tracings, key=lambda tracing: tracing.frame))


def lv_outline(mask: np.ndarray) -> np.ndarray | None:
    """(P, 2) float64 x, y of the largest external contour of the LV cavity label, or None without one."""
    import cv2

    contours, _ = cv2.findContours((mask == LV_CAVITY).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    return polygon_array(largest) if len(largest) >= MIN_OUTLINE_POINTS else None


def frame_index(info: dict[str, str], key: str, path: Path) -> int:
    """The 0-based sequence index of the 1-based frame number ``info[key]`` (checked against NbFrame)."""
    number, frames = number_or_none(info.get(key)), number_or_none(info.get("NbFrame"))
    if number is None or number != int(number) or number < 1 or (frames is not None and number > frames):
        raise DataError(f"{path}: {key} {info.get(key)!r} is not a frame number between 1 and "
                        f"{'NbFrame' if frames is None else int(frames)}")
    return int(number) - 1


def balanced_folds(index: DatasetIndex) -> dict[str, int]:
    """Fold of each item: patients sorted by worst image quality then EF, dealt to folds in blocks of ten.

    Each block of ten similar patients spreads over all ten folds, so every fold gets the same mix of
    quality and EF. The order depends only on the data, so the folds are identical on every run.
    """
    patients: dict[str, tuple[int, float]] = {}
    for item in index.items:
        rank = QUALITY_ORDER.index(item.subgroups["quality"]) if item.subgroups["quality"] in QUALITY_ORDER else 3
        worst, _ = patients.get(item.patient, (-1, item.ef))
        patients[item.patient] = (max(worst, rank), item.ef)
    order = sorted(patients, key=lambda patient: (patients[patient], patient))
    # Alternate the dealing direction per block (a "snake") so no fold always gets the lowest EF.
    fold_of_patient = {}
    for position, patient in enumerate(order):
        block, offset = divmod(position, N_FOLDS)
        fold_of_patient[patient] = offset if block % 2 == 0 else N_FOLDS - 1 - offset
    return {item.id: fold_of_patient[item.patient] for item in index.items}


def _views(view: str) -> tuple[str, ...]:
    if view.lower() == "both":
        return ("2CH", "4CH")
    if view.upper() not in VIEWS:
        raise ConfigError(f"{NAME}: dataset.view must be \"2CH\", \"4CH\" or \"both\" (A2C/A4C accepted), "
                          f"got {view!r}")
    return (VIEWS[view.upper()],)


@hookimpl
def register_datasets(registry):
    registry.add(NAME, Camus, metadata={
        "protocols": list(PROTOCOLS), "views": ["2CH", "4CH", "both"], "tabular": list(TABULAR),
        "reference_tabular": ["Age", "Sex"],  # MCSDR's tabular_cols, in its order
        "label_derived": ["LVedv", "LVesv", "LVef"], "subgroups": ["sex", "age_bin", "quality", "view"],
        "formats": {"2023": "database_nifti/*/patientNNNN_<view>_half_sequence.nii.gz",
                    "2019": "training/*/patientNNNN_<view>_sequence.mhd"},
        "params": ["release"],
    })
