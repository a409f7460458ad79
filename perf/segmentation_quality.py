"""Held-out segmentation quality of the stage-1 encoders a run stored: what a cheaper stage-1 recipe must keep.

    python perf/segmentation_quality.py RUN_DIR [RUN_DIR ...] [--experiment experiments/pediatric.toml]
                                        [--set synthetic.root=DIR ...]

For every ``encoders/*.pt`` of each run (one per split and seed), the encoder segments the traced
end-diastolic and end-systolic frames of that split's VAL videos, which stage 1 never trains on, and is
scored against the tracings on its half-resolution grid (the tracing's coverage of each cell, as the
stage-1 loss sees it): Dice of the maps thresholded at 0.5, and the error of the cavity area (the soft
map's sum against the tracing's), in percent of the traced area, whose ED/ES ratio is what EF is read
from. Prints one line per encoder and the mean per run. The experiment must be the one the runs used
(its data, split and clip settings); ``--set`` points it at the data they ran on.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.components import resolve
from benchmark.config import load_experiment
from benchmark.data.clips import normalisation_for
from benchmark.data.prepare import load_data
from benchmark.data.tracings import TracedFrames
from benchmark.encoding.encoder_stage import build_encoder

REPOSITORY = Path(__file__).resolve().parent.parent


def scores(encoder, frames: TracedFrames, batch: int = 64) -> dict[str, float]:
    """Mean Dice and mean absolute area error (% of the traced area) over the traced frames."""
    dice, area_error = [], []
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            images, masks, _ = zip(*(frames[index] for index in range(start, min(start + batch, len(frames)))))
            probability = torch.sigmoid(encoder.segment(torch.stack(images)))
            target = F.adaptive_avg_pool2d(torch.stack(masks), probability.shape[-2:])
            predicted, traced = probability > 0.5, target > 0.5
            overlap = (predicted & traced).sum((1, 2, 3)).float()
            dice.append(2 * overlap / (predicted.sum((1, 2, 3)) + traced.sum((1, 2, 3))).clamp_min(1))
            area_error.append(100 * (probability.sum((1, 2, 3)) - target.sum((1, 2, 3))).abs()
                              / target.sum((1, 2, 3)).clamp_min(1e-6))
    return {"dice": torch.cat(dice).mean().item(), "area_error": torch.cat(area_error).mean().item()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--experiment", default=str(REPOSITORY / "experiments" / "pediatric.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    resolved = resolve(load_experiment(args.experiment, args.overrides))
    experiment, registry = resolved.experiment, resolved.registry
    loaded = load_data(experiment, registry, say=lambda _: None)
    items = {item.id: item for item in loaded.index.items}
    splits = {split.name: split for split in loaded.splits}
    held_out: dict[str, TracedFrames] = {}  # per split: its VAL traced frames, normalised as its run did
    for run in args.runs:
        figures = []
        for path in sorted((run / "encoders").glob("*.pt")):
            split = splits[path.name.split("-seed")[0]]
            encoder = build_encoder(experiment, registry, say=lambda _: None)
            encoder.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            encoder.eval()
            if split.name not in held_out:
                train = [items[i] for i in split.ids("train")]
                held_out[split.name] = TracedFrames(
                    [items[i] for i in split.ids("val")], experiment.clips, encoder.input_spec,
                    normalisation_for(experiment.clips, encoder.input_spec, train), train=False)
            frames = held_out[split.name]
            figures.append(scores(encoder, frames))
            print(f"{run}/{path.name}: {len(frames)} VAL traced frames, Dice {figures[-1]['dice']:.4f}, "
                  f"area error {figures[-1]['area_error']:.2f}%")
        dice, area = (np.mean([figure[name] for figure in figures]) for name in ("dice", "area_error"))
        print(f"{run}: mean over {len(figures)} encoders: Dice {dice:.4f}, area error {area:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
