"""Data are named by their content: a copy of the dataset elsewhere (another disk, another machine, where the
copy's files have other modification times) names the same stages and jobs, while a video rewritten in place
does not, even with its old size and modification time put back, nor a CAMUS 2019 sequence whose ``.raw``
pixels changed beside an unchanged ``.mhd`` header. Each video is read once and then known by its stat."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import fakedata as fd
import pytest

from benchmark.components import resolve
from benchmark.config import load_experiment
from benchmark.data import prepare
from benchmark.data.prepare import load_data
from benchmark.data.video import video_files
from benchmark.errors import DataError
from benchmark.identity import FileDigests

ROOT = Path(__file__).resolve().parents[1]


def loaded(root: Path, dataset: str = "echonet_pediatric", protocol: str = "fold", **params):
    overrides = [f'dataset.name="{dataset}"', f'dataset.root="{root}"', "dataset.synthetic_if_missing=false",
                 f'dataset.protocol="{protocol}"',
                 *(f"dataset.params.{key}={value}" for key, value in params.items())]
    experiment = resolve(load_experiment(ROOT / "experiments" / "quick.toml", overrides)).experiment
    return load_data(experiment, resolve(experiment).registry, say=lambda _: None)


def rewrite_keeping_stat(path: Path) -> None:
    """Other bytes of the same length, with the old modification time put back (``touch -r``, ``cp -p``)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.fixture
def pediatric(tmp_path):
    return fd.make_pediatric(tmp_path / "pediatric", n_patients=20, views=("A4C",))


def test_a_copy_with_other_modification_times_names_the_same_items(tmp_path, pediatric):
    copy = shutil.copytree(pediatric.root, tmp_path / "elsewhere", copy_function=shutil.copy)  # new mtimes
    video = next(iter(pediatric.videos.values()))
    assert (copy / "A4C" / "Videos" / video.name).stat().st_mtime_ns != video.stat().st_mtime_ns
    original = loaded(pediatric.root)
    assert loaded(copy).item_digests == original.item_digests


def test_a_video_rewritten_with_its_old_size_and_time_changes_its_item_only(pediatric):
    before = loaded(pediatric.root)
    item, video = next(iter(pediatric.videos.items()))
    rewrite_keeping_stat(video)
    after = loaded(pediatric.root)
    assert {key for key in before.item_digests if after.item_digests[key] != before.item_digests[key]} == {item}


def test_the_raw_pixels_beside_a_metaimage_header_are_part_of_its_content(tmp_path):
    tree = fd.make_camus(tmp_path / "camus", release="2019", n_patients=20)
    header = tree.videos["patient0003_4CH"]
    assert video_files(header) == [header, header.with_suffix(".raw")]
    before = loaded(tree.root, "camus", protocol="cv10")
    rewrite_keeping_stat(header.with_suffix(".raw"))  # the header is untouched
    after = loaded(tree.root, "camus", protocol="cv10")
    changed = {key for key in before.item_digests if after.item_digests[key] != before.item_digests[key]}
    assert changed == {"patient0003_4CH"}


@pytest.mark.parametrize("line, names", [
    ("ElementDataFile = LOCAL", []),
    ("ElementDataFile = seq.raw", ["seq.raw"]),
    ("ElementDataFile = LIST 2D\na.raw\nb.raw", ["a.raw", "b.raw"]),
    ("ElementDataFile = slice%02d.raw 1 5 2", ["slice01.raw", "slice03.raw", "slice05.raw"]),
])
def test_every_element_data_file_form_of_metaimage_is_followed(tmp_path, line, names):
    header = tmp_path / "seq.mhd"
    header.write_text(f"ObjectType = Image\nNDims = 3\n{line}\n")
    for name in names:  # each must be a regular file beside the header (test_data_camus.py)
        (tmp_path / name).write_bytes(b"pixels")
    assert video_files(header) == [header, *(tmp_path / name for name in names)]


def test_videos_are_read_once_and_then_known_by_their_stat(pediatric, monkeypatch):
    first = loaded(pediatric.root)
    cache = Path(os.environ["LVEFBENCH_CACHE"]) / prepare.VIDEO_DIGESTS
    assert str(next(iter(pediatric.videos.values())).resolve()) in cache.read_text()
    opened: list[Path] = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    again = loaded(pediatric.root)
    assert again.item_digests == first.item_digests
    assert not [path for path in opened if path.suffix == ".avi"]  # nothing hashed again in a new process' cache


def test_a_digest_cache_that_lies_about_a_changed_file_is_not_believed(tmp_path):
    path, cache = tmp_path / "v.avi", tmp_path / "digests.json"
    path.write_bytes(b"first")
    digests = FileDigests(cache)
    first = digests.digest(path)
    digests.save()
    rewrite_keeping_stat(path)  # same size and mtime: the change time and the bytes differ
    assert FileDigests(cache).digest(path) != first
    cache.write_text("{not json")
    assert FileDigests(cache).digest(path) != first  # a damaged cache only costs reading again


def test_an_unreadable_video_is_an_error_naming_the_item_and_file(pediatric):
    item, video = next(iter(pediatric.videos.items()))
    video.unlink()
    with pytest.raises(DataError, match=rf"echonet_pediatric: {item} \({video}\): cannot read it to name the "
                                        r"results by its content: No such file or directory"):
        loaded(pediatric.root, check_videos="false")


def test_a_fifo_in_place_of_a_video_is_an_error_naming_the_item_not_a_hang(pediatric, deadline):
    """With check_videos = false nothing opens a video before it is hashed, and reading a FIFO waits for a writer
    that never comes: the run hung at "loading data"."""
    item, video = next(iter(pediatric.videos.items()))
    video.unlink()
    os.mkfifo(video)
    with pytest.raises(DataError, match=rf"echonet_pediatric: {item} \({video}\): cannot read it to name the "
                                        r"results by its content: not a regular file"):
        loaded(pediatric.root, check_videos="false")
