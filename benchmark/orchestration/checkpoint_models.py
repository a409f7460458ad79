"""Models evaluated from a checkpoint instead of trained here (``[[models]] checkpoint``): MCSDR's
``best.pth`` or a bundle written by ``import-mcsdr``.

``check_checkpoint_models`` runs before any work (by ``run`` and ``validate``): it loads every such
checkpoint and refuses (exit 2) tabular inputs that cannot be the ones it was trained with, since a
tabular encoder fed other columns of the same width gives wrong predictions without a sound, and clips
other than those its config records, which its encoder would take as silently.
``checkpoint_inputs`` says which columns, and which transform, a checkpoint model is evaluated with.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from benchmark.components import declared_columns
from benchmark.config import MAX_SAMPLES, Experiment, ModelConfig
from benchmark.encoding.weights import read_checkpoint
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.training.bundle import BUNDLE_FORMAT, PARTS, ModelBundle, load_bundle
from benchmark.training.mcsdr_import import BUILT, import_mcsdr
from registry import Registry

# What `[[models]] params` may change about a model that is not trained here: how it samples.
SAMPLER_PARAMS = ("sampler", "steps", "eta")


@dataclass(frozen=True)
class TabularInputs:
    columns: list[str]  # in the order the model takes them; [] = none
    transform: str  # "standard" or "reference" (benchmark.data.tabular)


def check_checkpoint_models(experiment: Experiment, registry: Registry) -> None:
    """Load every checkpoint model and check its tabular inputs against the dataset's columns and the
    experiment's clips against those it was trained on."""
    declared = declared_columns(registry.describe("dataset", experiment.dataset.name).factory)
    available = None if declared is None else list(declared)
    for model in experiment.models:
        if model.checkpoint:
            bundle = load_checkpoint_model(experiment, model, registry)
            checkpoint_inputs(experiment, model, bundle, available, registry)
            check_clips(experiment, model, bundle)
            check_samples(experiment, model, bundle)


def check_samples(experiment: Experiment, model: ModelConfig, bundle: ModelBundle) -> None:
    """Raises ``ConfigError`` when the model would be evaluated with the K its checkpoint records and that K is outside
    the bounds ``evaluate.samples`` has: a received file's K = 10**9 would exhaust memory in the job, and K = 1 gives
    no fair CRPS (it compares two samples) and no interval."""
    recorded = bundle.source.get("samples")
    if not model.samples and recorded and not 2 <= recorded <= MAX_SAMPLES:
        key = f"models[{experiment.models.index(model)}].samples"
        raise ConfigError(f"{experiment.source}: `{key}`: model {model.key!r} ({model.checkpoint}) records K = "
                          f"{recorded} samples per item, which it would be evaluated with; from 2 (the fair CRPS "
                          f"compares two) to {MAX_SAMPLES} (held in memory) are scored. Set {key} (2 to "
                          f"{MAX_SAMPLES}).")


def check_clips(experiment: Experiment, model: ModelConfig, bundle: ModelBundle) -> None:
    """Raises ``ConfigError`` when the experiment's clips are not those the checkpoint's config records: the
    reference's (mode ``mcsdr``) of ``data.frames`` frames at stride ``data.frequency``, tested on the central
    ``p_interval_test`` of the kept frames where it records one."""
    recorded, clips = bundle.source.get("clips"), experiment.clips
    if not recorded:
        return
    wanted = {"mode": "mcsdr", **recorded}
    if all(getattr(clips, key) == value for key, value in wanted.items()):
        return
    window = (f", tested on the central {recorded['test_window']:g} of the kept frames" if "test_window" in recorded
              else "")
    given = f" at frequency {clips.frequency}, tested on {clips.test_window:g}" if clips.mode == "mcsdr" else ""
    settings = ", ".join(f"clips.{key} = {json.dumps(value)}" for key, value in wanted.items())
    raise ConfigError(
        f"{experiment.source}: `clips`: model {model.key!r} ({model.checkpoint}) was trained on clips of "
        f"{recorded['frames']} frames at frequency {recorded['frequency']}{window} (mode \"mcsdr\", recorded in the "
        f"checkpoint's config); the experiment makes {clips.mode} clips of {clips.frames} frames{given}, which its "
        f"encoder would take without a sound. Set {settings}.")


