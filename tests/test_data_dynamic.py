"""EchoNet-Dynamic loader: layout conventions, the official split, tracings filter and every bad input."""
import shutil

import fakedata as fd
import pytest

import registry
from benchmark.contracts import Dataset
from benchmark.data.helpers import summarise_reasons
from benchmark.errors import ConfigError, DataError


def load(root, **params):
    dataset = registry.build("dataset", "echonet_dynamic", root=root, **params)
    return dataset, dataset.load()


@pytest.fixture
def tree(tmp_path):
    return fd.make_dynamic(tmp_path / "dynamic")


def test_official_split_follows_the_split_column_case_insensitively(tree):
    fd.set_cell(tree.labels, tree.ids[0], "Split", "train")  # lower case as some exports write it
    dataset, index = load(tree.root)
    (split,) = dataset.splits(index, "official")
    assert split.ids("train") == sorted(tree.ids[:4])
    assert split.ids("val") == sorted(tree.ids[4:6])
    assert split.ids("test") == sorted(tree.ids[6:])
    assert index.excluded == ()


def test_file_names_without_avi_match_videos_and_tracings_with_avi(tree):
    _, index = load(tree.root)
    item = next(i for i in index.items if i.id == tree.ids[0])
    assert item.video == tree.root / "Videos" / f"{tree.ids[0]}.avi"
    assert item.patient == item.id and item.tabular == {}
    # A FileList that does carry the extension finds the same files.
    fd.set_cell(tree.labels, tree.ids[1], "FileName", f"{tree.ids[1]}.avi")
    _, again = load(tree.root)
    assert {i.id for i in again.items} == set(tree.ids)


def test_official_filter_drops_videos_with_fewer_than_two_traced_frames(tree):
    tracings = tree.root / "VolumeTracings.csv"
    lines = tracings.read_text().splitlines()
    untraced = tree.ids[2]
    # Keep only the first traced frame of one video.
    kept = [line for line in lines if not (line.startswith(untraced) and line.endswith(",10"))]
    tracings.write_text("\n".join(kept) + "\n")
    _, index = load(tree.root)
    assert untraced not in {i.id for i in index.items}
    (exclusion,) = index.excluded
    assert exclusion.id == untraced and "traced frames" in exclusion.reason
    _, unfiltered = load(tree.root, min_traced_frames=0)
    assert len(unfiltered.items) == len(tree.ids)


def test_missing_tracings_file_is_an_error_only_when_the_filter_needs_it(tree):
    (tree.root / "VolumeTracings.csv").unlink()
    with pytest.raises(DataError, match="min_traced_frames"):
        load(tree.root)
    assert len(load(tree.root, min_traced_frames=0)[1].items) == len(tree.ids)


@pytest.mark.parametrize("damage, reason", [
    (lambda path: path.unlink(), "missing video"),
    (lambda path: fd.truncate(path, 0.9), "truncated video"),
    (lambda path: fd.truncate(path, 0.5), "truncated video"),
    (fd.corrupt_last_frame, "unreadable video"),
    (lambda path: path.write_bytes(b"not a video" * 50), "unreadable video"),
    (fd.write_zero_frame_avi, "zero frames"),
])
def test_bad_videos_are_excluded_with_file_and_reason(tree, damage, reason):
    victim = tree.ids[3]
    damage(tree.videos[victim])
    _, index = load(tree.root)
    assert victim not in {i.id for i in index.items}
    (exclusion,) = index.excluded
    assert (exclusion.id, exclusion.file) == (victim, str(tree.videos[victim]))
    assert exclusion.reason.startswith(reason)
    assert summarise_reasons(index.excluded) == f"{reason}: 1"


@pytest.mark.parametrize("value, reason", [("", "EF missing"), ("nan", "EF missing"), ("150", "outside [0, 100]"),
                                           ("-1", "outside [0, 100]"), ("abc", "not a number")])
def test_unusable_ef_is_excluded(tree, value, reason):
    fd.set_cell(tree.labels, tree.ids[0], "EF", value)
    _, index = load(tree.root)
    (exclusion,) = index.excluded
    assert exclusion.id == tree.ids[0] and reason in exclusion.reason
    assert exclusion.file == str(tree.labels)


