"""The clip pipeline: which frames to take, decoding only those, and turning them into model input.

A ``ClipPlan`` is computed from the frame count alone, so a video is decoded exactly at the frames its
clips use. Two sampling modes:

- ``echonet`` (Ouyang et al. 2020): ``frames`` frames ``period`` apart from a start that is random in
  training; at test time one centred clip, ``test_clips`` evenly spaced clips, or (``test_clips = 0``)
  every possible start, predictions averaged per video.
- ``mcsdr``: keep every ``frequency``-th frame, take a window of a share p of them (random, p drawn from
  ``train_window``, 90-100% by default; test: the central ``test_window``, 95%) and resample it linearly in time
  to ``frames`` frames, frame for frame as the reference's ``valid_crop_resize``: the window is floor(p m) of the
  m kept frames (in training at least 16, or all there are, from a random start; at test from int((1 - p) m / 2)),
  resampled as ``F.interpolate(align_corners=False)`` does. Output frame j blends the two kept frames around its
  position, so only those are decoded.

Then: resize to the encoder's size, grey to the encoder's channel count, training augmentation
(random translation by zero-pad and crop, optional intensity and speckle jitter) and normalisation.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from benchmark.config import ClipsConfig
from benchmark.contracts import InputSpec, Item
from benchmark.data.video import Video
from benchmark.errors import ConfigError

MCSDR_MIN_TRAIN_WINDOW = 16  # kept frames a training window has at least (all of them in a shorter video)
TRANSLATION_FRACTION = 12 / 112  # EchoNet pads 112-pixel frames by 12 before the random crop


@dataclass(frozen=True)
class ClipPlan:
    """Output frame j = (1 - weight[j]) * frame[lower[j]] + weight[j] * frame[upper[j]]."""

    lower: np.ndarray
    upper: np.ndarray
    weight: np.ndarray

    @property
    def needed(self) -> np.ndarray:
        return np.union1d(self.lower, self.upper)

    @classmethod
    def exact(cls, indices: np.ndarray) -> "ClipPlan":
        indices = np.asarray(indices, dtype=np.int64)
        return cls(indices, indices, np.zeros(len(indices), dtype=np.float32))


class ClipSampler:
    """Plans clips for a video of ``n`` frames under one ``ClipsConfig``."""

    def __init__(self, config: ClipsConfig):
        if config.mode == "mcsdr" and config.test_clips != 1:
            raise ConfigError("clips.test_clips applies to mode \"echonet\"; mode \"mcsdr\" tests one clip "
                              "(the central `test_window`). Set clips.test_clips = 1 or clips.mode = \"echonet\".")
        self.config = config

    def train_plan(self, n: int, rng: np.random.Generator) -> ClipPlan:
        _require_frames(n)
        if self.config.mode == "echonet":
            return self._echonet(n, rng.integers(0, self._last_start(n) + 1))
        kept = self._kept(n)
        count, fraction = len(kept), rng.uniform(*self.config.train_window)
        length = min(max(int(np.floor(count * fraction)), min(MCSDR_MIN_TRAIN_WINDOW, count)), count)
        return self._mcsdr(kept, length, int(rng.integers(0, count - length + 1)))

    def central_plan(self, n: int) -> ClipPlan:
        """The one deterministic clip (validation, and testing with one clip): centred in the video."""
        _require_frames(n)
        if self.config.mode == "mcsdr":
            kept = self._kept(n)
            # at least one frame: the reference's empty window of a one-frame video became an all-zero clip
            share = self.config.test_window
            length = max(int(np.floor(len(kept) * share)), 1)
            return self._mcsdr(kept, length, int((1 - share) * len(kept) / 2))
        return self._echonet(n, self._last_start(n) // 2)

    def test_plans(self, n: int) -> list[ClipPlan]:
        """``test_clips`` evenly spaced clips, every possible clip for 0, the central one for 1."""
        count = self.config.test_clips
        if count == 1:
            return [self.central_plan(n)]
        _require_frames(n)
        last = self._last_start(n)
        if count == 0:
            starts = np.arange(last + 1)
        else:
            # More clips than starts repeat starts, which np.unique drops: asking for at most one per start gives
            # the same clips, without a linspace of the count (test_clips = 10**12 asked for terabytes).
            starts = np.unique(np.round(np.linspace(0, last, min(count, last + 1))).astype(np.int64))
        return [self._echonet(n, start) for start in starts]

    def _last_start(self, n: int) -> int:
        span = (self.config.frames - 1) * self.config.period + 1
        return max(n - span, 0)

    def _echonet(self, n: int, start: int) -> ClipPlan:
        indices = start + self.config.period * np.arange(self.config.frames)
        return ClipPlan.exact(np.minimum(indices, n - 1))  # a video shorter than the span repeats its last frame

    def _kept(self, n: int) -> np.ndarray:
        return np.arange(0, n, self.config.frequency)

    def _mcsdr(self, kept: np.ndarray, length: int, start: int) -> ClipPlan:
        """The window of ``length`` kept frames from ``start``, resampled to ``frames`` as bilinear interpolation
        without aligned corners: output j reads position (j + 1/2) length / frames - 1/2, at least 0."""
        frames = self.config.frames
        positions = np.maximum((np.arange(frames) + 0.5) * length / frames - 0.5, 0.0)
        below = np.floor(positions).astype(np.int64)
        weight = (positions - below).astype(np.float32)
        above = np.where(weight > 0, np.minimum(below + 1, length - 1), below)  # an exact position needs one frame
        return ClipPlan(kept[start + below], kept[start + above], weight)


def _require_frames(n: int) -> None:
    if n < 1:
        raise ValueError("a clip needs a video with at least one frame")


def assemble(frames: np.ndarray, needed: np.ndarray, plan: ClipPlan) -> torch.Tensor:
    """The plan's (C, T, H, W) float32 clip from (K, H, W, C) ``frames`` decoded at the sorted ``needed``."""
    # Gathering with numpy and blending channels-last, then one transposing copy, is ~5x faster than
    # indexing a permuted tensor.
    clip = torch.from_numpy(frames[np.searchsorted(needed, plan.lower)]).float()
    if plan.weight.any():
        upper = torch.from_numpy(frames[np.searchsorted(needed, plan.upper)]).float()
        clip.lerp_(upper, torch.from_numpy(plan.weight).view(-1, 1, 1, 1))
    return clip.permute(3, 0, 1, 2).contiguous()


