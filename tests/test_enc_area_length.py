"""The area_length encoder: its measurements of known cavities, and that stage 1 on tracings alone
(no EF label) teaches it to read the area-length EF of a beating cavity."""
from __future__ import annotations

import math

import pytest
import torch

from benchmark.config import PretrainConfig
from benchmark.device import encoder_precision
from benchmark.encoding.stage1 import pretrain_encoder
from plugins.encoders.area_length import FEATURES, AreaLength

SIZE = 32


def _ellipse_logits(a: float, b: float, side: int) -> torch.Tensor:
    """(side, side) logits, +20 inside the ellipse of semi-axes a (x) and b (y) centred in the frame."""
    grid = (torch.arange(side) + 0.5) / side
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    return torch.where(((x - 0.5) / a) ** 2 + ((y - 0.5) / b) ** 2 <= 1, 20.0, -20.0)


def test_measures_a_known_cavity_by_area_length():
    encoder = AreaLength(width=4, size=128).eval()
    diastole, systole = (0.2, 0.4), (0.14, 0.36)  # semi-axes (across, along) as fractions of the frame
    frames = [_ellipse_logits(*diastole, 64), _ellipse_logits(*systole, 64)]
    encoder.segment = lambda images: torch.stack([frames[i % 2] for i in range(len(images))])[:, None]
    features = dict(zip(FEATURES, encoder(torch.zeros(1, 1, 2, 128, 128))[0].tolist()))

    def volume(a, b):  # area-length on the ellipse: A = pi a b, L = 2 b
        return (math.pi * a * b) ** 2 / (2 * b)

    assert features["ef_area_length"] == pytest.approx(1 - volume(*systole) / volume(*diastole), abs=0.01)
    assert features["log_area_max"] == pytest.approx(math.log(100 * math.pi * 0.2 * 0.4), abs=0.02)
    assert features["log_length_max"] == pytest.approx(math.log(100 * 0.8), abs=0.02)
    assert features["uncertain_max"] < 1e-6  # a crisp map has no uncertain cavity
    # Either half of a symmetric cavity, mirrored, is the whole cavity.
    assert features["ef_left_half"] == pytest.approx(features["ef_area_length"], abs=0.01)
    assert features["ef_right_half"] == pytest.approx(features["ef_area_length"], abs=0.01)


def test_halves_tell_a_still_wall_from_a_moving_one():
    # The right half keeps its end-diastolic outline (akinetic wall) while the left half contracts.
    encoder = AreaLength(width=4, size=128).eval()
    grid = (torch.arange(64) + 0.5) / 64
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    diastole = ((x - 0.5) / 0.2) ** 2 + ((y - 0.5) / 0.4) ** 2 <= 1
    systole = torch.where(x < 0.5, ((x - 0.5) / 0.12) ** 2 + ((y - 0.5) / 0.4) ** 2 <= 1, diastole)
    frames = [torch.where(mask, 20.0, -20.0) for mask in (diastole, systole)]
    encoder.segment = lambda images: torch.stack([frames[i % 2] for i in range(len(images))])[:, None]
    features = dict(zip(FEATURES, encoder(torch.zeros(1, 1, 2, 128, 128))[0].tolist()))
    assert features["ef_right_half"] < 0.02  # still
    # 1 - (0.12 / 0.2)^2 = 0.64 for the left half alone; the clip's axis sits a little right of the
    # diastolic one, so the left half takes in a sliver of the still wall.
    assert 0.55 < features["ef_left_half"] < 0.68
    assert features["ef_left_half"] > features["ef_area_length"] > features["ef_right_half"]


def test_shapes_gradients_and_input_checks():
    encoder = AreaLength(width=4, size=SIZE)
    assert encoder.input_spec.channels == 1 and encoder.feature_dim == len(FEATURES) == 15
    clip = torch.randn(2, 1, 5, SIZE, SIZE)
    features = encoder(clip)
    assert features.shape == (2, 15) and torch.isfinite(features).all()
    features.sum().backward()
    assert encoder.fine[0].weight.grad.abs().sum() > 0
    assert encoder.segment(torch.randn(3, 1, SIZE, SIZE)).shape == (3, 1, SIZE // 2, SIZE // 2)
    assert torch.isfinite(AreaLength(width=4, size=SIZE).eval()(torch.randn(1, 1, 1, SIZE, SIZE))).all()
    with pytest.raises(ValueError, match="32-pixel"):
        encoder(torch.randn(1, 1, 2, 48, 48))
    with pytest.raises(ValueError, match="smooth"):
        AreaLength(smooth=2)


def _disc_frames(radius: torch.Tensor, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark discs of ``radius`` (fraction of the frame) on speckled bright tissue, and their masks."""
    axis = (torch.arange(size) + 0.5) / size - 0.5
    distance = (axis[None, :] ** 2 + axis[:, None] ** 2).sqrt()
    mask = (distance < radius.reshape(*radius.shape, 1, 1)).float()
    tissue = 1 + 0.3 * torch.randn(mask.shape, generator=torch.Generator().manual_seed(0))
    return (1 - mask) * tissue - 0.5, mask


def test_tracings_alone_teach_it_the_ejection_fraction():
    torch.manual_seed(0)
    radius = 0.12 + 0.22 * torch.rand(256)
    frames, masks = _disc_frames(radius)
    batches = [(frames[i:i + 32, None], masks[i:i + 32, None]) for i in range(0, 256, 32)]
    encoder = AreaLength(width=8, size=SIZE)
    config = PretrainConfig(objective="tracings", epochs=12, lr=1e-2)
    history = pretrain_encoder(encoder, batches, config, torch.device("cpu"), seed=0, progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0] and set(history) == {"loss", "bce", "dice"}

    # Beating discs never traced: EF by area-length of a disc is 1 - (r_min / r_max)^3 (V ~ A^2 / L ~ r^3).
    r_max = 0.26 + 0.08 * torch.rand(24)
    ratio = 0.55 + 0.4 * torch.rand(24)
    swing = 0.5 * (1 + torch.cos(2 * math.pi * torch.arange(8) / 8))
    clips, _ = _disc_frames(r_max[:, None] * (ratio[:, None] + (1 - ratio[:, None]) * swing))
    ef = encoder(clips[:, None])[:, FEATURES.index("ef_area_length")]
    assert (ef - (1 - ratio ** 3)).abs().mean() < 0.06


def test_bfloat16_convolutions_still_give_float32_logits_and_measures():
    # [encoder] precision = "bfloat16": the convolutions run in bfloat16, the cavity sums in float32.
    encoder = AreaLength(width=4, size=SIZE).eval()
    clip = torch.rand(2, 1, 4, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = encoder(clip)
        with encoder_precision(torch.device("cpu"), "bfloat16"):
            logits, rounded = encoder.segment(clip[:, :, 0]), encoder(clip)
    assert logits.dtype == rounded.dtype == torch.float32
    assert not torch.equal(exact, rounded)  # the convolutions did run in bfloat16
    assert torch.allclose(exact, rounded, rtol=0.05, atol=0.02), (exact - rounded).abs().max()
