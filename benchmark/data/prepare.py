"""From ``[dataset]`` to a checked split manifest: load the data (or its labelled synthetic stand-in),
report exclusions, build the splits every model and seed share, and write them to the run directory.

``load_data`` does everything that can fail on the data and writes nothing into the run directory, so that
``run`` and ``validate --data`` check the data before a run directory exists; ``store_data`` then writes it."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from benchmark.components import accepted, check_parameters, dataset_offered, declared_columns
from benchmark.config import Experiment
from benchmark.contracts import DatasetIndex, Item, Split
from benchmark.data.helpers import index_problems, summarise_exclusions, summarise_reasons
from benchmark.data.splits import build_manifest, write_split_files
from benchmark.data.tabular import check_columns, with_derived
from benchmark.data.video import video_files
from benchmark.errors import DataError, StoreError
from benchmark.identity import FileDigests, dataset_fingerprint, item_digest, user_cache, vouch_file
from benchmark.store import RunDir
from registry import Registry

VIDEO_DIGESTS = "video_digests.json"  # in the user's cache: the SHA-256 of each video file, by its stat

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


@dataclass
class LoadedData:
    """The dataset's index, checked splits and item digests, not yet written anywhere."""

    index: DatasetIndex
    splits: list[Split]
    manifest: pd.DataFrame
    root: Path
    item_digests: dict[str, str]

    def summary(self) -> list[str]:
        """What ``validate --data`` prints: items, patients, each split's roles, exclusions, tracing coverage."""
        items = self.index.items
        traced = [item for item in items if item.tracings]
        frames = sum(len(item.tracings) for item in items)
        lines = [f"{len(items)} items of {len({item.patient for item in items})} patients at {self.root}"
                 + (" (synthetic stand-in)" if self.index.synthetic else "")]
        for split, roles in self.manifest.groupby("split", sort=False):
            counts = roles["role"].value_counts()
            lines.append(f"split {split}: " + ", ".join(
                f"{role} {int(counts.get(role, 0))} items / {roles.loc[roles.role == role, 'patient'].nunique()} "
                "patients" for role in ("train", "val", "test")))
        left_out = [exclusion for exclusion in self.index.excluded if exclusion.dropped == "item"]
        lines.append(f"excluded {len(left_out)}: {summarise_reasons(left_out)}")
        dropped = summarise_exclusions([exclusion for exclusion in self.index.excluded if exclusion.dropped != "item"])
        if dropped:
            lines.append(f"kept, with {dropped}")
        share = f" ({len(traced) / len(items):.0%})" if items else ""
        lines.append(f"tracings: {len(traced)} of {len(items)} items traced{share}, {frames} traced frames")
        return lines


def load_data(experiment: Experiment, registry: Registry, say: Callable[[str], None]) -> LoadedData:
    config = experiment.dataset
    dataset, root = _open(experiment, registry, say)
    index = dataset.load()
    _check_index(index, experiment, registry)
    _check_tabular(experiment, index.tabular_columns, registry)  # those of a dataset that declares none: before stage 1
    splits = dataset.splits(index, config.protocol, **accepted(dataset.splits, {"fold": config.fold}))
    index = with_split_exclusions(index, splits)
    for note in index.notes:
        say(f"note: {note}")
    for source in dict.fromkeys(split.source for split in splits if split.source):
        say(f"protocol {config.protocol}: splits from {source}")
    summary = summarise_exclusions(index.excluded)
    say(f"dataset {config.name} at {root}: {len(index.items)} items" + (f"; {summary}; see excluded.csv"
                                                                        if summary else ""))
    return LoadedData(index, splits, build_manifest(index, splits, config.protocol), root,
                      _item_digests(index, config.name, say))


def _check_index(index: DatasetIndex, experiment: Experiment, registry: Registry) -> None:
    """The dataset's items as the contract has them (``index_problems``): a plugin's load() that breaks it is refused
    naming the items and fields, before anything reads them."""
    problems = index_problems(index)
    if problems:
        name = experiment.dataset.name
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DataError(f"dataset {name!r} ({registry.describe('dataset', name).origin}): load() broke the dataset "
                        f"contract (benchmark/contracts.py): {shown}")


