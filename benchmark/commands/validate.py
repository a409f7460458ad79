"""``validate``: check an experiment file, the components it names and a pre-flight of every model, without
running anything; with ``--data`` also load the dataset index and its splits, as ``run`` does first."""
from __future__ import annotations

import sys

from benchmark.components import resolve
from benchmark.config import load_experiment

HELP = "check an experiment file (keys, ranges, components, checkpoint inputs, a pre-flight of each model) without running it"


def add_arguments(parser) -> None:
    parser.add_argument("experiment", help="the experiment TOML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a key, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--data", action="store_true",
                        help="also load the dataset index (no training): items, patients, splits, exclusions by "
                             "reason and tracing coverage; generates the synthetic stand-in if the run would")


def run(args) -> int:
    # Imported here: they import torch (and pandas), which every other command's --help would otherwise wait for.
    from benchmark.data.prepare import check_tabular, load_data
    from benchmark.encoding.preflight import preflight_encoder
    from benchmark.evaluation.predictions_file import check_subgroup_names
    from benchmark.orchestration.checkpoint_models import check_checkpoint_models
    from benchmark.orchestration.runner import check_machine
    from benchmark.training.preflight import preflight

    resolved = resolve(load_experiment(args.experiment, args.overrides))
    check_tabular(resolved.experiment, resolved.registry)
    check_checkpoint_models(resolved.experiment, resolved.registry)
    for warning in resolved.warnings + check_machine(resolved.experiment):
        print(f"warning: {warning}", file=sys.stderr)
    experiment = resolved.experiment
    print(preflight_encoder(experiment, resolved.registry))
    for line in preflight(experiment, resolved.registry):
        print(line)
    if args.data:
        loaded = load_data(experiment, resolved.registry, say=print)
        check_subgroup_names(loaded.index.items, experiment.dataset.name)
        for line in loaded.summary():
            print(line)
    models = ", ".join(model.key for model in experiment.models)
    print(f"{args.experiment}: ok. {experiment.name}: dataset {experiment.dataset.name} "
          f"(protocol {experiment.dataset.protocol}), encoder {experiment.encoder.name}, models {models}, "
          f"seeds {experiment.seeds}, config hash {experiment.hash()}")
    return 0
