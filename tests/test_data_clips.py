"""The clip pipeline: frame index math of both modes, decoding only needed frames, transforms, loaders."""
from dataclasses import replace
from pathlib import Path

import fakedata as fd
import numpy as np
import pytest
import torch

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
def test_mcsdr_test_plan_is_the_central_95_percent_resampled_linearly():
    # 21 frames, every 2nd kept: kept frames 0, 2, ..., 20 (positions 0..10); window 9.5 from 0.25.
    (plan,) = ClipSampler(MCSDR).test_plans(21)
    assert plan.lower.tolist() == [0, 4, 10, 14, 18]
    assert plan.upper.tolist() == [2, 6, 10, 16, 20]
    np.testing.assert_allclose(plan.weight, [0.25, 0.625, 0.0, 0.375, 0.75])
    frames = (np.arange(21) * 10).astype(np.uint8)[:, None, None, None]
    clip = assemble(frames[plan.needed], plan.needed, plan)
    np.testing.assert_allclose(clip[0, :, 0, 0], [5, 52.5, 100, 147.5, 195])  # 10 x the original frame time


def test_mcsdr_training_window_covers_90_to_100_percent():
    sampler, rng = ClipSampler(MCSDR), np.random.default_rng(0)
    spans = []
    for _ in range(200):
        plan = sampler.train_plan(41, rng)
        first = plan.lower[0] + plan.weight[0] * (plan.upper[0] - plan.lower[0])
        last = plan.lower[-1] + plan.weight[-1] * (plan.upper[-1] - plan.lower[-1])
        assert 0 <= first and last <= 40 and plan.lower.min() % 2 == 0
        spans.append((last - first) / 40)
    assert 0.9 - 1e-6 <= min(spans) < 0.92 and 0.98 < max(spans) <= 1 + 1e-6


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
