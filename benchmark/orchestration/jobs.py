"""One job = one model (fusion + head) x seed x split: train on cached features, predict TEST with K
samples, score every item, and store the result. ``result.json`` is written last: it marks the job done.

A job that fails (a head returning NaN, a plugin raising) is stored as failed with its traceback; the
other jobs go on and the leaderboard lists it as failed, never as a number. A rerun retries it.
"""
from __future__ import annotations

import dataclasses
import io
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from benchmark.config import Experiment, ModelConfig
from benchmark.data.prepare import PreparedData
from benchmark.data.tabular import fit_tabular
from benchmark.encoding.encoder_stage import EncoderStage
from benchmark.encoding.feature_set import FeatureSet
from benchmark.errors import ConfigError, StoreError
from benchmark.evaluation.conformal import calibrated_stretch, stretched
from benchmark.evaluation.predictions_file import item_frame, subgroup_names, write_predictions
from benchmark.evaluation.pooling import pool_by_visit
from benchmark.evaluation.scoring import DENSITY_GRID, grid_density, item_scores
from benchmark.identity import vouch_file
from benchmark.orchestration.checkpoint_models import checkpoint_inputs, load_checkpoint_model
from benchmark.orchestration.provenance import digest, job_identity
from benchmark.orchestration.tuning import split_params
from benchmark.store import (SCORED_FILES, RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text,
                             file_records, safe_name)
from benchmark.training.finetune import finetune
from benchmark.training.loop import train_model
from benchmark.training.model import TrainedModel, build_model, build_served_head
from benchmark.training.scaling import FeatureScaler, TargetScaler, feature_scaler_for, wants_raw_targets
from registry import Registry

# Every file a job writes in its folder (those the report reads are SCORED_FILES), result.json first.
JOB_OUTPUTS = ("result.json", *SCORED_FILES, "model.pt", "traceback.txt")


@dataclass(frozen=True)
class Job:
    model: ModelConfig
    seed: int
    split: str
    digest: str
    identity: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # see provenance

    @property
    def id(self) -> str:
        return f"{self.prefix}__{self.digest[:8]}"

    @property
    def prefix(self) -> str:
        """The job's name without its digest: what earlier versions of it (other settings, data or code)
        share in the run directory."""
        return f"{safe_name(self.model.key)}__seed{self.seed}__{self.split}"


def plan_jobs(experiment: Experiment, registry: Registry, data: PreparedData,
              studies: Mapping[tuple[str, str], str]) -> list[Job]:
    """Every model x seed x split, named by its identity. ``studies``: the tuning study digest per (model key,
    split name)."""
    jobs = []
    for split in data.splits:
        for seed in experiment.seeds:
            for model in experiment.models:
                identity = job_identity(experiment, registry, data, model, seed, split,
                                        studies.get((model.key, split.name), ""))
                jobs.append(Job(model, seed, split.name, digest(identity), identity))
    return jobs


@dataclass
class JobContext:
    experiment: Experiment
    registry: Registry
    data: PreparedData
    run: RunDir
    stage: EncoderStage  # the (split, seed) encoder and its cached features
    params: Mapping[str, Any]  # tuned parameters ({} without tuning)
    quiet: bool = False

    @property
    def features(self) -> Mapping[str, FeatureSet]:
        return self.stage.features


