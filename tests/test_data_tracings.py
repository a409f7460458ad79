"""LV tracings on items: EchoNet disc lines and polygon points, CAMUS ground-truth masks, and bad input."""
import dataclasses
import re
import shutil

import fakedata as fd
import numpy as np
import pytest

import registry
from benchmark.data.helpers import read_tracings
from benchmark.errors import DataError
from benchmark.synth import render
from benchmark.synth.generate import Parameters, generate, plan
from benchmark.synth.writers import write_nifti

SIZE, SEED = 48, 1
COUNTS = {"echonet_dynamic": 3, "echonet_pediatric": 4, "camus": 2}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Per format: the generated root and the generator's records (ED/ES frames and scenes) by id."""
    base = tmp_path_factory.mktemp("synthetic")
    return {fmt: (generate(fmt, n, base / fmt, seed=SEED, size=SIZE, workers=1),
                  {record.id: record for record in plan(Parameters(fmt, n, SEED, SIZE))})
            for fmt, n in COUNTS.items()}


def load(fmt, root, **params):
    return registry.build("dataset", fmt, root=root, **params).load()


def area(polygon):
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def perimeter(polygon):
    return float(np.linalg.norm(np.roll(polygon, -1, axis=0) - polygon, axis=1).sum())


def true_contour(scene, frame):
    return np.column_stack(render.contour_pixels(scene, frame, 1024))


def write_csv(path, text):
    path.write_text("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")
    return path


# ------------------------------------------------------------------------------ reading the CSVs
def test_disc_lines_become_chord_starts_then_chord_ends_reversed(tmp_path):
    path = write_csv(tmp_path / "VolumeTracings.csv", """
        FileName,X1,Y1,X2,Y2,Frame
        0XAB.avi,10,2,10,30,7
        0XAB.avi,6,10,14,10.5,7
        0XAB.avi,5,20,15,20,7
        0XAB.avi,9,3,9,25,3
        0XAB.avi,7,8,12,8,3
        0XAB.avi,6,15,13,15,3
    """)
    (early, late) = read_tracings(path, "lines").of("0XAB")  # keyed without .avi, ordered by frame
    assert (early.frame, late.frame) == (3, 7)
    np.testing.assert_array_equal(late.polygon, [[6, 10], [5, 20], [15, 20], [14, 10.5]])  # long axis dropped
    assert late.polygon.dtype == np.float64 and not late.polygon.flags.writeable


def test_polygon_points_keep_their_order_and_marker_rows_trace_nothing(tmp_path):
    path = write_csv(tmp_path / "VolumeTracings.csv", """
        FileName,X,Y,Frame
        CR1-CR2-000001.avi,10,10,12
        CR1-CR2-000001.avi,14,11,12
        CR1-CR2-000001.avi,13,16,12
        CR1-CR2-000001.avi,9,15,12
        CR1-CR2-000001.avi,,,No Systolic
        CR3-CR4-000002.avi,,,No Diastolic
    """)
    tracings = read_tracings(path, "points")
    (tracing,) = tracings.of("CR1-CR2-000001.avi")
    assert tracing.frame == 12
    np.testing.assert_array_equal(tracing.polygon, [[10, 10], [14, 11], [13, 16], [9, 15]])
    assert tracings.of("CR3-CR4-000002") == () and not tracings.defects


LINES_HEADER = "FileName,X1,Y1,X2,Y2,Frame"
POINTS_HEADER = "FileName,X,Y,Frame"


@pytest.mark.parametrize("kind, rows, message", [
    ("points", ["v.avi,1,1,4", "v.avi,2,3,2.5"], r"row 3 \(v.avi\): Frame '2.5' is not a frame number"),
    ("lines", ["v.avi,10,2,10,30,No Systolic"], r"row 2 \(v.avi\): Frame 'No Systolic' is not a frame number"),
    ("points", [",1,1,4", "v.avi,2,3,4"], r"row 2: FileName \(empty\) is empty"),
])
def test_rows_that_name_no_video_frame_are_errors_naming_file_row_and_field(tmp_path, kind, rows, message):
    header = LINES_HEADER if kind == "lines" else POINTS_HEADER
    path = write_csv(tmp_path / "VolumeTracings.csv", "\n".join([header, *rows]))
    with pytest.raises(DataError, match=re.escape(str(path)) + " " + message):
        read_tracings(path, kind)


