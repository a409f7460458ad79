"""CAMUS loader: both releases, orientation, official split, balanced folds, optional readers."""
import shutil
import sys
from collections import Counter

import fakedata as fd
import numpy as np
import pytest

import registry
from benchmark.data.splits import build_manifest
from benchmark.data.video import Video, read_metaimage, read_nifti_nibabel, read_nifti_simpleitk
from benchmark.errors import BenchmarkError, ConfigError, DataError


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("camus")
    return {release: fd.make_camus(base / release, release=release, n_patients=30) for release in ("2023", "2019")}


def load(root, **params):
    dataset = registry.build("dataset", "camus", root=root, **params)
    return dataset, dataset.load()


@pytest.mark.parametrize("release", ["2023", "2019"])
def test_both_releases_give_the_same_items(trees, release):
    dataset, index = load(trees[release].root, view="both")
    assert dataset.detect_release() == release
    assert sorted(i.id for i in index.items) == sorted(trees[release].ids)
    item = next(i for i in index.items if i.id == "patient0002_4CH")
    assert item.patient == item.visit == "patient0002"
    assert item.tabular == {"Sex": "M", "Age": 32.0}
    assert item.subgroups == {"sex": "M", "age_bin": "0-44", "quality": "good", "view": "4CH"}
    two_chamber = next(i for i in index.items if i.id == "patient0002_2CH")
    assert two_chamber.ef == item.ef  # EF is per patient
    assert two_chamber.subgroups["quality"] == "poor"


@pytest.mark.parametrize("release", ["2023", "2019"])
def test_sequences_come_back_upright_through_each_release(trees, release):
    expected = fd.camus_sequence()
    path = trees[release].videos["patient0001_4CH"]
    frames = Video(path).read()
    assert frames.shape == (*expected.shape, 1) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[..., 0], expected)
    assert frames[0, 0, 0, 0] > frames[0, -1, -1, 0] > frames[0, 10, -1, 0]  # bright top-left, grey bottom bar


def test_nifti_readers_agree_on_orientation(trees):
    path = trees["2023"].videos["patient0001_2CH"]
    np.testing.assert_array_equal(read_nifti_nibabel(path), read_nifti_simpleitk(path))
    np.testing.assert_array_equal(read_nifti_nibabel(path)[..., 0], fd.camus_sequence())
    np.testing.assert_array_equal(read_metaimage(trees["2019"].videos["patient0001_2CH"])[..., 0],
                                  fd.camus_sequence())


def test_official_split_reads_database_split(trees):
    dataset, index = load(trees["2023"].root, view="4CH")
    (split,) = dataset.splits(index, "official")
    assert Counter(split.roles.values()) == {"train": 18, "val": 6, "test": 6}
    assert split.ids("test") == [f"patient{n:04d}_4CH" for n in range(25, 31)]


def test_official_split_of_2019_release_says_where_the_lists_go(trees):
    dataset, index = load(trees["2019"].root)
    with pytest.raises(DataError, match="subgroup_training.txt.*cv10"):
        dataset.splits(index, "official")


def test_cv10_folds_are_balanced_deterministic_and_patient_disjoint(trees):
    dataset, index = load(trees["2023"].root, view="both")
    splits = dataset.splits(index, "cv10")
    assert len(splits) == 10
    build_manifest(index, splits, "cv10")  # raises if a patient spans roles
    tested = [{i.rsplit("_", 1)[0] for i in s.ids("test")} for s in splits]
    assert [len(patients) for patients in tested] == [3] * 10
    assert set().union(*tested) == {i.patient for i in index.items}
    ef_of = {i.patient: i.ef for i in index.items}
    fold_means = [np.mean([ef_of[p] for p in patients]) for patients in tested]
    assert np.ptp(fold_means) < 0.5 * np.ptp(list(ef_of.values()))
    assert [dict(s.roles) for s in splits] == [dict(s.roles) for s in load(trees["2023"].root, view="both")[0]
                                               .splits(index, "cv10")]


def test_views_and_release_errors(trees, tmp_path):
    _, index = load(trees["2023"].root, view="A2C")
    assert {i.subgroups["view"] for i in index.items} == {"2CH"}
    with pytest.raises(ConfigError, match="2CH.*4CH.*both"):
        load(trees["2023"].root, view="PSAX")
    shutil.copytree(trees["2023"].root / "database_nifti", tmp_path / "mixed" / "training")
    with pytest.raises(DataError, match="no LVef key.*release"):  # a 2023 tree in the 2019 layout
        load(tmp_path / "mixed")
    with pytest.raises(DataError, match="database_nifti/ .*training/"):
        load(tmp_path / "empty")


def test_bad_sequences_and_ef_are_excluded(tmp_path):
    tree = fd.make_camus(tmp_path, n_patients=10)
    fd.truncate(tree.videos["patient0003_4CH"])
    tree.videos["patient0004_4CH"].unlink()
    info = tmp_path / "database_nifti" / "patient0005" / "Info_4CH.cfg"
    info.write_text(info.read_text().replace("EF: ", "EF: 1"))  # e.g. 54 -> 154
    _, index = load(tmp_path)
    reasons = {e.id: e.reason for e in index.excluded}
    assert reasons["patient0003_4CH"].startswith("unreadable video")
    assert reasons["patient0004_4CH"] == "missing video"
    assert "outside [0, 100]" in reasons["patient0005_4CH"]
    assert len(index.items) == 7


@pytest.mark.parametrize("module, reader", [("nibabel", read_nifti_nibabel), ("SimpleITK", read_nifti_simpleitk)])
def test_missing_optional_reader_names_the_camus_extra(trees, monkeypatch, module, reader):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(BenchmarkError, match=rf"needs {module}.*\[camus\]"):
        reader(trees["2023"].videos["patient0001_4CH"])


def test_nifti_falls_back_to_simpleitk_and_fails_clearly_without_either(trees, monkeypatch):
    path = trees["2023"].videos["patient0001_4CH"]
    monkeypatch.setitem(sys.modules, "nibabel", None)
    np.testing.assert_array_equal(Video(path).read()[..., 0], fd.camus_sequence())
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(BenchmarkError, match=r"needs SimpleITK.*\[camus\]"):
        Video(path)
