"""Any timm 2-D image model applied to every frame, then pooled over time.

A cheap way to bring image backbones (and ImageNet-style weights a user holds) to video: frames are
encoded independently and the per-frame features are averaged or weighted by a learned attention.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

import torch
from torch import nn

from benchmark.api import InputSpec, LoadReport, load_weights_file
from registry import hookimpl
from registry.errors import did_you_mean

# Whole numbers in timm_args (depth, embed_dim, img_size...). The pre-flight's budget counts the parameters of what
# timm builds on the meta device, but timm acts on some sizes before it builds anything: with depth = 1000000000 it
# makes a billion drop-path rates, one Python float at a time.
LARGEST = 4096


def _integers(value: Any) -> list[int]:
    """The whole numbers in a timm_args value, in lists too (``depths = [2, 2, 6, 2]``)."""
    if isinstance(value, (list, tuple)):
        return [number for item in value for number in _integers(item)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


class AttentionPool(nn.Module):
    """A learned score per frame, softmax over time, weighted sum of frame features."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, frames):  # (B, T, D)
        weights = torch.softmax(self.score(frames), dim=1)
        return (weights * frames).sum(dim=1)


class MeanPool(nn.Module):
    def forward(self, frames):
        return frames.mean(dim=1)


class TimmFrames(nn.Module):
    """A timm 2-D model per frame with mean or attention pooling over time: (B, 3, T, H, W) -> (B, D)."""

    def __init__(self, model: str = "resnet18", pooling: Literal["mean", "attention"] = "mean",
                 size: int = 112, timm_args: Mapping[str, Any] | None = None):
        super().__init__()
        import timm

        for key, problem in self.parameter_problems({"model": model, "pooling": pooling}).items():
            raise ValueError(f"timm encoder, {key}: {problem}")
        # timm_args: extra create_model options, e.g. {drop_path_rate = 0.1}
        self.backbone = timm.create_model(model, pretrained=False, num_classes=0, **(timm_args or {}))
        self.feature_dim = self.backbone.num_features
        self.pool = AttentionPool(self.feature_dim) if pooling == "attention" else MeanPool()
        config = self.backbone.pretrained_cfg or {}
        mean, std = config.get("mean"), config.get("std")
        self.input_spec = InputSpec(
            frames=None, size=size,
            mean=tuple(255 * m for m in mean) if mean else None,
            std=tuple(255 * s for s in std) if std else None,
        )

    @staticmethod
    def parameter_problems(params: Mapping[str, Any]) -> dict[str, str]:
        """What is wrong with ``params`` (by parameter name), asked before anything is built so that
        `validate` catches it: the model name is looked up in timm's own registry, which downloads nothing."""
        import timm

        problems = {}
        model = params.get("model", "resnet18")
        if not timm.is_model(model):
            problems["model"] = (f"timm has no model {model!r}.{did_you_mean(str(model), timm.list_models())} "
                                 "`timm.list_models('pattern*')` lists them.")
        if params.get("pooling", "mean") not in ("mean", "attention"):
            problems["pooling"] = f"must be 'mean' or 'attention', got {params['pooling']!r}"
        timm_args = params.get("timm_args") or {}
        for key, value in timm_args.items() if isinstance(timm_args, Mapping) else ():
            if key == "pretrained":
                problems["timm_args"] = "pretrained: nothing is downloaded; give a local checkpoint as encoder.weights"
            elif any(not 0 <= number <= LARGEST for number in _integers(value)):
                problems["timm_args"] = (f"{key} = {value!r}: every whole number here must be between 0 and {LARGEST} "
                                         "(timm's widths reach 4096, its depths 48)")
        return problems

    def forward(self, clip):
        batch, channels, time = clip.shape[:3]
        frames = clip.transpose(1, 2).reshape(batch * time, channels, *clip.shape[3:])
        return self.pool(self.backbone(frames).view(batch, time, -1))

    def load_weights(self, path: str | Path, strict: bool = True) -> LoadReport:
        """A timm/torchvision image checkpoint for the backbone; its classifier is dropped."""
        return load_weights_file(self.backbone, path, strict=strict,
                                 drop_prefixes=("head.", "fc.", "classifier.", "last_linear."))


@hookimpl
def register_encoders(registry):
    registry.add("timm", TimmFrames, metadata={"cpu_friendly": False})
