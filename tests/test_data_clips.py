"""The clip pipeline: frame index math of both modes, decoding only needed frames, transforms, loaders."""
from dataclasses import replace
from pathlib import Path

import fakedata as fd
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.config import ClipsConfig
from benchmark.contracts import InputSpec, Item
from benchmark.data.clips import (
    ClipDataset,
    ClipSampler,
    ClipTransform,
    EvaluationClips,
    Normalisation,
    assemble,
    make_loader,
    normalisation_for,
    pool_by_item,
)
from benchmark.data.video import Video
from benchmark.errors import ConfigError

ECHONET = ClipsConfig(mode="echonet", frames=4, period=2, test_clips=1, augment=False, normalise="none")
MCSDR = ClipsConfig(mode="mcsdr", frames=5, frequency=2, augment=False, normalise="none")
SPEC = InputSpec(frames=None, size=32)
RAW = Normalisation((0.0,) * 3, (1.0,) * 3)  # keeps the 0-255 scale so tests read frame numbers back


def plan_indices(plan):
    return plan.lower.tolist()


# ------------------------------------------------------------------------------ echonet mode
def test_echonet_test_plans_one_centred_n_spaced_or_all_clips():
    # 20 frames, span (4 - 1) * 2 + 1 = 7: starts 0..13.
    (one,) = ClipSampler(ECHONET).test_plans(20)
    assert plan_indices(one) == [6, 8, 10, 12]
    every = ClipSampler(replace(ECHONET, test_clips=0)).test_plans(20)
    assert [p.lower[0] for p in every] == list(range(14))
    assert plan_indices(every[-1]) == [13, 15, 17, 19]
    three = ClipSampler(replace(ECHONET, test_clips=3)).test_plans(20)
    assert [p.lower[0] for p in three][::2] == [0, 13] and len(three) == 3
    # Validation takes the central clip whatever test_clips says.
    assert plan_indices(ClipSampler(replace(ECHONET, test_clips=0)).central_plan(20)) == [6, 8, 10, 12]


def test_more_test_clips_than_starts_are_every_clip_without_a_plan_of_that_size():
    """test_clips past a video's starts repeats starts, which are dropped: the same clips as test_clips = 0. The count
    is not planned out first (10**12 made a linspace of terabytes once the run reached its TEST features)."""
    every = [p.lower[0] for p in ClipSampler(replace(ECHONET, test_clips=0)).test_plans(20)]
    for count in (14, 15, 10**12, 10**26):
        assert [p.lower[0] for p in ClipSampler(replace(ECHONET, test_clips=count)).test_plans(20)] == every


def test_echonet_training_start_is_random_within_the_video():
    sampler, rng = ClipSampler(ECHONET), np.random.default_rng(0)
    starts = {int(sampler.train_plan(20, rng).lower[0]) for _ in range(300)}
    assert starts == set(range(14))


def test_echonet_short_video_repeats_its_last_frame():
    assert plan_indices(ClipSampler(ECHONET).test_plans(5)[0]) == [0, 2, 4, 4]
    assert plan_indices(ClipSampler(ECHONET).train_plan(1, np.random.default_rng(0))) == [0, 0, 0, 0]


# ------------------------------------------------------------------------------ mcsdr mode
def reference_clip(video: torch.Tensor, frequency: int, frames: int, length: int, start: int) -> torch.Tensor:
    """What the reference's valid_crop_resize makes of ``video`` (T, H, W) with the window fixed: every
    ``frequency``-th frame, ``length`` of them from ``start``, resampled to ``frames`` by F.interpolate's bilinear mode
    without aligned corners (the other axis keeps its size, so only time is resampled)."""
    window = video[::frequency][start:start + length]  # (L, H, W)
    flat = window.reshape(length, -1).T[None, None]  # (1, 1, H*W, L)
    return F.interpolate(flat, size=(flat.shape[2], frames), mode="bilinear", align_corners=False)[0, 0].T


def test_mcsdr_test_plan_is_the_central_95_percent_resampled_as_the_reference():
    """21 frames, every 2nd kept: m = 11 kept frames, a window of floor(0.95 m) = 10 from int(0.05 m / 2) = 0,
    read at (j + 1/2) 10 / 5 - 1/2 = 0.5, 2.5, .., 8.5 kept frames: video frames 1, 5, 9, 13, 17."""
    (plan,) = ClipSampler(MCSDR).test_plans(21)
    assert plan.lower.tolist() == [0, 4, 8, 12, 16]
    assert plan.upper.tolist() == [2, 6, 10, 14, 18]
    np.testing.assert_allclose(plan.weight, [0.5] * 5)
    frames = (np.arange(21) * 10).astype(np.uint8)[:, None, None, None]
    clip = assemble(frames[plan.needed], plan.needed, plan)
    np.testing.assert_allclose(clip[0, :, 0, 0], [10, 50, 90, 130, 170])  # 10 x the original frame time


