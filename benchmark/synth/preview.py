"""A PNG contact sheet of a synthetic generation: ED and ES frames of a few videos and the EF histogram."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.errors import DataError

from . import oracle
from .generate import ORACLE, read_marker


def contact_sheet(root: str | Path, output: str | Path | None = None, videos: int = 6) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    marker = read_marker(root)
    if marker is None:
        raise DataError(f"{root} holds no complete synthetic generation (no SYNTHETIC.md); "
                        "write one with python -m benchmark synth --format ... --out DIR")
    _, ambiguous = oracle.read(root / ORACLE, "vision")
    labels, pairs = _read(root, marker["format"])
    chosen = _choose(list(pairs), ambiguous, videos)
    figure = plt.figure(figsize=(2.0 * len(chosen), 6.4))
    grid = figure.add_gridspec(3, len(chosen), height_ratios=[1, 1, 1.1])
    for column, item_id in enumerate(chosen):
        ed, es = pairs[item_id]
        for row, (name, image) in enumerate((("ED", ed), ("ES", es))):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(image, cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                hidden = ambiguous[item_id] == "yes"
                axis.set_title(f"EF {labels[item_id]:.0f}" + (" AMBIGUOUS" if hidden else ""), fontsize=8,
                               color="red" if hidden else "black")
            if column == 0:
                axis.set_ylabel(name)
    axis = figure.add_subplot(grid[2, :])
    values = {flag: [labels[i] for i in labels if ambiguous.get(i) == flag] for flag in ("no", "yes")}
    axis.hist([values["no"], values["yes"]], bins=30, range=(0, 90), stacked=True, color=["0.4", "red"],
              label=["wall visible", "ambiguous (wall hidden)"])
    axis.set_xlabel("EF label (%)"), axis.set_ylabel("videos"), axis.legend(fontsize=8)
    figure.suptitle(f"SYNTHETIC {marker['format']} (seed {marker['seed']}, n {marker['n']}): not real patients",
                    fontsize=10)
    figure.tight_layout()
    output = Path(output) if output else root / "preview.png"
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output


def _choose(ids: list[str], ambiguous: dict[str, str], videos: int) -> list[str]:
    hidden = [i for i in ids if ambiguous.get(i) == "yes"][: videos // 2]
    visible = [i for i in ids if ambiguous.get(i) != "yes"][: videos - len(hidden)]
    return visible + hidden


def _read(root: Path, fmt: str) -> tuple[dict[str, float], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """EF label per id, and (ED, ES) images of the first videos (enough for the sheet)."""
    if fmt == "camus":
        return _read_camus(root)
    import pandas as pd

    folder = root / "A4C" if fmt == "echonet_pediatric" else root
    files = pd.read_csv(folder / "FileList.csv", dtype={"FileName": str})
    labels = dict(zip(files["FileName"], files["EF"].astype(float)))
    tracings = pd.read_csv(folder / "VolumeTracings.csv", dtype={"Frame": str})
    tracings = tracings[tracings["Frame"].str.isdigit()]
    pairs = {}
    for name, rows in list(tracings.groupby("FileName", sort=False))[:40]:
        frames = sorted(rows["Frame"].astype(int).unique())
        if len(frames) != 2:
            continue
        ed, es = sorted(frames, key=lambda f: -_traced_size(rows[rows["Frame"].astype(int) == f], fmt))
        key = name if fmt == "echonet_pediatric" else name.removesuffix(".avi")
        pairs[key] = (_avi_frame(folder / "Videos" / name, ed), _avi_frame(folder / "Videos" / name, es))
    return labels, pairs


def _traced_size(rows, fmt: str) -> float:
    """Traced cavity size: polygon area (Pediatric) or sum of squared disc diameters (Dynamic)."""
    if fmt == "echonet_pediatric":
        x, y = rows["X"].to_numpy(float), rows["Y"].to_numpy(float)
        return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    discs = rows.iloc[1:]
    return float(np.sum((discs["X2"] - discs["X1"]) ** 2 + (discs["Y2"] - discs["Y1"]) ** 2))


def _avi_frame(path: Path, index: int) -> np.ndarray:
    import cv2

    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise DataError(f"cannot read frame {index} of {path}")
    return frame[..., 0]


def _read_camus(root: Path):
    import nibabel

    from benchmark.synth.writers import camus_patient_dir

    labels, pairs = {}, {}
    for folder in sorted((root / "database_nifti").iterdir())[:40]:
        info = dict(line.split(": ", 1) for line in (folder / "Info_4CH.cfg").read_text().splitlines())
        item_id = f"{folder.name}_4CH"  # the sheet shows 4-chamber views, the plane of the hidden segment
        labels[item_id] = float(info["EF"])
        # nibabel returns (W, H): transpose back to upright (H, W)
        ed, es = (np.asarray(nibabel.load(camus_patient_dir(root, folder.name) / f"{item_id}_{p}.nii.gz")
                             .dataobj).T for p in ("ED", "ES"))
        pairs[item_id] = (ed, es)
    return labels, pairs
