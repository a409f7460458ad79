"""CAMUS loader: both releases, orientation, official split, balanced folds, optional readers."""
import gzip
import shutil
import subprocess
import sys
import zlib
from collections import Counter

import fakedata as fd
import numpy as np
import pytest

import registry
from benchmark.data.splits import build_manifest
from benchmark.data.video import (
    Video,
    VideoReadError,
    read_metaimage,
    read_nifti_nibabel,
    read_nifti_simpleitk,
    video_files,
)
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


def test_an_info_file_that_is_not_text_is_an_error_naming_it(tmp_path):
    tree = fd.make_camus(tmp_path, n_patients=2)
    info = tree.root / "database_nifti" / "patient0002" / "Info_4CH.cfg"
    info.write_bytes(info.read_bytes() + b"Comment: caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(DataError, match=rf"{info}: byte 0xE9 at line 9 is not UTF-8 text"):
        load(tmp_path, view="4CH")


# The ElementDataFile line of patient0001_4CH's header, replaced by what a crafted header could say. SimpleITK
# (MetaIO) reads ``key : value`` as well as ``key = value``, ends lines at \n only, takes the first
# ElementDataFile however far into the header it comes, and reads whatever file that names.
DATA_LINE = "ElementDataFile = patient0001_4CH_sequence.raw"
PLANTED_DATA_LINES = {
    "a device that reads without end": "ElementDataFile = /dev/zero",
    "another patient's pixels": "ElementDataFile = ../patient0002/patient0002_4CH_sequence.raw",
    "a colon as separator": "ElementDataFile : /dev/zero",
    "a line hidden behind a form feed": f"Comment = x\x0c{DATA_LINE}\nElementDataFile = /dev/zero",
    "past 64 kB of header": "Comment = x\n" * 7000 + "ElementDataFile = /dev/zero",
}


@pytest.mark.parametrize("case", sorted(PLANTED_DATA_LINES))
def test_a_metaimage_naming_pixels_outside_its_folder_is_excluded_naming_it(tmp_path, case):
    """/dev/zero gave a video of zeros, and hashing it (to name the results by the data's content) never ended;
    another patient's pixels were taken as this one's."""
    tree = fd.make_camus(tmp_path, release="2019", n_patients=2)
    header = tree.videos["patient0001_4CH"]
    header.write_text(header.read_text().replace(DATA_LINE, PLANTED_DATA_LINES[case]))
    _, index = load(tmp_path, view="4CH")
    assert [item.id for item in index.items] == ["patient0002_4CH"]
    (excluded,) = index.excluded
    assert excluded.id == "patient0001_4CH" and str(header) in excluded.reason and "ElementDataFile" in excluded.reason
    with pytest.raises(VideoReadError, match="ElementDataFile"):
        video_files(header)


def _vast_metaimage(folder):
    """A compressed MetaImage of 1 kB of zeros whose header declares 4096 x 4096 x 1024 bytes (16 GiB)."""
    (folder / "vast.zraw").write_bytes(zlib.compress(bytes(1024)))
    header = folder / "vast.mhd"
    header.write_text("ObjectType = Image\nNDims = 3\nBinaryData = True\nCompressedData = True\nCompressedDataSize = "
                      f"{(folder / 'vast.zraw').stat().st_size}\nDimSize = 4096 4096 1024\nElementType = MET_UCHAR\n"
                      "ElementDataFile = vast.zraw\n")
    return header


def _vast_nifti(folder):
    """A gzipped NIfTI header declaring 4096 x 4096 x 1024 int16 values (32 GiB), with 1 kB of data."""
    import nibabel

    header = nibabel.Nifti1Header()
    header.set_data_shape((4096, 4096, 1024))
    header.set_data_dtype(np.int16)
    path = folder / "vast.nii.gz"
    with gzip.open(path, "wb") as stream:
        stream.write(header.binaryblock + bytes(4 + 1024))  # the header, its empty extension flag, a little data
    return path


@pytest.mark.parametrize("reader, make", [("read_metaimage", _vast_metaimage), ("read_nifti_nibabel", _vast_nifti),
                                          ("read_nifti_simpleitk", _vast_nifti)])
def test_a_volume_whose_header_declares_gigabytes_is_refused_before_it_is_allocated(tmp_path, reader, make):
    """SimpleITK and nibabel allocate what a header declares before reading a byte: a few kB could ask for tens of
    GB. Read in a child under a 3 GB address-space limit, so that a reader that allocates fails here, not the
    machine."""
    path = make(tmp_path)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            f"from benchmark.data import video\ntry:\n    video.{reader}(sys.argv[1])\n"
            "except video.VideoReadError as error:\n    print(error)")
    outcome = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert f"{path}: its header declares 4096 x 4096 x 1024 values" in " ".join(outcome.stdout.split()), outcome


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