SQUARE = ["1,1", "5,1", "5,5", "1,5"]


@pytest.mark.parametrize("kind, rows, frame, reason", [
    ("points", [f"v.avi,{p},3" for p in SQUARE[:2]], 3,
     "too few outline points: 2 from rows 6-7, a tracing needs at least 3"),
    ("lines", ["v.avi,10,2,10,30,3", "v.avi,6,10,14,10,3"], 3,
     "too few outline points: 2 from rows 5-6, a tracing needs at least 3"),
    ("lines", ["v.avi,10,2,10,30,3", "v.avi,6,abc,14,10,3", "v.avi,5,20,15,20,3"], 3,
     "coordinate not a number: row 6 Y1 'abc'"),
    ("points", [f"v.avi,{p},3" for p in SQUARE[:2]] + ["v.avi,,4,3"], 3, "coordinate not a number: row 8 X (empty)"),
    ("points", [f"v.avi,{p},3" for p in SQUARE] + ["w.avi,1,1,0"] + [f"v.avi,{p},3" for p in SQUARE], 3,
     "frame listed twice: rows 6-9 and 11-14"),
])
def test_a_defective_frame_drops_only_that_frames_tracing_naming_its_rows(tmp_path, kind, rows, frame, reason):
    good = ["v.avi,10,2,10,30,9", "v.avi,6,10,14,10,9", "v.avi,5,20,15,20,9"] if kind == "lines" else \
        [f"v.avi,{p},9" for p in SQUARE]
    header = LINES_HEADER if kind == "lines" else POINTS_HEADER
    path = write_csv(tmp_path / "VolumeTracings.csv", "\n".join([header, *good, *rows]))
    tracings = read_tracings(path, kind)
    assert [t.frame for t in tracings.of("v")] == [9]  # the good frame is kept
    assert tracings.defects_of("v.avi") == ((frame, reason),)


# ------------------------------------------------------------------------------ EchoNet loaders
@pytest.mark.parametrize("fmt, tolerance", [("echonet_dynamic", 0.03), ("echonet_pediatric", 0.02)])
def test_echonet_items_carry_the_traced_ed_and_es_outlines(synthetic, fmt, tolerance):
    root, records = synthetic[fmt]
    index = load(fmt, root)
    assert len(index.items) == COUNTS[fmt]
    for item in index.items:
        record = records[item.id]
        scene = record.scenes["A4C"]
        assert [t.frame for t in item.tracings] == sorted([record.ed, record.es])
        by_frame = {t.frame: t.polygon for t in item.tracings}
        for frame, polygon in by_frame.items():
            assert polygon.ndim == 2 and polygon.shape[1] == 2 and len(polygon) >= 3
            assert polygon.min() >= 0 and np.all(polygon.max(axis=0) <= [scene.width - 1, scene.height - 1])  # in frame
            # 20 discs (Dynamic) or 42 points (Pediatric) of the true contour: a little under its area.
            assert area(polygon) == pytest.approx(area(true_contour(scene, frame)), rel=tolerance)
        assert area(by_frame[record.ed]) > area(by_frame[record.es])
        assert item == dataclasses.replace(item, tracings=())  # tracings stay out of comparisons


@pytest.mark.parametrize("fmt, tracings", [("echonet_dynamic", "VolumeTracings.csv"),
                                           ("echonet_pediatric", "A4C/VolumeTracings.csv")])
def test_without_a_tracings_file_items_have_none_unless_the_filter_needs_it(synthetic, tmp_path, fmt, tracings):
    root = shutil.copytree(synthetic[fmt][0], tmp_path / "root")
    (root / tracings).unlink()
    index = load(fmt, root, min_traced_frames=0)
    assert len(index.items) == COUNTS[fmt] and all(item.tracings == () for item in index.items)
    with pytest.raises(DataError, match="VolumeTracings.csv is missing, but min_traced_frames = 1"):
        load(fmt, root, min_traced_frames=1)