def check_tabular(experiment: Experiment, registry: Registry) -> None:
    """Each ``dataset.tabular`` name must be a column the dataset declares (its ``tabular_columns``) or one derived
    from them, checked by `validate` and at the start of `run`: a misspelt one would otherwise stop the run only
    once the data are loaded (the stand-in generated, the videos checked). Undeclared columns wait for the load."""
    declared = declared_columns(registry.describe("dataset", experiment.dataset.name).factory)
    if declared is not None:
        _check_tabular(experiment, declared, registry)


def _check_tabular(experiment: Experiment, kinds: Mapping[str, str], registry: Registry) -> None:
    config = experiment.dataset
    label_derived = registry.describe("dataset", config.name).metadata.get("label_derived", ())
    if config.tabular is not None:
        check_columns(config.tabular, with_derived(kinds), config.name, f"{experiment.source}: `dataset.tabular`",
                      label_derived)
    else:  # every column the dataset gives: a label-derived one among them would stop the run once features are fitted
        check_columns(list(kinds), with_derived(kinds), config.name,
                      f"{experiment.source}: `dataset.tabular` is unset, so all of {config.name}'s columns "
                      f"({', '.join(kinds)}) would be used; list the others there instead", label_derived)


def store_data(loaded: LoadedData, run: RunDir) -> PreparedData:
    """Write ``splits.csv`` and ``excluded.csv`` into the run directory; the data as every later step uses it."""
    index = loaded.index
    split_hash = write_split_files(run.root, loaded.manifest, index)
    # Noted as made here: they are all a run leaves before its manifest, and a run stopped then resumes into the
    # folder, where a user's own splits.csv or excluded.csv would be refused (run_directory.check_not_foreign).
    vouch_file(run.splits)
    vouch_file(run.excluded)
    return PreparedData(index, loaded.splits, loaded.manifest, split_hash, loaded.item_digests, loaded.root)


def with_split_exclusions(index: DatasetIndex, splits: list[Split]) -> DatasetIndex:
    """``index`` with the items a split could not place (e.g. a patient in no split file) added to its
    exclusions, each once, so that ``excluded.csv`` accounts for every item on disk."""
    known = set(index.excluded)
    added = tuple(dict.fromkeys(e for split in splits for e in split.excluded if e not in known))
    return dataclasses.replace(index, excluded=index.excluded + added) if added else index


def _item_digests(index: DatasetIndex, dataset: str, say: Callable[[str], None]) -> dict[str, str]:
    """Each item's ``item_digest``. Every byte of its video files is read once, then known by the file's stat
    (``FileDigests``, kept in the user's cache), so a copy of the data on another machine or disk names the
    same stages and jobs, and a video rewritten in place does not. Said when reading took a while."""
    started, digests = time.perf_counter(), FileDigests(user_cache() / VIDEO_DIGESTS)
    named = {}
    for item in index.items:
        try:
            files = video_files(item.video) if item.video is not None else []
            named[item.id] = item_digest(_label_record(item), {file.name: digests.digest(file) for file in files})
        except OSError as error:
            raise DataError(f"{dataset}: {item.id} ({error.filename or item.video}): cannot read it to name the "
                            f"results by its content: {error.strerror or error}") from None
    read, size = digests.read_since_saved()
    try:
        digests.save()
    except StoreError as error:
        say(f"note: {error}; the videos will be read again next time")
    seconds = time.perf_counter() - started
    if seconds > 1:
        say(f"read {read} video files ({size / 1e9:.1f} GB) in {seconds:.1f} s to name the results by their "
            f"content; unchanged files are known by their stat next time ({digests.cache_file})")
    return named


def _label_record(item: Item) -> list:
    """Everything about an item but its video bytes: a changed label, attribute or tracing changes it. A reversed
    reading (CAMUS ES-to-ED) changes every clip; it is added only where it applies, so unaffected data keep
    their digest (and cached features)."""
    tracings = [(tracing.frame, tracing.polygon.round(4).tolist()) for tracing in item.tracings]
    return [item.id, item.patient, item.ef, item.fold, sorted(item.tabular.items()), sorted(item.subgroups.items()),
            item.visit, tracings, *(["reversed"] * item.reversed)]


def _open(experiment: Experiment, registry: Registry, say: Callable[[str], None]):
    config = experiment.dataset
    record = registry.describe("dataset", config.name)
    offered = dataset_offered(config)
    root = Path(config.root)
    if not config.uses_stand_in:
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
