"""CAMUS: 2- and 4-chamber half-cycle sequences of 500 adults, EF per patient (2019 or 2023 release)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from benchmark.api import (
    MIN_OUTLINE_POINTS,
    N_FOLDS,
    ConfigError,
    DataError,
    DatasetIndex,
    Exclusion,
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
from registry.errors import did_you_mean

NAME = "camus"
PROTOCOLS = ("official", "cv10")
VIEWS = {"2CH": "2CH", "A2C": "2CH", "4CH": "4CH", "A4C": "4CH"}
TABULAR = {"Sex": "categorical", "Age": "numeric"}
QUALITY_ORDER = ("good", "medium", "poor")
AGE_EDGES = (0, 45, 65)
SPLIT_FILES = {"train": "subgroup_training.txt", "val": "subgroup_validation.txt", "test": "subgroup_testing.txt"}
SUBGROUPS = "listSubGroups"  # the published 10-fold split: subGroup<k>_<group>.txt
SUBGROUP_FILES = {"train": "training", "val": "validation", "test": "testing"}
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
    fold_protocols = ()  # dataset.fold chooses no split of this dataset; validate refuses it
    views = (*VIEWS, "both")  # A2C and A4C name the same planes
    tabular_columns = TABULAR  # what load() gives; validate checks dataset.tabular against it

    def __init__(self, root, view: str = "4CH", release: str = "auto", strict: bool = False,
                 check_videos: bool = True, video_cache: str | None = None):
        for key, problem in self.parameter_problems({"release": release}).items():
            raise ConfigError(f"{NAME}: {key} {problem}")
        self.root = Path(root)
        self.views = _views(view)
        self.release = release
        self.builder_options = dict(strict=strict, check_videos=check_videos, video_cache=video_cache)

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        """The rule on ``release``, asked by `validate` before the data are loaded or generated."""
        release = params.get("release", "auto")
        if release == "auto" or release in RELEASES:
            return {}
        return {"release": f"must be \"auto\", \"2019\" or \"2023\", got {release!r}."
                           f"{did_you_mean(str(release), ['auto', *RELEASES])}"}

    def detect_release(self) -> str:
        if self.release != "auto":
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
        notes = []
        for patient_dir in patients:
            for view in self.views:
                notes += self._add(patient_dir, view, release, sequence_suffix, ef_key, builder)
        return builder.build(tabular_columns=TABULAR, notes=notes)

    def _add(self, patient_dir: Path, view: str, release: str, suffix: str, ef_key: str,
             builder: IndexBuilder) -> list[str]:
        """Adds the item of one view of one patient; returns what was changed on purpose (for the manifest)."""
        patient = patient_dir.name
        item_id = f"{patient}_{view}"
        info_path = patient_dir / f"Info_{view}.cfg"
        if not info_path.is_file():
            builder.exclude(item_id, info_path, "missing Info file")
            return []
        info = read_info(info_path)
        if ef_key not in info:
            raise DataError(f"{info_path}: no {ef_key} key; keys found: {', '.join(info) or 'none'}. "
                            f"Is this the {release} release (dataset.params.release)?")
        age = builder.measurement(item_id, info_path, "Age", info.get("Age"))
        sex = normalise_sex(info.get("Sex"))
        quality = (info.get("ImageQuality") or "unknown").lower()
        reverse = runs_es_to_ed(info, info_path)
        tracings = mask_tracings(info, info_path, patient_dir / f"{patient}_{view}", release, reverse)
        item = Item(id=item_id, patient=patient, ef=as_ef(info[ef_key]), fold="",
                    video=patient_dir / f"{patient}_{view}_{suffix}", visit=patient, reversed=reverse,
                    tabular={"Sex": sex, "Age": age}, tracings=tracings,
                    subgroups={"sex": sex, "age_bin": age_bin(age, AGE_EDGES), "quality": quality, "view": view})
        if not (builder.add(item, info_path) and reverse):
            return []
        return [(f"{item_id}: the sequence runs from ES to ED (ED {info['ED']}, ES {info['ES']} in {info_path.name});"
                 " read in reverse, tracing frames renumbered")]

    def splits(self, index: DatasetIndex, protocol: str, **options) -> list[Split]:
        if protocol == "official":
            return [self._official(index)]
        if protocol == "cv10":
            return self._published_folds(index) or [
                dataclasses.replace(split, source=f"10 folds dealt by the benchmark, balanced on image quality and "
                                                  f"EF (no {SUBGROUPS}/ in {self.root})")
                for split in cross_validation(index, balanced_folds(index))]
        raise unknown_protocol(NAME, protocol, PROTOCOLS)

    def _official(self, index: DatasetIndex) -> Split:
        folder = self.root / "database_split"
        for path in (folder / file_name for file_name in SPLIT_FILES.values()):
            if not path.is_file():
                raise DataError(f"{NAME}: the official split needs {path} (one patientNNNN per line, from the "
                                "2023 CAMUS_public release); copy database_split/ there or use protocol \"cv10\"")
        return _split_from_files(index, "official", {role: folder / name for role, name in SPLIT_FILES.items()})

    def _published_folds(self, index: DatasetIndex) -> list[Split]:
        """The published 10-fold split, ``listSubGroups/subGroup{k}_{training,validation,testing}.txt``
        (numbered as the files are), or [] when the root has no such folder."""
        folder = self.root / SUBGROUPS
        if not folder.is_dir():
            return []
        folds = sorted(int(match.group(1)) for path in folder.iterdir()
                       if (match := re.fullmatch(r"subGroup(\d+)_testing\.txt", path.name)))
        if len(folds) != N_FOLDS:
            raise DataError(f"{NAME}: {folder} holds {len(folds)} subGroup<k>_testing.txt file(s), expected "
                            f"{N_FOLDS}; restore the folder or remove it to use folds dealt by the benchmark")
        splits = []
        for k in folds:
            files = {role: folder / f"subGroup{k}_{group}.txt" for role, group in SUBGROUP_FILES.items()}
            missing = [str(path) for path in files.values() if not path.is_file()]
            if missing:
                raise DataError(f"{NAME}: fold {k} of {folder} lacks {', '.join(missing)}")
            splits.append(_split_from_files(index, f"fold{k}", files))
        return splits


def _split_from_files(index: DatasetIndex, name: str, files: dict[str, Path]) -> Split:
    """The split that ``files`` (role -> a file of patientNNNN lines) give; items of patients in none of them
    are listed as excluded from it, never dropped silently."""
    role_of_patient = {patient: role for role, path in files.items() for patient in path.read_text().split()}
    roles = {item.id: role_of_patient[item.patient] for item in index.items if item.patient in role_of_patient}
    where = ", ".join(path.name for path in files.values())
    unlisted = tuple(Exclusion(id=item.id, file=str(next(iter(files.values())).parent),
                               reason=f"not in the split files: patient {item.patient} is in none of {where}")
                     for item in index.items if item.patient not in role_of_patient)
    return Split(name=name, roles=roles, source=f"{next(iter(files.values())).parent}: {where}", excluded=unlisted)


def read_info(path: Path) -> dict[str, str]:
    """The ``Key: value`` lines of a CAMUS ``Info_*.cfg``; a byte that is not UTF-8 is an error naming its line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(f"{path}: byte 0x{data[error.start]:02X} at line {line} is not UTF-8 text; restore the file "
                        "from the CAMUS download") from None
    info = {}
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if separator:
            info[key.strip()] = value.strip()
    return info


