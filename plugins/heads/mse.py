"""Point regression trained with mean squared error."""
from __future__ import annotations

from torch.nn import functional as F

from benchmark.api import TRUNK_SEARCH_SPACE, PointHead
from registry import hookimpl


class MSEHead(PointHead):
    """Point regression with mean squared error (predicts the conditional mean)."""

    criterion = staticmethod(F.mse_loss)


@hookimpl
def register_heads(registry):
    registry.add("mse", MSEHead, metadata={"probabilistic": False}, search_space=TRUNK_SEARCH_SPACE)