# ------------------------------------------------------------------------------ CAMUS
def test_camus_outlines_match_the_synthetic_cavity_at_ed_and_es(synthetic):
    root, records = synthetic["camus"]
    index = load("camus", root, view="both")
    assert len(index.items) == 2 * COUNTS["camus"]
    for item in index.items:
        scene = records[item.patient].scenes[item.subgroups["view"]]
        last = len(scene.contraction) - 1  # the half sequence runs from ED (Info ED: 1) to ES (ES: NbFrame)
        assert [t.frame for t in item.tracings] == [0, last]
        ed, es = (t.polygon for t in item.tracings)
        for frame, polygon in ((0, ed), (last, es)):
            contour = true_contour(scene, frame)
            # The outline joins the centres of the boundary pixels: half a pixel inside the true edge.
            assert area(polygon) + perimeter(polygon) / 2 == pytest.approx(area(contour), rel=0.03)
            np.testing.assert_allclose(polygon.mean(axis=0), contour.mean(axis=0), atol=0.5)  # upright, not transposed
        assert area(ed) > area(es)


def lv_mask(height=24, width=16):
    """Label 1 (cavity) in a tall block plus a smaller blob, label 2 (wall) around the block."""
    mask = np.zeros((height, width), np.uint8)
    mask[2:12, 1:8] = 2
    mask[3:11, 2:7] = 1
    mask[18:20, 12:14] = 1
    return mask


def write_mask(path, mask, release):
    if release == "2023":
        write_nifti(path, mask, 1.0)  # 2-D, x fastest, as the 2023 release stores ED/ES masks
    else:
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(mask), str(path))


@pytest.mark.parametrize("release, folder, suffix", [("2023", "database_nifti", ".nii.gz"),
                                                     ("2019", "training", ".mhd")])
def test_camus_masks_of_either_release_give_the_largest_cavity_outline(tmp_path, release, folder, suffix):
    fd.make_camus(tmp_path, release=release, n_patients=2, n_frames=6)
    patient = tmp_path / folder / "patient0001"
    write_mask(patient / f"patient0001_4CH_ED_gt{suffix}", lv_mask(), release)
    write_mask(patient / f"patient0001_2CH_ES_gt{suffix}", lv_mask(), release)
    items = {item.id: item for item in load("camus", tmp_path, view="both").items}
    assert len(items) == 4  # a missing mask excludes nothing
    (ed,) = items["patient0001_4CH"].tracings
    assert ed.frame == 0
    assert (ed.polygon.min(axis=0).tolist(), ed.polygon.max(axis=0).tolist()) == ([2, 3], [6, 10])  # x, y
    assert [t.frame for t in items["patient0001_2CH"].tracings] == [5]  # ES: 6 of NbFrame 6
    assert items["patient0002_4CH"].tracings == ()


def test_camus_unreadable_mask_is_an_error_naming_it(tmp_path):
    fd.make_camus(tmp_path, n_patients=1, n_frames=6)
    broken = tmp_path / "database_nifti" / "patient0001" / "patient0001_4CH_ES_gt.nii.gz"
    broken.write_bytes(b"not an image" * 20)
    with pytest.raises(DataError, match="patient0001_4CH_ES_gt.nii.gz: the ES ground-truth mask cannot be read"):
        load("camus", tmp_path, view="4CH")


def test_camus_frame_number_outside_the_sequence_names_the_info_file(tmp_path):
    fd.make_camus(tmp_path, n_patients=1, n_frames=6)
    patient = tmp_path / "database_nifti" / "patient0001"
    write_mask(patient / "patient0001_4CH_ES_gt.nii.gz", lv_mask(), "2023")
    info = patient / "Info_4CH.cfg"
    info.write_text(info.read_text().replace("ES: 6", "ES: 7"))
    with pytest.raises(DataError, match=re.escape(str(info)) + ": ES '7' is not a frame number between 1 and 6"):
        load("camus", tmp_path)
