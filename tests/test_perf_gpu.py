"""perf/gpu.py runs its tiny configuration on the CPU: the paper configuration's code path, as a smoke test."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "perf" / "gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script measures the paper configuration")
def test_the_gpu_script_runs_its_tiny_configuration_on_the_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--steps", "1"], capture_output=True, text=True, timeout=120, check=False,
                          cwd=REPOSITORY, env=dict(os.environ, PYTHONPATH=str(REPOSITORY)))
    assert done.returncode == 0, done.stderr
    assert "CPU (smoke test, tiny configuration)" in done.stdout
    for figure in ("feature extraction", "stage-1 training"):
        rate = re.search(rf"{figure}\s+([0-9.]+) clips/s", done.stdout)
        assert rate and float(rate.group(1)) > 0, done.stdout
    assert re.search(r"sampling \(K = 5\)\s+[0-9.]+ s per 1000 items", done.stdout), done.stdout
