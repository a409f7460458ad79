"""``python -m benchmark synth``: write a synthetic dataset in a real format, or a preview of one."""
from __future__ import annotations

import argparse
import time

from benchmark.errors import ConfigError

HELP = "generate a synthetic echo dataset with a known EF posterior (--format ... --out DIR), or --preview DIR"
FORMATS = ("echonet_dynamic", "echonet_pediatric", "camus")


def add_arguments(parser) -> None:
    parser.add_argument("--format", choices=FORMATS, help="on-disk layout to write")
    parser.add_argument("--n", type=int, help="videos (EchoNet) or patients (CAMUS)")
    parser.add_argument("--out", help="output folder (an earlier synthetic generation there is replaced)")
    parser.add_argument("--seed", type=int, help="random seed; the same seed writes the same data")
    parser.add_argument("--size", type=int, default=112, help="frame size in pixels (CAMUS: frames are 2-2.8x)")
    parser.add_argument("--ambiguous-fraction", type=float, default=0.2,
                        help="share of videos whose lateral wall is hidden by a shadow or dropout")
    parser.add_argument("--label-noise", type=float, default=3.0, help="sd of the label noise in EF points")
    parser.add_argument("--workers", type=_processes, default=2, help="rendering processes (1 = in this process)")
    parser.add_argument("--preview", metavar="DIR", help="write a PNG contact sheet of the generation in DIR")
    parser.add_argument("--output", metavar="PNG", help="where --preview writes (default DIR/preview.png)")


def _processes(text: str) -> int:
    """--workers as the parser takes it: a count below 1 names no process (it rendered in this one, as 1 does,
    without a word), so it is refused with the usage, exit 2, as a word is."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of processes, got {text!r}") from None
    from benchmark.synth.generate import Parameters

    problem = Parameters.workers_problem(count)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return count


def run(args) -> int:
    if args.preview:
        from benchmark.synth.preview import contact_sheet

        print(f"wrote {contact_sheet(args.preview, args.output)}")
        return 0
    missing = [flag for flag, value in (("--format", args.format), ("--n", args.n), ("--out", args.out),
                                        ("--seed", args.seed)) if value is None]
    if missing:
        raise ConfigError(f"synth needs {', '.join(missing)} (or --preview DIR); e.g. python -m benchmark synth "
                          "--format echonet_pediatric --n 400 --out data/synthetic --seed 0")
    from benchmark.synth.generate import generate

    start = time.perf_counter()
    out = generate(args.format, args.n, args.out, args.seed, size=args.size,
                   ambiguous_fraction=args.ambiguous_fraction, label_noise=args.label_noise, workers=args.workers)
    print(f"wrote {args.n} synthetic {args.format} {'patients' if args.format == 'camus' else 'videos'} to {out} "
          f"in {time.perf_counter() - start:.1f} s (exact posteriors in {out / 'oracle.csv'})")
    return 0
