"""How much faster do N workers sharing one storage finish an experiment than one worker?

Generates the experiment's data once, then runs the whole experiment twice from a clean temporary
folder, each time with a fresh sqlite storage: one ``run`` worker, then ``--workers`` workers started
together (each with its own run directory; they share encoder stages through those run folders, as
workers on one machine do without --artifacts). Every process runs on ``--threads`` threads
(OMP_NUM_THREADS, default 1), with ``--seeds`` seeds (default 2). Prints both wall times, the speed-up,
whether the two configurations wrote the same leaderboard, and the load average before and after (the
figures mean little on a busy machine). From the one worker's ``timings.json`` it also prints how far N
workers could speed it up at best: stage 1, features, tuning, training and evaluation are divided among
workers, while every worker pays the rest itself (interpreter and torch start-up, the data index, the storage,
the pre-flight, the report), so the speed-up is at most wall / (rest + divided / N) (Amdahl's law; optimistic:
it assumes the divided work splits evenly and every worker has a core). A worker on a storage runs as one
process (``encoder.workers`` and ``train.workers`` apply to a run without one), so its stage seconds add up.

    python perf/workers.py [--experiment experiments/quick.toml] [--workers 2] [--seeds 2] [--threads 1]
                           [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmark.orchestration.timings import TIMINGS_FILE

ROOT = Path(__file__).resolve().parents[1]
DIVIDED = ("stage 1", "features", "tuning", "training", "evaluation")  # the stages workers divide among them


def prepare(experiment: Path, overrides: list[str]) -> None:
    from benchmark.components import resolve
    from benchmark.config import load_experiment
    from benchmark.data.prepare import load_data

    resolved = resolve(load_experiment(experiment, overrides))
    load_data(resolved.experiment, resolved.registry, say=lambda _: None)


def run_workers(experiment: Path, overrides: list[str], workers: int, threads: int,
                folder: Path) -> tuple[float, float, float]:
    """Seconds until every worker had every result stored (its last line before the report), until every
    worker exited, and the CPU seconds of all workers together (what a busy machine cannot distort)."""
    cpu_before = _children_cpu()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    sets = [item for value in overrides for item in ("--set", value)]
    storage = f"sqlite:///{folder / 'storage.db'}"
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "benchmark", "run", str(experiment), *sets, "--quiet",
                                   "--out", str(folder / f"worker{index}"), "--storage", storage],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for index in range(workers)]
    outputs: list[list[str]] = [[] for _ in processes]
    stored: list[float] = []

    def follow(process, lines: list[str]) -> None:
        for line in process.stdout:
            lines.append(line)
            if "results stored" in line:
                stored.append(time.perf_counter() - started)

    readers = [threading.Thread(target=follow, args=pair) for pair in zip(processes, outputs)]
    for reader in readers:
        reader.start()
    failures = ["".join(lines)[-2000:] for process, lines in zip(processes, outputs) if process.wait() != 0]
    elapsed = time.perf_counter() - started
    for reader in readers:
        reader.join()
    if failures:
        raise SystemExit(f"{len(failures)} of {workers} workers failed:\n" + "\n".join(failures))
    return max(stored), elapsed, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=str(ROOT / "experiments" / "quick.toml"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    experiment = Path(args.experiment).resolve()
    print(f"load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        overrides = [f'synthetic.root="{base / "data"}"', f"seeds={list(range(args.seeds))}", *args.overrides]
        prepare(experiment, overrides)
        stored, times, boards = {}, {}, {}
        for count in (1, args.workers):
            folder = base / f"{count}-workers"
            folder.mkdir()
            stored[count], times[count], cpu = run_workers(experiment, overrides, count, args.threads, folder)
            boards[count] = (folder / "worker0" / "leaderboard.csv").read_bytes()
            print(f"{count} worker(s): {times[count]:.1f} s ({stored[count]:.1f} s until every result was stored, "
                  f"then the report); {cpu:.1f} CPU seconds in all", flush=True)
            if count == 1:
                print(bound(json.loads((folder / "worker0" / TIMINGS_FILE).read_text()), times[1], args.workers),
                      flush=True)
    workers = args.workers
    print(f"speed-up of {workers} workers over 1 on {experiment.name} ({args.seeds} seeds, {args.threads} "
          f"thread(s) a process, {os.cpu_count()} cores): {times[1] / times[workers]:.2f}x to the end, "
          f"{stored[1] / stored[workers]:.2f}x until every result was stored; "
          f"the same leaderboard: {'yes' if boards[1] == boards[workers] else 'NO'}")
    print(f"load average after: {load_average()}")


def bound(timings: dict, wall: float, workers: int) -> str:
    """What one worker's time allows N workers at best: its divided stages split N ways, the rest not."""
    divided = sum(figures["seconds"] for stage, figures in timings["stages"].items() if stage in DIVIDED)
    outside, data, report = wall - timings["total"], _seconds(timings, "data"), _seconds(timings, "report")
    rest = wall - divided
    return (f"of the one worker's {wall:.1f} s, {divided:.1f} s are divided among workers ({', '.join(DIVIDED)}) "
            f"and {rest:.1f} s are paid by every worker (start-up and exit, outside the run's timer, {outside:.1f} s; "
            f"data {data:.1f} s; report {report:.1f} s; the rest of the run, mostly storage, pre-flight and "
            f"collecting the stored results, {rest - outside - data - report:.1f} s): {workers} workers can be at "
            f"most {wall / (rest + divided / workers):.2f}x as fast")


def _seconds(timings: dict, stage: str) -> float:
    return timings["stages"].get(stage, {}).get("seconds", 0.0)


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
