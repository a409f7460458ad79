"""Tiny dataset trees in the exact on-disk formats of EchoNet-Dynamic, EchoNet-Pediatric and CAMUS.

Like torchgeo's fake data: each ``make_*`` writes a few short videos and the label files, with
deterministic content, and returns what it wrote. Bad cases are injected afterwards with the small
mutation hooks below (``truncate``, ``write_zero_frame_avi``, ``set_cell``, ``drop_column``, ...).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class FakeTree:
    root: Path
    ids: list[str] = field(default_factory=list)
    videos: dict[str, Path] = field(default_factory=dict)  # item id -> video file
    labels: Path | None = None  # the main label file (FileList.csv) where there is one


def frames_with_counter(n_frames: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """(T, H, W) uint8 grey frames whose mean brightness encodes the frame number (10 + 8 * t).

    Each frame is flat so that lossy codecs keep the value: tests read the frame number back.
    """
    values = (10 + 8 * np.arange(n_frames)) % 250
    frames = np.broadcast_to(values[:, None, None], (n_frames, height, width)).astype(np.uint8)
    return np.ascontiguousarray(frames)


def frame_number(frame: np.ndarray) -> float:
    """Inverse of ``frames_with_counter`` for a decoded frame (any channels)."""
    return (float(np.mean(frame)) - 10) / 8


def asymmetric_image(height: int = 24, width: int = 16) -> np.ndarray:
    """A (H, W) image that is not invariant to any flip, rotation or transpose: a bright top-left corner
    block and a mid-grey bar along the bottom edge, on a non-square canvas."""
    image = np.zeros((height, width), dtype=np.uint8)
    image[:4, :6] = 255
    image[-3:, :] = 120
    return image


def write_avi(path: Path, frames: np.ndarray, fps: int = 50, codec: str = "MJPG") -> Path:
    """AVI with grey replicated to three channels; MJPG as EchoNet's OpenCV export writes them."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    for frame in frames:
        writer.write(np.repeat(frame[..., None], 3, axis=2) if frame.ndim == 2 else frame)
    writer.release()
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _ef(rng: np.random.Generator) -> float:
    return round(float(rng.uniform(20, 80)), 4)


# --------------------------------------------------------------------------- EchoNet-Dynamic
def make_dynamic(root: Path, splits: Sequence[str] = ("TRAIN",) * 4 + ("VAL",) * 2 + ("TEST",) * 2,
                 n_frames: int = 12, seed: int = 0) -> FakeTree:
    """FileList.csv (FileName without .avi), VolumeTracings.csv (FileName with .avi), Videos/*.avi."""
    rng = np.random.default_rng(seed)
    tree = FakeTree(root=root, labels=root / "FileList.csv")
    rows, tracings = [], []
    for number, split in enumerate(splits):
        name = f"0X{number:014X}"
        ef = _ef(rng)
        esv, edv = 100 * (1 - ef / 100), 100.0
        rows.append([name, ef, esv, edv, 32, 32, 50, n_frames, split])
        for frame in (1, n_frames - 2):  # end-diastole and end-systole: the long axis, then two chords
            lines = ((15, 6, 15, 26), (11, 14, 19, 14), (12, 20, 18, 20))
            tracings += [[f"{name}.avi", *line, frame] for line in lines]
        tree.ids.append(name)
        tree.videos[name] = write_avi(root / "Videos" / f"{name}.avi", frames_with_counter(n_frames))
    write_csv(tree.labels, ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
                            "NumberOfFrames", "Split"], rows)
    write_csv(root / "VolumeTracings.csv", ["FileName", "X1", "Y1", "X2", "Y2", "Frame"], tracings)
    return tree


