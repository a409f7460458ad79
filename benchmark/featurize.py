"""The encoder stage of a run: build the encoder, load its weights, train it once per (split, seed)
(stage 1), freeze it and turn every split role into cached features plus the tabular matrix."""
from __future__ import annotations

import dataclasses
import io
from typing import Callable

import numpy as np
import torch

from registry import Registry

from .clips import ClipDataset, EvaluationClips, make_loader, normalisation_for
from .config import Experiment
from .contracts import ROLES, Item, Split
from .data_setup import PreparedData
from .device import seed_everything
from .engine import FeatureSet
from .features import FeatureCache, FeatureKey, weights_hash
from .params import accepted, check_parameters
from .pretrain import freeze, pretrain_encoder
from .store import RunDir, atomic_write_bytes
from .tabular import fit_tabular


def build_encoder(experiment: Experiment, registry: Registry, say: Callable[[str], None]):
    config = experiment.encoder
    factory = registry.describe("encoder", config.name).factory
    params = {**accepted(factory, {"size": experiment.clips.size, "frames": experiment.clips.frames}),
              **config.params}
    check_parameters(factory, params, f"encoder {config.name!r} ([encoder] params)")
    encoder = factory(**params)
    if config.weights:
        report = encoder.load_weights(experiment.base_dir / config.weights if not config.weights.startswith("/")
                                      else config.weights, strict=config.strict_weights)
        say(str(report))
    return encoder


def split_features(experiment: Experiment, registry: Registry, data: PreparedData, split: Split, seed: int,
                   run: RunDir, device: torch.device, say: Callable[[str], None],
                   quiet: bool = False) -> dict[str, FeatureSet]:
    """Train/val/test features of ``split`` from the encoder of ``seed``, computed once and cached."""
    seed_everything(seed, device)
    encoder = build_encoder(experiment, registry, say)
    items = {role: data.role_items(split, role) for role in ROLES}
    clips = experiment.clips
    normalisation = normalisation_for(clips, encoder.input_spec, items["train"])
    _stage_one(experiment, encoder, items["train"], normalisation, split, seed, run, device, say, quiet)
    encoder.to(device)
    cache = FeatureCache(run.cache)
    encoder_key = {"name": experiment.encoder.name, "params": experiment.encoder.params,
                   "weights": experiment.encoder.weights, "pretrain": dataclasses.asdict(experiment.encoder.pretrain),
                   "seed": seed}
    clip_key = {**dataclasses.asdict(clips), "normalisation": dataclasses.asdict(normalisation)}
    batch_size = experiment.encoder.pretrain.batch_size
    workers = experiment.train.num_workers
    tabular = _tabular(experiment, data, items)
    features = {}
    for role in ROLES:
        def loader(view: int, role_items: list[Item] = items[role], role: str = role):
            dataset = (EvaluationClips(role_items, clips, encoder.input_spec, normalisation) if role == "test"
                       else ClipDataset(role_items, clips, encoder.input_spec, normalisation, train=False))
            return make_loader(dataset, batch_size, workers)

        key = FeatureKey(dataset=data.fingerprint, split=f"{data.split_hash}/{split.name}", role=role,
                         encoder=encoder_key, clips=clip_key)
        cached = cache.features(key, loader, encoder, device, progress=not quiet)
        say(f"features {split.name}/seed {seed}/{role}: {len(cached.features)} clips ({cached.status})")
        role_items = items[role]
        features[role] = FeatureSet(
            ids=[item.id for item in role_items], features=cached.features,
            ef=np.array([item.ef for item in role_items]), tabular=tabular[role], clip_item=cached.item_index)
    return features


def _stage_one(experiment: Experiment, encoder, train_items: list[Item], normalisation, split: Split, seed: int,
               run: RunDir, device: torch.device, say: Callable[[str], None], quiet: bool) -> None:
    """Stage 1, once per (split, seed): its weights are stored so a rerun reloads instead of retraining."""
    config = experiment.encoder.pretrain
    if config.objective == "none" or config.epochs == 0:
        freeze(encoder)
        return
    stored = run.root / "encoders" / f"{split.name}-seed{seed}-{weights_hash(encoder)[:12]}.pt"
    if stored.is_file():
        encoder.load_state_dict(torch.load(stored, map_location="cpu", weights_only=True))
        freeze(encoder)
        say(f"stage 1 {split.name}/seed {seed}: reused {stored.name}")
        return
    dataset = ClipDataset(train_items, experiment.clips, encoder.input_spec, normalisation,
                          train=experiment.clips.augment, seed=seed)
    loader = make_loader(dataset, config.batch_size, experiment.train.num_workers, shuffle=True, seed=seed)
    history = pretrain_encoder(encoder, EpochLoader(loader, dataset), config, device, seed, progress=not quiet)
    say(f"stage 1 {split.name}/seed {seed} ({config.objective}): loss {history['loss'][0]:.3f} -> "
        f"{history['loss'][-1]:.3f} over {config.epochs} epochs")
    buffer = io.BytesIO()
    torch.save({key: value.cpu() for key, value in encoder.state_dict().items()}, buffer)
    atomic_write_bytes(stored, buffer.getvalue())


class EpochLoader:
    """Re-iterable loader that draws new random clips every epoch (ClipDataset reseeds per epoch)."""

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
    transform = fit_tabular(columns, kinds, items["train"], experiment.dataset.name)
    return {role: transform.transform(role_items) for role, role_items in items.items()}
