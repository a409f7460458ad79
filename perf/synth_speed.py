"""Time the generation of synthetic EchoNet-Pediatric videos (target: 1000 videos in <= 60 s on 2 cores).

    python perf/synth_speed.py [--n 1000] [--workers 2] [--sample 100]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmark.synth.generate import generate

TARGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=100, help="videos for the single-process CPU measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        root = generate("echonet_pediatric", args.n, Path(folder) / "pediatric", seed=0, workers=args.workers)
        seconds = time.perf_counter() - start
        videos = sorted((root / "A4C" / "Videos").iterdir())
        frames = _frame_counts(videos)
        size_mb = sum(v.stat().st_size for v in videos) / 1e6
        assert len(pd.read_csv(root / "A4C" / "FileList.csv")) == args.n
    verdict = "within" if seconds * 1000 / args.n <= TARGET_S else "OVER"
    print(f"{args.n} EchoNet-Pediatric videos (112x112, 50 fps, {min(frames)}-{max(frames)} frames, "
          f"{sum(frames) / len(frames) / 50:.1f} s on average, {size_mb:.0f} MB) in {seconds:.1f} s with "
          f"{args.workers} workers: {seconds / args.n * 1000:.0f} ms per video, {verdict} the target of "
          f"{TARGET_S:.0f} s per 1000 videos")
    # Other jobs on the machine stretch the wall time. CPU time does not depend on them: measured in one
    # process (no pool) on a sample, it gives the wall time the workers would need on otherwise idle cores.
    cpu = _cpu_per_video(args.sample)
    print(f"CPU time {cpu * 1000:.0f} ms per video (single process, {args.sample} videos): "
          f"{cpu * 1000 / args.workers:.1f} s per 1000 videos with {args.workers} workers on idle cores; "
          f"load average during the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def _cpu_per_video(n: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.process_time()
        generate("echonet_pediatric", n, Path(folder) / "sample", seed=1, workers=1)
        return (time.process_time() - start) / n


def _frame_counts(videos: list[Path]) -> list[int]:
    import cv2

    counts = []
    for video in videos:
        capture = cv2.VideoCapture(str(video))
        counts.append(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        capture.release()
    return counts


if __name__ == "__main__":
    main()
