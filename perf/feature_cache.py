"""How much faster is comparing heads on cached features than running the encoder every epoch?

Trains and evaluates one head (the registered ``mse`` head) on the features of a frozen ``tiny3d``
encoder two ways, on synthetic clips of the benchmark's size:
  end to end: every epoch runs the frozen encoder over every training clip again;
  cached:     the encoder runs once (``FeatureCache``), then the head trains on stored features.
Clips are held in memory (no decoding), so real runs, which also decode video, gain more than this.
Both paths see the same batches in the same order, so their test MAE must agree.

    python perf/feature_cache.py [--train 128 --test 64 --epochs 20 --frames 16 --size 112 --heads 8 --threads 0]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

import registry
from benchmark.encoding.cache import FeatureCache, FeatureKey


def synthetic_clips(count: int, frames: int, size: int, generator: torch.Generator):
    clips = torch.randint(0, 256, (count, 3, frames, size, size), dtype=torch.uint8, generator=generator)
    return clips, torch.rand(count, generator=generator) * 60 + 20


def batches(clips, targets, batch_size: int, order=None):
    order = torch.arange(len(clips)) if order is None else order
    for start in range(0, len(clips), batch_size):
        index = order[start:start + batch_size]
        # the per-batch work a clip loader does after decoding: to float, scale
        yield clips[index].float() / 255, targets[index], index, torch.zeros(len(index), dtype=torch.long)


def train_and_evaluate(head, train_inputs, test_inputs, epochs: int) -> float:
    """Train ``head`` with AdamW; ``*_inputs()`` yield (condition, target). Returns test MAE."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    for _ in range(epochs):
        head.train()
        for condition, target in train_inputs():
            optimizer.zero_grad()
            head.loss(condition, (target - 50) / 10).backward()
            optimizer.step()
    head.eval()
    with torch.no_grad():
        errors = [((head.mean(condition) * 10 + 50) - target).abs() for condition, target in test_inputs()]
    return float(torch.cat(errors).mean())


def timed(function):
    """Run ``function``; return its result, wall seconds and this process's CPU seconds (CPU time is the
    steadier figure on a shared machine, where wall time depends on what else runs)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=128)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8, help="heads compared, for the amortised figure")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    train = synthetic_clips(args.train, args.frames, args.size, generator)
    test = synthetic_clips(args.test, args.frames, args.size, generator)
    torch.manual_seed(0)
    encoder = registry.build("encoder", "tiny3d", size=args.size).eval().requires_grad_(False)
    new_head = lambda: registry.build("head", "mse", condition_dim=encoder.feature_dim)

    def encoded(split, shuffle):
        order = torch.randperm(len(split[0])) if shuffle else None
        for clip, target, *_ in batches(*split, args.batch_size, order):
            with torch.no_grad():  # closed before yielding: grad mode is global, the head needs it
                features = encoder(clip)
            yield features, target

    # One-time costs are charged to neither side: kernel set-up, and the first optimiser, which imports
    # torch._dynamo (seconds).
    with torch.no_grad():
        for clip, *_ in batches(*train, args.batch_size):
            encoder(clip)
    torch.optim.AdamW(new_head().parameters())

    torch.manual_seed(1)
    mae_end_to_end, *end_to_end = timed(lambda: train_and_evaluate(
        new_head(), lambda: encoded(train, True), lambda: encoded(test, False), args.epochs))

    def build_cache(root):
        cache = FeatureCache(root)
        return {role: cache.features(FeatureKey(dataset="synthetic", split="perf", role=role,
                                                encoder={"name": "tiny3d"},
                                                clips={"frames": args.frames, "size": args.size}),
                                     lambda view, split=split: batches(*split, args.batch_size), encoder)
                for role, split in (("train", train), ("test", test))}

    with tempfile.TemporaryDirectory() as root:
        stored, *build = timed(lambda: build_cache(root))

    def cached(role, shuffle):
        features = torch.from_numpy(stored[role].features)
        targets = torch.from_numpy(stored[role].target)
        order = torch.randperm(len(features)) if shuffle else torch.arange(len(features))
        for begin in range(0, len(features), args.batch_size):
            index = order[begin:begin + args.batch_size]
            yield features[index], targets[index]

    torch.manual_seed(1)
    mae_cached, *per_head = timed(lambda: train_and_evaluate(
        new_head(), lambda: cached("train", True), lambda: cached("test", False), args.epochs))

    heads = args.heads
    print(f"clips {args.train} train / {args.test} test, {args.frames}x{args.size}x{args.size}, "
          f"tiny3d + mse head, {args.epochs} epochs, {torch.get_num_threads()} threads; seconds wall / CPU")
    print(f"end to end, one head:      {end_to_end[0]:8.2f} / {end_to_end[1]:8.2f}   (test MAE {mae_end_to_end:.2f})")
    print(f"cache build (once):        {build[0]:8.2f} / {build[1]:8.2f}")
    print(f"cached features, one head: {per_head[0]:8.2f} / {per_head[1]:8.2f}   (test MAE {mae_cached:.2f})")
    for column, label in ((0, "wall"), (1, "CPU")):
        one = end_to_end[column] / per_head[column]
        many = heads * end_to_end[column] / (build[column] + heads * per_head[column])
        print(f"speed-up ({label}): {one:6.1f}x per head, {many:6.1f}x for {heads} heads including the cache build")


if __name__ == "__main__":
    main()
