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
    assert [t.frame for t in tracings["CR0001-CR0000A-000010"]] == [2, 7]
    assert [t.frame for t in tracings["CR0003-CR0000A-000030"]] == [2]  # the "No Systolic" row traces nothing
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