def run_job(job: Job, context: JobContext, on_epoch: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
    """Run ``job`` and store its files; returns the stored result record (status ok or failed)."""
    experiment = context.experiment
    record = {"job": job.id, "model": job.model.key, "head": job.model.head, "fusion": job.model.fusion,
              "encoder": experiment.encoder.name, "dataset": experiment.dataset.name, "seed": job.seed,
              "split": job.split, "params": dict(context.params), "samples": experiment.evaluate.samples,
              "identity": dict(job.identity)}
    _clear_outputs(context.run.job(job.id))
    started = time.perf_counter()
    try:
        record.update(_train_and_predict(job, context, on_epoch))
        record.update(status="ok", files=file_records(context.run.job(job.id), SCORED_FILES))
    except StoreError:  # the run directory cannot take the files (disk full): no fault of the model's
        raise
    except Exception as error:  # contained: one broken head must not take the run down
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
        atomic_write_text(context.run.job(job.id) / "traceback.txt", traceback.format_exc())
    record["seconds"] = round(time.perf_counter() - started, 2)
    vouch_file(atomic_write_json(context.run.result(job.id), record))  # written last: the job is done
    return record


def _clear_outputs(directory: Path) -> None:
    """Remove what an earlier attempt of the job left in its folder (or a received folder holds): a traceback of a
    failure since mended, or a ``model.pt`` of a head that stores none, would otherwise travel with the new
    result. ``result.json`` goes first: without it the job is not done, whatever else a kill leaves."""
    for name in JOB_OUTPUTS:
        (directory / name).unlink(missing_ok=True)  # a link is removed, never followed


def _train_and_predict(job: Job, context: JobContext, on_epoch) -> dict[str, Any]:
    experiment, registry = context.experiment, context.registry
    test = context.features["test"]
    head_record = registry.describe("head", job.model.head)
    samples, point = job.model.samples or experiment.evaluate.samples, experiment.evaluate.point
    directory = context.run.job(job.id)
    details: dict[str, Any] = {}
    if job.model.checkpoint:  # a model trained elsewhere (MCSDR's best.pth or a bundle): evaluated as is
        trained = _imported(job, context)
        test = trained.test
        samples = job.model.samples or trained.source.get("samples") or experiment.evaluate.samples
        predictive = trained.model.predict(test, samples=samples, point=point, seed=job.seed)
        details["checkpoint"] = trained.source
    elif head_record.metadata.get("needs_training", True):
        params = split_params(context.params)
        settings = dataclasses.replace(experiment.train, **params.trainer)
        features = context.features
        train = features["train"]
        fusion, head = build_model(registry, job.model, train.feature_dim, train.tabular_dim, job.seed,
                                   params.head, params.fusion)
        # Standardised with the stage-1 training features (unless the head wants them raw); fine-tuning
        # trains the head on that scale too.
        feature_scaler = feature_scaler_for(head, train.features)
        started = time.perf_counter()
        if experiment.encoder.finetune:
            features, details["finetune_losses"] = _finetuned_features(job, context, fusion, head, settings,
                                                                       feature_scaler)
            test = features["test"]
        trained = train_model(fusion, head, features["train"], features["val"], settings, job.seed,
                              on_epoch=on_epoch, quiet=context.quiet, name=job.model.key,
                              feature_scaler=feature_scaler)
        details["training_seconds"] = round(time.perf_counter() - started, 2)  # the rest of the job is evaluation
        predictive = trained.predict(test, samples=samples, point=point, seed=job.seed)
        if job.model.conformal:
            val = features["val"]
            details["conformal_stretch"] = calibrated_stretch(
                trained.predict(val, samples=samples, point=point, seed=job.seed).samples, val.ef)
            predictive = stretched(predictive, details["conformal_stretch"])
        trained.save(directory / "model.pt")
        details.update(best_epoch=trained.best_epoch, epochs_run=len(trained.history))
        if head_record.metadata.get("trajectories") and test.single_clip:
            _save_arrays(directory / "trajectories.npz", _trajectories(trained, test, predictive.samples, job.seed))
    else:  # the oracle serves known posteriors, the prior the training EF: neither learns from features
        head = build_served_head(registry, job.model, context.data.index.oracle_path, context.features["train"].ef)
        predictive = head.predict_ids(test.ids, n=samples, seed=job.seed)
    items = context.data.items
    visits = [items[i].visit or i for i in test.ids]
    ids, ef, members = list(test.ids), test.ef, [[row] for row in range(len(test.ids))]
    if experiment.evaluate.pool == "visit":
        pooled = pool_by_visit(visits, test.ef, predictive)
        ids, ef, members, predictive = pooled.ids, pooled.ef, pooled.members, pooled.predictive
    first = [test.ids[rows[0]] for rows in members]  # patient and subgroups of a visit are its videos'
    scores = item_scores(ef, predictive)
    frame = item_frame(ids, [items[i].patient for i in first], scores, _subgroups(first, items))
    frame.insert(2, "split", job.split)
    frame.insert(3, "visit", [visits[rows[0]] for rows in members])
    write_predictions(directory / "predictions.csv", frame)
    arrays = {"ids": np.array(ids), "samples": predictive.samples.astype(np.float32)}
    density = grid_density(predictive)
    if density is not None:  # the posterior figure draws it instead of a KDE of the samples
        arrays.update(density_grid=DENSITY_GRID, density=density.astype(np.float32))
    _save_arrays(directory / "samples.npz", arrays)
    details.update(notes=scores.notes, samples=samples)
    return details


@dataclass
class ImportedModel:
    model: TrainedModel
    test: FeatureSet  # TEST featurized by the checkpoint's own encoder, with its own tabular inputs
    source: Mapping[str, Any]


def _imported(job: Job, context: JobContext) -> ImportedModel:
    """The checkpoint's encoder, fusion and head, and TEST as they take it: clips normalised the way the
    encoder declares, tabular columns through the transform ``checkpoint_inputs`` chose (fitted on TRAIN)."""
    experiment, stage, kinds = context.experiment, context.stage, context.data.index.tabular_columns
    bundle = load_checkpoint_model(experiment, job.model, context.registry)
    inputs = checkpoint_inputs(experiment, job.model, bundle, list(kinds), context.registry)
    transform = (fit_tabular(inputs.columns, kinds, stage.items["train"], experiment.dataset.name, inputs.transform)
                 if inputs.columns else None)
    expected, given = bundle.fusion.module.tabular_dim, transform.width if transform else 0
    if expected != given:
        raise ConfigError(f"model {job.model.key!r}: {job.model.checkpoint} expects {expected} tabular inputs, but "
                          f"the {inputs.transform} transform of {', '.join(inputs.columns) or 'no columns'} gives "
                          f"{given}; set dataset.tabular to the checkpoint's attributes (or [] for vision only)")
    scaler = TargetScaler.fit(stage.features["train"].ef, raw=bundle.target_scale == "raw")
    device = stage.device
    model = TrainedModel(bundle.fusion.module.to(device), bundle.head.module.to(device), scaler, job.model.key)
    test = stage.featurize(bundle.encoder.module.to(device), roles=("test",))["test"]
    test = dataclasses.replace(test, tabular=transform.transform(stage.items["test"]) if transform else None)
    return ImportedModel(model, test, dict(bundle.source))


def _finetuned_features(job: Job, context: JobContext, fusion, head, settings,
                        feature_scaler: FeatureScaler) -> tuple[dict[str, FeatureSet], list[float]]:
    """Fine-tune a copy of the stage-1 encoder with this model, then featurize with it; also the losses."""
    stage, config = context.stage, context.experiment.encoder
    encoder = stage.trainable_copy()
    scaler = TargetScaler.fit(stage.features["train"].ef, raw=wants_raw_targets(head))
    losses = finetune(encoder, fusion, head, stage.training_loader(settings.batch_size, job.seed),
                      stage.tabular["train"], scaler, settings, config.lr_mult, config.finetune_epochs, job.seed,
                      stage.device, job.model.key, feature_scaler)
    return stage.featurize(encoder), losses


def _subgroups(ids: list[str], items) -> dict[str, list[str]]:
    present = subgroup_names([items[i] for i in ids])
    return {name: [items[i].subgroups.get(name, "unknown") for i in ids] for name in present}


def _trajectories(trained, test: FeatureSet, samples: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Reverse-diffusion paths of the most confident and the most uncertain test item, for the
    interpretability plot, from a head that declares ``trajectories`` (``sample(..., record=True)``)."""
    spread = samples.std(axis=1)
    chosen = np.array([int(np.argmin(spread)), int(np.argmax(spread))])
    device = trained.device
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        features = torch.as_tensor(test.features[chosen], device=device)
        tabular = None if test.tabular is None else torch.as_tensor(test.tabular[chosen], device=device)
        paths = trained.head.sample(trained.condition(features, tabular), samples.shape[1], record=True)
    paths = trained.scaler.to_ef(paths.double().cpu().numpy())  # (steps + 1, 2, K)
    return {"ids": np.array(test.ids)[chosen], "labels": np.array(["confident", "ambiguous"]),
            "y": test.ef[chosen], "paths": paths.transpose(1, 0, 2)}


def _save_arrays(path, arrays: Mapping[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
