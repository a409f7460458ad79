"""Traced frames: the end-diastolic and end-systolic frames that carry an LV tracing, with the traced
cavity as a soft mask, for the stage-1 ``tracings`` objective (LV segmentation, as EchoNet-Dynamic
trained its segmentation model on the same tracings).

A frame goes through the clip pipeline's own transform (resize, channels, normalisation) and its
training augmentation; the mask is drawn at the encoder's size with the resize's own pixel mapping and
gets the same random translation, so frame and mask stay aligned pixel for pixel.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from benchmark.config import ClipsConfig
from benchmark.contracts import InputSpec, Item
from benchmark.data.clips import ClipTransform, Normalisation
from benchmark.data.video import Video
from benchmark.errors import DataError

SUPERSAMPLE = 4  # coverage is counted on a 4x finer grid: masks are soft at the edge


def tracing_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) float32 share of each pixel inside ``polygon`` (x, y in pixel coordinates, pixel
    centres at integers), from the centres of a SUPERSAMPLE-times finer grid."""
    return _covered_subpixels(polygon, height, width) / np.float32(SUPERSAMPLE ** 2)


def _covered_subpixels(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) uint8 count of each pixel's SUPERSAMPLE^2 subpixel centres inside ``polygon``.

    A centre test, not OpenCV's fillPoly, which also fills every pixel the outline touches and so
    overstates the area by half a pixel along the whole perimeter. Only the outline's bounding box is
    tested: the cavity is a small part of the frame.
    """
    from matplotlib.path import Path as Outline

    polygon = np.asarray(polygon, float)
    counts = np.zeros((height, width), np.uint8)
    left, top = np.maximum(np.floor(polygon.min(0)).astype(int), 0)
    right, bottom = np.minimum(np.ceil(polygon.max(0)).astype(int) + 1, (width, height))
    if right <= left or bottom <= top:
        return counts
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    xs = (np.arange(left, right)[:, None] + offsets).ravel()
    ys = (np.arange(top, bottom)[:, None] + offsets).ravel()
    grid_x, grid_y = np.meshgrid(xs, ys)
    inside = Outline(polygon).contains_points(np.column_stack([grid_x.ravel(), grid_y.ravel()]))
    counts[top:bottom, left:right] = inside.reshape(bottom - top, SUPERSAMPLE, right - left, SUPERSAMPLE).sum((1, 3))
    return counts


class TracedFrames(Dataset):
    """Every (item, traced frame) pair of ``items``: yields (frame (C, H, W), mask (1, H, W), item index).

    Items without tracings contribute nothing. Training draws a new translation every epoch from
    (seed, epoch, index), as ``ClipDataset`` does.
    """

    def __init__(self, items: Sequence[Item], config: ClipsConfig, spec: InputSpec, normalisation: Normalisation,
                 train: bool, seed: int = 0):
        self.items = list(items)
        self.pairs = [(position, tracing) for position, item in enumerate(self.items) for tracing in item.tracings]
        self.transform = ClipTransform(config, spec, normalisation)
        self.train, self.seed, self.epoch = train, seed, 0
        self._masks: dict[int, np.ndarray] = {}  # drawn once per traced frame (per worker); augmentation comes after
        # Decoded once per traced frame too: stage 1 visits every frame each epoch, and decoding it again
        # cost more than the step that trains on it. Two frames of each training video at most, decoded
        # together: opening a video (reading its file, indexing its packets) costs more than a frame.
        self._frames: dict[int, np.ndarray] = {}
        self._pairs_of: dict[int, list[int]] = {}
        for index, (position, _) in enumerate(self.pairs):
            self._pairs_of.setdefault(position, []).append(index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        position, tracing = self.pairs[index]
        if index not in self._frames:
            together = self._pairs_of[position]
            frames = self._read(self.items[position], [self.pairs[other][1].frame for other in together])
            self._frames.update(zip(together, frames))
        frame = self._frames[index]
        if index not in self._masks:
            self._masks[index] = self._mask(tracing.polygon, *frame.shape[:2])
        mask = torch.from_numpy(self._masks[index]).float().div_(SUPERSAMPLE ** 2)[None, None]  # (1, T=1, S, S)
        image = torch.from_numpy(frame).float().permute(2, 0, 1)[:, None]  # (C, T=1, H, W)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        image, mask = self.transform.with_mask(image, mask, rng)
        return image[:, 0], mask[:, 0], position

    @staticmethod
    def _read(item: Item, numbers: list[int]) -> np.ndarray:
        """Frames ``numbers`` of the item's video, (F, H, W, C) uint8."""
        video = Video(item.video, reverse=item.reversed)
        for number in numbers:
            if not 0 <= number < len(video):
                # Loading drops such tracings when it checks the videos; this catches them when told not to.
                raise DataError(f"{item.video}: the LV tracing of item {item.id!r} is on frame {number}, but the "
                                f"video has {len(video)} frames. Fix that frame number in the dataset's tracings, "
                                "replace the video, or leave dataset.params.check_videos on to drop such frames.")
        return video.read(np.array(numbers))

    def _mask(self, polygon: np.ndarray, height: int, width: int) -> np.ndarray:
        """Subpixel counts at the encoder's size: the outline is mapped the way the frame is resized (pixel
        centres), which is as exact as drawing at the video's size and resizing, and far cheaper for
        CAMUS-sized frames."""
        size = self.transform.size
        scaled = (np.asarray(polygon, float) + 0.5) * (size / width, size / height) - 0.5
        return _covered_subpixels(scaled, size, size)


def segmentation_losses(logits: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary cross-entropy and soft Dice of LV logits (N, 1, h, w) against soft masks (N, 1, H, W).

    The masks are area-averaged to the logits' grid, so a coarser segmentation map is scored on the
    share of each of its cells that the tracing covers. Dice keeps the small cavity from being
    outweighed by the background.
    """
    target = F.adaptive_avg_pool2d(masks, logits.shape[-2:]) if masks.shape[-2:] != logits.shape[-2:] else masks
    probability = torch.sigmoid(logits)
    overlap = (probability * target).sum((1, 2, 3))
    dice = 1 - (2 * overlap + 1) / (probability.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return {"bce": F.binary_cross_entropy_with_logits(logits, target), "dice": dice.mean()}
