"""Replacing a synthetic generation deletes what a generation wrote and nothing else: a user's files in the folder
stay, one in the way stops the replacement before anything is deleted, and the list of generated files is read as
untrusted."""
import os

import pytest

import registry
from benchmark.errors import DataError
from benchmark.synth.files import LIST
from benchmark.synth.generate import MARKER, generate, read_marker


def _videos(root):
    return sorted(path.name for path in (root / "Videos").iterdir())


def _files(root):
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_the_list_names_every_file_a_generation_wrote(tmp_path):
    root = generate("echonet_dynamic", 3, tmp_path / "d", seed=0, size=32, workers=1)
    assert (root / LIST).read_text().splitlines() == _files(root)
    assert len(_videos(root)) == 3 and {"FileList.csv", "VolumeTracings.csv", MARKER, LIST} <= set(_files(root))


def test_a_users_files_survive_regeneration_and_only_the_old_generations_files_go(tmp_path):
    root = tmp_path / "synthetic"
    first = registry.build("dataset", "synthetic", root=root, format="echonet_dynamic", n=4, seed=0, size=32,
                           workers=1)
    first.load()
    old_videos = _videos(root)
    (root / "notes.md").write_text("my notes")
    (root / "Videos" / "README.txt").write_text("kept beside the videos")
    (root / "figures").mkdir()
    (root / "figures" / "sheet.png").write_bytes(b"png")
    second = registry.build("dataset", "synthetic", root=root, format="echonet_dynamic", n=3, seed=1, size=32,
                            workers=1)
    index = second.load()
    assert len(index.items) == 3 and read_marker(root)["seed"] == 1
    assert (root / "notes.md").read_text() == "my notes"
    assert (root / "Videos" / "README.txt").read_text() == "kept beside the videos"
    assert (root / "figures" / "sheet.png").read_bytes() == b"png"
    videos = [name for name in _videos(root) if name.endswith(".avi")]
    assert len(videos) == 3 and not set(videos) & set(old_videos)  # none of the old generation's are left
    assert not list(tmp_path.glob(".synthetic.partial-*"))


def test_a_users_file_where_the_new_generation_writes_stops_it_before_anything_is_deleted(tmp_path):
    root = generate("echonet_pediatric", 3, tmp_path / "p", seed=0, size=32, workers=1)
    before = {name: (root / name).read_bytes() for name in _files(root)}
    (root / LIST).write_text("".join(f"{name}\n" for name in sorted(before) if name != "oracle.csv"))
    with pytest.raises(DataError, match=r"would write over oracle\.csv, which no generation wrote"):
        generate("echonet_pediatric", 4, root, seed=1, size=32, workers=1)
    assert {name: (root / name).read_bytes() for name in _files(root)} == {
        **before, LIST: (root / LIST).read_bytes()}
    assert read_marker(root)["n"] == 3 and not list(tmp_path.glob(".p.partial-*"))


def test_a_generation_without_a_list_is_not_replaced(tmp_path):
    """Made by an earlier version: its files cannot be told from the user's, so none is deleted."""
    root = generate("echonet_dynamic", 2, tmp_path / "d", seed=0, size=32, workers=1)
    (root / LIST).unlink()
    (root / "mine.txt").write_text("mine")
    files = _files(root)
    with pytest.raises(DataError, match=f"without {LIST}"):
        generate("echonet_dynamic", 3, root, seed=0, size=32, workers=1)
    assert _files(root) == files and read_marker(root)["n"] == 2


@pytest.mark.parametrize("line", ["../victim.txt", "{victim}", "linked/victim.txt", "Videos/../../victim.txt"])
def test_a_list_that_leads_outside_the_folder_deletes_nothing(tmp_path, line):
    victim = tmp_path / "victim.txt"
    victim.write_text("not the tool's")
    root = generate("echonet_dynamic", 2, tmp_path / "d", seed=0, size=32, workers=1)
    os.symlink(tmp_path, root / "linked")
    files = _files(root)
    with open(root / LIST, "a") as handle:
        handle.write(line.format(victim=victim) + "\n")
    with pytest.raises(DataError, match=f"{LIST}, line"):
        generate("echonet_dynamic", 3, root, seed=0, size=32, workers=1)
    assert victim.read_text() == "not the tool's" and _files(root) == files


def test_an_interrupted_replacement_is_finished_by_the_next_generation(tmp_path):
    """Killed after the marker went and the old files were deleted: the folder does not look complete, and the
    list names both generations' files, so the next generation removes the leftovers."""
    root = generate("echonet_dynamic", 3, tmp_path / "d", seed=0, size=32, workers=1)
    leftover = _videos(root)
    (root / MARKER).unlink()
    (root / "mine.txt").write_text("mine")
    assert read_marker(root) is None
    generate("echonet_dynamic", 2, root, seed=5, size=32, workers=1)
    assert read_marker(root)["seed"] == 5 and len(_videos(root)) == 2 and not set(_videos(root)) & set(leftover)
    assert (root / "mine.txt").read_text() == "mine"
