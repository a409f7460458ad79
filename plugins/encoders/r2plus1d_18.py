"""R(2+1)D-18: the EchoNet-Dynamic baseline encoder (torchvision's video ResNet, 31 M parameters).

Weights come from a local file only: EchoNet-Dynamic's released checkpoint (``{'state_dict': ...}``
saved from DataParallel, keys with ``module.``, a 1-output ``fc``) or a torchvision-format state dict
(Kinetics-400, 400-way ``fc``). The ``fc`` head is dropped and reported either way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import nn

from benchmark.api import InputSpec, LoadReport, load_weights_file
from registry import hookimpl

# torchvision's Kinetics-400 statistics on the 0-255 scale; EchoNet normalises with statistics of the
# training videos instead, which the benchmark computes ("dataset").
KINETICS_MEAN = (0.43216 * 255, 0.394666 * 255, 0.37645 * 255)
KINETICS_STD = (0.22803 * 255, 0.22145 * 255, 0.216989 * 255)


class R2Plus1D18(nn.Module):
    """R(2+1)D-18 video ResNet (EchoNet-Dynamic baseline): clip (B, 3, T, H, W) -> (B, 512)."""

    feature_dim = 512

    def __init__(self, normalisation: Literal["dataset", "kinetics"] = "dataset", size: int = 112):
        super().__init__()
        from torchvision.models.video import r2plus1d_18

        if normalisation not in ("dataset", "kinetics"):
            raise ValueError(f"r2plus1d_18: normalisation must be 'dataset' or 'kinetics', got {normalisation!r}")
        kinetics = normalisation == "kinetics"
        self.input_spec = InputSpec(frames=None, size=size, mean=KINETICS_MEAN if kinetics else None,
                                    std=KINETICS_STD if kinetics else None)
        self.net = r2plus1d_18(weights=None)
        self.net.fc = nn.Identity()  # the regression or classification layer belongs to the head

    def forward(self, clip):
        return self.net(clip)

    def load_weights(self, path: str | Path, strict: bool = True) -> LoadReport:
        """EchoNet-Dynamic ``r2plus1d_18_32_2_pretrained.pt`` or a torchvision state dict."""
        return load_weights_file(self.net, path, strict=strict)


@hookimpl
def register_encoders(registry):
    registry.add("r2plus1d_18", R2Plus1D18, metadata={"feature_dim": R2Plus1D18.feature_dim, "cpu_friendly": False})
