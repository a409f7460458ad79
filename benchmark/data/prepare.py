"""From ``[dataset]`` to a checked split manifest: load the data (or its labelled synthetic stand-in),
report exclusions, build the splits every model and seed share, and write them to the run directory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from benchmark.components import accepted, check_parameters
from benchmark.config import Experiment
from benchmark.contracts import DatasetIndex, Item, Split
from benchmark.data.helpers import summarise_reasons
from benchmark.data.splits import build_manifest, write_split_files
from benchmark.identity import dataset_fingerprint, item_digest
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
    item_digests: dict[str, str]  # item id -> hash of its labels, tracings and video (see ``item_digest``)
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

    def fingerprint(self, split: Split, roles: tuple[str, ...]) -> str:
        """The content of the items of ``roles`` in ``split``: a stage that reads only the training items
        is not redone when a test label changes."""
        return dataset_fingerprint(self.item_digests[item_id] for role in roles for item_id in split.ids(role))

    def fingerprints(self) -> dict[str, dict[str, str]]:
        """Per split and role, for the manifest."""
        return {split.name: {role: self.fingerprint(split, (role,)) for role in ("train", "val", "test")}
                for split in self.splits}


def prepare_data(experiment: Experiment, registry: Registry, run: RunDir, say: Callable[[str], None]) -> PreparedData:
    config = experiment.dataset
    dataset, root = _open(experiment, registry, say)
    index = dataset.load()
    say(f"dataset {config.name} at {root}: {len(index.items)} items"
        + (f", {len(index.excluded)} excluded ({summarise_reasons(index.excluded)}); see excluded.csv"
           if index.excluded else ""))
    splits = dataset.splits(index, config.protocol, **accepted(dataset.splits, {"fold": config.fold}))
    manifest = build_manifest(index, splits, config.protocol)
    split_hash = write_split_files(run.root, manifest, index)
    digests = {item.id: item_digest(_label_record(item), item.video) for item in index.items}
    return PreparedData(index, splits, manifest, split_hash, digests, root)


def _label_record(item: Item) -> list:
    """Everything about an item but its video bytes: a changed label, attribute or tracing changes it."""
    tracings = [(tracing.frame, tracing.polygon.round(4).tolist()) for tracing in item.tracings]
    return [item.id, item.patient, item.ef, item.fold, sorted(item.tabular.items()), sorted(item.subgroups.items()),
            item.visit, tracings]


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