# ---------------------------------------------------------------------------------- transforms
@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean and std on the 0-255 scale."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def normalisation_for(config: ClipsConfig, spec: InputSpec, train_items: Sequence[Item] = ()) -> Normalisation:
    """The encoder's constants, or statistics of the training split (``train_items`` only)."""
    if config.normalise == "none":
        return Normalisation((0.0,) * spec.channels, (255.0,) * spec.channels)
    if config.normalise == "encoder" and spec.mean is not None and spec.std is not None:
        return Normalisation(tuple(spec.mean), tuple(spec.std))
    if not train_items:
        raise ConfigError("clips.normalise needs training-split statistics, but no training items were given")
    return channel_statistics(train_items, spec.channels)


def channel_statistics(train_items: Sequence[Item], channels: int, max_videos: int = 128,
                       frames_per_video: int = 16, seed: int = 0) -> Normalisation:
    """Per-channel mean/std over evenly spaced frames of up to ``max_videos`` training videos."""
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(train_items))[:max_videos]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for position in sorted(chosen):
        video = Video(train_items[position].video, reverse=train_items[position].reversed)
        indices = np.unique(np.round(np.linspace(0, len(video) - 1, frames_per_video)).astype(np.int64))
        frames = torch.from_numpy(video.read(indices)).permute(3, 0, 1, 2)
        pixels = match_channels(frames.double(), channels).reshape(channels, -1)
        total += pixels.sum(1).numpy()
        total_sq += (pixels ** 2).sum(1).numpy()
        count += pixels.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-6))
    return Normalisation(tuple(mean.tolist()), tuple(std.tolist()))