# --------------------------------------------------------------------------- EchoNet-Pediatric
def make_pediatric(root: Path, n_patients: int = 20, views: Sequence[str] = ("A4C", "PSAX"),
                   videos_per_patient: int = 1, n_frames: int = 10, seed: int = 0) -> FakeTree:
    """Per view: FileList.csv (FileName with .avi, integer fold per patient), VolumeTracings.csv with
    X,Y points and ``No Systolic`` rows, Videos/*.avi. Patient p is in fold p % 10."""
    rng = np.random.default_rng(seed)
    tree = FakeTree(root=root)
    sexes = ["M", "F", "", "M", "F"]
    for view in views:
        rows, tracings = [], []
        for patient in range(n_patients):
            for visit in range(videos_per_patient):
                file_name = f"CR{patient:04d}-CR{visit:04d}{view[0]}-{patient * 10 + visit:06d}.avi"
                weight = "" if patient % 4 == 0 else round(float(rng.uniform(5, 70)), 1)
                rows.append([file_name, _ef(rng), sexes[patient % len(sexes)], patient % 19, weight,
                             round(float(rng.uniform(60, 180)), 1), patient % 10])
                tracings += [[file_name, x, y, 2] for x, y in ((10, 10), (12, 11), (11, 14))]
                tracings += ([[file_name, "", "", "No Systolic"]] if patient % 3 == 0 else
                             [[file_name, x, y, 7] for x, y in ((10, 9), (12, 9), (11, 12))])
                tree.ids.append(file_name)
                tree.videos[file_name] = write_avi(root / view / "Videos" / file_name, frames_with_counter(n_frames))
        write_csv(root / view / "FileList.csv", ["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"], rows)
        write_csv(root / view / "VolumeTracings.csv", ["FileName", "X", "Y", "Frame"], tracings)
    tree.labels = root / views[0] / "FileList.csv"
    return tree


# --------------------------------------------------------------------------- CAMUS
def camus_sequence(n_frames: int = 6) -> np.ndarray:
    """(T, H, W) uint8: the asymmetric image whose brightness rises with the frame number."""
    base = asymmetric_image().astype(np.int32)
    return np.stack([np.clip(base + 5 * t, 0, 255) for t in range(n_frames)]).astype(np.uint8)


def write_nifti(path: Path, sequence: np.ndarray) -> Path:
    """Stores (T, H, W) the way the 2023 release does: NIfTI axes (x, y, t)."""
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(sequence.transpose(2, 1, 0)), np.eye(4)), str(path))
    return path


def write_metaimage(path: Path, sequence: np.ndarray) -> Path:
    """Stores (T, H, W) as MetaImage .mhd + .raw, as the 2019 release does."""
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(sequence), str(path), False)
    return path


def make_camus(root: Path, release: str = "2023", n_patients: int = 20, n_frames: int = 6,
               seed: int = 0) -> FakeTree:
    """CAMUS tree of either release for both views; 2023 also gets database_split (60/20/20%)."""
    rng = np.random.default_rng(seed)
    tree = FakeTree(root=root)
    folder, suffix, ef_key = {"2023": ("database_nifti", "half_sequence.nii.gz", "EF"),
                              "2019": ("training", "sequence.mhd", "LVef")}[release]
    write = write_nifti if release == "2023" else write_metaimage
    qualities = ["Good", "Medium", "Poor"]
    for number in range(1, n_patients + 1):
        patient = f"patient{number:04d}"
        ef = int(rng.integers(25, 75))
        for view in ("2CH", "4CH"):
            keys = {"ED": 1, "ES": n_frames, "NbFrame": n_frames, "Sex": "MF"[number % 2], "Age": 30 + number,
                    "ImageQuality": qualities[(number + (view == "4CH")) % 3], ef_key: ef}
            if release == "2019":
                keys.update(LVedv=100, LVesv=100 - ef)
            else:
                keys["FrameRate"] = 25
            info = root / folder / patient / f"Info_{view}.cfg"
            info.parent.mkdir(parents=True, exist_ok=True)
            info.write_text("".join(f"{key}: {value}\n" for key, value in keys.items()))
            item_id = f"{patient}_{view}"
            tree.ids.append(item_id)
            tree.videos[item_id] = write(root / folder / patient / f"{patient}_{view}_{suffix}",
                                         camus_sequence(n_frames))
    if release == "2023":
        patients = [f"patient{number:04d}" for number in range(1, n_patients + 1)]
        n_train, n_val = int(0.6 * n_patients), int(0.2 * n_patients)
        groups = {"training": patients[:n_train], "validation": patients[n_train:n_train + n_val],
                  "testing": patients[n_train + n_val:]}
        for group, members in groups.items():
            path = root / "database_split" / f"subgroup_{group}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(members) + "\n")
    return tree


# Per release: the patients' folder, the sequence file suffix and the image suffix of the ED/ES masks.
CAMUS_FILES = {"2023": ("database_nifti", "half_sequence.nii.gz", ".nii.gz"),
               "2019": ("training", "sequence.mhd", ".mhd")}


