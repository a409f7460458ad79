"""The frame_pool encoder: shapes, gradients, registration, and that it learns an area ratio from motion."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from plugins.encoders.frame_pool import FramePool


def _pulsing_discs(count: int, frames: int = 8, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of a dark disc on a bright background whose radius swings between r_max and r_min over one
    cycle; the target is the area ratio 1 - (r_min / r_max)^2, an EF of the disc. The phase is random,
    so the ratio can only be read from the temporal extremes, not from any one frame."""
    generator = torch.Generator().manual_seed(seed)
    r_max = 0.25 + 0.15 * torch.rand(count, generator=generator)
    ratio = 0.3 + 0.5 * torch.rand(count, generator=generator)  # r_min / r_max
    phase = 2 * torch.pi * torch.rand(count, generator=generator)
    time = torch.arange(frames) / frames
    swing = 0.5 * (1 + torch.cos(2 * torch.pi * time[None] + phase[:, None]))  # 1 at the largest, 0 at the smallest
    radius = r_max[:, None] * (ratio[:, None] + (1 - ratio[:, None]) * swing)  # (count, frames)
    axis = torch.linspace(-0.5, 0.5, size)
    distance = (axis[None, :] ** 2 + axis[:, None] ** 2).sqrt()  # (size, size)
    inside = torch.sigmoid((radius[..., None, None] - distance) * 60)  # soft edge
    clips = (1 - inside).unsqueeze(1)  # (count, 1, frames, size, size)
    return clips, 1 - ratio ** 2


def test_shapes_and_input_spec():
    encoder = FramePool(width=4, depth=2, descriptors=6, feature_dim=10, size=32)
    assert encoder.input_spec.channels == 1 and encoder.input_spec.size == 32
    features = encoder(torch.randn(3, 1, 5, 32, 32))
    assert features.shape == (3, 10) and torch.isfinite(features).all()
    assert encoder.frame_descriptors(torch.randn(3, 1, 5, 32, 32)).shape == (3, 5, 6)


def test_single_frame_clip_is_finite():
    encoder = FramePool(width=4, depth=1, descriptors=3, feature_dim=5, size=16).eval()
    assert torch.isfinite(encoder(torch.randn(2, 1, 1, 16, 16))).all()


def test_three_channel_variant():
    encoder = FramePool(width=4, depth=1, descriptors=3, feature_dim=5, size=16, channels=3)
    assert encoder(torch.randn(2, 3, 4, 16, 16)).shape == (2, 5)


def test_every_parameter_gets_a_gradient():
    encoder = FramePool(width=4, depth=2, descriptors=4, feature_dim=8, size=16)
    encoder(torch.randn(4, 1, 6, 16, 16)).square().sum().backward()
    missing = [name for name, parameter in encoder.named_parameters() if parameter.grad is None
               or not torch.isfinite(parameter.grad).all() or parameter.grad.abs().sum() == 0]
    assert not missing


def test_frame_order_matters_only_through_the_pooled_statistics():
    """Pooling over time is symmetric: reversing the frames leaves the feature unchanged."""
    encoder = FramePool(width=4, depth=2, descriptors=4, feature_dim=8, size=16).eval()
    clip = torch.randn(2, 1, 6, 16, 16)
    torch.testing.assert_close(encoder(clip), encoder(clip.flip(2)))


def test_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="frame_pool"):
        FramePool(width=0)


def test_learns_an_area_ratio_from_a_few_hundred_clips():
    torch.manual_seed(0)
    clips, target = _pulsing_discs(256)
    test_clips, test_target = _pulsing_discs(128, seed=1)
    encoder = FramePool(width=4, depth=2, descriptors=8, feature_dim=16, size=32)
    readout = torch.nn.Linear(16, 1)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *readout.parameters()], lr=1e-2)
    mean, std = target.mean(), target.std()
    for _ in range(25):
        for index in torch.randperm(len(clips)).split(32):
            loss = torch.nn.functional.l1_loss(readout(encoder(clips[index])).squeeze(-1), (target[index] - mean) / std)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    encoder.eval()
    with torch.no_grad():
        predicted = readout(encoder(test_clips)).squeeze(-1) * std + mean
    error = (predicted - test_target).abs().mean()
    spread = (test_target - target.mean()).abs().mean()  # error of always predicting the mean
    assert error < 0.25 * spread


def test_training_statistics_for_a_grey_encoder_from_colour_video(tmp_path):
    """``normalise = "dataset"`` with a one-channel encoder averages the AVI's three channels to grey."""
    from fakedata import write_avi

    from benchmark.contracts import Item
    from benchmark.data.clips import channel_statistics

    frames = np.full((4, 16, 16), 100, dtype=np.uint8)
    frames[:, :8] = 200  # half the pixels at 200, half at 100: mean 150, std 50
    video = write_avi(tmp_path / "a.avi", frames)
    statistics = channel_statistics([Item("a", "p", 50.0, video, "TRAIN")], channels=1)
    assert len(statistics.mean) == 1
    assert statistics.mean[0] == pytest.approx(150, abs=3)
    assert statistics.std[0] == pytest.approx(50, abs=3)


def test_frames_of_another_size_are_refused_with_the_built_size():
    encoder = FramePool(width=4, depth=2, descriptors=3, feature_dim=5, size=32)
    with pytest.raises(ValueError, match="32-pixel"):
        encoder(torch.randn(1, 1, 2, 48, 48))