def match_channels(clip: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, ...) -> (channels, ...): grey replicated, or colour averaged to grey."""
    have = clip.shape[0]
    if have == channels:
        return clip
    if have == 1:
        return clip.expand(channels, *clip.shape[1:])
    if channels == 1:
        return clip.mean(0, keepdim=True)
    raise ConfigError(f"cannot turn {have}-channel video into the encoder's {channels} channels")


class ClipTransform:
    """(C, T, H, W) float 0-255 -> normalised (channels, T, size, size) for the encoder."""

    def __init__(self, config: ClipsConfig, spec: InputSpec, normalisation: Normalisation):
        self.config = config
        self.size = spec.size
        self.channels = spec.channels
        self.pad = round(spec.size * TRANSLATION_FRACTION)
        self.mean = torch.tensor(normalisation.mean, dtype=torch.float32).view(-1, 1, 1, 1)
        self.std = torch.tensor(normalisation.std, dtype=torch.float32).view(-1, 1, 1, 1)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        clip = self._resize(match_channels(clip, self.channels))
        if rng is not None and self.config.augment:
            clip = self._photometric(self._translate(clip, self._offset(rng)), rng)
        return self._normalise(clip)

    def with_mask(self, clip: torch.Tensor, mask: torch.Tensor,
                  rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The clip as ``__call__`` makes it, and a (1, T, H, W) mask of the same field of view resized and
        translated with it (never jittered or normalised), so the two stay aligned."""
        clip, mask = self._resize(match_channels(clip, self.channels)), self._resize(mask)
        if rng is not None and self.config.augment:
            offset = self._offset(rng)
            clip, mask = self._photometric(self._translate(clip, offset), rng), self._translate(mask, offset)
        return self._normalise(clip), mask

    def _resize(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.shape[-2:] == (self.size, self.size):
            return clip
        return F.interpolate(clip, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)

    def _normalise(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.sub(clip, self.mean).div_(self.std)  # a new contiguous tensor, then in place

    def _offset(self, rng: np.random.Generator) -> tuple[int, int] | None:
        return tuple(rng.integers(0, 2 * self.pad + 1, size=2)) if self.pad else None

    def _translate(self, clip: torch.Tensor, offset: tuple[int, int] | None) -> torch.Tensor:
        """Zero-pad by ``pad`` and crop at ``offset``: a random shift of up to ``pad`` pixels."""
        if offset is None:
            return clip
        dy, dx = offset
        return F.pad(clip, (self.pad,) * 4)[..., dy:dy + self.size, dx:dx + self.size]

    def _photometric(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.config.intensity_jitter > 0:
            gain = 1 + rng.uniform(-1, 1) * self.config.intensity_jitter
            clip = (clip * gain).clamp(0, 255)
        if self.config.speckle > 0:
            # Multiplicative gamma noise, mean 1 and std ``speckle``, new per frame: like ultrasound speckle.
            shape = 1 / self.config.speckle ** 2
            noise = rng.gamma(shape, 1 / shape, size=clip.shape[1:]).astype(np.float32)
            clip = (clip * torch.from_numpy(noise)).clamp(0, 255)
        return clip


# ---------------------------------------------------------------------------------- datasets
Sample = tuple[torch.Tensor, torch.Tensor, int, int]


class ClipDataset(Dataset):
    """One clip per video: random in training (reseeded per epoch), the central clip otherwise.

    Yields (clip (C, T, H, W) float32, target EF float32, item index, clip index 0). The randomness of
    sample ``i`` depends only on (seed, epoch, i), so results do not depend on the number of workers.
    """

    def __init__(self, items: Sequence[Item], config: ClipsConfig, spec: InputSpec,
                 normalisation: Normalisation, train: bool, seed: int = 0):
        self.items = list(items)
        self.sampler = ClipSampler(config)
        self.transform = ClipTransform(config, spec, normalisation)
        self.train = train
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        video = Video(item.video, reverse=item.reversed)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        plan = self.sampler.train_plan(len(video), rng) if self.train else self.sampler.central_plan(len(video))
        needed = plan.needed
        clip = self.transform(assemble(video.read(needed), needed, plan), rng)
        return clip, torch.tensor(item.ef, dtype=torch.float32), index, 0


class EvaluationClips(IterableDataset):
    """Every test clip of every video, produced lazily: memory holds one video's frames per worker.

    Yields (clip, target, item index, clip index); combine with ``pool_by_item``. Workers take
    disjoint slices of the videos.
    """

    def __init__(self, items: Sequence[Item], config: ClipsConfig, spec: InputSpec, normalisation: Normalisation):
        self.items = list(items)
        self.sampler = ClipSampler(config)
        self.transform = ClipTransform(config, spec, normalisation)

    def __iter__(self) -> Iterator[Sample]:
        worker = get_worker_info()
        positions = range(len(self.items))
        if worker is not None:
            positions = positions[worker.id::worker.num_workers]
        for index in positions:
            yield from self._clips(index)

    def _clips(self, index: int) -> Iterator[Sample]:
        item = self.items[index]
        video = Video(item.video, reverse=item.reversed)
        plans = self.sampler.test_plans(len(video))
        needed = np.unique(np.concatenate([plan.needed for plan in plans]))
        frames = video.read(needed)  # overlapping clips share frames: decode each once
        target = torch.tensor(item.ef, dtype=torch.float32)
        for clip_index, plan in enumerate(plans):
            yield self.transform(assemble(frames, needed, plan)), target, index, clip_index


def pool_by_item(item_index: np.ndarray, values: np.ndarray) -> dict[int, float]:
    """Mean of clip-level ``values`` per item index (test-time clip averaging)."""
    item_index = np.asarray(item_index, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    sums = np.bincount(item_index, weights=values)
    counts = np.bincount(item_index)
    return {int(i): float(sums[i] / counts[i]) for i in np.flatnonzero(counts)}


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seeds numpy and random in each worker from the DataLoader's per-worker seed."""
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = False,
                seed: int = 0) -> DataLoader:
    """A DataLoader whose shuffling and worker seeds follow ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and not isinstance(dataset, IterableDataset),
                      num_workers=num_workers, worker_init_fn=seed_worker, generator=generator,
                      persistent_workers=False, pin_memory=False)
