"""``python -m benchmark import-mcsdr best.pth``: turn MCSDR's checkpoint into a model bundle."""
from __future__ import annotations

from pathlib import Path

HELP = "import MCSDR's best.pth as uniformer_s + concat + mcsdr and write a model bundle"


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="the reference's best.pth")
    parser.add_argument("--out", default="runs/imported", help="folder for model.pt and import_report.txt")
    parser.add_argument("--heads", type=int, help="attention heads of the noise predictor (default: the "
                        "checkpoint's config, else 8 as published; the weights' shapes do not tell)")
    parser.add_argument("--sampler", choices=("ddim", "ddpm"), help="sampler at evaluation (default: the "
                        "checkpoint's config, else ddim as published)")
    parser.add_argument("--steps", type=int, help="DDIM steps at evaluation (default: the config's, else 10)")
    parser.add_argument("--eta", type=float, help="DDIM eta at evaluation (default: the config's, else 0)")
    parser.add_argument("--trust-checkpoint", action="store_true", help="unpickle a checkpoint that holds more "
                        "than tensors and plain data: this runs code from the file, so only for a file you trust")


def run(args) -> int:
    # Imported here: they import torch, which every other command's --help would otherwise wait for.
    from benchmark.encoding.weights import trusting_checkpoints
    from benchmark.errors import ConfigError
    from benchmark.store import atomic_write_text
    from benchmark.training.bundle import save_bundle
    from benchmark.training.mcsdr_import import import_mcsdr

    if not Path(args.checkpoint).is_file():  # read_checkpoint's own message names encoder.weights
        raise ConfigError(f"import-mcsdr: the checkpoint {args.checkpoint} does not exist or is not a file; give the "
                          "path of MCSDR's best.pth")
    out = Path(args.out)
    taken = [path for path in (out / "model.pt", out / "import_report.txt") if path.exists()]
    if taken:  # checked before the import: a stored model is never overwritten
        raise ConfigError(f"{taken[0]} already exists; import-mcsdr does not overwrite an earlier import. "
                          "Choose another --out folder.")
    with trusting_checkpoints(args.trust_checkpoint):
        bundle = import_mcsdr(args.checkpoint, heads=args.heads, steps=args.steps, eta=args.eta, sampler=args.sampler)
    path = save_bundle(bundle, out / "model.pt")
    report = bundle.report()
    atomic_write_text(out / "import_report.txt", report + "\n")
    print(report)
    fusion = bundle.fusion.params
    print(f"wrote {path}: uniformer_s + concat (tabular {fusion.get('tabular_dim', 0)} -> "
          f"{fusion.get('embed_dim', 0)}) + mcsdr {dict(bundle.head.params)}; targets on the "
          f"{bundle.target_scale} EF scale")
    source = bundle.source
    clips = source["clips"]
    print(f"evaluated as the reference did: K = {source['samples'] or 'not recorded (evaluate.samples)'}, "
          f"tabular columns {', '.join(source['tabular_columns'] or []) or 'not recorded'}, clips "
          + (f"of {clips['frames']} frames at frequency {clips['frequency']}, test window "
             f"{clips.get('test_window', 'not recorded')}" if clips else "not recorded"))
    return 0
