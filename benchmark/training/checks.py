"""Checks on what a head returns: a clear error naming the head instead of a broken tensor downstream."""
from __future__ import annotations

from typing import Any

import torch

from benchmark.errors import BenchmarkError


class HeadError(BenchmarkError):
    """A head misbehaved: a NaN loss, or samples / closed forms of the wrong shape or not finite."""


def checked(name: str, what: str, value: Any, shape: tuple[int, ...], finite: bool) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise HeadError(f"head {name!r}: {what} returned {type(value).__name__}, expected a tensor of shape {shape}")
    if tuple(value.shape) != shape:
        raise HeadError(f"head {name!r}: {what} returned shape {tuple(value.shape)}, expected {shape}")
    bad = ~torch.isfinite(value) if finite else torch.isnan(value)
    if bool(bad.any()):
        kind = "non-finite" if finite else "NaN"
        raise HeadError(f"head {name!r}: {what} returned {int(bad.sum())} {kind} value(s) of {value.numel()}")
    return value


def check_loss(name: str, loss: Any, epoch: int, step: int) -> None:
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise HeadError(f"head {name!r}: loss(condition, target) must return a scalar tensor, got {shape}")
    if not torch.isfinite(loss):
        raise HeadError(f"head {name!r}: training loss is {float(loss.detach())} at epoch {epoch}, batch {step + 1}. "
                        "Lower train.lr, tighten train.grad_clip or check the head's loss.")