def load_checkpoint_model(experiment: Experiment, model: ModelConfig, registry: Registry) -> ModelBundle:
    """The model's bundle, sampling as the checkpoint says unless ``[[models]] params`` say otherwise."""
    where = f"{experiment.source}: `models[{experiment.models.index(model)}]"
    unknown = sorted(set(model.params) - set(SAMPLER_PARAMS))
    if unknown:
        raise ConfigError(f"{where}.params`: {', '.join(unknown)} cannot change a model loaded from a checkpoint; "
                          f"only {', '.join(SAMPLER_PARAMS)} (how it samples) can")
    path = Path(model.checkpoint)
    path = path if path.is_absolute() else experiment.base_dir / path
    if not path.is_file():
        kind = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise ConfigError(f"{where}.checkpoint`: {path} {kind}; name MCSDR's best.pth or a bundle of import-mcsdr")
    try:
        content = read_checkpoint(path)
        if isinstance(content, dict) and content.get("format") == BUNDLE_FORMAT:
            return load_bundle(path, registry, head_params=model.params)
        return import_mcsdr(path, registry=registry, **model.params)
    except BenchmarkError as error:  # the file is named; the key that chose it too, refused before any work (exit 2)
        raise ConfigError(f"{where}.checkpoint`: {error}") from None


def checkpoint_components(path: Path) -> dict[str, str]:
    """The encoder, fusion and head ``load_checkpoint_model`` builds from ``path``, by kind: the names a bundle
    records, or the three an MCSDR import always builds. Whatever ``[[models]]`` names, these are the code its
    results come from."""
    content = read_checkpoint(path)
    if isinstance(content, dict) and content.get("format") == BUNDLE_FORMAT:
        return {kind: str(content[kind]["name"]) for kind in PARTS}  # checked by load_bundle before any run
    return dict(BUILT)


def checkpoint_inputs(experiment: Experiment, model: ModelConfig, bundle: ModelBundle,
                      available: Sequence[str] | None, registry: Registry) -> TabularInputs:
    """The tabular columns and transform ``bundle`` is evaluated with.

    ``dataset.tabular_transform = "auto"`` gives a checkpoint the reference's transform, one column per
    attribute, in the order the checkpoint records (its config's ``tabular_cols``) or else the
    reference's order for the dataset (the dataset's ``reference_tabular`` metadata). Without
    ``dataset.tabular`` those columns are taken when the dataset has them. Raises ``ConfigError`` when
    the columns cannot produce the tabular encoder's width or differ from the recorded ones.
    """
    width = bundle.fusion.module.tabular_dim
    transform = "standard" if experiment.dataset.tabular_transform == "standard" else "reference"
    configured = experiment.dataset.tabular
    if not width:
        return TabularInputs([], transform)
    if transform == "standard":  # its width depends on the column kinds: the job checks it
        return TabularInputs(list(configured if configured is not None else available or []), transform)
    expected, origin = bundle.source.get("tabular_columns"), "recorded in the checkpoint's config"
    if not expected:
        reference = registry.describe("dataset", experiment.dataset.name).metadata.get("reference_tabular")
        expected = reference if reference and len(reference) == width else None
        origin = f"the reference's columns for {experiment.dataset.name}"
    if configured is not None:
        columns = list(configured)
    elif expected and (available is None or set(expected) <= set(available)):
        columns = list(expected)
    else:
        columns = list(available or [])
    if len(columns) != width or (expected and columns != list(expected)):
        wanted = (f"{', '.join(expected)}, in this order ({origin})" if expected
                  else "which ones the checkpoint does not record")
        fix = (f"Set dataset.tabular = {json.dumps(list(expected))}" if expected
               else f"Set dataset.tabular to the {width} attributes it was trained with, in its order")
        raise ConfigError(
            f"{experiment.source}: `dataset.tabular`: model {model.key!r} ({model.checkpoint}) has a tabular encoder "
            f"of width {width}: one reference-style column per attribute, {wanted}. The dataset gives "
            f"{len(columns)} ({', '.join(columns) or 'none'}). {fix}.")
    return TabularInputs(columns, transform)
