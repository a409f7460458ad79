"""Traced frames for the stage-1 ``tracings`` objective: masks from polygons, frame and mask aligned
under augmentation, the segmentation losses, and a clear error when a dataset has no tracings."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.config import ClipsConfig, Experiment, PretrainConfig
from benchmark.contracts import InputSpec, Item, Tracing
from benchmark.data.clips import Normalisation
from benchmark.data.tracings import TracedFrames, segmentation_losses, tracing_mask
from benchmark.encoding.encoder_stage import EncoderStage
from benchmark.errors import ConfigError, DataError
from benchmark.store import RunDir
from benchmark.synth.writers import write_avi
from plugins.encoders.area_length import AreaLength


def _ellipse(cx: float, cy: float, a: float, b: float, points: int = 60) -> np.ndarray:
    angle = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([cx + a * np.cos(angle), cy + b * np.sin(angle)], axis=1)


def _shoelace(polygon: np.ndarray) -> float:
    x, y = polygon.T
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


@pytest.mark.parametrize("polygon", [np.array([[1.0, 1.0], [4.0, 1.0], [4.0, 4.0], [1.0, 4.0]]),
                                     _ellipse(20.3, 17.8, 6.2, 11.5)])
def test_mask_area_is_the_polygon_area(polygon):
    mask = tracing_mask(polygon, 40, 36)
    assert mask.shape == (40, 36) and mask.min() >= 0 and mask.max() <= 1
    assert mask.sum() == pytest.approx(_shoelace(polygon), rel=0.03)
    # Pixel centres are at integer coordinates: the square's corner pixels are a quarter covered.
    if len(polygon) == 4:
        assert mask[2, 2] == 1 and mask[1, 1] == pytest.approx(0.25, abs=0.07) and mask[0, 0] == 0


def _traced_item(folder: Path, name: str, frames: int = 6, size: int = 40) -> Item:
    """A video whose frames show a bright ellipse that grows with the frame number, traced on frames 1 and 4."""
    outlines = {t: _ellipse(20, 20, 5 + t, 8 + t) for t in range(frames)}
    video = np.stack([(tracing_mask(outlines[t], size, size) * 200 + 20).astype(np.uint8) for t in range(frames)])
    path = folder / f"{name}.avi"
    write_avi(path, video, 50.0)
    return Item(id=name, patient=name, ef=60.0, video=path, fold="TRAIN",
                tracings=tuple(Tracing(t, outlines[t]) for t in (1, 4)))


def test_frames_and_masks_stay_aligned_under_translation(tmp_path):
    items = [_traced_item(tmp_path, "a"), Item(id="b", patient="b", ef=50.0, video=tmp_path / "none.avi", fold="TRAIN")]
    spec = InputSpec(frames=None, size=32, channels=1)
    dataset = TracedFrames(items, ClipsConfig(size=32, augment=True), spec, Normalisation((0.0,), (255.0,)),
                           train=True, seed=3)
    assert len(dataset) == 2  # the untraced item takes no part (its video is never opened)
    shifted = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            frame, mask, position = dataset[index]
            assert frame.shape == (1, 32, 32) and mask.shape == (1, 32, 32) and position == 0
            bright = (frame > 0.4).float()
            overlap = (bright * mask).sum() / torch.maximum(bright.sum(), mask.sum())
            assert overlap > 0.8, f"epoch {epoch} frame {index}: mask and frame disagree ({overlap:.2f})"
            shifted.append(mask.nonzero().float().mean(0))
    assert torch.stack(shifted).std(0).max() > 0.5  # the translation did move them


def test_segmentation_losses_reward_the_right_mask():
    masks = torch.zeros(2, 1, 16, 16)
    masks[:, :, 4:12, 6:10] = 1
    right = segmentation_losses((masks * 2 - 1) * 30, masks)
    wrong = segmentation_losses((masks.flip(-1).roll(5, -1) * 2 - 1) * 30, masks)
    assert right["dice"] < 0.01 and right["bce"] < 0.01 and wrong["dice"] > 0.5
    # Logits on a coarser grid are scored against the area-averaged mask.
    coarse = segmentation_losses(torch.nn.functional.avg_pool2d(masks * 60 - 30, 2), masks)
    assert coarse["dice"] < 0.01


def test_tracings_objective_without_tracings_is_a_clear_error(tmp_path):
    item = Item(id="x.avi", patient="x", ef=55.0, video=tmp_path / "x.avi", fold="training")
    experiment = Experiment()
    experiment.dataset.name = "camus"
    stage = SimpleNamespace(items={"train": [item]}, experiment=experiment, say=print,
                            encoder=SimpleNamespace(input_spec=InputSpec(frames=None, size=32, channels=1)),
                            normalisation=Normalisation((0.0,), (1.0,)))
    with pytest.raises(ConfigError, match="none of the 1 training items of dataset 'camus'"):
        EncoderStage.traced_loader(stage, 8, 0)


def test_a_tracing_beyond_the_end_of_its_video_is_a_data_error_naming_both(tmp_path):
    item = _traced_item(tmp_path, "short", frames=6)
    beyond = dataclasses.replace(item, tracings=(*item.tracings, Tracing(9, item.tracings[0].polygon)))
    dataset = TracedFrames([beyond], ClipsConfig(size=32, augment=False), InputSpec(frames=None, size=32, channels=1),
                           Normalisation((0.0,), (255.0,)), train=False)
    with pytest.raises(DataError) as error:  # not the decoder's "frame 9 requested of 6" halfway through stage 1
        [dataset[index] for index in range(len(dataset))]
    message = str(error.value)
    assert "short.avi" in message and "9" in message and "trac" in message.lower(), message


def _stage_one_of(tmp_path, pretrain: PretrainConfig, said: list[str]) -> SimpleNamespace:
    """What EncoderStage._stage_one reads: a fresh encoder (the same initial weights every time), the run
    directory and traced batches."""
    experiment = Experiment()
    experiment.encoder.pretrain = pretrain
    torch.manual_seed(0)
    encoder = AreaLength(width=2, size=16)
    generator = torch.Generator().manual_seed(1)
    batch = (torch.rand(4, 1, 16, 16, generator=generator), torch.rand(4, 1, 16, 16, generator=generator).round())
    return SimpleNamespace(experiment=experiment, encoder=encoder, split=SimpleNamespace(name="fold0"), seed=0,
                           data=SimpleNamespace(fingerprint=lambda split, roles: "data", split_hash="split"),
                           identity={"source": "code", "engine": {"encoding/stage1.py": "code"},
                                     "libraries": {"torch": "2"}},
                           run=RunDir(tmp_path), device=torch.device("cpu"), precision="float32",
                           say=said.append,
                           quiet=True, traced_loader=lambda batch_size, seed: [batch])


def test_stored_stage_one_encoder_is_reused_only_for_the_same_stage_one_settings(tmp_path):
    said: list[str] = []
    EncoderStage._stage_one(_stage_one_of(tmp_path, PretrainConfig(objective="tracings", epochs=1), said))
    EncoderStage._stage_one(_stage_one_of(tmp_path, PretrainConfig(objective="tracings", epochs=1), said))
    assert "reused" in said[-1], said  # a rerun with the same settings keeps the stored encoder
    EncoderStage._stage_one(_stage_one_of(tmp_path, PretrainConfig(objective="tracings", epochs=2, lr=1e-2), said))
    assert "reused" not in said[-1], f"an encoder trained with other stage-1 settings was reused: {said}"


def test_each_video_s_traced_frames_are_decoded_once_and_together_over_the_epochs(tmp_path, monkeypatch):
    from benchmark.data import tracings

    decoded = []
    read = tracings.Video.read
    monkeypatch.setattr(tracings.Video, "read", lambda video, frames: decoded.append(list(frames)) or read(video, frames))
    dataset = TracedFrames([_traced_item(tmp_path, "a")], ClipsConfig(size=32, augment=True),
                           InputSpec(frames=None, size=32, channels=1), Normalisation((0.0,), (255.0,)), train=True)
    epochs = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        epochs.append([dataset[index][0] for index in range(len(dataset))])
    assert decoded == [[1, 4]]  # one read of the video for both of its traced frames, none in later epochs
    # The cached frame is not changed by the augmentation drawn on it: epoch 0 again gives epoch 0's images.
    dataset.set_epoch(0)
    assert all(torch.equal(dataset[index][0], epochs[0][index]) for index in range(len(dataset)))
