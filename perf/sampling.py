"""Sampling speed of the MCSDR head against a plain re-implementation of the reference loop.

    python perf/sampling.py [--conditions 1000] [--samples 40] [--steps 10] [--chunk 100]

Both sample DDIM (eta 0) from the same randomly initialised published-size predictor (LegacyAttention,
width 256, 8 heads, condition 512) with the same starting noise. The reference loop repeats each
condition K times and recomputes every projection (time embedding, map_cond, q/k/v, attention) at every
step; the head does the condition-only work once per condition. Prints times, speed-up, the largest
sample difference, and the achieved GFLOP/s beside a plain matmul's GFLOP/s measured in the same run.
The three are interleaved chunk by chunk, so a machine shared with other work slows them alike.
"""
from __future__ import annotations

import argparse
import time

import torch

import registry


def reference_loop(head, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The reference's sampler written plainly: (B*K) rows, every layer evaluated at every step."""
    predictor = head.noise_predictor
    batch, samples = noise.shape
    repeated = condition.repeat_interleave(samples, dim=0)
    x = noise.reshape(-1)
    schedule = head.ddim_timesteps(head.steps)
    for index, t in enumerate(schedule):
        time_features = head.time_mlp(torch.full((x.shape[0],), t))
        query = predictor.map_y_t(torch.cat([x[:, None], time_features], dim=1))
        key_value = predictor.map_cond(repeated)
        attended, _ = predictor.cross_attention(query[:, None], key_value[:, None], key_value[:, None],
                                                need_weights=False)
        h = predictor.norm1(query + attended[:, 0])
        eps = predictor.final_layer(predictor.norm2(h + predictor.ffn(h)))[:, 0]
        alphabar = head.alphas_cumprod[t]
        alphabar_prev = head.alphas_cumprod[schedule[index + 1]] if index + 1 < len(schedule) else 1.0
        x0 = (x - (1 - alphabar).sqrt() * eps) / alphabar.sqrt()
        x = alphabar_prev**0.5 * x0 + (1 - alphabar_prev) ** 0.5 * eps
    return x.reshape(batch, samples)


def head_flops(conditions: int, samples: int, steps: int, width: int, condition_dim: int, time_dim: int) -> float:
    """Multiply-adds x 2 of the vectorised sampler's linear layers (the rest is elementwise)."""
    per_condition = 2 * condition_dim * width + 2 * 2 * width * width  # map_cond, value, out_proj
    per_sample_step = 2 * width + 2 * 2 * width * 4 * width + 2 * width  # y column, FFN, final layer
    per_step = 2 * time_dim * time_dim + 2 * time_dim * width  # time_mlp, time part of map_y_t
    return conditions * per_condition + conditions * samples * steps * per_sample_step + steps * per_step


def matmuls(rows: int, width: int, repeats: int):
    """The FFN's first product as a bare matmul, ``repeats`` times; returns a function and its FLOPs."""
    a, b = torch.randn(rows, width), torch.randn(width, 4 * width)

    def run(*_):
        for _ in range(repeats):
            torch.mm(a, b)
        return torch.zeros(0)

    return run, 2 * rows * width * 4 * width * repeats


def timed_interleaved(functions, chunks):
    """Run every function on each chunk in turn, so a busy machine slows them alike."""
    outputs, seconds = [[] for _ in functions], [0.0 for _ in functions]
    for chunk in chunks:
        for index, function in enumerate(functions):
            start = time.perf_counter()
            outputs[index].append(function(*chunk))
            seconds[index] += time.perf_counter() - start
    return [torch.cat(output) for output in outputs], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=100, help="conditions per batch, both samplers")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--condition-dim", type=int, default=512)
    args = parser.parse_args()

    torch.manual_seed(0)
    head = registry.build("head", "mcsdr", condition_dim=args.condition_dim, width=args.width,
                          steps=args.steps).eval()
    condition = torch.randn(args.conditions, args.condition_dim)
    noise = torch.randn(args.conditions, args.samples)
    chunks = list(zip(condition.split(args.chunk), noise.split(args.chunk)))

    with torch.inference_mode():
        matmul, matmul_flops = matmuls(args.chunk * args.samples, args.width, repeats=10)
        matmul()  # warm-up
        (reference, ours, _), (reference_s, ours_s, matmul_s) = timed_interleaved(
            [lambda c, z: reference_loop(head, c, z), lambda c, z: head.sample(c, args.samples, noise=z), matmul],
            chunks)
    peak = matmul_flops * len(chunks) / matmul_s / 1e9
    flops = head_flops(args.conditions, args.samples, args.steps, args.width, args.condition_dim,
                       head.time_mlp[1].in_features)
    difference = (ours - reference).abs().max().item()
    scale = reference.abs().max().item()
    print(f"DDIM {args.steps} steps, K={args.samples}, {args.conditions} conditions, width {args.width}, "
          f"condition {args.condition_dim}, {torch.get_num_threads()} threads, chunks of {args.chunk}")
    print(f"reference loop     {reference_s:8.2f} s")
    print(f"vectorised head    {ours_s:8.2f} s   speed-up {reference_s / ours_s:.2f}x")
    print(f"max |difference|   {difference:.2e}   relative to the largest sample {difference / scale:.1e} "
          f"(untrained weights: samples up to {scale:.0f})")
    print(f"achieved           {flops / ours_s / 1e9:8.1f} GFLOP/s ({flops / 1e9:.0f} GFLOP)")
    print(f"plain matmul       {peak:8.1f} GFLOP/s ({args.chunk * args.samples}x{args.width} @ "
          f"{args.width}x{4 * args.width})")


if __name__ == "__main__":
    main()
