"""EchoNet-Pediatric loader: integer folds, views, patient and visit ids, tracings, protocols."""
from collections import Counter

import fakedata as fd
import pytest

import registry
from benchmark.data.helpers import read_tracings
from benchmark.data.splits import build_manifest
from benchmark.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return fd.make_pediatric(tmp_path_factory.mktemp("pediatric") / "root", n_patients=20, videos_per_patient=2)


def load(root, **params):
    dataset = registry.build("dataset", "echonet_pediatric", root=root, **params)
    return dataset, dataset.load()


def test_items_carry_patient_visit_fold_and_tabular_from_the_file_list(tree):
    _, index = load(tree.root, view="A4C")
    assert len(index.items) == 40
    item = next(i for i in index.items if i.id == "CR0003-CR0001A-000031.avi")
    assert item.patient == "CR0003" and item.visit == "CR0003-CR0001A"
    assert item.fold == "3"  # the integer fold as written on disk
    assert item.video == tree.root / "A4C" / "Videos" / "CR0003-CR0001A-000031.avi"
    assert item.tabular["Sex"] == "M" and item.tabular["Age"] == 3.0
    assert item.subgroups == {"sex": "M", "age_bin": "1-4", "view": "A4C"}
    blank_sex = next(i for i in index.items if i.patient == "CR0002")
    assert blank_sex.tabular["Sex"] == "unknown" and blank_sex.subgroups["sex"] == "unknown"
    assert next(i for i in index.items if i.patient == "CR0004").tabular["Weight"] is None
    assert index.tabular_columns == {"Sex": "categorical", "Age": "numeric", "Weight": "numeric", "Height": "numeric"}


def test_views_are_selectable_and_become_a_field(tree):
    _, both = load(tree.root, view="both")
    assert Counter(i.subgroups["view"] for i in both.items) == {"A4C": 40, "PSAX": 40}
    _, psax = load(tree.root, view="psax")
    assert {i.subgroups["view"] for i in psax.items} == {"PSAX"}
    with pytest.raises(ConfigError, match="A4C.*PSAX.*both"):
        load(tree.root, view="A2C")


@pytest.mark.parametrize("k", [0, 3, 9])
def test_fold_protocol_tests_fold_k_and_validates_on_the_next(tree, k):
    dataset, index = load(tree.root, view="A4C")
    (split,) = dataset.splits(index, "fold", fold=k)
    fold_of = {i.id: int(i.fold) for i in index.items}
    assert {fold_of[i] for i in split.ids("test")} == {k}
    assert {fold_of[i] for i in split.ids("val")} == {(k + 1) % 10}
    assert {fold_of[i] for i in split.ids("train")} == set(range(10)) - {k, (k + 1) % 10}


def test_cv10_tests_every_video_exactly_once_and_fold0_is_the_fixed_split(tree):
    dataset, index = load(tree.root, view="both")
    splits = dataset.splits(index, "cv10")
    assert [s.name for s in splits] == [f"fold{k}" for k in range(10)]
    tested = Counter(i for s in splits for i in s.ids("test"))
    assert set(tested) == {i.id for i in index.items} and set(tested.values()) == {1}
    (fixed,) = dataset.splits(index, "fold0")
    assert dict(fixed.roles) == dict(splits[0].roles)
    assert len(build_manifest(index, splits, "cv10")) == 10 * len(index.items)


def test_tracings_with_no_systolic_rows_parse(tree):
    tracings = read_tracings(tree.root / "A4C" / "VolumeTracings.csv", "points")
    assert [t.frame for t in tracings.of("CR0001-CR0000A-000010")] == [2, 7]
    assert [t.frame for t in tracings.of("CR0003-CR0000A-000030")] == [2]  # the "No Systolic" row traces nothing
    _, index = load(tree.root, view="A4C", min_traced_frames=2)
    assert {e.id.split("-")[0] for e in index.excluded} == {f"CR{p:04d}" for p in range(0, 20, 3)}
    assert all("traced frames" in e.reason for e in index.excluded)


def test_non_integer_fold_is_an_error_naming_the_row(tmp_path):
    tree = fd.make_pediatric(tmp_path, n_patients=10, views=("A4C",))
    fd.set_cell(tree.labels, tree.ids[1], "Split", "TRAIN")
    with pytest.raises(DataError, match=r"FileList.csv row 3 .*'TRAIN' is not an integer fold"):
        load(tmp_path)


def test_patient_in_two_folds_is_caught_with_its_name(tmp_path):
    tree = fd.make_pediatric(tmp_path, n_patients=10, views=("A4C",), videos_per_patient=2)
    fd.set_cell(tree.labels, "CR0005-CR0001A-000051.avi", "Split", "0")
    dataset, index = load(tmp_path)
    with pytest.raises(DataError, match="patient CR0005 is in test and train"):
        build_manifest(index, dataset.splits(index, "fold", fold=0), "fold")