def test_strict_mode_turns_an_exclusion_into_an_error(tree):
    tree.videos[tree.ids[0]].unlink()
    with pytest.raises(DataError, match=f"{tree.ids[0]}.*missing video.*strict"):
        load(tree.root, strict=True)


def test_missing_column_names_file_missing_and_found_columns(tree):
    fd.drop_column(tree.labels, "Split")
    with pytest.raises(DataError) as error:
        load(tree.root)
    message = str(error.value)
    assert str(tree.labels) in message and "missing column(s) Split" in message and "FileName, EF, ESV" in message


def test_duplicate_file_name_is_an_error(tree):
    fd.duplicate_row(tree.labels, tree.ids[1])
    with pytest.raises(DataError, match=f"duplicate FileName {tree.ids[1]}"):
        load(tree.root)


def test_unknown_split_label_names_the_row(tree):
    fd.set_cell(tree.labels, tree.ids[2], "Split", "HOLDOUT")
    with pytest.raises(DataError, match=r"row 4 .*'HOLDOUT'.*TRAIN, VAL, TEST"):
        load(tree.root)


@pytest.mark.parametrize("make_root", [lambda tmp: tmp / "nowhere", lambda tmp: tmp])
def test_wrong_root_says_what_was_expected(tmp_path, make_root):
    with pytest.raises(DataError) as error:
        load(make_root(tmp_path))
    message = str(error.value)
    assert "FileList.csv" in message and "Videos" in message and "0 samples" not in message


def test_all_videos_excluded_is_an_error_not_an_empty_dataset(tree):
    shutil.rmtree(tree.root / "Videos")
    (tree.root / "Videos").mkdir()
    with pytest.raises(DataError, match="every one of 8 videos was excluded.*missing video: 8"):
        load(tree.root)


def test_label_file_without_rows_is_an_error(tree):
    tree.labels.write_text(tree.labels.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="list no videos"):
        load(tree.root)


def test_view_other_than_a4c_and_unknown_protocol_are_config_errors(tree):
    with pytest.raises(ConfigError, match="A4C"):
        load(tree.root, view="PSAX")
    dataset, index = load(tree.root)
    with pytest.raises(ConfigError, match="official"):
        dataset.splits(index, "offical")


def test_registry_metadata_lets_config_validation_check_combinations():
    record = registry.describe("dataset", "echonet_dynamic")
    assert record.factory.protocols == ("official",) and record.factory.tabular_columns == {}
    assert {"ESV", "EDV"} <= set(record.metadata["label_derived"])
    for name in ("echonet_dynamic", "echonet_pediatric", "camus"):
        record = registry.describe("dataset", name)
        dataset = registry.build("dataset", name, root="anywhere")  # building reads nothing yet
        assert isinstance(dataset, Dataset)
        # Declared once, in the class attribute `validate` checks dataset.protocol against: a second copy in the
        # metadata could drift from it.
        assert list(dataset.protocols) == list(record.factory.protocols) and "protocols" not in record.metadata


def test_tracing_defects_drop_frames_and_the_official_filter_decides_the_item(tree):
    tracings = tree.root / "VolumeTracings.csv"
    two_points, beyond = tree.ids[1], tree.ids[2]
    lines = tracings.read_text().splitlines()
    # The end-systolic frame (10) of one video loses a chord: 2 outline points, leaving 1 traced frame.
    del lines[max(i for i, line in enumerate(lines) if line.startswith(f"{two_points}.avi,") and line.endswith(",10"))]
    tracings.write_text("\n".join(lines) + "\n")
    # Another video gets a third traced frame, 12, past the end of its 12-frame video: 2 frames remain.
    fd.append_rows(tracings, [[f"{beyond}.avi", 15, 6, 15, 26, 12], [f"{beyond}.avi", 11, 14, 19, 14, 12],
                              [f"{beyond}.avi", 12, 20, 18, 20, 12]])
    _, index = load(tree.root)
    items = {item.id: item for item in index.items}
    assert two_points not in items and [t.frame for t in items[beyond].tracings] == [1, 10]
    listed = {(e.id, e.dropped, e.frame): e for e in index.excluded}
    assert set(listed) == {(two_points, "tracing", 10), (two_points, "item", None), (beyond, "tracing", 12)}
    assert listed[two_points, "tracing", 10].reason.startswith("too few outline points: 2 from rows")
    assert listed[two_points, "tracing", 10].file == str(tracings)
    assert listed[two_points, "item", None].reason == "fewer than 2 traced frames (official EchoNet filter)"
    assert listed[beyond, "tracing", 12].reason.startswith("traced frame past the video's end: frame 12 of a 12-frame")
    assert listed[beyond, "tracing", 12].file == str(tree.videos[beyond])
    _, unfiltered = load(tree.root, min_traced_frames=0)  # without the rule the item stays with what it has
    assert [t.frame for t in {i.id: i for i in unfiltered.items}[two_points].tracings] == [1]


