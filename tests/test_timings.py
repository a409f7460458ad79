"""Wall time per stage: recorded in pipeline order, parts per seed, written by every run."""
from __future__ import annotations

import json

from benchmark.orchestration.timings import TIMINGS_FILE, StageTimes


def test_stages_are_summed_by_part_and_listed_in_pipeline_order():
    times = StageTimes()
    times.add("report", 2.0)
    times.add("stage 1", 10.0, "seed 1")
    times.add("stage 1", 12.0, "seed 0")
    times.add("stage 1", 1.0, "seed 0")
    with times.measure_parallel("encoder stages in 2 processes"):
        pass
    record = times.record()
    assert list(record["stages"]) == ["stage 1", "report"]
    assert record["stages"]["stage 1"] == {"seconds": 23.0, "parts": {"seed 1": 10.0, "seed 0": 13.0}}
    assert set(record["parallel"]) == {"encoder stages in 2 processes"}
    assert times.summary().startswith("time per stage: stage 1 23.0 s (seed 1 10.0, seed 0 13.0); report 2.0 s; ")


def test_a_run_writes_its_timings(reference_run):
    record = json.loads((reference_run / TIMINGS_FILE).read_text())
    stages = record["stages"]
    for stage in ("data", "stage 1", "features", "training", "evaluation", "report"):
        assert stages[stage]["seconds"] >= 0, stage
    assert set(stages["training"]["parts"]) == {"seed 0"}
    assert record["total"] >= sum(figures["seconds"] for figures in stages.values()) - 0.5
