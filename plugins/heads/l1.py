"""Point regression trained with absolute error."""
from __future__ import annotations

from torch.nn import functional as F

from benchmark.api import TRUNK_SEARCH_SPACE, PointHead
from registry import hookimpl


class L1Head(PointHead):
    """Point regression with absolute error (predicts the conditional median)."""

    criterion = staticmethod(F.l1_loss)


@hookimpl
def register_heads(registry):
    registry.add("l1", L1Head, metadata={"probabilistic": False}, search_space=TRUNK_SEARCH_SPACE)
