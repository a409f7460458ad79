"""What a job and a tuning study depend on, part by part, and in words what changed between two runs.

A job's identity is a dict of parts (data content per role, split manifest, settings, component sources,
the engine's own source files, the versions of the libraries that compute it, weight files, tuning study, seed);
its digest names the job. Paths and storage URLs are left out, so a moved data folder or weight file, or another
storage password, reuses everything. ``result.json`` keeps the parts, so a rerun can say why a job runs again
("mse: head source changed", "torch version changed").
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from benchmark.components import accepted
from benchmark.config import Experiment, ModelConfig
from benchmark.contracts import ROLES, Split
from benchmark.data.prepare import PreparedData
from benchmark.encoding.encoder_stage import encoder_identity
from benchmark.identity import (
    JOB_ENGINE,
    JOB_LIBRARIES,
    TUNING_ENGINE,
    TUNING_LIBRARIES,
    engine_digests,
    file_digest,
    library_versions,
    source_digest,
    stable_hash,
)
from benchmark.orchestration.checkpoint_models import checkpoint_components
from benchmark.store import safe_name
from registry import Registry

# Where a job runs does not change what it computes, nor where its results are kept.
VOLATILE_TRAIN = ("device", "num_workers", "threads", "workers")
VOLATILE_TUNE = ("storage", "artifacts")


def checkpoint_path(experiment: Experiment, model: ModelConfig) -> Path | None:
    """A model's ``checkpoint`` (relative to the experiment file), or None for a model trained here."""
    if not model.checkpoint:
        return None
    path = Path(model.checkpoint)
    return path if path.is_absolute() else experiment.base_dir / path


def component_sources(registry: Registry, experiment: Experiment, model: ModelConfig) -> dict[str, str]:
    """Source digests of the encoder, fusion and head a model runs on, keyed like ``head mse``: for a model from a
    checkpoint, the ones the checkpoint builds (an import is uniformer_s + concat + mcsdr whatever the experiment's
    encoder and the model's head are)."""
    checkpoint = checkpoint_path(experiment, model)
    named = (_checkpoint_components(str(checkpoint), file_digest(checkpoint)) if checkpoint
             else {"encoder": experiment.encoder.name, "fusion": model.fusion, "head": model.head})
    return {f"{kind} {name}": source_digest(registry.describe(kind, name)) for kind, name in named.items()}


@functools.lru_cache(maxsize=16)
def _checkpoint_components(path: str, digest: str) -> dict[str, str]:
    """Read once per file content (``digest``): a checkpoint holds the weights of a whole model."""
    return checkpoint_components(Path(path))


def experiment_settings(experiment: Experiment) -> dict[str, Any]:
    """The experiment's settings that shape every model's result, without paths and storages."""
    dataset = dataclasses.asdict(experiment.dataset)
    for where in ("root", "synthetic_if_missing"):  # the data itself is hashed by content
        dataset.pop(where)
    train = dataclasses.asdict(experiment.train)
    for volatile in VOLATILE_TRAIN:
        train.pop(volatile)
    encoder = dataclasses.asdict(experiment.encoder)
    encoder.pop("weights")  # its bytes are in the encoder identity
    encoder.pop("workers")  # where stages are built: each worker uses one thread, as train.threads = 1 does
    return {"dataset": dataset, "clips": dataclasses.asdict(experiment.clips), "encoder": encoder, "train": train}


def _model_settings(model: ModelConfig) -> dict[str, Any]:
    settings = dataclasses.asdict(model)
    settings.pop("checkpoint")  # its bytes are hashed instead
    settings.pop("search_space")  # resolved, it is part of the tuning study's identity
    return settings