def test_missing_view_folder_says_what_the_root_must_hold(tmp_path):
    fd.make_pediatric(tmp_path, n_patients=10, views=("A4C",))
    with pytest.raises(DataError, match="PSAX/FileList.csv"):
        load(tmp_path, view="both")


def test_tracing_defects_drop_frames_but_keep_the_items(tmp_path):
    tree = fd.make_pediatric(tmp_path, n_patients=10, views=("A4C",), n_frames=10)
    tracings = tmp_path / "A4C" / "VolumeTracings.csv"
    two_points, beyond = tree.ids[1], tree.ids[2]
    row = len(tracings.read_text().splitlines()) + 1  # of the first appended line (the header is row 1)
    fd.append_rows(tracings, [[two_points, 1, 1, 5], [two_points, 4, 4, 5],  # frame 5: 2 points
                              *([beyond, x, y, 10] for x, y in ((10, 10), (12, 11), (11, 14)))])  # past frame 9
    _, index = load(tmp_path)
    items = {item.id: item for item in index.items}
    assert set(items) == set(tree.ids), "a run that does not use tracings keeps every video"
    assert [t.frame for t in items[two_points].tracings] == [2, 7]
    assert [t.frame for t in items[beyond].tracings] == [2, 7]
    listed = {(e.id, e.dropped, e.frame): e.reason for e in index.excluded}
    assert set(listed) == {(two_points, "tracing", 5), (beyond, "tracing", 10)}
    assert listed[two_points, "tracing", 5] == (f"too few outline points: 2 from rows {row}-{row + 1}, a tracing "
                                                "needs at least 3")
    assert listed[beyond, "tracing", 10].startswith("traced frame past the video's end: frame 10 of a 10-frame video")
    _, filtered = load(tmp_path, min_traced_frames=2)  # both still meet the rule; the once-traced do not
    assert {e.id for e in filtered.excluded if e.dropped == "item"} == {tree.ids[p] for p in (0, 3, 6, 9)}


@pytest.mark.parametrize("column, value, note", [
    ("Age", "-5", "Age -5 outside the plausible [0, 120] years"),
    ("Age", "inf", "Age inf is not a finite number"),
    ("Age", "five", "Age 'five' is not a number"),
    ("Weight", "1e300", "Weight 1e+300 outside the plausible (0, 650] kg"),
    ("Weight", "0", "Weight 0 outside the plausible (0, 650] kg"),
    ("Height", "-170", "Height -170 outside the plausible (0, 300] cm"),
])
def test_implausible_tabular_values_are_missing_and_noted_per_row(tmp_path, column, value, note):
    tree = fd.make_pediatric(tmp_path, n_patients=10, views=("A4C",))
    victim = tree.ids[5]
    fd.set_cell(tree.labels, victim, column, value)
    fd.set_cell(tree.labels, tree.ids[6], column, "nan")  # how the export writes a missing value: no note
    _, index = load(tmp_path)
    items = {item.id: item for item in index.items}
    assert set(items) == set(tree.ids)
    assert items[victim].tabular[column] is None and items[tree.ids[6]].tabular[column] is None
    (exclusion,) = index.excluded
    assert (exclusion.id, exclusion.file, exclusion.dropped) == (victim, str(tree.labels), "value")
    assert exclusion.reason == f"value treated as missing: {note}"


def test_the_same_video_as_avi_and_AVI_is_an_error_naming_both_rows(tmp_path):
    tree = fd.make_pediatric(tmp_path, n_patients=10, views=("A4C",))
    fd.duplicate_row(tree.labels, tree.ids[2])
    fd.set_cell(tree.labels, tree.ids[2], "FileName", tree.ids[2].replace(".avi", ".AVI"))  # both rows renamed
    fd.set_cell(tree.labels, tree.ids[2].replace(".avi", ".AVI"), "FileName", tree.ids[2])  # the first back
    with pytest.raises(DataError, match=rf"duplicate FileName {tree.ids[2]} \(rows 4, 12\)"):
        load(tmp_path)


@pytest.mark.parametrize("nesting", [("echonetpediatric",), ("pediatric_echo_avi", "pediatric_echo_avi")])
def test_views_one_or_two_folders_down_are_found_and_said(tmp_path, nesting):
    views = tmp_path.joinpath(*nesting)
    tree = fd.make_pediatric(views, n_patients=10, views=("A4C",))
    _, index = load(tmp_path)
    assert {item.id for item in index.items} == set(tree.ids)
    assert index.notes == (f"echonet_pediatric: {tmp_path} holds no A4C/FileList.csv; using {views}, which does",)


def test_a_root_without_the_views_names_the_nested_layout_it_looked_for(tmp_path):
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    fd.make_pediatric(tmp_path / "a" / "b" / "c", n_patients=10, views=("A4C",))  # three levels: too deep
    with pytest.raises(DataError) as error:
        load(tmp_path)
    message = str(error.value)
    assert "A4C/FileList.csv, directly or one or two folders down" in message
    assert "pediatric_echo_avi/pediatric_echo_avi/A4C/FileList.csv" in message
