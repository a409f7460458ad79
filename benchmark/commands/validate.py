"""``validate``: check an experiment file and the components it names, without running anything."""
from __future__ import annotations

import sys

from benchmark.components import resolve
from benchmark.config import load_experiment
from benchmark.orchestration.checkpoint_models import check_checkpoint_models

HELP = "check an experiment file (keys, types, component names, checkpoint inputs) without running it"


def add_arguments(parser) -> None:
    parser.add_argument("experiment", help="the experiment TOML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a key, e.g. --set train.epochs=5 (repeatable)")


def run(args) -> int:
    resolved = resolve(load_experiment(args.experiment, args.overrides))
    check_checkpoint_models(resolved.experiment, resolved.registry)
    for warning in resolved.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    experiment = resolved.experiment
    models = ", ".join(model.key for model in experiment.models)
    print(f"{args.experiment}: ok. {experiment.name}: dataset {experiment.dataset.name}, "
          f"encoder {experiment.encoder.name}, models {models}, seeds {experiment.seeds}, "
          f"config hash {experiment.hash()}")
    return 0
