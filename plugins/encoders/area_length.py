"""An encoder that segments the LV in every frame and measures it over the cycle, for EF by area-length.

Clinical EF from an apical view is 1 - ESV / EDV with V = 8 A^2 / (3 pi L) (A the cavity area, L its
long axis). So each frame goes through a small fully convolutional net (a half-resolution branch for
the endocardial edge, a coarser branch for the context that tells the LV from the other dark chambers,
joined as in a U-Net) that outputs the LV cavity probability. From that map it measures the area, the
long axis (from the second moments) and the volume index log V = 2 log A - log L, plus how much of the
cavity is uncertain (a shadowed or dropped-out wall leaves a fuzzy edge), for the whole cavity and for
each half beside the long axis (a shadow spoils one half; the other still shows how the heart
contracts). The feature is a fixed set of statistics of these over the clip: the extremes of log V give
end-diastole and end-systole and their gap the area-length EF, so the heads start from a quantity that
is EF up to calibration.

The segmentation is what stage 1 trains, with ``objective = "tracings"`` on the traced ED/ES frames;
the statistics have no parameters, so the features are exactly what the segmentation measures.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.api import InputSpec, LoadReport, load_weights_file, range_problems
from registry import hookimpl

FEATURES = ("ef_area_length", "log_volume_max", "log_volume_min", "log_volume_mean", "log_volume_std",
            "log_area_max", "log_area_min", "log_length_max", "log_length_min", "uncertain_mean", "uncertain_max",
            "ef_left_half", "uncertain_left_mean", "ef_right_half", "uncertain_right_mean")
FLOOR = 1e-3  # percent of the frame: keeps logarithms finite when a frame shows no cavity
# width: 16 by default, the coarse branch twice that; 512 makes it 1024, the original U-Net's widest layer.
# channels: a frame is grey (1) or colour (3), all a video gives.
RANGES = {"width": (1, 512), "channels": (1, 3)}


def _conv(have: int, out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(have, out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]


class AreaLength(nn.Module):
    """Per-frame LV segmentation -> area, long axis, volume index -> statistics over time: (B, C, T, H, W) -> (B, 15)."""

    def __init__(self, width: int = 16, size: int = 112, channels: int = 1, smooth: int = 1):
        super().__init__()
        if min(width, size, channels) < 1:
            raise ValueError(f"area_length: width, size and channels must be positive, got {width}, {size}, {channels}")
        if smooth < 1 or smooth % 2 == 0:
            raise ValueError(f"area_length: smooth must be an odd number of frames (1 = off), got {smooth}")
        self.feature_dim = len(FEATURES)
        self.smooth = smooth
        # Grey input: echo is grey, and one channel is a third of the first layer's work.
        self.input_spec = InputSpec(frames=None, size=size, channels=channels)
        # The map is predicted at half resolution: a speckle cell spans about two pixels at 112 px, and
        # full-resolution layers would cost four times as much for little gain in the measured area.
        self.fine = nn.Sequential(*_conv(channels, width, 2), *_conv(width, width))
        self.coarse = nn.Sequential(*_conv(width, 2 * width, 2), *_conv(2 * width, 2 * width),
                                    *_conv(2 * width, 2 * width, 2), *_conv(2 * width, 2 * width))
        self.logits = nn.Conv2d(3 * width, 1, 1)
        # Channels-last (NHWC) weights make every activation NHWC too, the layout oneDNN's CPU convolutions
        # run fastest with few channels: 1.4x a training step and 2x a feature pass on one thread, measured.
        self.to(memory_format=torch.channels_last)

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        return range_problems(params, RANGES)

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) frames -> (N, 1, H/2, W/2) float32 logits of the LV cavity."""
        fine = self.fine(images.contiguous(memory_format=torch.channels_last))
        coarse = F.interpolate(self.coarse(fine), size=fine.shape[-2:], mode="bilinear", align_corners=False)
        # float32 even where the convolutions ran in bfloat16 ([encoder] precision): the measures sum
        # thousands of cavity probabilities, which bfloat16's 8 bits would round to a few per cent.
        return self.logits(torch.cat([fine, coarse], dim=1)).float()

    def frame_measures(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, T, 8) per frame: log area (% of the frame), log long axis (% of its side),
        log V, uncertain share of the cavity, then log V and uncertain share of each half of the cavity
        beside the clip's long axis (image-left half first)."""
        batch, channels, time, height, width = clip.shape
        if (height, width) != (self.input_spec.size,) * 2:
            raise ValueError(f"area_length was built for {self.input_spec.size}-pixel frames, got {height}x{width}")
        probability = torch.sigmoid(self.segment(clip.transpose(1, 2).reshape(batch * time, channels, height, width)))
        probability = probability[:, 0]
        side = probability.shape[-1]
        grid = (torch.arange(side, dtype=probability.dtype, device=probability.device) + 0.5) / side
        _, _, major, _ = _principal_axis(probability, grid)
        # A uniform ellipse with semi-axis b has variance b^2 / 4 along it: the long axis 2b is 4 sqrt(variance).
        log_length = torch.log(100.0 * 4.0 * major.clamp_min(0).sqrt() + FLOOR)
        # The long axis splits the cavity into the septal and the lateral half. An occluded wall spoils
        # one half only, so each half's own volume index (of the mirror-symmetric cavity) keeps what the
        # other half shows. The axis is the clip's (of the mean map), so that a wall that stands still
        # keeps its half's area; it is oriented downwards, so "left" is the same side in every video.
        centre_y, centre_x, _, (axis_x, axis_y) = _principal_axis(probability.view(batch, time, side, side).mean(1), grid)
        across = ((grid[None, :] - centre_x[:, None, None]) * axis_y[:, None, None]
                  - (grid[:, None] - centre_y[:, None, None]) * axis_x[:, None, None])
        left = (across < 0).to(probability.dtype).repeat_interleave(time, dim=0)
        log_area, uncertain = _area_and_uncertainty(probability)
        measures = [log_area, log_length, 2 * log_area - log_length, uncertain]
        for half in (left, 1 - left):
            log_area, uncertain = _area_and_uncertainty(probability * half, mirrored=True)
            measures += [2 * log_area - log_length, uncertain]
        return torch.stack(measures, dim=-1).view(batch, time, -1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        measures = self.frame_measures(clip)
        if self.smooth > 1:
            measures = F.avg_pool1d(measures.transpose(1, 2), self.smooth, stride=1, padding=self.smooth // 2,
                                    count_include_pad=False).transpose(1, 2)
        log_area, log_length, log_volume, uncertain, left_volume, left_uncertain, right_volume, right_uncertain = \
            measures.unbind(-1)
        top, bottom = log_volume.amax(1), log_volume.amin(1)
        # std over a single frame is undefined; zero is its limit for a static clip.
        spread = log_volume.std(1) if log_volume.shape[1] > 1 else torch.zeros_like(top)
        return torch.stack([_ejection(log_volume), top, bottom, log_volume.mean(1), spread,
                            log_area.amax(1), log_area.amin(1), log_length.amax(1), log_length.amin(1),
                            uncertain.mean(1), uncertain.amax(1), _ejection(left_volume), left_uncertain.mean(1),
                            _ejection(right_volume), right_uncertain.mean(1)], dim=1)

    def load_weights(self, path: str | Path, strict: bool = True) -> LoadReport:
        return load_weights_file(self, path, strict=strict)


def _area_and_uncertainty(probability: torch.Tensor, mirrored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Log area (% of the frame; of the half and its mirror image when ``mirrored``) of (N, S, S) cavity
    maps, and the share of that cavity mass that is uncertain (p (1 - p))."""
    mass = probability.sum((-2, -1))
    share = (2.0 if mirrored else 1.0) * mass / probability[0].numel()
    uncertain = (probability * (1 - probability)).sum((-2, -1)) / (mass + 1e-6)
    return torch.log(100.0 * share + FLOOR), uncertain


def _principal_axis(maps: torch.Tensor, grid: torch.Tensor):
    """Centroid (y, x), major-axis variance and the unit major axis (x, y) pointing down, of (N, S, S) maps."""
    weight = maps / (maps.sum((-2, -1), keepdim=True) + 1e-6)
    y, x = grid[:, None], grid[None, :]
    mean_y, mean_x = (weight * y).sum((-2, -1)), (weight * x).sum((-2, -1))
    dy, dx = y - mean_y[:, None, None], x - mean_x[:, None, None]
    var_y, var_x = (weight * dy ** 2).sum((-2, -1)), (weight * dx ** 2).sum((-2, -1))
    cov = (weight * dy * dx).sum((-2, -1))
    major = (var_y + var_x) / 2 + (((var_y - var_x) / 2) ** 2 + cov ** 2 + 1e-12).sqrt()
    angle = 0.5 * torch.atan2(2 * cov, var_x - var_y)
    down = torch.where(torch.sin(angle) < 0, -1.0, 1.0)
    return mean_y, mean_x, major, (down * torch.cos(angle), down * torch.sin(angle))


def _ejection(log_volume: torch.Tensor) -> torch.Tensor:
    """1 - V_min / V_max over the clip from (B, T) log volumes: the area-length EF as a fraction."""
    return 1 - torch.exp(log_volume.amin(1) - log_volume.amax(1))


@hookimpl
def register_encoders(registry):
    registry.add("area_length", AreaLength, metadata={"cpu_friendly": True})
