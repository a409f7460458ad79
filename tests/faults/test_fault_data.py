"""Data faults. A damaged item (video or label) is excluded with its reason in ``excluded.csv`` and the
run goes on; damage to a whole file (a missing column, duplicate ids, a patient in two roles, an empty
role, a wrong root) stops the run before training with a message naming the file or row and the fix.
Oddities that are not errors (missing tabular values, unknown Sex codes, a video shorter than a clip)
are kept and handled: imputation, an explicit "unknown" category, repeated frames."""
from __future__ import annotations

import gzip
import json
import shutil

import fakedata
import numpy as np
import pandas as pd
import pytest
from faultkit import cli, leaderboard, run_args, write_experiment

VIEW = "A4C"


def name(patient: int, visit: int = 0) -> str:
    """The file name make_pediatric gives a patient's video (patient p sits in fold p % 10)."""
    return f"CR{patient:04d}-CR{visit:04d}{VIEW[0]}-{patient * 10 + visit:06d}.avi"


# Faults sit in training folds (2-9), so VAL (fold 1) and TEST (fold 0) keep their items.
EXCLUDED = {
    name(2): "truncated video: header declares 10 frames",
    name(3): "unreadable video:",
    name(4): "zero frames",
    name(5): "missing video",
    name(6): "EF missing or not a number",
    name(7): "EF -5 outside [0, 100]",
    name(8): "EF 120 outside [0, 100]",
    name(14): "EF missing or not a number",
}
SHORT_VIDEO, UNKNOWN_SEX, NO_TABULAR = name(9), name(12), name(13)


