"""Each synthetic format read back with plain pandas / decord / OpenCV / nibabel / SimpleITK."""
import numpy as np
import pandas as pd
import pytest

import registry
from benchmark.synth.generate import generate, read_marker


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    return generate("echonet_dynamic", 5, tmp_path_factory.mktemp("synth") / "dynamic", seed=0,
                    ambiguous_fraction=0.4)


@pytest.fixture(scope="module")
def pediatric(tmp_path_factory):
    return generate("echonet_pediatric", 8, tmp_path_factory.mktemp("synth") / "pediatric", seed=0,
                    ambiguous_fraction=0.4)


@pytest.fixture(scope="module")
def camus(tmp_path_factory):
    return generate("camus", 3, tmp_path_factory.mktemp("synth") / "camus", seed=0, ambiguous_fraction=0.5)


def test_dynamic_layout_headers_and_videos(dynamic):
    import cv2
    import decord

    files = pd.read_csv(dynamic / "FileList.csv")
    assert list(files.columns) == ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
                                   "NumberOfFrames", "Split"]
    assert files["FileName"].str.fullmatch(r"0X[0-9A-F]{16}").all()  # no .avi in FileList
    assert set(files["Split"]) <= {"TRAIN", "VAL", "TEST"}
    np.testing.assert_allclose(files["EF"], 100 * (files["EDV"] - files["ESV"]) / files["EDV"], atol=1e-5)
    tracings = pd.read_csv(dynamic / "VolumeTracings.csv")
    assert list(tracings.columns) == ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
    assert tracings["FileName"].str.endswith(".avi").all()  # ... but .avi in VolumeTracings
    for row in files.itertuples():
        traced = tracings[tracings["FileName"] == f"{row.FileName}.avi"]
        frames = list(dict.fromkeys(traced["Frame"]))
        assert len(frames) == 2 and (traced["Frame"].value_counts() == 21).all()  # long axis + 20 discs
        video = decord.VideoReader(str(dynamic / "Videos" / f"{row.FileName}.avi"))
        assert len(video) == row.NumberOfFrames and video.get_avg_fps() == row.FPS == 50
        assert video[0].shape == (112, 112, 3)
        capture = cv2.VideoCapture(str(dynamic / "Videos" / f"{row.FileName}.avi"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == row.NumberOfFrames
        ok, frame = capture.read()
        assert ok and frame.shape == (112, 112, 3)
        assert np.array_equal(frame[..., 0], frame[..., 2])  # grey replicated in 3 channels


def _disc_volume(traced, frame):
    discs = traced[traced["Frame"] == frame].iloc[1:]
    return float(((discs["X2"] - discs["X1"]) ** 2 + (discs["Y2"] - discs["Y1"]) ** 2).sum())


def test_dynamic_lists_end_systole_first(dynamic):
    tracings = pd.read_csv(dynamic / "VolumeTracings.csv")
    for _, traced in tracings.groupby("FileName"):
        first, last = list(dict.fromkeys(traced["Frame"]))
        assert _disc_volume(traced, first) < _disc_volume(traced, last)  # official order: ES, then ED


def test_pediatric_layout_headers_and_folds(pediatric):
    import decord

    folder = pediatric / "A4C"
    files = pd.read_csv(folder / "FileList.csv")
    assert list(files.columns) == ["FileName", "EF", "Sex", "Age", "Weight", "Height", "Split"]
    assert files["FileName"].str.fullmatch(r"[A-Za-z0-9]+-[A-Za-z0-9]+-\d{6}\.avi").all()
    assert files["Split"].dtype.kind == "i" and files["Split"].between(0, 9).all()
    patient = files["FileName"].str.split("-").str[0]
    assert (files.groupby(patient)["Split"].nunique() == 1).all()  # folds are per patient
    assert files["Age"].between(0, 18).all() and set(files["Sex"].dropna()) <= {"M", "F"}
    tracings = pd.read_csv(folder / "VolumeTracings.csv")
    assert list(tracings.columns) == ["FileName", "X", "Y", "Frame"]
    assert set(tracings["FileName"]) == set(files["FileName"])
    for name in files["FileName"]:
        video = decord.VideoReader(str(folder / "Videos" / name))
        assert video[0].shape == (112, 112, 3) and 100 <= len(video) <= 150  # 2-3 s at 50 fps


def test_camus_nifti_orientation_and_info(camus):
    import nibabel
    import SimpleITK as sitk

    patients = sorted(p.name for p in (camus / "database_nifti").iterdir())
    assert patients == ["patient0001", "patient0002", "patient0003"]
    listed = [(camus / "database_split" / f"subgroup_{role}.txt").read_text().split()
              for role in ("training", "validation", "testing")]
    assert sorted(sum(listed, [])) == patients
    for patient in patients:
        folder = camus / "database_nifti" / patient
        infos = {}
        for view in ("2CH", "4CH"):
            info = dict(line.split(": ", 1) for line in (folder / f"Info_{view}.cfg").read_text().splitlines())
            assert list(info) == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate"]
            infos[view] = info
            sequence = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{patient}_{view}_half_sequence.nii.gz")))
            masks = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{patient}_{view}_half_sequence_gt.nii.gz")))
            frames, height, width = sequence.shape
            assert sequence.dtype == np.uint8 and frames == int(info["NbFrame"]) == int(info["ES"])
            assert info["ED"] == "1" and height != 112 and width > height
            # upright: the sector apex is at the top, so the top rows are narrower than the bottom ones
            assert (sequence[0, 3] > 0).sum() < (sequence[0, height - 30] > 0).sum()
            lv_row = np.nonzero(masks[0] == 1)[0].mean()
            assert lv_row < np.nonzero(masks[0] == 3)[0].mean()  # LV above the left atrium
            nib = np.asarray(nibabel.load(folder / f"{patient}_{view}_half_sequence.nii.gz").dataobj)
            assert nib.shape == (width, height, frames) and np.array_equal(nib.T, sequence)
            ed = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{patient}_{view}_ED.nii.gz")))
            assert np.array_equal(ed, sequence[0])
        assert infos["2CH"]["EF"] == infos["4CH"]["EF"]  # biplane EF per patient


@pytest.mark.parametrize("fixture, params", [("dynamic", {}), ("pediatric", {}), ("camus", {"view": "both"})])
def test_real_loaders_read_the_generation(request, fixture, params):
    root = request.getfixturevalue(fixture)
    name = read_marker(root)["format"]
    index = registry.build("dataset", name, root=root, **params).load()
    assert len(index.items) == {"dynamic": 5, "pediatric": 8, "camus": 6}[fixture] and not index.excluded
    # `validate` checks dataset.tabular against the declared columns: they must be the ones the loader gives
    assert index.tabular_columns == registry.describe("dataset", name).factory.tabular_columns