def study_identity(experiment: Experiment, registry: Registry, data: PreparedData, model: ModelConfig,
                   split: Split, space: dict[str, Any]) -> dict[str, Any]:
    """What a model's tuning study on ``split`` depends on: that split's TRAIN and VAL, the search space
    ``space``, the budget, the settings and code; its digest names the study."""
    tune = dataclasses.asdict(experiment.tune)
    for volatile in VOLATILE_TUNE:
        tune.pop(volatile)
    return {"data": data.fingerprint(split, ("train", "val")), "split": data.split_hash, "split name": split.name,
            "settings": {**experiment_settings(experiment), "model": _model_settings(model),
                         "samples": experiment.evaluate.samples, "point": experiment.evaluate.point},
            "search space": {key: repr(param) for key, param in sorted(space.items())}, "budget": tune,
            "sources": component_sources(registry, experiment, model), "engine": engine_digests(TUNING_ENGINE),
            "libraries": library_versions(TUNING_LIBRARIES), "encoder weights": encoder_identity(experiment, registry)["weights"], "seed": experiment.seeds[0]}


def job_identity(experiment: Experiment, registry: Registry, data: PreparedData, model: ModelConfig, seed: int,
                 split: Split, study: str) -> dict[str, Any]:
    """Everything a job's outcome depends on. ``study``: the digest of its tuning study ("" untuned)."""
    checkpoint = checkpoint_path(experiment, model)
    return {"data": {role: data.fingerprint(split, (role,)) for role in ROLES}, "split": data.split_hash,
            **_oracle(registry, data, model),
            "settings": {**experiment_settings(experiment), "model": _model_settings(model),
                         "evaluate": {"samples": experiment.evaluate.samples, "point": experiment.evaluate.point,
                                      "pool": experiment.evaluate.pool}},
            "sources": component_sources(registry, experiment, model), "engine": engine_digests(JOB_ENGINE),
            "libraries": library_versions(JOB_LIBRARIES),
            "weights": {"encoder": encoder_identity(experiment, registry)["weights"],
                        "checkpoint": file_digest(checkpoint) if checkpoint and checkpoint.is_file() else ""},
            "tuning": study, "seed": seed, "split name": split.name}


def _oracle(registry: Registry, data: PreparedData, model: ModelConfig) -> dict[str, str]:
    """The bytes of the sidecar of exact posteriors, for a head that takes it (``oracle_path``: the oracle serves
    its predictions from it): a changed posterior reruns that head's jobs. Absent for every other head, whose
    results do not depend on it."""
    path = data.index.oracle_path
    if not accepted(registry.describe("head", model.head).factory, {"oracle_path": path}):
        return {}
    return {"oracle": file_digest(path) if path is not None and path.is_file() else ""}


def stage_name(experiment: Experiment, registry: Registry, data: PreparedData, split: Split, seed: int) -> str:
    """The name of the encoder stage of ``split`` at ``seed`` (stage 1 and the features of every role), from
    what it computes with: each role's data, the clip and encoder settings, the encoder's code, the engine
    code of stage 1 and feature extraction, the encoder's initial weights, and the seed. Workers that agree on
    it share one computation."""
    settings = experiment_settings(experiment)
    encoder = encoder_identity(experiment, registry)
    identity = {"data": {role: data.fingerprint(split, (role,)) for role in ROLES}, "split": data.split_hash,
                "settings": {"clips": settings["clips"], "encoder": settings["encoder"]},
                "encoder": {"source": encoder["source"], "engine": encoder["engine"], "libraries": encoder["libraries"],
                            "weights": encoder["weights"]},
                "seed": seed}
    return f"{safe_name(split.name)}__seed{seed}__{digest(identity)[:12]}"


def digest(identity: dict[str, Any]) -> str:
    return stable_hash(identity)


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two identities, in words: ``test data changed``, ``head mse source changed``."""
    said = []
    for part in sorted(set(old) | set(new)):
        before, after = old.get(part), new.get(part)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict) and part != "settings":
            said += [f"{key} {_noun(part)} changed" for key in sorted(set(before) | set(after))
                     if before.get(key) != after.get(key)]
        else:
            said.append(f"{part} changed")
    return said


def _noun(part: str) -> str:
    return {"data": "data", "sources": "source", "weights": "weights", "engine": "engine source",
            "libraries": "version"}.get(part, part)
