"""On-disk layouts: one function per format writes the tables; ``write_avi``/``write_camus_view`` the media.

Conventions follow ../shared/reference/datasets.md: EchoNet-Dynamic ``FileName`` without ``.avi`` in
FileList.csv but with it in VolumeTracings.csv (rows of the ES frame first, then ED, as in the official
release), disc lines ``X1,Y1,X2,Y2`` (long axis then 20 chords); EchoNet-Pediatric ``FileName`` with
``.avi``, integer folds, polygon tracings ``X,Y,Frame`` and ``No Systolic`` rows for missing tracings;
CAMUS 2023 NIfTI half sequences (ED to ES) with ``Info_*.cfg`` and ``database_split``.
"""
from __future__ import annotations

import csv
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import anatomy, render
from .patients import Patient

DISCS = 20
PEDIATRIC_POLYGON_POINTS = 42
DYNAMIC_HEADER = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
PEDIATRIC_HEADER = ["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"]
CAMUS_SPLIT_FILES = {"train": "subgroup_training.txt", "val": "subgroup_validation.txt",
                     "test": "subgroup_testing.txt"}


@dataclass
class Record:
    """What the tables say about one video (EchoNet) or one patient (CAMUS, ``scenes`` per view)."""

    id: str
    patient: Patient
    scenes: dict[str, render.Scene]  # by view: "A4C" (EchoNet), "2CH" and "4CH" (CAMUS)
    ed: int
    es: int
    fps: float
    ef: float  # the label: geometric EF of the true state + label noise
    edv: float  # mL, at the traced ED frame
    split: str
    ambiguous: bool
    ef_by_state: tuple[float, float]
    missing_tracing: bool = False
    stem: str = ""  # EchoNet video file name without .avi


def write_avi(path: Path, frames: np.ndarray, fps: float) -> None:
    """MJPG in a RIFF AVI (with idx1 index), 3-channel grey JPEG frames, as EchoNet's OpenCV export.

    The frames are encoded with ``cv2.imencode`` (libjpeg); OpenCV's VideoWriter produces the same kind
    of file but its built-in MJPEG encoder is about five times slower, which dominated generation time.
    """
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:]
    jpegs = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise OSError(f"OpenCV could not JPEG-encode a frame for {path}")
        jpegs.append(data.tobytes())
    path.write_bytes(_avi_bytes(jpegs, width, height, fps))


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")


def _avi_bytes(jpegs: list[bytes], width: int, height: int, fps: float) -> bytes:
    scale, rate = 1000, int(round(fps * 1000))
    largest = max(len(j) for j in jpegs)
    avih = struct.pack("<10I4I", int(round(1e6 / fps)), int(largest * fps), 0, 0x10, len(jpegs), 0, 1,
                       largest, width, height, 0, 0, 0, 0)
    strh = struct.pack("<4s4sI2H8I4h", b"vids", b"MJPG", 0, 0, 0, 0, scale, rate, 0, len(jpegs), largest,
                       0xFFFFFFFF, 0, 0, 0, width, height)
    strf = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0)
    header = _chunk(b"LIST", b"hdrl" + _chunk(b"avih", avih)
                    + _chunk(b"LIST", b"strl" + _chunk(b"strh", strh) + _chunk(b"strf", strf)))
    movi, index, offset = [], [], 4  # idx1 offsets count from the "movi" tag
    for jpeg in jpegs:
        chunk = _chunk(b"00dc", jpeg)
        index.append(struct.pack("<4sIII", b"00dc", 0x10, offset, len(jpeg)))
        movi.append(chunk)
        offset += len(chunk)
    body = header + _chunk(b"LIST", b"movi" + b"".join(movi)) + _chunk(b"idx1", b"".join(index))
    return _chunk(b"RIFF", b"AVI " + body)


def write_nifti(path: Path, array: np.ndarray, spacing_mm: float) -> None:
    """(T, H, W) or (H, W) stored x-fastest, so SimpleITK returns (T, H, W) upright (nibabel: (W, H, T))."""
    import nibabel

    data = np.ascontiguousarray(array.T)
    zooms = [spacing_mm, spacing_mm, 1.0][:data.ndim]
    image = nibabel.Nifti1Image(data, np.diag(zooms + [1.0] * (4 - len(zooms))))
    image.header.set_zooms(zooms)
    nibabel.save(image, str(path))


def echonet_video_path(root: Path, fmt: str, record: Record) -> Path:
    folder = root / "A4C" if fmt == "echonet_pediatric" else root
    return folder / "Videos" / f"{record.stem}.avi"


def write_echonet_video(root: Path, fmt: str, record: Record) -> None:
    frames, _ = render.render(record.scenes["A4C"])
    write_avi(echonet_video_path(root, fmt, record), frames, record.fps)


