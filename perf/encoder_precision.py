"""Stage-1 and feature-extraction speed of the segmentation encoder in float32 and in bfloat16
(``[encoder] precision``), one torch thread, as a worker process runs them.

    python perf/encoder_precision.py [--width 16] [--size 112] [--frames 32] [--clips 2] [--rounds 5]

A stage-1 step is forward, segmentation loss, backward and AdamW update on ``--frames`` traced frames; a
feature pass turns ``--clips`` 16-frame clips into features in eval mode. Random inputs (the time does not
depend on them), the two precisions interleaved round by round so that a machine shared with other work
slows them alike; the median of the rounds is printed. Whether the CPU computes bfloat16 natively (what
``precision = "auto"`` asks) is printed first: without it bfloat16 is emulated, and slower.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import registry
from benchmark.data.tracings import segmentation_losses
from benchmark.device import encoder_precision, resolve_precision

PRECISIONS = ("float32", "bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--frames", type=int, default=32, help="traced frames per stage-1 step")
    parser.add_argument("--clips", type=int, default=2, help="16-frame clips per feature pass")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps (or passes) timed per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    print(f"CPU: {torch.cpu.get_capabilities().get('cpu_name', '?')}; precision \"auto\" resolves to "
          f"{resolve_precision('auto', cpu)}; one torch thread")

    encoder = registry.build("encoder", "area_length", width=args.width, size=args.size)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(args.frames, 1, args.size, args.size, generator=generator)
    masks = (torch.rand(args.frames, 1, args.size, args.size, generator=generator) > 0.8).float()
    clips = torch.randn(args.clips, 1, 16, args.size, args.size, generator=generator)

    def step(precision: str) -> None:
        encoder.train()
        with encoder_precision(cpu, precision):
            loss = sum(segmentation_losses(encoder.segment(frames), masks).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def features(precision: str) -> None:
        encoder.eval()
        with torch.no_grad(), encoder_precision(cpu, precision):
            encoder(clips)

    works = {"step": step, "features": features}
    times = {(work, precision): [] for work in works for precision in PRECISIONS}
    for work, precision in times:  # warm-up: oneDNN picks and caches its kernels on the first calls
        for _ in range(2):
            works[work](precision)
    for _ in range(args.rounds):
        for work, precision in times:
            started = time.perf_counter()
            for _ in range(args.steps):
                works[work](precision)
            times[work, precision].append((time.perf_counter() - started) / args.steps * 1000)
    labels = {"step": f"stage-1 step, {args.frames} frames", "features": f"feature pass, {args.clips} clips"}
    for work, label in labels.items():
        full, half = (statistics.median(times[work, precision]) for precision in PRECISIONS)
        print(f"{label:32s} float32 {full:7.1f} ms   bfloat16 {half:7.1f} ms   {full / half:.2f}x")


if __name__ == "__main__":
    main()
