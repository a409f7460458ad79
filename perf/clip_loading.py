"""Clip loading speed: the pipeline against decord's raw decode of the same frames and naive loaders.

    python perf/clip_loading.py [--videos 24] [--frames 170] [--rounds 3]

Writes EchoNet-like videos (112x112 Motion-JPEG AVI, 170 frames) to a temporary folder, then times one
clip per video, 16-frame clips at 112x112, in both sampling modes (clips/s, best of ``--rounds``):

- pipeline:     ``ClipDataset`` end to end (open, plan, decode needed frames, interpolate, normalise);
- limit:        decord opening the file and decoding exactly the frames the clip needs (``get_batch``);
- packets:      the pipeline's own reader decoding those frames, nothing else (its overhead-free bound);
- naive:        decord decoding the whole video, then resampling it (the reference MCSDR loader);
- naive-packet: the whole video through the pipeline's reader, then resampling.

Targets: pipeline >= 0.8 x limit and >= 2 x naive. Single-threaded, as in a DataLoader worker.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import fakedata  # noqa: E402  (the test fixture writer doubles as the video generator)

from benchmark.config import ClipsConfig
from benchmark.contracts import InputSpec, Item
from benchmark.data.clips import ClipDataset, ClipSampler, ClipTransform, Normalisation, assemble
from benchmark.data.video import Video

SPEC = InputSpec(frames=16, size=112)
NORMALISATION = Normalisation((32.0,) * 3, (50.0,) * 3)
MODES = {
    "mcsdr": ClipsConfig(mode="mcsdr", frames=16, frequency=1, augment=False),
    "echonet": ClipsConfig(mode="echonet", frames=16, period=2, augment=False),
}


def echo_like_frames(n_frames: int, seed: int) -> np.ndarray:
    """Grey frames with a pulsing bright ring and speckle-like noise: realistic JPEG decode cost."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:112, :112]
    radius = np.hypot(y - 56, x - 56)
    frames = []
    for t in range(n_frames):
        ring = 30 + 5 * np.sin(2 * np.pi * t / 40)
        image = 200 * np.exp(-((radius - ring) ** 2) / 30) + rng.gamma(2.0, 15.0, size=(112, 112))
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(frames)


def make_items(folder: Path, count: int, n_frames: int) -> list[Item]:
    return [Item(id=f"v{k}", patient=f"p{k}", ef=50.0, fold="TEST",
                 video=fakedata.write_avi(folder / f"v{k}.avi", echo_like_frames(n_frames, k)))
            for k in range(count)]


def pipeline(items, config):
    dataset = ClipDataset(items, config, SPEC, NORMALISATION, train=False)
    for index in range(len(dataset)):
        dataset[index]


def limit(items, config):
    import decord

    sampler = ClipSampler(config)
    for item in items:
        reader = decord.VideoReader(str(item.video), ctx=decord.cpu(0), num_threads=1)
        reader.get_batch(sampler.central_plan(len(reader)).needed.tolist()).asnumpy()


def packets(items, config):
    sampler = ClipSampler(config)
    for item in items:
        video = Video(item.video)
        video.read(sampler.central_plan(len(video)).needed)


def resample_whole_videos(items, config, decode_all):
    sampler, transform = ClipSampler(config), ClipTransform(config, SPEC, NORMALISATION)
    for item in items:
        everything = decode_all(item)
        plan = sampler.central_plan(len(everything))
        transform(assemble(everything, np.arange(len(everything)), plan))


def naive(items, config):
    import decord

    resample_whole_videos(items, config, lambda item: decord.VideoReader(
        str(item.video), ctx=decord.cpu(0), num_threads=1)[:].asnumpy())


def naive_packet(items, config):
    resample_whole_videos(items, config, lambda item: Video(item.video).read())


LOADERS = {"pipeline": pipeline, "limit": limit, "packets": packets, "naive": naive, "naive-packet": naive_packet}


def clips_per_second(function, items, config, rounds: int) -> float:
    function(items[:2], config)  # warm up decoders and allocators
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function(items, config)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=170)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        items = make_items(Path(folder), args.videos, args.frames)
        print(f"{args.videos} videos of {args.frames} frames, 112x112 MJPG AVI; one 16-frame clip at 112x112 "
              f"per video; clips/s, best of {args.rounds} rounds")
        print(f"{'mode':8}" + "".join(f"{name:>13}" for name in LOADERS) + f"{'vs limit':>10}{'vs naive':>10}")
        for mode, config in MODES.items():
            rates = {name: clips_per_second(loader, items, config, args.rounds) for name, loader in LOADERS.items()}
            vs_limit, vs_naive = rates["pipeline"] / rates["limit"], rates["pipeline"] / rates["naive"]
            ok &= vs_limit >= 0.8 and vs_naive >= 2
            print(f"{mode:8}" + "".join(f"{rate:13.1f}" for rate in rates.values())
                  + f"{vs_limit:9.2f}x{vs_naive:9.2f}x")
    print("targets (>= 0.8x limit, >= 2x naive):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