@pytest.mark.parametrize("n, frequency, frames", [(21, 2, 5), (100, 1, 16), (203, 4, 32), (7, 1, 16), (60, 3, 16)])
def test_mcsdr_test_clip_is_the_references_valid_crop_resize(n, frequency, frames):
    """Down- and upsampling in time against F.interpolate on the reference's test window (mcsdr.md 'Pipeline' 7,
    p = 0.95): floor(0.95 m) kept frames from int(0.05 m / 2)."""
    config = replace(MCSDR, frequency=frequency, frames=frames)
    (plan,) = ClipSampler(config).test_plans(n)
    video = torch.rand(n, 2, 3, generator=torch.Generator().manual_seed(n))
    frames_needed = video.numpy()[plan.needed][..., None]  # (K, H, W, 1)
    clip = assemble(frames_needed, plan.needed, plan)[0]  # (T, H, W)
    kept = len(range(0, n, frequency))
    expected = reference_clip(video, frequency, frames, int(np.floor(kept * 0.95)), int(0.05 * kept / 2))
    torch.testing.assert_close(clip.reshape(frames, -1), expected, rtol=0, atol=1e-5)


def test_mcsdr_training_window_is_90_to_100_percent_of_the_kept_frames_from_a_random_start():
    """41 frames, every 2nd kept: m = 21; floor(p m) for p in [0.9, 1) is 18, 19 or 20 kept frames (at least 16),
    from any start that keeps the window inside the video; each plan is the reference's resampling of one of them."""
    sampler, rng = ClipSampler(MCSDR), np.random.default_rng(0)
    video = torch.arange(41, dtype=torch.float32)[:, None, None]  # a frame's value is its time
    possible = {(length, start): reference_clip(video, 2, 5, length, start)[:, 0].tolist()
                for length in (18, 19, 20) for start in range(21 - length + 1)}
    seen = set()
    for _ in range(300):
        plan = sampler.train_plan(41, rng)
        clip = assemble(video.numpy()[plan.needed][..., None], plan.needed, plan)[0, :, 0, 0].tolist()
        matches = [key for key, values in possible.items() if np.allclose(values, clip, atol=1e-4)]
        assert matches, clip
        seen.update(matches)
    assert seen == set(possible)


def test_mcsdr_training_window_of_a_short_video_keeps_at_least_16_frames():
    """m = 17 kept frames: floor(p m) is 15 or 16 for p in [0.9, 1), and 15 is raised to 16: every window has 16."""
    sampler, rng = ClipSampler(replace(MCSDR, frequency=1, frames=4)), np.random.default_rng(1)
    video = torch.arange(17, dtype=torch.float32)[:, None, None]
    possible = {(length, start): reference_clip(video, 1, 4, length, start)[:, 0].tolist()
                for length in (16,) for start in range(17 - length + 1)}
    for _ in range(100):
        plan = sampler.train_plan(17, rng)
        clip = assemble(video.numpy()[plan.needed][..., None], plan.needed, plan)[0, :, 0, 0].tolist()
        assert any(np.allclose(values, clip, atol=1e-4) for values in possible.values()), clip


@pytest.mark.parametrize("train_window, test_window, length, start", [([1.0, 1.0], 1.0, 20, 0),
                                                                      ([0.5, 0.5], 0.5, 10, 5)])
def test_mcsdr_windows_are_the_configured_shares(train_window, test_window, length, start):
    """test_window p: floor(p m) kept frames from int((1 - p) m / 2); train_window [1.0, 1.0] (the reference's
    CAMUS p_interval [1.0]): every training clip is the whole video. m = 20 here."""
    config = replace(MCSDR, frequency=1, frames=4, train_window=train_window, test_window=test_window)
    sampler, rng = ClipSampler(config), np.random.default_rng(0)
    video = torch.arange(20, dtype=torch.float32)[:, None, None]

    def clip(plan):
        return assemble(video.numpy()[plan.needed][..., None], plan.needed, plan)[0, :, 0, 0]

    (plan,) = sampler.test_plans(20)
    torch.testing.assert_close(clip(plan), reference_clip(video, 1, 4, length, start)[:, 0])
    if train_window == [1.0, 1.0]:
        for _ in range(5):
            torch.testing.assert_close(clip(sampler.train_plan(20, rng)), reference_clip(video, 1, 4, 20, 0)[:, 0])


def test_mcsdr_with_several_test_clips_is_a_config_error():
    with pytest.raises(ConfigError, match="test_clips"):
        ClipSampler(replace(MCSDR, test_clips=0))


# ------------------------------------------------------------------------------ datasets
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    items = [Item(id=f"v{k}", patient=f"p{k}", ef=30.0 + k, fold="TRAIN",
                  video=fd.write_avi(root / f"v{k}.avi", fd.frames_with_counter(24 + 2 * k))) for k in range(4)]
    return items


def test_only_the_planned_frames_are_decoded(videos, monkeypatch):
    requested = []
    original = Video.read
    monkeypatch.setattr(Video, "read", lambda self, idx=None: requested.append(list(idx)) or original(self, idx))
    dataset = ClipDataset(videos, MCSDR, SPEC, RAW, train=False)
    clip, target, index, clip_index = dataset[0]
    plan = ClipSampler(MCSDR).central_plan(24)
    assert requested == [plan.needed.tolist()] and len(requested[0]) < 24
    assert clip.shape == (3, 5, 32, 32) and clip.dtype == torch.float32
    assert (target.item(), index, clip_index) == (30.0, 0, 0)
    expected = (1 - plan.weight) * plan.lower + plan.weight * plan.upper
    np.testing.assert_allclose([fd.frame_number(f) for f in clip.permute(1, 2, 3, 0).numpy()], expected, atol=0.5)


