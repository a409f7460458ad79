"""The encoder's pre-flight: built with the experiment's parameters, its weights loaded and one tiny clip encoded,
before any data are loaded (or generated) and before stage 1, so that a bad ``encoder.params`` or
``encoder.weights`` fails ``validate`` and ``run`` in a second, naming the key, instead of after the data. It is
built on the meta device first, and then runs for real, held to the machine's ``Budget`` (``budget``)."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from benchmark.components import parameter_problems_of
from benchmark.config import ClipsConfig, Experiment
from benchmark.device import random_state_kept, resolve_device
from benchmark.encoding.budget import BUDGET_POINT, Budget, OverBudget, estimate, limited, refused
from benchmark.encoding.encoder_stage import load_encoder_weights, new_encoder, weights_path
from benchmark.errors import ConfigError
from registry import Registry

# Where the encoder's declared input differs from the clips the run cuts, and the key that sets those.
SPEC_POINTS = {"its input_spec.frames": "clips.frames", "its input_spec.size": "clips.size"}


def preflight_encoder(experiment: Experiment, registry: Registry) -> str:
    """One line saying what passed; a ConfigError naming the file and key on the first failure. The random state
    of the run is left exactly as it was."""
    config, source = experiment.encoder, experiment.source
    path = weights_path(experiment)
    if path is not None and not path.is_file():
        raise ConfigError(f"{source}: `encoder.weights` = {config.weights!r}: there is no file {path} (a relative "
                          "path is taken from the experiment file's folder)")
    failure = _failure(experiment, registry)
    if failure:
        key, problem = failure
        raise ConfigError(f"{source}: `{key}`: encoder {config.name!r} fails the pre-flight at {problem}")
    weights = ", weights loaded" if path is not None else ""
    return f"encoder {config.name}: pre-flight ok (built{weights}, one clip encoded)"


def _failure(experiment: Experiment, registry: Registry) -> tuple[str, str] | None:
    """(the key to fix, where and how it failed), or None."""
    problem = _problem(experiment, registry)
    if problem is None:
        return None
    point, message, sized = problem
    if point == "loading its weights":
        return "encoder.weights", f"{point}: {message}"
    if point in SPEC_POINTS:
        return SPEC_POINTS[point], f"{point}: {message}"
    return _culprit(experiment, registry, point == BUDGET_POINT, sized), f"{point}: {message}"


def _problem(experiment: Experiment, registry: Registry) -> tuple[str, str, bool] | None:
    """Where the encoder fails, why, and whether for its size (past its budget, an allocation refused), or None:
    within its budget, built, weights loaded, one clip encoded to finite features."""
    problem = _over_budget(experiment, registry)
    if problem:
        return problem
    with random_state_kept(), limited(_budget(experiment)):
        point = "building it"
        try:
            encoder = new_encoder(experiment, registry)
            if experiment.encoder.weights:
                point = "loading its weights"
                load_encoder_weights(encoder, experiment)
            point = "forward(one clip)"
            return _forward_problem(encoder, experiment.clips)
        except Exception as error:  # the encoder's own error, whatever it is, at this point
            allocation = refused(error)
            return point, allocation or f"{type(error).__name__}: {error}", allocation is not None


def _over_budget(experiment: Experiment, registry: Registry) -> tuple[str, str, bool] | None:
    """(BUDGET_POINT, how) when the encoder built on the meta device takes more than its budget, with its training
    state where the run trains it (stage 1, fine-tuning); else None."""
    config = experiment.encoder
    trained = config.finetune or (config.pretrain.objective != "none" and config.pretrain.epochs > 0)
    try:
        with random_state_kept():
            estimate(lambda: new_encoder(experiment, registry), _budget(experiment), trained)
    except OverBudget as over:
        return BUDGET_POINT, str(over), True
    return None


def _budget(experiment: Experiment) -> Budget:
    return Budget.here(resolve_device(experiment.train.device),
                       "Lower the sizes in encoder.params, clips.size or clips.frames.")


def _forward_problem(encoder: Any, clips: ClipsConfig) -> tuple[str, str, bool] | None:
    spec = encoder.input_spec
    # The clip pipeline cuts clips.frames frames at the encoder's size, and the leaderboard's protocol line states
    # clips.size: an encoder that declares other values (one without a size parameter) would make that line false.
    for point, declared, given, unit in (("its input_spec.frames", spec.frames, clips.frames, "frames"),
                                         ("its input_spec.size", spec.size, clips.size, "px")):
        if declared is not None and declared != given:
            key = SPEC_POINTS[point]
            return point, (f"it expects clips of {declared} {unit}, but {key} gives {given}; set {key} = {declared}"
                           f"{' (or give the encoder a size parameter)' if unit == 'px' else ''}"), False
    clip = torch.rand(1, spec.channels, clips.frames, spec.size, spec.size)
    encoder.eval()
    with torch.no_grad():
        feature = encoder(clip)
    point = f"forward(clip {tuple(clip.shape)})"
    if not isinstance(feature, torch.Tensor) or tuple(feature.shape) != (1, encoder.feature_dim):
        shown = tuple(feature.shape) if isinstance(feature, torch.Tensor) else type(feature).__name__
        return point, f"returned {shown}, expected (1, {encoder.feature_dim}) (feature_dim)", False
    if not torch.isfinite(feature).all():
        return point, "returned non-finite features", False
    return None


def _culprit(experiment: Experiment, registry: Registry, budget_only: bool, sized: bool) -> str:
    """``encoder.params.KEY`` when the encoder passes without that one entry, else ``encoder.params`` when it failed
    for its size (which the clip settings share) or passes with none of its parameters, else ``encoder.name``: it
    fails at its own defaults, so its code is what to fix (a plugin's encoder that sets no ``input_spec``). Past its
    budget (``budget_only``), the key is the one without which it fits: asked of the estimate alone, which builds
    nothing for real."""
    problem = _over_budget if budget_only else _problem
    params = experiment.encoder.params
    factory = registry.describe("encoder", experiment.encoder.name).factory

    def passes_with(kept: dict) -> bool:
        encoder = dataclasses.replace(experiment.encoder, params=kept, weights="")
        return problem(dataclasses.replace(experiment, encoder=encoder), registry) is None

    for key in params:
        without = {name: value for name, value in params.items() if name != key}
        if parameter_problems_of(factory, without):
            continue  # the default in its place breaks a rule (width 2048 at the default depth): not built to ask
        if passes_with(without):
            return f"encoder.params.{key}"
    return "encoder.params" if sized or params and passes_with({}) else "encoder.name"