def square_mask(height: int, width: int, top: int, left: int, side: int) -> np.ndarray:
    """(H, W) uint8 ground truth with a ``side``-pixel square of LV cavity (label 1)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[top:top + side, left:left + side] = 1
    return mask


def store_es_to_ed(tree: FakeTree, item_id: str, n_frames: int = 6,
                   release: str = "2023") -> tuple[np.ndarray, np.ndarray]:
    """Rewrites a CAMUS item as the sequences some patients have: stored from ES to ED (``ED = NbFrame``,
    ``ES = 1``), with ED and ES ground-truth masks. The stored frames are ``camus_sequence`` reversed, so
    read in time order they are ``camus_sequence`` again. Returns the (ED, ES) masks: a 6- and a 3-pixel square."""
    folder, suffix, mask_suffix = CAMUS_FILES[release]
    patient, view = item_id.rsplit("_", 1)
    directory = tree.root / folder / patient
    write = write_nifti if release == "2023" else write_metaimage
    sequence = camus_sequence(n_frames)
    write(directory / f"{item_id}_{suffix}", sequence[::-1])
    height, width = sequence.shape[1:]
    masks = square_mask(height, width, 4, 4, 6), square_mask(height, width, 12, 6, 3)
    for phase, mask in zip(("ED", "ES"), masks):
        write(directory / f"{item_id}_{phase}_gt{mask_suffix}", mask[None])
    info = directory / f"Info_{view}.cfg"
    lines = info.read_text().splitlines()
    swapped = {"ED": f"ED: {len(sequence)}", "ES": "ES: 1"}
    info.write_text("".join(swapped.get(line.split(":")[0], line) + "\n" for line in lines))
    return masks


def unlist_camus_patient(tree: FakeTree, patient: str) -> None:
    """Removes ``patient`` from the 2023 release's ``database_split`` files (on disk, but in no split)."""
    for path in (tree.root / "database_split").glob("subgroup_*.txt"):
        path.write_text("".join(f"{line}\n" for line in path.read_text().split() if line != patient))


def write_camus_subgroups(tree: FakeTree, patients: Sequence[str], first: int = 0) -> dict[int, list[str]]:
    """The published 10-fold split ``listSubGroups/subGroup{k}_{training,validation,testing}.txt`` for
    ``patients``: fold k tests every tenth patient from the k-th (in reverse order, unlike any dealing by
    EF), validates on the next fold's, trains on the rest. Folds are numbered from ``first``. Returns the
    test patients of each fold number."""
    order = list(reversed(patients))
    tested = {first + k: order[k::10] for k in range(10)}
    for k, test in tested.items():
        val = tested[first + (k - first + 1) % 10]
        groups = {"testing": test, "validation": val, "training": [p for p in patients if p not in test + val]}
        for group, members in groups.items():
            path = tree.root / "listSubGroups" / f"subGroup{k}_{group}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{member}\n" for member in members))
    return tested


# --------------------------------------------------------------------------- bad-case hooks
def truncate(path: Path, keep: float = 0.5) -> None:
    """Cuts a file short, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def corrupt_last_frame(path: Path) -> None:
    """Overwrites the start-of-image marker of the last JPEG in a Motion-JPEG AVI (a damaged frame)."""
    data = bytearray(path.read_bytes())
    start = data.rfind(b"\xff\xd8\xff")
    data[start:start + 3] = b"\x00\x00\x00"
    path.write_bytes(bytes(data))


def write_zero_frame_avi(path: Path) -> None:
    """A valid AVI container holding no frames."""
    write_avi(path, np.zeros((0, 32, 32), dtype=np.uint8))


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as stream:
        header, *rows = list(csv.reader(stream))
    return header, rows


def set_cell(path: Path, row_id: str, column: str, value) -> None:
    """Sets ``column`` of the row whose first field is ``row_id``."""
    header, rows = _rows(path)
    for row in rows:
        if row[0] == row_id:
            row[header.index(column)] = str(value)
    write_csv(path, header, rows)


def drop_column(path: Path, column: str) -> None:
    header, rows = _rows(path)
    keep = [i for i, name in enumerate(header) if name != column]
    write_csv(path, [header[i] for i in keep], [[row[i] for i in keep] for row in rows])


def duplicate_row(path: Path, row_id: str) -> None:
    header, rows = _rows(path)
    write_csv(path, header, rows + [row for row in rows if row[0] == row_id])


def append_rows(path: Path, rows: Sequence[Sequence]) -> None:
    """Adds ``rows`` at the end of a CSV (e.g. one more traced frame in ``VolumeTracings.csv``)."""
    header, existing = _rows(path)
    write_csv(path, header, existing + [[str(value) for value in row] for row in rows])