def test_an_empty_file_name_excludes_its_row(tree):
    fd.set_cell(tree.labels, tree.ids[3], "FileName", "")
    _, index = load(tree.root)
    (exclusion,) = index.excluded
    assert (exclusion.id, exclusion.file, exclusion.reason) == ("", str(tree.labels), "empty FileName: row 5")
    assert len(index.items) == len(tree.ids) - 1


@pytest.mark.parametrize("where", ["elsewhere", "absolute", "above"])
def test_a_file_name_that_names_a_path_excludes_its_row(tree, where):
    """FileName names a video in Videos/: an absolute one read any .avi on the machine as this item's video without
    a word, and ../ one outside the dataset."""
    elsewhere = tree.root.parent / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tree.videos[tree.ids[0]], elsewhere / "planted.avi")
    name = {"elsewhere": "../../elsewhere/planted", "absolute": str(elsewhere / "planted"),
            "above": "../Videos/" + tree.ids[3]}[where]
    fd.set_cell(tree.labels, tree.ids[3], "FileName", name)
    _, index = load(tree.root, min_traced_frames=0)  # no tracing to miss: the planted video was taken
    (exclusion,) = index.excluded
    assert (exclusion.id, exclusion.file) == (name, str(tree.labels))
    assert exclusion.reason == "FileName names a path, not a video in Videos/: row 5"
    assert len(index.items) == len(tree.ids) - 1


@pytest.mark.parametrize("spelling", [lambda name: name.lower() + ".AVI", lambda name: name + ".avi"])
def test_the_same_video_listed_twice_in_any_case_is_an_error_naming_both_rows(tree, spelling):
    fd.duplicate_row(tree.labels, tree.ids[1])  # appended as row 10
    header, *rows = tree.labels.read_text().splitlines()
    tree.labels.write_text("\n".join([header, *rows[:-1], rows[-1].replace(tree.ids[1], spelling(tree.ids[1]))]) + "\n")
    with pytest.raises(DataError, match=rf"duplicate FileName {tree.ids[1]} \(rows 3, 10\)"):
        load(tree.root)


def test_a_byte_that_is_not_utf8_names_its_row(tree):
    data = tree.labels.read_bytes().splitlines(keepends=True)
    data[4] = data[4].replace(b"TRAIN", b"TR\xe9IN")
    tree.labels.write_bytes(b"".join(data))
    with pytest.raises(DataError, match=r"FileList.csv is not a readable CSV: row 5 \(byte 0xE9 at character \d+\) is not UTF-8"):
        load(tree.root)


def test_strict_mode_also_stops_at_a_dropped_tracing_frame(tree):
    fd.append_rows(tree.root / "VolumeTracings.csv", [[f"{tree.ids[0]}.avi", 15, 6, 15, 26, 30],
                                                      [f"{tree.ids[0]}.avi", 11, 14, 19, 14, 30],
                                                      [f"{tree.ids[0]}.avi", 12, 20, 18, 20, 30]])
    with pytest.raises(DataError, match=f"{tree.ids[0]} .*traced frame past the video's end: frame 30.*strict"):
        load(tree.root, strict=True)
    assert len(load(tree.root)[1].items) == len(tree.ids)