def inject_item_faults(tree: fakedata.FakeTree) -> None:
    labels, videos = tree.root / VIEW / "FileList.csv", tree.videos
    fakedata.truncate(videos[name(2)], keep=0.5)
    videos[name(3)].write_bytes(np.random.default_rng(0).bytes(videos[name(3)].stat().st_size))
    fakedata.write_zero_frame_avi(videos[name(4)])
    videos[name(5)].unlink()
    fakedata.set_cell(labels, name(6), "EF", "")
    fakedata.set_cell(labels, name(7), "EF", -5)
    fakedata.set_cell(labels, name(8), "EF", 120)
    fakedata.set_cell(labels, name(14), "EF", "about 60")
    fakedata.write_avi(videos[SHORT_VIDEO], fakedata.frames_with_counter(2))  # clips have 4 frames
    fakedata.set_cell(labels, UNKNOWN_SEX, "Sex", "X")
    for column in ("Age", "Weight", "Height"):
        fakedata.set_cell(labels, NO_TABULAR, column, "")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A clean 20-patient Pediatric A4C tree; each test works on a copy."""
    return fakedata.make_pediatric(tmp_path_factory.mktemp("pediatric") / "data", n_patients=20, views=(VIEW,))


def copy_tree(pristine: fakedata.FakeTree, to) -> fakedata.FakeTree:
    shutil.copytree(pristine.root, to)
    return fakedata.FakeTree(root=to, ids=list(pristine.ids),
                             videos={key: to / path.relative_to(pristine.root) for key, path in pristine.videos.items()},
                             labels=to / pristine.labels.relative_to(pristine.root))


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, pristine, synthetic_root):
    folder = tmp_path_factory.mktemp("faulty")
    tree = copy_tree(pristine, folder / "data")
    inject_item_faults(tree)
    experiment = write_experiment(folder / "experiment.toml", synthetic_root=synthetic_root, root=tree.root)
    return tree, experiment, folder / "run", cli(*run_args(experiment, folder / "run"))


def test_damaged_items_are_excluded_with_reasons(faulty_run):
    tree, _, run, outcome = faulty_run
    assert outcome.code == 0, outcome.text
    listed = pd.read_csv(run / "excluded.csv", keep_default_na=False)
    excluded = listed[listed["dropped"] == "item"].set_index("id")
    assert sorted(excluded.index) == sorted(EXCLUDED)
    tracings = listed[listed["dropped"] == "tracing"]  # the 2-frame video ends before its traced frame 2
    assert list(zip(tracings["id"], tracings["frame"])) == [(SHORT_VIDEO, "2")]
    for item, reason in EXCLUDED.items():
        assert excluded.loc[item, "reason"].startswith(reason), excluded.loc[item].to_dict()
    assert excluded.loc[name(2), "file"] == str(tree.videos[name(2)]), "video faults name the video file"
    assert excluded.loc[name(7), "file"] == str(tree.root / VIEW / "FileList.csv"), "label faults name the label file"
    assert f"{len(EXCLUDED)} excluded (" in outcome.out and "see excluded.csv" in outcome.out


def test_run_goes_on_without_the_excluded_items(faulty_run):
    _, _, run, outcome = faulty_run
    splits = pd.read_csv(run / "splits.csv")
    assert not set(splits["id"]) & set(EXCLUDED)
    assert {SHORT_VIDEO, UNKNOWN_SEX, NO_TABULAR} <= set(splits["id"]), "oddities that are not errors are kept"
    board = leaderboard(run)
    assert (board["status"] == "ok").all() and np.isfinite(board[["mae", "crps"]].to_numpy()).all()


def test_strict_mode_stops_at_the_first_damaged_item(tmp_path, faulty_run):
    tree = faulty_run[0]
    strict = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path, root=tree.root,
                              dataset_extra="strict = true")
    outcome = cli(*run_args(strict, tmp_path / "run"))
    assert outcome.code == 1
    message = " ".join(outcome.err.split())
    assert f"{name(2)} ({tree.videos[name(2)]}): truncated video" in message
    assert "set dataset.strict = false to list it in excluded.csv" in message


def _duplicate(tree):
    fakedata.duplicate_row(tree.labels, name(3))


def _patient_in_two_roles(tree):
    fakedata.set_cell(tree.labels, name(3, visit=1), "Split", 0)  # its first video stays in fold 3 (train)


def _missing_column(tree):
    fakedata.drop_column(tree.labels, "EF")


def _empty_test_role(tree):
    for patient in (0, 10):
        for visit in (0, 1):
            fakedata.set_cell(tree.labels, name(patient, visit), "Split", 4)


def _bad_fold(tree):
    fakedata.set_cell(tree.labels, name(3), "Split", "TRAIN")


def _not_a_csv(tree):
    tree.labels.write_bytes(b"\x00\xff\xfe garbage \x00" * 50)


def _everything_damaged(tree):
    for path in tree.videos.values():
        fakedata.truncate(path, keep=0.1)


FILE_FAULTS = {
    "duplicate ids": (_duplicate, ["{labels}: duplicate FileName " + name(3), "each video must appear once"]),
    "patient in two splits": (_patient_in_two_roles, [
        "split 'fold0': patient CR0003 is in test and train", "All videos of a patient must share one fold"]),
    "missing column": (_missing_column, ["{labels}: missing column(s) EF; columns found: FileName, Sex"]),
    "empty split": (_empty_test_role, ["split 'fold0': the test role(s) are empty",
                                       "Check the fold labels on disk, dataset.view and dataset.fold"]),
    "bad fold label": (_bad_fold, ["{labels} row 8 (" + name(3) + "): Split 'TRAIN' is not an integer fold 0-9"]),
    "unreadable csv": (_not_a_csv, ["{labels} is not a readable CSV"]),
    "every video damaged": (_everything_damaged, ["every one of 40 videos was excluded", "check the root"]),
}


@pytest.fixture(scope="module")
def two_videos_per_patient(tmp_path_factory):
    return fakedata.make_pediatric(tmp_path_factory.mktemp("pediatric2") / "data", n_patients=20, views=(VIEW,),
                                   videos_per_patient=2, n_frames=6)


@pytest.mark.parametrize("case", FILE_FAULTS)
def test_file_fault_stops_before_training(tmp_path, synthetic_root, two_videos_per_patient, case):
    damage, expected = FILE_FAULTS[case]
    tree = copy_tree(two_videos_per_patient, tmp_path / "data")
    damage(tree)
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, root=tree.root)
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 1, outcome.text
    message = " ".join(outcome.err.split())
    for phrase in expected:
        assert phrase.format(labels=tree.labels) in message
    assert not (tmp_path / "run" / "jobs").exists() and not (tmp_path / "run" / "manifest.json").exists()


def test_wrong_root(tmp_path, synthetic_root):
    root = tmp_path / "Downloads"
    (root / "EchoNet-Pediatric").mkdir(parents=True)  # the archive's parent folder, not the dataset
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, root=root,
                                  dataset_extra="synthetic_if_missing = false")
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 1
    message = " ".join(outcome.err.split())
    assert (f"echonet_pediatric: {root} holds EchoNet-Pediatric, but a echonet_pediatric root must contain "
            "A4C/FileList.csv") in message
    assert "Point dataset.root at the folder you downloaded" in message


def _wrong_nifti_header(path):
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[46:48] = (60).to_bytes(2, "little")  # dim[3], the frame count: 10x more than the file holds
    path.write_bytes(gzip.compress(bytes(data)))


def _wrong_metaimage_header(path):
    header = path.read_text()
    path.write_text(header.replace("DimSize = 16 24 6", "DimSize = 16 24 60"))  # 10x more than the .raw holds


@pytest.mark.parametrize("release, damage, reason", [
    ("2023", _wrong_nifti_header, "unreadable video: {path}: cannot read NIfTI"),
    ("2019", _wrong_metaimage_header, "unreadable video: {path}: cannot read MetaImage"),
])
def test_volume_with_wrong_header_is_excluded(tmp_path, synthetic_root, release, damage, reason):
    tree = fakedata.make_camus(tmp_path / "camus", release=release, n_patients=20)
    if release == "2019":  # the official split files came with the 2023 release; users copy them over
        shutil.copytree(fakedata.make_camus(tmp_path / "camus2023", n_patients=20).root / "database_split",
                        tree.root / "database_split")
    damaged = tree.videos["patient0001_4CH"]  # a training patient of the official split
    damage(damaged)
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, root=tree.root,
                                  dataset="camus", dataset_extra='protocol = "official"\nview = "4CH"')
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 0, outcome.text
    excluded = pd.read_csv(tmp_path / "run" / "excluded.csv").set_index("id")
    assert list(excluded.index) == ["patient0001_4CH"]
    assert excluded.loc["patient0001_4CH", "reason"].startswith(reason.format(path=damaged))
    assert (leaderboard(tmp_path / "run")["status"] == "ok").all()


VISION_ONLY = '[[models]]\nhead = "mse"\nlabel = "mse"\nfusion = "none"\n'
SEGMENTATION_STAGE_ONE = ("--set", "encoder.name=area_length", "--set", "encoder.params={ width = 4 }",
                          "--set", "encoder.pretrain.objective=tracings", "--set", "encoder.pretrain.epochs=1")


def _dynamic_with_tracing_defects(folder):
    """Dynamic: a training video whose end-systolic frame (10) keeps 2 outline points (then it has one traced
    frame, too few for the official filter), and one with a third traced frame past its 12-frame video."""
    tree = fakedata.make_dynamic(folder)
    tracings = folder / "VolumeTracings.csv"
    two_points, beyond = tree.ids[0], tree.ids[1]
    lines = tracings.read_text().splitlines()
    del lines[max(i for i, line in enumerate(lines) if line.startswith(f"{two_points}.avi,") and line.endswith(",10"))]
    tracings.write_text("\n".join(lines) + "\n")
    fakedata.append_rows(tracings, [[f"{beyond}.avi", *line, 12] for line in ((15, 6, 15, 26), (11, 14, 19, 14),
                                                                              (12, 20, 18, 20))])
    return tree, {(two_points, "tracing", "10"): "too few outline points: 2 from rows",
                  (two_points, "item", ""): "fewer than 2 traced frames (official EchoNet filter)",
                  (beyond, "tracing", "12"): "traced frame past the video's end: frame 12 of a 12-frame video"}


def _pediatric_with_tracing_defects(folder):
    """Pediatric: a training video with a 2-point frame 5, another with a traced frame 10 of a 10-frame video."""
    tree = fakedata.make_pediatric(folder, n_patients=20, views=(VIEW,))
    two_points, beyond = name(2), name(4)
    fakedata.append_rows(folder / VIEW / "VolumeTracings.csv", [
        [two_points, 1, 1, 5], [two_points, 4, 4, 5], *([beyond, x, y, 10] for x, y in ((10, 10), (12, 11), (11, 14)))])
    return tree, {(two_points, "tracing", "5"): "too few outline points: 2 from rows",
                  (beyond, "tracing", "10"): "traced frame past the video's end: frame 10 of a 10-frame video"}


@pytest.mark.parametrize("dataset, protocol, make", [
    ("echonet_dynamic", "official", _dynamic_with_tracing_defects),
    ("echonet_pediatric", "fold", _pediatric_with_tracing_defects),
])
def test_tracing_defects_drop_frames_and_the_run_goes_to_the_end(tmp_path, synthetic_root, dataset, protocol, make):
    """With stage 1 trained on the tracings, which once met the frame past the end halfway through."""
    tree, expected = make(tmp_path / "data")
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, root=tree.root,
                                  dataset=dataset, dataset_extra=f'protocol = "{protocol}"', models=VISION_ONLY)
    outcome = cli(*run_args(experiment, tmp_path / "run", *SEGMENTATION_STAGE_ONE))
    assert outcome.code == 0, outcome.text
    excluded = pd.read_csv(tmp_path / "run" / "excluded.csv", dtype=str, keep_default_na=False)
    assert list(excluded.columns) == ["id", "file", "dropped", "frame", "reason"]
    listed = {(row.id, row.dropped, row.frame): row.reason for row in excluded.itertuples()}
    assert set(listed) == set(expected)
    for key, reason in expected.items():
        assert listed[key].startswith(reason), (key, listed[key])
    assert "tracing frame(s) dropped (too few outline points: 1, traced frame past the video's end: 1)" in outcome.out
    assert (leaderboard(tmp_path / "run")["status"] == "ok").all()


def test_camus_run_records_reversed_sequences_and_patients_in_no_split_file(tmp_path, synthetic_root):
    tree = fakedata.make_camus(tmp_path / "camus", n_patients=20)
    fakedata.store_es_to_ed(tree, "patient0002_4CH")
    fakedata.unlist_camus_patient(tree, "patient0003")
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, root=tree.root,
                                  dataset="camus", dataset_extra='protocol = "official"\nview = "4CH"')
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 0, outcome.text
    excluded = pd.read_csv(tmp_path / "run" / "excluded.csv").set_index("id")
    assert list(excluded.index) == ["patient0003_4CH"]
    assert excluded.loc["patient0003_4CH", "reason"].startswith("not in the split files: patient patient0003")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (note,) = manifest["dataset_notes"]
    assert note.startswith("patient0002_4CH: the sequence runs from ES to ED") and note in outcome.out
    assert manifest["split_sources"] == {"official": f"{tree.root / 'database_split'}: subgroup_training.txt, "
                                                     "subgroup_validation.txt, subgroup_testing.txt"}
    assert manifest["excluded"] == 1
