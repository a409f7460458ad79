"""The paper configuration on the accelerator: feature extraction, stage-1 training and sampling speed.

    python perf/gpu.py [--steps 20] [--tiny] [--no-amp]

experiments/dynamic.toml's settings: UniFormer-S (random weights; nothing is downloaded), clips of 32
frames taking every 4th at 112 px from synthetic EchoNet-Dynamic-format videos (generated into a
temporary folder and read through the benchmark's clip pipeline), stage 1 as that file sets it (Rank-N-
Contrast + L1, 16 clips a step, AdamW), and the mcsdr head sampling K = 40 per item. On CUDA every
forward pass runs under torch.autocast (bfloat16 where supported, else float16 with loss scaling, as
``train.amp`` does). Prints clips/s of feature extraction (batches already on the device: decoding is
``perf/clip_loading.py``'s subject) and of training, the sampling time per 1000 items, and the peak
memory the device allocated.

Without CUDA (or with ``--tiny``) it runs a tiny configuration (4 frames of 32 px, 2 clips a step,
K = 5, 2 steps) as a smoke test of the same code: its figures say nothing about speed.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import registry
from benchmark.config import ClipsConfig
from benchmark.data.clips import ClipDataset, make_loader, normalisation_for
from benchmark.encoding.stage1 import RegressionHead, rnc_loss
from benchmark.synth.generate import generate


@dataclass(frozen=True)
class Setting:
    frames: int  # per clip
    frequency: int  # keep every n-th frame
    size: int  # pixels
    batch: int  # clips per step (dynamic.toml: encoder.pretrain.batch_size)
    videos: int  # synthetic videos generated
    samples: int  # K
    items: int  # conditions sampled


PAPER = Setting(frames=32, frequency=4, size=112, batch=16, videos=48, samples=40, items=1000)
TINY = Setting(frames=4, frequency=4, size=32, batch=2, videos=4, samples=5, items=20)


def clips(setting: Setting, spec, folder: Path) -> torch.Tensor:
    """One central clip of each generated video, (videos, 3, T, S, S), normalised as a run would."""
    root = generate("echonet_dynamic", setting.videos, folder / "dynamic", seed=0, size=max(setting.size, 32),
                    workers=2)
    items = list(registry.build("dataset", "echonet_dynamic", root=root).load().items)
    config = ClipsConfig(mode="mcsdr", frames=setting.frames, frequency=setting.frequency, size=setting.size,
                         augment=False)
    dataset = ClipDataset(items, config, spec, normalisation_for(config, spec, items), train=False)
    return torch.cat([batch[0] for batch in make_loader(dataset, setting.batch)])


def batches(all_clips: torch.Tensor, setting: Setting, steps: int, device: torch.device) -> list[torch.Tensor]:
    """``steps`` batches cycled from the clips, on the device."""
    on_device = all_clips.to(device)
    starts = [(step * setting.batch) % len(on_device) for step in range(steps)]
    return [on_device[start:start + setting.batch] if start + setting.batch <= len(on_device)
            else on_device[:setting.batch] for start in starts]


def synchronised(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def extraction_rate(encoder, work: list[torch.Tensor], autocast, device) -> float:
    encoder.eval()
    with torch.inference_mode(), autocast():
        encoder(work[0])  # warm-up: kernels chosen, memory pooled
        started = synchronised(device)
        for clip in work:
            encoder(clip)
        seconds = synchronised(device) - started
    return sum(len(clip) for clip in work) / seconds


def training_rate(encoder, work: list[torch.Tensor], autocast, scaler, device) -> float:
    """Stage-1 steps (RnC on the features + L1 of a small head on detached features, dynamic.toml's objective)."""
    head = RegressionHead(encoder.feature_dim).to(device)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-4)
    encoder.train()
    targets = [torch.rand(len(clip), device=device) for clip in work]

    def step(clip, target):
        with autocast():
            features = encoder(clip).float()
            loss = rnc_loss(features, target) + (head(features.detach()) - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    step(work[0], targets[0])  # warm-up
    started = synchronised(device)
    for clip, target in zip(work, targets):
        step(clip, target)
    return sum(len(clip) for clip in work) / (synchronised(device) - started)


def sampling_seconds(setting: Setting, device) -> float:
    """Seconds per 1000 items of mcsdr (dynamic.toml: its defaults) sampling K per item from 512 features."""
    head = registry.build("head", "mcsdr", condition_dim=512).to(device).eval()
    condition = torch.randn(setting.items, 512, device=device)
    with torch.inference_mode():
        head.sample(condition[:2], setting.samples)  # warm-up
        started = synchronised(device)
        head.sample(condition, setting.samples)
        seconds = synchronised(device) - started
    return seconds * 1000 / setting.items


def amp_for(device: torch.device, wanted: bool):
    """(autocast factory, gradient scaler, description): bfloat16 where supported, else float16 with loss
    scaling; off on CPU, where autocast would measure emulated half precision."""
    if device.type != "cuda" or not wanted:
        return (lambda: torch.autocast(device.type, enabled=False)), torch.amp.GradScaler(enabled=False), "off"
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler, str(dtype).removeprefix("torch.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed batches of each kind")
    parser.add_argument("--tiny", action="store_true", help="the CPU smoke configuration, even on CUDA")
    parser.add_argument("--no-amp", action="store_true", help="float32 throughout")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    setting = TINY if args.tiny or device.type == "cpu" else PAPER
    steps = args.steps if setting is PAPER else min(args.steps, 2)
    autocast, scaler, amp = amp_for(device, not args.no_amp)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke test, tiny configuration)"
    print(f"{name}: UniFormer-S, {setting.frames} frames every {setting.frequency}th at {setting.size} px, "
          f"{setting.batch} clips a step, {steps} steps, K = {setting.samples}, AMP {amp}")
    torch.manual_seed(0)
    encoder = registry.build("encoder", "uniformer_s", size=setting.size)
    with tempfile.TemporaryDirectory(prefix="lvef-gpu-") as folder:
        work = batches(clips(setting, encoder.input_spec, Path(folder)), setting, steps, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    encoder.to(device)
    print(f"feature extraction  {extraction_rate(encoder, work, autocast, device):9.1f} clips/s")
    print(f"stage-1 training    {training_rate(encoder, work, autocast, scaler, device):9.1f} clips/s")
    print(f"sampling (K = {setting.samples})   {sampling_seconds(setting, device):9.3f} s per 1000 items")
    if device.type == "cuda":
        print(f"peak GPU memory     {torch.cuda.max_memory_allocated(device) / 2 ** 30:9.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
