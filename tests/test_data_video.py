"""Video reading: the Motion-JPEG packet reader against decord, other codecs, frame selection, caching."""
import fakedata as fd
import numpy as np
import pytest

from benchmark.data.helpers import VideoChecks
from benchmark.data.video import DecordReader, MjpegAvi, Video, VideoReadError, covering_runs


@pytest.fixture(scope="module")
def mjpeg(tmp_path_factory):
    return fd.write_avi(tmp_path_factory.mktemp("video") / "clip.avi", fd.frames_with_counter(30, 48, 40))


def test_mjpeg_packets_decode_like_decord(mjpeg):
    video = Video(mjpeg)
    assert isinstance(video._reader, MjpegAvi) and len(video) == 30
    indices = np.array([29, 0, 7, 7, 15])
    ours = video.read(indices)
    reference = DecordReader(mjpeg).read(indices)
    assert ours.shape == (5, 48, 40, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - reference).max() <= 2
    assert [round(fd.frame_number(frame)) for frame in ours] == [29, 0, 7, 7, 15]


def test_other_codecs_go_through_decord(tmp_path):
    path = fd.write_avi(tmp_path / "ffv1.avi", fd.frames_with_counter(12), codec="FFV1")
    video = Video(path)
    assert isinstance(video._reader, DecordReader)
    assert [round(fd.frame_number(frame)) for frame in video.read([11, 3])] == [11, 3]


def test_decord_decodes_short_gaps_through_and_seeks_over_long_ones():
    assert covering_runs(np.array([10, 2, 4])).tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert covering_runs(np.array([0, 30]), max_gap=8).tolist() == [0, 30]
    assert covering_runs(np.array([5])).tolist() == [5]


def test_out_of_range_frame_and_unknown_type_are_errors(mjpeg, tmp_path):
    with pytest.raises(VideoReadError, match="frame 30 requested of 30"):
        Video(mjpeg).read([30])
    (tmp_path / "clip.mp3").write_bytes(b"x")
    with pytest.raises(VideoReadError, match="unknown video type '.mp3'"):
        Video(tmp_path / "clip.mp3")


def test_video_checks_are_cached_per_size_and_mtime(tmp_path, monkeypatch):
    path = fd.write_avi(tmp_path / "a.avi", fd.frames_with_counter(6))
    cache = tmp_path / "cache" / "checks.json"
    calls = []
    import benchmark.data.helpers as tools

    monkeypatch.setattr(tools, "check_video", lambda p: calls.append(p) or (None, 6))
    checks = tools.VideoChecks(cache)
    assert checks.check(path) == (None, 6) and checks.check(path) == (None, 6)
    checks.save()
    assert len(calls) == 1 and cache.is_file()
    assert tools.VideoChecks(cache).check(path) == (None, 6) and len(calls) == 1  # reloaded from the file
    fd.write_avi(path, fd.frames_with_counter(7))  # new size and mtime: checked again
    assert VideoChecks(cache).check(path) == (None, 6) and len(calls) == 2
