"""The encoder stage of a run: build the encoder, load its weights, train it once per (split, seed)
(stage 1), freeze it and turn every split role into cached features plus the tabular matrix."""
from __future__ import annotations

import copy
import dataclasses
import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from benchmark.components import accepted, check_parameters, encoder_offered
from benchmark.config import Experiment
from benchmark.contracts import ROLES, Item, Split
from benchmark.data.clips import ClipDataset, EvaluationClips, make_loader, normalisation_for
from benchmark.data.prepare import PreparedData
from benchmark.data.tabular import fit_tabular
from benchmark.data.tracings import TracedFrames
from benchmark.device import resolve_precision, seed_everything
from benchmark.encoding.cache import CachedFeatures, FeatureCache, FeatureKey
from benchmark.encoding.feature_set import FeatureSet
from benchmark.encoding.stage1 import freeze, pretrain_encoder
from benchmark.errors import ConfigError
from benchmark.identity import (NOT_MADE_HERE, STAGE_ONE_ENGINE, STAGE_ONE_LIBRARIES, engine_digests, file_digest,
                                library_versions, made_here_file, source_digest, stable_hash, vouch_file, weights_hash)
from benchmark.progress import bars_wanted
from benchmark.store import RunDir, atomic_write_bytes
from registry import Registry


def weights_path(experiment: Experiment) -> Path | None:
    """The encoder's local checkpoint (relative to the experiment file), or None."""
    weights = experiment.encoder.weights
    return (experiment.base_dir / weights if not weights.startswith("/") else Path(weights)) if weights else None


def encoder_identity(experiment: Experiment, registry: Registry) -> dict[str, Any]:
    """What the encoder before stage 1 is: its name, parameters, code, the engine code and library versions that
    train it and extract its features, and the bytes of its weight file (not the file's path: a moved checkpoint is the
    same encoder)."""
    config, path = experiment.encoder, weights_path(experiment)
    return {"name": config.name, "params": config.params, "strict_weights": config.strict_weights,
            "source": source_digest(registry.describe("encoder", config.name)),
            "engine": engine_digests(STAGE_ONE_ENGINE), "libraries": library_versions(STAGE_ONE_LIBRARIES),
            "weights": file_digest(path) if path is not None and path.is_file() else ""}


def build_encoder(experiment: Experiment, registry: Registry, say: Callable[[str], None]):
    encoder = new_encoder(experiment, registry)
    if experiment.encoder.weights:
        say(str(load_encoder_weights(encoder, experiment)))
    return encoder


def new_encoder(experiment: Experiment, registry: Registry):
    """The encoder built with the experiment's parameters (and clips.size and clips.frames, where it takes them)."""
    config = experiment.encoder
    factory = registry.describe("encoder", config.name).factory
    params = {**accepted(factory, encoder_offered(experiment)), **config.params}
    check_parameters(factory, params, f"encoder {config.name!r} ([encoder] params)")
    return factory(**params)


def load_encoder_weights(encoder, experiment: Experiment):
    """``encoder.weights`` loaded into ``encoder``; the load report."""
    return encoder.load_weights(weights_path(experiment), strict=experiment.encoder.strict_weights)


