"""What every figure shares: one colour per model, the EF axis range, short item labels, PNG output.

matplotlib is imported on first use with the non-interactive Agg backend, so headless machines and
commands that never plot do not pay for it.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from benchmark.evaluation.leaderboard import EF_RANGE
from benchmark.store import atomic_write_bytes

ORACLE_COLOUR = "black"  # the oracle posterior and the true EF: never a model's colour (the palettes have none)
LABEL_LENGTH = 16
DPI = 110  # of every PNG


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def model_colours(models: Sequence[str]) -> dict[str, tuple]:
    """A colour per model in leaderboard order, the same in every figure of a run: tab10, or tab20 past ten."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(models) <= 10 else "tab20"].colors
    return {model: palette[index % len(palette)] for index, model in enumerate(models)}


def short_label(item_id: str, length: int = LABEL_LENGTH) -> str:
    """The end of an id (where file names differ), so that panel titles stay on one line."""
    item_id = str(item_id)
    return item_id if len(item_id) <= length else "…" + item_id[-(length - 1):]


def outside_range(values) -> int:
    """How many values lie outside ``EF_RANGE`` (drawn nowhere, counted in the panel instead)."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    return int(((values < EF_RANGE[0]) | (values > EF_RANGE[1])).sum())


def grid_of(count: int, columns: int = 4) -> tuple[int, int]:
    """(rows, columns) of small multiples for ``count`` panels."""
    columns = max(1, min(count, columns))
    return -(-count // columns), columns


def save(figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    # Every figure is laid out by constrained layout when drawn, so it is drawn once: bbox_inches="tight" would
    # measure every text and tick a second time, which was half of the report's time; and savefig draws a figure
    # with a layout engine twice (once with rendering off, to lay it out, then to render it), where the Agg
    # canvas lays it out and renders it in one draw, to the same bytes.
    figure.set_dpi(DPI)
    figure.canvas.print_png(buffer)
    pyplot().close(figure)
    return atomic_write_bytes(path, buffer.getvalue())
