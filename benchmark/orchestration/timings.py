"""Wall time per stage of one ``run`` invocation, written to ``timings.json`` in the run directory and said
in one line at the end, so that where the time goes is measured rather than guessed (``perf/end_to_end.py``
prints it).

Stages are named in pipeline order (``STAGES``); a stage may be split into parts, such as one per seed.
Parts that ran in parallel processes overlap, so a stage's parts can sum to more than the wall time it
held the run; ``parallel`` records the wall time of such a block.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TIMINGS_FILE = "timings.json"
STAGES = ("data", "stage 1", "features", "tuning", "training", "evaluation", "report")


class StageTimes:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, dict[str, float]] = {}
        self.parallel: dict[str, float] = {}

    def add(self, stage: str, seconds: float, part: str = "") -> None:
        parts = self.seconds.setdefault(stage, {})
        parts[part] = parts.get(part, 0.0) + seconds

    @contextmanager
    def measure(self, stage: str, part: str = "") -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started, part)

    @contextmanager
    def measure_parallel(self, block: str) -> Iterator[None]:
        """The wall time of a block whose parts run in parallel processes (their own seconds are added)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.parallel[block] = self.parallel.get(block, 0.0) + time.perf_counter() - started

    def record(self) -> dict[str, Any]:
        """What ``timings.json`` holds: per stage its total and parts (rounded to 0.1 s), the wall time of
        parallel blocks and of the whole invocation."""
        stages = {}
        for stage in sorted(self.seconds, key=_order):
            parts = self.seconds[stage]
            stages[stage] = {"seconds": round(sum(parts.values()), 1),
                             "parts": {part: round(value, 1) for part, value in parts.items() if part}}
        return {"stages": stages, "parallel": {name: round(value, 1) for name, value in self.parallel.items()},
                "total": round(time.perf_counter() - self.started, 1)}

    def summary(self) -> str:
        record = self.record()
        said = []
        for stage, figures in record["stages"].items():
            parts = ", ".join(f"{part} {value:.1f}" for part, value in figures["parts"].items())
            said.append(f"{stage} {figures['seconds']:.1f} s" + (f" ({parts})" if parts else ""))
        said += [f"{name} {value:.1f} s wall" for name, value in record["parallel"].items()]
        return f"time per stage: {'; '.join(said)}; total {record['total']:.1f} s"


def _order(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else len(STAGES)