def write_camus_views(root: Path, record: Record) -> None:
    folder = camus_patient_dir(root, record.id)
    folder.mkdir(parents=True, exist_ok=True)
    for view, scene in record.scenes.items():
        frames, labels = render.render(scene, with_labels=True)
        spacing = 10.0 / scene.px_per_cm
        stem = folder / f"{record.id}_{view}"
        write_nifti(Path(f"{stem}_half_sequence.nii.gz"), frames, spacing)
        write_nifti(Path(f"{stem}_half_sequence_gt.nii.gz"), labels, spacing)
        for name, index in (("ED", 0), ("ES", len(frames) - 1)):
            write_nifti(Path(f"{stem}_{name}.nii.gz"), frames[index], spacing)
            write_nifti(Path(f"{stem}_{name}_gt.nii.gz"), labels[index], spacing)


def camus_patient_dir(root: Path, patient: str) -> Path:
    return root / "database_nifti" / patient


# ---------------------------------------------------------------------------------------- tables
def echonet_dynamic(root: Path, records: list[Record]) -> None:
    # EchoNet's EF is computed from its ESV and EDV; the label noise therefore goes into the written ESV.
    rows = [[r.id, f"{r.ef:.8f}", f"{r.edv * (1 - r.ef / 100):.8f}", f"{r.edv:.8f}", r.scenes["A4C"].height, r.scenes["A4C"].width,
             int(round(r.fps)), len(r.scenes["A4C"].contraction), r.split] for r in records]
    _write_csv(root / "FileList.csv", DYNAMIC_HEADER, rows)
    tracings = []
    for r in records:
        for frame in (r.es, r.ed):  # the official file lists the systolic frame first
            tracings += [[f"{r.id}.avi", *(f"{value:.6f}" for value in line), frame]
                         for line in disc_lines(r.scenes["A4C"], frame)]
    _write_csv(root / "VolumeTracings.csv", ["FileName", "X1", "Y1", "X2", "Y2", "Frame"], tracings)


def echonet_pediatric(root: Path, records: list[Record]) -> None:
    folder = root / "A4C"
    rows = []
    for r in records:
        p = r.patient
        weight, height = (f"{p.weight:.2f}", f"{p.height:.1f}") if p.body_size_observed else ("", "")
        rows.append([r.id, f"{r.ef:.2f}", p.sex, p.age, weight, height, r.split])
    _write_csv(folder / "FileList.csv", PEDIATRIC_HEADER, rows)
    tracings = []
    for r in records:
        for frame, missing_text in ((r.ed, "No Diastolic"), (r.es, "No Systolic")):
            if r.missing_tracing and missing_text == "No Systolic":
                tracings.append([r.id, "", "", missing_text])
                continue
            x, y = render.contour_pixels(r.scenes["A4C"], frame, PEDIATRIC_POLYGON_POINTS)
            tracings += [[r.id, f"{xi:.4f}", f"{yi:.4f}", frame] for xi, yi in zip(x, y)]
    _write_csv(folder / "VolumeTracings.csv", ["FileName", "X", "Y", "Frame"], tracings)


def camus(root: Path, records: list[Record]) -> None:
    for r in records:
        folder = camus_patient_dir(root, r.id)
        for view, scene in r.scenes.items():
            frames = len(scene.contraction)
            info = {"ED": 1, "ES": frames, "NbFrame": frames, "Sex": r.patient.sex, "Age": r.patient.age,
                    "ImageQuality": scene.quality, "EF": f"{r.ef:.2f}", "FrameRate": f"{r.fps:.1f}"}
            (folder / f"Info_{view}.cfg").write_text("".join(f"{key}: {value}\n" for key, value in info.items()))
    split_dir = root / "database_split"
    split_dir.mkdir(parents=True, exist_ok=True)
    for role, file_name in CAMUS_SPLIT_FILES.items():
        patients = [r.id for r in records if r.split == role]
        (split_dir / file_name).write_text("".join(f"{patient}\n" for patient in patients))


def disc_lines(scene: render.Scene, frame: int) -> list[tuple[float, float, float, float]]:
    """Method-of-discs tracing in image pixels: the long axis (apex to base), then DISCS chords across it."""
    angles = anatomy.contour_angles()
    cavity, _, centre = render.lv_contours(scene, angles, scene.hidden_state)
    radius, b = cavity[frame], centre[frame]
    u, v = radius * np.sin(angles), radius * np.cos(angles) - b
    apex_v, base_v = v[0], v[len(angles) // 2]
    levels = apex_v + (base_v - apex_v) * (np.arange(DISCS) + 0.5) / DISCS
    half = len(angles) // 2
    right_v, right_u = v[:half + 1][::-1], u[:half + 1][::-1]  # increasing v for np.interp
    left_v, left_u = np.append(v[half:], v[0]), np.append(u[half:], u[0])  # base back up to the apex
    geometry = render.Geometry(scene)
    lines = []
    ax, ay = geometry.to_pixels(np.array([0.0, 0.0]), np.array([apex_v, base_v]))
    lines.append((ax[0], ay[0], ax[1], ay[1]))
    for level in levels:
        u_right = np.interp(level, right_v, right_u)
        u_left = np.interp(level, left_v, left_u)
        x, y = geometry.to_pixels(np.array([u_left, u_right]), np.array([level, level]))
        lines.append((x[0], y[0], x[1], y[1]))
    return lines


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