@pytest.mark.parametrize("release", ["2023", "2019"])
def test_an_es_to_ed_sequence_is_read_forward_with_its_tracings_renumbered(tmp_path, release):
    tree = fd.make_camus(tmp_path, release=release, n_patients=3, n_frames=6)
    ed_mask, es_mask = fd.store_es_to_ed(tree, "patient0002_4CH", n_frames=6, release=release)
    _, index = load(tmp_path, view="4CH")
    item = next(i for i in index.items if i.id == "patient0002_4CH")
    assert item.reversed and not any(i.reversed for i in index.items if i is not item)
    np.testing.assert_array_equal(Video(item.video, reverse=True).read()[..., 0], fd.camus_sequence(6))
    np.testing.assert_array_equal(Video(item.video, reverse=True).read([0, 5])[..., 0], fd.camus_sequence(6)[[0, 5]])
    ed, es = item.tracings  # ED first in time, as in every forward sequence
    assert (ed.frame, es.frame) == (0, 5)
    assert ed.polygon.max(0).tolist() == [9, 9] and es.polygon.max(0).tolist() == [8, 14]  # the 6- and 3-px squares
    (note,) = index.notes
    assert note.startswith("patient0002_4CH: the sequence runs from ES to ED (ED 6, ES 1 in Info_4CH.cfg)")


def test_patients_in_no_official_split_file_are_listed_as_excluded(tmp_path):
    tree = fd.make_camus(tmp_path, n_patients=10)
    fd.unlist_camus_patient(tree, "patient0004")
    dataset, index = load(tmp_path, view="both")
    (split,) = dataset.splits(index, "official")
    assert not {"patient0004_2CH", "patient0004_4CH"} & set(split.roles) and len(split.roles) == 18
    assert {e.id for e in split.excluded} == {"patient0004_2CH", "patient0004_4CH"}
    assert all(e.reason.startswith("not in the split files: patient patient0004 is in none of subgroup_training.txt")
               and e.dropped == "item" for e in split.excluded)
    assert split.source.endswith("database_split: subgroup_training.txt, subgroup_validation.txt, "
                                 "subgroup_testing.txt")


@pytest.mark.parametrize("first", [0, 1])
def test_cv10_reads_the_published_list_sub_groups_when_present(tmp_path, first):
    tree = fd.make_camus(tmp_path, n_patients=30)
    patients = [f"patient{n:04d}" for n in range(1, 31)]
    tested = fd.write_camus_subgroups(tree, patients[:-1], first=first)  # the last patient is in no file
    dataset, index = load(tmp_path, view="4CH")
    splits = dataset.splits(index, "cv10")
    assert [s.name for s in splits] == [f"fold{k}" for k in range(first, first + 10)]
    for split in splits:
        k = int(split.name[4:])
        assert [i.rsplit("_", 1)[0] for i in split.ids("test")] == sorted(tested[k])
        assert [i.rsplit("_", 1)[0] for i in split.ids("val")] == sorted(tested[first + (k - first + 1) % 10])
        assert split.source == f"{tmp_path / 'listSubGroups'}: subGroup{k}_training.txt, " \
                               f"subGroup{k}_validation.txt, subGroup{k}_testing.txt"
        assert [e.id for e in split.excluded] == ["patient0030_4CH"]
    build_manifest(index, splits, "cv10")
    (tmp_path / "listSubGroups" / f"subGroup{first + 3}_validation.txt").unlink()
    with pytest.raises(DataError, match=f"fold {first + 3} of .*listSubGroups lacks .*subGroup{first + 3}_validation"):
        dataset.splits(index, "cv10")


def test_cv10_without_list_sub_groups_says_it_dealt_its_own_folds(trees):
    dataset, index = load(trees["2023"].root, view="4CH")
    sources = {split.source for split in dataset.splits(index, "cv10")}
    assert sources == {f"10 folds dealt by the benchmark, balanced on image quality and EF "
                       f"(no listSubGroups/ in {trees['2023'].root})"}
