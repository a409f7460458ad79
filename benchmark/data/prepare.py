"""From ``[dataset]`` to a checked split manifest: load the data (or its labelled synthetic stand-in),
report exclusions, build the splits every model and seed share, and write them to the run directory."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from benchmark.components import accepted, check_parameters
from benchmark.config import Experiment
from benchmark.contracts import DatasetIndex, Item, Split
from benchmark.data.helpers import summarise_exclusions
from benchmark.data.splits import build_manifest, write_split_files
from benchmark.identity import dataset_fingerprint
from benchmark.store import RunDir
from registry import Registry

SYNTHETIC_BANNER = (
    "SYNTHETIC STAND-IN: {root} does not exist, so this run benchmarks on generated {format} data at "
    "{synthetic_root}. Its numbers say nothing about real echocardiography; every output is labelled synthetic."
)


@dataclass
class PreparedData:
    index: DatasetIndex
    splits: list[Split]
    manifest: pd.DataFrame
    split_hash: str
    fingerprint: str
    root: Path

    @property
    def synthetic(self) -> bool:
        return self.index.synthetic

    @property
    def items(self) -> dict[str, Item]:
        return {item.id: item for item in self.index.items}

    def role_items(self, split: Split, role: str) -> list[Item]:
        items = self.items
        return [items[item_id] for item_id in split.ids(role)]


def prepare_data(experiment: Experiment, registry: Registry, run: RunDir, say: Callable[[str], None]) -> PreparedData:
    config = experiment.dataset
    dataset, root = _open(experiment, registry, say)
    index = dataset.load()
    splits = dataset.splits(index, config.protocol, **accepted(dataset.splits, {"fold": config.fold}))
    index = with_split_exclusions(index, splits)
    for note in index.notes:
        say(f"note: {note}")
    for source in dict.fromkeys(split.source for split in splits if split.source):
        say(f"protocol {config.protocol}: splits from {source}")
    summary = summarise_exclusions(index.excluded)
    say(f"dataset {config.name} at {root}: {len(index.items)} items" + (f"; {summary}; see excluded.csv"
                                                                        if summary else ""))
    manifest = build_manifest(index, splits, config.protocol)
    split_hash = write_split_files(run.root, manifest, index)
    fingerprint = dataset_fingerprint(
        # A reversed reading changes every clip; it is added only where it applies, so unaffected data keep
        # their fingerprint (and cached features).
        [(item.id, item.patient, item.ef, item.fold, sorted(item.tabular.items()), *(["reversed"] * item.reversed))
         for item in index.items],
        [item.video for item in index.items],
    )
    return PreparedData(index, splits, manifest, split_hash, fingerprint, root)


def with_split_exclusions(index: DatasetIndex, splits: list[Split]) -> DatasetIndex:
    """``index`` with the items a split could not place (e.g. a patient in no split file) added to its
    exclusions, each once, so that ``excluded.csv`` accounts for every item on disk."""
    known = set(index.excluded)
    added = tuple(dict.fromkeys(e for split in splits for e in split.excluded if e not in known))
    return dataclasses.replace(index, excluded=index.excluded + added) if added else index


def _open(experiment: Experiment, registry: Registry, say: Callable[[str], None]):
    config = experiment.dataset
    record = registry.describe("dataset", config.name)
    offered = {"view": config.view, "strict": config.strict}
    root = Path(config.root)
    if root.exists() or not config.synthetic_if_missing:
        params = {"root": root, **accepted(record.factory, offered), **config.params}
        return _build(registry, config.name, params, "[dataset] params"), root
    synthetic = experiment.synthetic
    synthetic_root = Path(synthetic.root) / (
        f"{config.name}-n{synthetic.n}-seed{synthetic.seed}-amb{synthetic.ambiguous_fraction:g}"
        f"-noise{synthetic.label_noise:g}")
    say(SYNTHETIC_BANNER.format(root=root, format=config.name, synthetic_root=synthetic_root))
    generator = registry.describe("dataset", "synthetic").factory
    params = {"format": config.name, "root": synthetic_root, "n": synthetic.n, "seed": synthetic.seed,
              "ambiguous_fraction": synthetic.ambiguous_fraction, "label_noise": synthetic.label_noise,
              **accepted(generator, offered), **synthetic.params, **config.params}
    return _build(registry, "synthetic", params, "[synthetic] params / [dataset] params"), synthetic_root


def _build(registry: Registry, name: str, params: dict, where: str):
    check_parameters(registry.describe("dataset", name).factory, params, f"dataset {name!r} ({where})")
    return registry.build("dataset", name, **params)
