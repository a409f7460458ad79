"""How much faster do N workers sharing one storage finish an experiment than one worker?

Generates the experiment's data once, then runs the whole experiment twice from a clean temporary
folder, each time with a fresh sqlite storage: one ``run`` worker, then ``--workers`` workers started
together (each with its own run directory, as on separate machines). The machine's cores are split
evenly between the workers (OMP_NUM_THREADS), so both configurations use the same hardware. Prints both
wall times and the speed-up. Every worker repeats the encoder stage of the (split, seed) pairs it
works on; tuning trials and the final jobs are what the workers share.

    python perf/workers.py [--experiment experiments/quick.toml] [--workers 2] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare(experiment: Path, overrides: list[str]) -> None:
    from benchmark.components import resolve
    from benchmark.config import load_experiment
    from benchmark.data.prepare import load_data

    resolved = resolve(load_experiment(experiment, overrides))
    load_data(resolved.experiment, resolved.registry, say=lambda _: None)


def run_workers(experiment: Path, overrides: list[str], workers: int, folder: Path) -> float:
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    sets = [item for value in overrides for item in ("--set", value)]
    storage = f"sqlite:///{folder / 'storage.db'}"
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "benchmark", "run", str(experiment), *sets, "--quiet",
                                   "--out", str(folder / f"worker{index}"), "--storage", storage],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for index in range(workers)]
    failures = [process.communicate()[1][-2000:] for process in processes if process.wait() != 0]
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} of {workers} workers failed:\n" + "\n".join(failures))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=str(ROOT / "experiments" / "quick.toml"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    experiment = Path(args.experiment).resolve()
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        overrides = [f'synthetic.root="{base / "data"}"', *args.overrides]
        prepare(experiment, overrides)
        times = {}
        for count in (1, args.workers):
            folder = base / f"{count}-workers"
            folder.mkdir()
            times[count] = run_workers(experiment, overrides, count, folder)
            print(f"{count} worker(s): {times[count]:.1f} s", flush=True)
    print(f"speed-up of {args.workers} workers over 1 on {experiment.name} ({os.cpu_count()} cores): "
          f"{times[1] / times[args.workers]:.2f}x")


if __name__ == "__main__":
    main()