def runs_es_to_ed(info: dict[str, str], path: Path) -> bool:
    """Whether the half-sequence runs from ES to ED (``ED`` after ``ES``; e.g. ``ED = NbFrame``, ``ES = 1``).

    Some CAMUS sequences are stored that way; the ``vital`` library reverses them, and so does this loader
    (``Item.reversed``), so that every clip runs forward in time. Without both keys nothing is reversed
    (and the masks, which need them, say so).
    """
    if number_or_none(info.get("ED")) is None or number_or_none(info.get("ES")) is None:
        return False
    return frame_index(info, "ED", path) > frame_index(info, "ES", path)


def mask_tracings(info: dict[str, str], info_path: Path, stem: Path, release: str,
                  reverse: bool = False) -> tuple[Tracing, ...]:
    """The LV outlines of the ED and ES ground-truth masks ``<stem>_ED_gt``/``_ES_gt``, at those frames of
    the view's sequence (``Info_*.cfg`` numbers its frames from 1). ``reverse``: the sequence is read last
    frame first, so frame i of the file is frame NbFrame - 1 - i of the item.

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
            frame = frame_index(info, phase, info_path)
            tracings.append(Tracing(frame=sequence_length(info, info_path) - 1 - frame if reverse else frame,
                                    polygon=outline))
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


def sequence_length(info: dict[str, str], path: Path) -> int:
    """``NbFrame``; without it, the later of ED and ES ends the half cycle."""
    frames = number_or_none(info.get("NbFrame"))
    return int(frames) if frames is not None else max(frame_index(info, key, path) for key in TRACED_PHASES) + 1


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
        "reference_tabular": ["Age", "Sex"],  # MCSDR's tabular_cols, in its order
        "label_derived": ["LVedv", "LVesv", "LVef"],
        "formats": {"2023": "database_nifti/*/patientNNNN_<view>_half_sequence.nii.gz",
                    "2019": "training/*/patientNNNN_<view>_sequence.mhd"},
    })
