"""The project's DDIM grid (900, .., 0) against the reference's (999, .., 99) with a perfect noise predictor.

    python perf/ddim_grids.py [--samples 200000] [--steps 10]

For targets x0 ~ N(mu, s^2) the exact E[eps | x_t] is known in closed form, so what remains is the error of
the sampler itself: prints the mean and sd of DDIM (eta 0) samples for each grid and noise schedule. README
("faithful: what matches the reference") quotes the output for deciding which grid the non-faithful head uses.
"""
from __future__ import annotations

import argparse

import torch

from plugins.heads._diffusion import Diffusion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    for schedule in ("linear", "cosine"):
        diffusion = Diffusion(schedule=schedule)
        for mu, spread in ((0.7, 0.25), (0.0, 1.0)):
            def eps(x, t):
                alphabar = diffusion.alphas_cumprod[t].double()
                return (1 - alphabar).sqrt() * (x - alphabar.sqrt() * mu) / (alphabar * spread**2 + 1 - alphabar)

            noise = torch.randn(1, args.samples, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            runs = {name: diffusion.reverse(eps, noise, steps=args.steps, faithful=reference)
                    for name, reference in (("project", False), ("reference", True))}
            print(f"{schedule:6s} N({mu}, {spread}^2): " + "; ".join(
                f"{name} grid mean {x.mean():.3f} sd {x.std():.3f}" for name, x in runs.items()))


if __name__ == "__main__":
    main()
