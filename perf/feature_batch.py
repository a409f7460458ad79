"""Feature-extraction speed by batch size (``[encoder] batch_size``): clips per forward pass.

    python perf/feature_batch.py [--encoder area_length] [--params '{"width": 16}'] [--clips 256]
                                 [--frames 16] [--size 112] [--batches 1,2,4,8,32]

Builds the encoder from the registry (random weights: the time does not depend on them), then pushes the
same random clips through it in eval mode at each batch size, interleaved round by round so that a machine
shared with other work slows them alike, and prints clips per second. On a CPU a large batch of per-frame
work can be slower than a small one: a batch of 32 clips of 16 frames makes activation tensors of about
100 MB, which leave the cache and are mapped afresh on every call.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="area_length")
    parser.add_argument("--params", default='{"width": 16}', help="encoder parameters as JSON")
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batches", default="1,2,4,8,32", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    encoder = registry.build("encoder", args.encoder, size=args.size, **json.loads(args.params)).eval()
    channels = encoder.input_spec.channels
    clips = torch.randn(args.clips, channels, args.frames, args.size, args.size)
    sizes = [int(size) for size in args.batches.split(",")]
    seconds = dict.fromkeys(sizes, 0.0)
    with torch.no_grad():
        encoder(clips[:1])  # warm-up: first-call allocations and kernel selection
        for _ in range(args.rounds):
            for size in sizes:
                started = time.perf_counter()
                for start in range(0, args.clips, size):
                    encoder(clips[start:start + size])
                seconds[size] += time.perf_counter() - started
    print(f"{args.encoder} {json.dumps(json.loads(args.params))}, {args.clips} clips of {channels}x{args.frames}x"
          f"{args.size}x{args.size}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    fastest = min(seconds.values())
    for size in sizes:
        rate = args.rounds * args.clips / seconds[size]
        print(f"batch {size:3d}: {rate:7.1f} clips/s  ({seconds[size] / fastest:.2f}x the fastest time)")


if __name__ == "__main__":
    main()