class EncoderStage:
    """The encoder of one (split, seed) after stage 1, frozen, with the cached features of every role.

    ``features`` is what every head of the (split, seed) is compared on. ``featurize`` turns any encoder
    of the same architecture into features (a fine-tuned one gets cache entries of its own: the key holds
    a hash of the weights), and ``trainable_copy`` / ``training_loader`` serve end-to-end fine-tuning.
    """

    def __init__(self, experiment: Experiment, registry: Registry, data: PreparedData, split: Split, seed: int,
                 run: RunDir, device: torch.device, say: Callable[[str], None], quiet: bool = False):
        self.experiment, self.data, self.split, self.seed = experiment, data, split, seed
        self.run, self.device, self.say, self.quiet = run, device, say, quiet
        seed_everything(seed, device)
        self.identity = encoder_identity(experiment, registry)
        self.encoder = build_encoder(experiment, registry, say)
        self.items = {role: data.role_items(split, role) for role in ROLES}
        self.normalisation = normalisation_for(experiment.clips, self.encoder.input_spec, self.items["train"])
        self.cache = FeatureCache(run.cache)
        self.precision = resolve_precision(experiment.encoder.precision, device)
        started = time.perf_counter()
        trained = self._stage_one()
        stage_one_done = time.perf_counter()
        self.tabular = _tabular(experiment, data, self.items)
        cached = self._cached(self.encoder.to(device), ROLES)
        self.features = {role: self._feature_set(role, entry) for role, entry in cached.items()}
        # What another process needs to have this stage without computing it (shared-storage workers).
        self.files = [*trained, *(path for entry in cached.values() for path in self.cache.paths(entry.key))]
        # Wall seconds of stage 1 (or reloading its weights) and of feature extraction (or reading the cache).
        self.seconds = {"stage 1": stage_one_done - started, "features": time.perf_counter() - stage_one_done}

    def featurize(self, encoder, roles: tuple[str, ...] = ROLES) -> dict[str, FeatureSet]:
        """Train/val/test features of ``encoder`` (frozen), computed once and cached. An encoder that
        declares other input constants than the stage's (an imported one) gets clips normalised its way."""
        return {role: self._feature_set(role, cached) for role, cached in self._cached(encoder, roles).items()}

    def _cached(self, encoder, roles: tuple[str, ...]) -> dict[str, CachedFeatures]:
        experiment, clips = self.experiment, self.experiment.clips
        normalisation = (self.normalisation if encoder.input_spec == self.encoder.input_spec
                         else normalisation_for(clips, encoder.input_spec, self.items["train"]))
        encoder_key = {**self.identity, "pretrain": dataclasses.asdict(experiment.encoder.pretrain), "seed": self.seed}
        clip_key = {**dataclasses.asdict(clips), "normalisation": dataclasses.asdict(normalisation)}
        entries = {}
        for role in roles:
            role_items = self.items[role]

            def loader(view: int, role_items: list[Item] = role_items, role: str = role):
                spec = encoder.input_spec
                dataset = (EvaluationClips(role_items, clips, spec, normalisation) if role == "test"
                           else ClipDataset(role_items, clips, spec, normalisation, train=False))
                return make_loader(dataset, experiment.encoder.batch_size, experiment.train.num_workers)

            # The stage-1 encoder (hashed by its weights) carries what the training items taught it; the
            # entry itself holds this role's clips and labels only.
            key = FeatureKey(dataset=self.data.fingerprint(self.split, (role,)),
                             split=f"{self.data.split_hash}/{self.split.name}",
                             role=role, encoder=encoder_key, clips=clip_key, precision=self.precision)
            entries[role] = self.cache.features(key, loader, encoder, self.device, progress=not self.quiet)
            self.say(f"features {self.split.name}/seed {self.seed}/{role}: {len(entries[role].features)} clips "
                     f"({entries[role].status})")
        return entries

    def _feature_set(self, role: str, cached: CachedFeatures) -> FeatureSet:
        role_items = self.items[role]
        return FeatureSet(ids=[item.id for item in role_items], features=cached.features,
                          ef=np.array([item.ef for item in role_items]), tabular=self.tabular[role],
                          clip_item=cached.item_index)

    def _stage_one(self) -> list[Path]:
        """Train the encoder once per (split, seed); its weights are stored, so a rerun reloads them.
        Returns the stored weights file (none without stage 1)."""
        config, encoder = self.experiment.encoder.pretrain, self.encoder
        if config.objective == "none" or config.epochs == 0:
            freeze(encoder)
            return []
        where = f"stage 1 {self.split.name}/seed {self.seed}"
        # Named by everything that shapes the trained weights (the training items' content, the encoder's
        # code, the engine's, its libraries and initial weights), so that a changed setting, label, video, source or
        # library version trains anew.
        shaped_by = {"initial": weights_hash(encoder), "source": self.identity["source"],
                     "engine": self.identity["engine"], "libraries": self.identity["libraries"],
                     "pretrain": dataclasses.asdict(config), "clips": dataclasses.asdict(self.experiment.clips),
                     "precision": self.precision,
                     "dataset": self.data.fingerprint(self.split, ("train",)), "split": self.data.split_hash}
        stored = self.run.encoders / f"{self.split.name}-seed{self.seed}-{stable_hash(shaped_by)[:12]}.pt"
        if stored.is_file() and not made_here_file(stored):  # received or copied: trained again, not trusted
            self.say(f"{where}: {stored.name} was {NOT_MADE_HERE}; training it again")
        elif stored.is_file():
            try:
                state = torch.load(stored, map_location="cpu", weights_only=True)
            except Exception as error:  # damaged outside the benchmark: named, then trained again
                self.say(f"{where}: {stored} is damaged ({type(error).__name__}: {error}); training it again")
            else:
                encoder.load_state_dict(state)
                freeze(encoder)
                self.say(f"{where}: reused {stored.name}")
                return [stored]
        loader = (self.traced_loader(config.batch_size, self.seed) if config.objective == "tracings"
                  else self.training_loader(config.batch_size, self.seed))
        self.say(f"{where} ({config.objective}): training {config.epochs} epochs in {self.precision}")
        started = time.perf_counter()
        # Its per-epoch lines only on a terminal: a redirected log gets this stage's start and end lines.
        history = pretrain_encoder(encoder, loader, config, self.device, self.seed, progress=bars_wanted(self.quiet),
                                   precision=self.precision)
        self.say(f"{where} ({config.objective}): loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f} "
                 f"over {config.epochs} epochs in {time.perf_counter() - started:.1f} s")
        buffer = io.BytesIO()
        torch.save({key: value.cpu() for key, value in encoder.state_dict().items()}, buffer)
        vouch_file(atomic_write_bytes(stored, buffer.getvalue()))
        return [stored]

    def trainable_copy(self):
        """A copy of the stage-1 encoder to fine-tune; the shared one stays frozen for the other models."""
        encoder = copy.deepcopy(self.encoder)
        encoder.requires_grad_(True)
        return encoder

    def training_loader(self, batch_size: int, seed: int) -> "EpochLoader":
        """Random (augmented) training clips, new ones every epoch, as ``(clip, target, item index, _)``."""
        dataset = ClipDataset(self.items["train"], self.experiment.clips, self.encoder.input_spec,
                              self.normalisation, train=self.experiment.clips.augment, seed=seed)
        loader = make_loader(dataset, batch_size, self.experiment.train.num_workers, shuffle=True, seed=seed)
        return EpochLoader(loader, dataset)

    def traced_loader(self, batch_size: int, seed: int) -> "EpochLoader":
        """The traced frames of the training videos with their LV masks (augmented like training clips)."""
        items = self.items["train"]
        dataset = TracedFrames(items, self.experiment.clips, self.encoder.input_spec, self.normalisation,
                               train=self.experiment.clips.augment, seed=seed)
        if not len(dataset):
            raise ConfigError(f"encoder.pretrain.objective = \"tracings\" needs LV tracings, but none of the "
                              f"{len(items)} training items of dataset {self.experiment.dataset.name!r} has one. "
                              "Use another objective (l1, rnc) for this dataset.")
        untraced = sum(not item.tracings for item in items)
        self.say(f"stage 1 tracings: {len(dataset)} traced frames of {len(items) - untraced} training videos"
                 + (f" ({untraced} videos without a tracing take no part)" if untraced else ""))
        loader = make_loader(dataset, batch_size, self.experiment.train.num_workers, shuffle=True, seed=seed)
        return EpochLoader(loader, dataset)


class EpochLoader:
    """Re-iterable loader that draws new random clips every epoch (its dataset reseeds per epoch)."""

    def __init__(self, loader, dataset):
        self.loader, self.dataset, self.epoch = loader, dataset, 0

    def __iter__(self):
        self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def _tabular(experiment: Experiment, data: PreparedData, items: dict[str, list[Item]]) -> dict[str, np.ndarray | None]:
    kinds = data.index.tabular_columns
    columns = experiment.dataset.tabular if experiment.dataset.tabular is not None else list(kinds)
    if not columns:
        return {role: None for role in ROLES}
    style = "reference" if experiment.dataset.tabular_transform == "reference" else "standard"
    transform = fit_tabular(columns, kinds, items["train"], experiment.dataset.name, style)
    return {role: transform.transform(role_items) for role, role_items in items.items()}
