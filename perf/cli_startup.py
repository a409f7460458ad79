"""Start-up cost of the CLI: ``import benchmark`` and ``python -m benchmark list``, apart from torch.

The target is under 3 s for both apart from importing torch itself (which every run needs anyway), so
each measurement imports torch first and then times the rest in the same fresh interpreter.
Each figure is the median of several fresh starts.
"""
from __future__ import annotations

import statistics
import subprocess
import sys

REPEATS = 5
TIMED = """
import contextlib, io, time
import torch
start = time.perf_counter()
{body}
print(time.perf_counter() - start)
"""


def seconds(body: str) -> float:
    runs = [float(subprocess.run([sys.executable, "-c", TIMED.format(body=body)], check=True,
                                 capture_output=True, text=True).stdout.split()[-1]) for _ in range(REPEATS)]
    return statistics.median(runs)


def main() -> None:
    torch_import = float(subprocess.run(
        [sys.executable, "-c", "import time; s = time.perf_counter(); import torch; print(time.perf_counter() - s)"],
        check=True, capture_output=True, text=True).stdout)
    package = seconds("import benchmark, benchmark.cli, registry")
    listing = seconds("from benchmark.cli import main\n"
                      "with contextlib.redirect_stdout(io.StringIO()):\n    main(['list'])")
    print(f"import torch (not counted)          {torch_import:6.2f} s")
    print(f"import benchmark, cli, registry     {package:6.2f} s")
    print(f"benchmark list (all plugins loaded) {listing:6.2f} s")


if __name__ == "__main__":
    main()
