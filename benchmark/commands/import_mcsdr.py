"""``python -m benchmark import-mcsdr best.pth``: turn MCSDR's checkpoint into a model bundle."""
from __future__ import annotations

from pathlib import Path

from benchmark.encoding.weights import trusting_checkpoints
from benchmark.training.bundle import save_bundle
from benchmark.training.mcsdr_import import import_mcsdr

HELP = "import MCSDR's best.pth as uniformer_s + concat + mcsdr and write a model bundle"


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="the reference's best.pth")
    parser.add_argument("--out", default="runs/imported", help="folder for model.pt and import_report.txt")
    parser.add_argument("--heads", type=int, default=8, help="attention heads of the noise predictor "
                        "(not recorded in the checkpoint; the published model uses 8)")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps at evaluation")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta at evaluation")
    parser.add_argument("--trust-checkpoint", action="store_true", help="unpickle a checkpoint that holds more "
                        "than tensors and plain data: this runs code from the file, so only for a file you trust")


def run(args) -> int:
    with trusting_checkpoints(args.trust_checkpoint):
        bundle = import_mcsdr(args.checkpoint, heads=args.heads, steps=args.steps, eta=args.eta)
    out = Path(args.out)
    path = save_bundle(bundle, out / "model.pt")
    report = bundle.report()
    (out / "import_report.txt").write_text(report + "\n")
    print(report)
    fusion = bundle.fusion.params
    print(f"wrote {path}: uniformer_s + concat (tabular {fusion.get('tabular_dim', 0)} -> "
          f"{fusion.get('embed_dim', 0)}) + mcsdr {dict(bundle.head.params)}; targets on the "
          f"{bundle.target_scale} EF scale")
    return 0
