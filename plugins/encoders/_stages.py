"""The rule on the size of the CNN encoders whose stages each halve the frame and double the width."""
from __future__ import annotations

from benchmark.api import range_problems

# The last stage's channels: ResNet-50's widest (2048). Depth: 9 halvings bring the largest clips.size (512) to one
# pixel. feature_dim: the head's input, 4x the 512 of R(2+1)D and UniFormer-S.
WIDEST = 2048
RANGES = {"width": (1, WIDEST), "depth": (1, 10), "feature_dim": (1, 2048)}


def stage_problems(params: dict, width: int, depth: int, ranges: dict | None = None) -> dict[str, str]:
    """``params`` outside ``RANGES`` and ``ranges``, or with ``width * 2 ** (depth - 1)`` channels in the last stage
    above ``WIDEST`` (``width`` and ``depth``: the encoder's defaults). Ranges first: 2 ** 1000000000 would hang."""
    problems = range_problems(params, {**RANGES, **(ranges or {})})
    width, depth = params.get("width", width), params.get("depth", depth)
    if not problems and width * 2 ** (depth - 1) > WIDEST:
        problems["depth" if "depth" in params else "width"] = (
            f"width {width} doubled over {depth} stages gives {width * 2 ** (depth - 1)} channels in the last; "
            f"at most {WIDEST}")
    return problems