def test_training_samples_are_reproducible_across_workers_and_vary_by_epoch(videos):
    config = replace(ECHONET, augment=True, intensity_jitter=0.1, speckle=0.1)
    dataset = ClipDataset(videos, config, SPEC, RAW, train=True, seed=7)

    def epoch_batches(workers):
        return [batch[0] for batch in make_loader(dataset, batch_size=2, num_workers=workers, shuffle=True, seed=3)]

    first = epoch_batches(0)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch_batches(2)))
    dataset.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch_batches(0)))


def test_all_clips_stream_lazily_and_pool_per_video(videos, monkeypatch):
    config = replace(ECHONET, test_clips=0)
    reads = []
    original = Video.read
    monkeypatch.setattr(Video, "read", lambda self, idx=None: reads.append(self.path) or original(self, idx))
    stream = iter(EvaluationClips(videos, config, SPEC, RAW))
    next(stream)
    assert reads == [videos[0].video]  # one video decoded, its clips not materialised as a list
    samples = [(item, clip) for _, _, item, clip in [*stream]]
    expected = [(k, c) for k, item in enumerate(videos) for c in range(24 + 2 * k - 7 + 1)]
    assert [(0, 0)] + samples == expected
    assert len(reads) == len(videos)  # each video decoded once for all of its clips


def test_all_clips_with_workers_cover_every_clip_once(videos):
    config = replace(ECHONET, test_clips=0)
    pairs = []
    for _, _, items, clip_indices in make_loader(EvaluationClips(videos, config, SPEC, RAW), 16, num_workers=2):
        pairs += list(zip(items.tolist(), clip_indices.tolist()))
    assert sorted(pairs) == [(k, c) for k in range(4) for c in range(24 + 2 * k - 6)]


def test_pool_by_item_averages_clips_of_each_video():
    assert pool_by_item(np.array([0, 0, 2, 2, 2]), np.array([1.0, 3.0, 4.0, 5.0, 6.0])) == {0: 2.0, 2: 5.0}


# ------------------------------------------------------------------------------ transforms
def test_grey_sequence_is_resized_and_replicated_to_three_channels(tmp_path):
    tree = fd.make_camus(tmp_path, n_patients=1)
    item = Item(id="c", patient="c", ef=50.0, fold="", video=tree.videos["patient0001_4CH"])
    clip = ClipDataset([item], replace(MCSDR, frames=4), InputSpec(frames=4, size=48), RAW, train=False)[0][0]
    assert clip.shape == (3, 4, 48, 48)
    assert torch.equal(clip[0], clip[1]) and torch.equal(clip[1], clip[2])
    assert clip[0, 0, :8, :8].mean() > 200 and clip[0, 0, 20:28, 40:].mean() < 60  # still upright


def test_translation_shifts_content_by_a_bounded_amount():
    clip = torch.zeros(3, 4, 32, 32)
    clip[..., 10:20, 10:20] = 255
    transform = ClipTransform(replace(ECHONET, augment=True), SPEC, RAW)
    shifted = {tuple(torch.nonzero(transform(clip, np.random.default_rng(s))[0, 0])[0].tolist()) for s in range(30)}
    assert len(shifted) > 5
    assert all(abs(y - 10) <= transform.pad and abs(x - 10) <= transform.pad for y, x in shifted)
    assert torch.equal(transform(clip), clip)  # no rng (evaluation): unchanged


def test_normalisation_sources(videos):
    constants = InputSpec(frames=16, size=32, mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0))
    assert normalisation_for(replace(ECHONET, normalise="encoder"), constants) == Normalisation((1.0, 2.0, 3.0),
                                                                                                 (4.0, 5.0, 6.0))
    assert normalisation_for(ECHONET, SPEC).std == (255.0,) * 3
    train = normalisation_for(replace(ECHONET, normalise="dataset"), constants, videos[:1])
    frames = Video(videos[0].video).read().astype(float)
    assert train.mean[0] == pytest.approx(frames[..., 0].mean(), abs=1.0)
    assert train.std[0] == pytest.approx(frames[..., 0].std(), abs=1.0)
    # Encoders without constants fall back to training statistics, never to other splits.
    assert normalisation_for(replace(ECHONET, normalise="encoder"), SPEC, videos[:1]) == train
    with pytest.raises(ConfigError, match="training"):
        normalisation_for(replace(ECHONET, normalise="dataset"), SPEC, [])


def test_unreadable_video_raises_instead_of_a_blank_clip(tmp_path):
    item = Item(id="gone", patient="g", ef=50.0, fold="", video=Path(tmp_path / "gone.avi"))
    with pytest.raises(Exception, match="gone.avi"):
        ClipDataset([item], ECHONET, SPEC, RAW, train=False)[0]
