"""Components named by an experiment: checked against the registry (shared by ``validate`` and ``run`` so both
reject the same mistakes before any work starts), and experiment-level settings offered to the factories
that declare them.

Every ``params``, ``fusion_params`` and ``search_space`` key is checked against the parameters its component
declares (its constructor's, following ``**kwargs`` into the base class it passes them to), with the value's
type against the annotation, and by the component's own ``parameter_problems(params)`` where it has one
(e.g. the timm encoder asks timm's registry whether the model exists). Each value a ``search_space`` entry can
give must fit the parameter's type, and a trainer setting's value its ``train.*`` rule. A parameter that another
key already sets (``dataset.view``, ``synthetic.n``, ``clips.size``...) is refused where it would override it.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from benchmark.config import TRAINER_RULES, DatasetConfig, Experiment, ModelConfig, TrainConfig
from benchmark.contracts import CLOSED_FORMS, unable_to_segment
from benchmark.errors import ConfigError
from benchmark.store import file_problem, folder_problem
from registry import ComponentRecord, Registry, RegistryError, UnknownComponentError, load_registry
from registry.errors import did_you_mean
from registry.records import Param, param_from_spec

TRAINER_PARAMS = tuple(TRAINER_RULES)
FUSION_PREFIX = "fusion."
# Set by the engine when it builds the component, never by the experiment.
ENGINE_PARAMS = {"head": ("condition_dim", "oracle_path", "training_ef"), "fusion": ("feature_dim", "tabular_dim"),
                 "dataset": ("root",)}
# What the runner hands the synthetic stand-in from other keys. The same key in synthetic.params would override
# it unseen, past that key's checks, and generate into (overwrite) the cache folder named after that key's value.
STAND_IN_KEYS = {"format": "dataset.name", "n": "synthetic.n", "seed": "synthetic.seed",
                 "ambiguous_fraction": "synthetic.ambiguous_fraction", "label_noise": "synthetic.label_noise",
                 "view": "dataset.view", "strict": "dataset.strict"}


@dataclass(frozen=True)
class ModelParams:
    """One set of hyperparameters, split by who consumes it."""

    trainer: dict[str, Any]
    head: dict[str, Any]
    fusion: dict[str, Any]


def split_params(params: Mapping[str, Any]) -> ModelParams:
    """``lr``, ``weight_decay``, ``batch_size``, ``epochs``, ``patience`` and ``grad_clip`` go to the
    trainer, ``fusion.NAME`` to the fusion, everything else to the head."""
    trainer = {key: value for key, value in params.items() if key in TRAINER_PARAMS}
    fusion = {key[len(FUSION_PREFIX):]: value for key, value in params.items() if key.startswith(FUSION_PREFIX)}
    head = {key: value for key, value in params.items()
            if key not in TRAINER_PARAMS and not key.startswith(FUSION_PREFIX)}
    return ModelParams(trainer, head, fusion)


# The row every leaderboard gets (added by the runner unless the experiment names the prior head itself).
PRIOR = ModelConfig(head="prior", fusion="none", label="prior")


def accepted(factory: Callable[..., Any], offered: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``offered`` keyword arguments that ``factory`` declares.

    Experiment-wide settings such as ``clips.size`` or ``dataset.view`` are offered to every component;
    a component that has no such parameter simply does not take it.
    """
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(offered)
    return {key: value for key, value in offered.items() if key in parameters}


def check_parameters(factory: Callable[..., Any], params: Mapping[str, Any], where: str) -> None:
    """Raise a ConfigError naming ``where`` when ``factory`` cannot take ``params``."""
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as error:
        known = [name for name in inspect.signature(factory).parameters if name != "self"]
        raise ConfigError(f"{where}: {error}. Accepted parameters: {', '.join(known)}.") from None


def declared_parameters(factory: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """The keyword parameters ``factory`` declares, with their annotations, and whether it takes others too.

    A class whose constructor takes ``**kwargs`` and hands them to its base class (the trunk heads) declares
    the base constructor's parameters as well; ``**kwargs`` that reach no declared constructor leave it open.
    """
    functions = ([cls.__init__ for cls in factory.__mro__ if "__init__" in vars(cls)]
                 if isinstance(factory, type) else [factory])
    declared: dict[str, Any] = {}
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):  # a builtin without a signature: nothing can be said
            return declared, True
        hints = _type_hints(function)
        for parameter in parameters:
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY) and parameter.name != "self":
                declared.setdefault(parameter.name, hints.get(parameter.name, Any))
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            return declared, False
    return declared, True


def dataset_offered(config: DatasetConfig) -> dict[str, Any]:
    """The [dataset] settings a dataset that declares them (and the stand-in's loader) is built with."""
    return {"view": config.view, "strict": config.strict}


def encoder_offered(experiment: Experiment) -> dict[str, Any]:
    """The clip settings an encoder that declares them is built with: the clips are cut to them, and the
    leaderboard's protocol line reports them."""
    return {"size": experiment.clips.size, "frames": experiment.clips.frames}


def check_component_params(factory: Callable[..., Any], params: Mapping[str, Any], kind: str, name: str,
                           key_path: str, source: str, wraps: Callable[..., Any] | None = None) -> None:
    """Raise a ConfigError naming ``key_path.KEY`` for a parameter ``factory`` does not declare, a value
    of the wrong type, or one the component's ``parameter_problems`` rejects. ``wraps``: the component that
    ``factory``'s ``**kwargs`` go to (the stand-in's loader), whose parameters, and only those, it takes too."""
    declared, open_ended = declared_parameters(factory)
    inner: dict[str, Any] = {}
    if wraps is not None:
        inner, open_ended = declared_parameters(wraps)
        declared = {**inner, **declared}
    known = [key for key in declared if key not in ENGINE_PARAMS.get(kind, ())]
    for key, value in params.items():
        where = f"{source}: `{key_path}.{key}`"
        if key in ENGINE_PARAMS.get(kind, ()):
            raise ConfigError(f"{where}: {key} is set by the benchmark when it builds the {kind}; remove it.")
        if key not in declared:
            if open_ended:
                continue
            raise ConfigError(f"{where} is not a parameter of {kind} {name!r}.{did_you_mean(key, known)} "
                              f"Its parameters: {', '.join(known) or 'none'}.")
        expected = _type_problem(declared[key], value)
        if expected:
            raise ConfigError(f"{where} must be {expected}, got {value!r}.{_choice_hint(declared[key], value)}")
    for component, taken in ((factory, dict(params)), (wraps, {key: params[key] for key in params if key in inner})):
        for key, problem in parameter_problems_of(component, taken).items():
            raise ConfigError(f"{source}: `{key_path}.{key}`: {problem}")


def _check_required_params(record: ComponentRecord, given: Mapping[str, Any], key_path: str, source: str) -> None:
    """A parameter without a default that neither the experiment nor the engine gives: named here, where building
    the component would stop the pre-flight with Python's ``missing 1 required argument``. Tuning does not give it:
    the pre-flight, and a run without trials, build the component from its params alone."""
    try:
        parameters = inspect.signature(record.factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: nothing can be said
        return
    for parameter in parameters:
        if (parameter.default is parameter.empty and parameter.name not in given
                and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
                and parameter.name not in ENGINE_PARAMS.get(record.kind, ())):
            raise ConfigError(f"{source}: `{key_path}.{parameter.name}`: {record.kind} {record.name!r} "
                              f"({record.origin}) requires {parameter.name!r} (it has no default); set it in "
                              f"`{key_path}`.")


def parameter_problems_of(component: Any, params: Mapping[str, Any]) -> dict[str, str]:
    """What the component's own ``parameter_problems(params)`` says of ``params``; {} when it has none."""
    problems = getattr(component, "parameter_problems", None)
    return problems(params) if callable(problems) else {}


def check_search_space(registry: Registry, model, index: int, source: str) -> None:
    """Each ``search_space`` key names a trainer setting, ``fusion.NAME`` of the fusion, or a head parameter,
    and each entry is a valid Optuna range whose values the head's or fusion's ``parameter_problems`` accepts: asked
    before the pre-flight builds the model at each of them (``depth = {int = [1, 1000000000]}`` would build a billion
    layers). Asked at a range's two ends, which stand for the range under rules that are ranges themselves."""
    head_factory = registry.describe("head", model.head).factory
    fusion_factory = registry.describe("fusion", model.fusion).factory
    head, head_open = declared_parameters(head_factory)
    fusion, fusion_open = declared_parameters(fusion_factory)
    allowed = [*TRAINER_PARAMS, *(FUSION_PREFIX + key for key in fusion if key not in ENGINE_PARAMS["fusion"]),
               *(key for key in head if key not in ENGINE_PARAMS["head"])]
    for key, spec in model.search_space.items():
        where = f"{source}: `models[{index}].search_space.{key}`"
        takes_any = fusion_open if key.startswith(FUSION_PREFIX) else head_open
        if key not in allowed and not takes_any:
            raise ConfigError(f"{where} is neither a trainer setting ({', '.join(TRAINER_PARAMS)}), a parameter of "
                              f"head {model.head!r} nor fusion.<parameter of {model.fusion!r}>."
                              f"{did_you_mean(key, allowed)} Tunable: {', '.join(allowed)}.")
        try:
            param = param_from_spec(spec)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{where}: {error}. Write e.g. lr = {{float = [1e-4, 1e-2], log = true}}, "
                              "width = {choices = [64, 128]}") from None
        annotation = (typing.get_type_hints(TrainConfig)[key] if key in TRAINER_PARAMS
                      else fusion.get(key[len(FUSION_PREFIX):], Any) if key.startswith(FUSION_PREFIX)
                      else head.get(key, Any))
        component, name, fixed = ((None, key, {}) if key in TRAINER_PARAMS
                                  else (fusion_factory, key[len(FUSION_PREFIX):], model.fusion_params)
                                  if key.startswith(FUSION_PREFIX) else (head_factory, key, model.params))
        for value in range_values(param):
            _check_search_value(key, value, annotation, where)
        refused = _range_problem(component, fixed, name, param)
        if refused:
            raise ConfigError(f"{where} can give {refused[0]!r}: {refused[1]}")


def _range_problem(component: Any, fixed: Mapping[str, Any], name: str, param: Param) -> tuple[Any, str] | None:
    """(value, problem) for the first value of ``param``'s range that ``component``'s ``parameter_problems`` refuses
    as ``name`` beside the parameters the model fixes (a rule may join two: mcsdr's steps at most its timesteps)."""
    for value in range_values(param):
        for problem in parameter_problems_of(component, {**fixed, name: value}).values():
            return value, problem
    return None


def _check_default_space_values(head: ComponentRecord, fusion: ComponentRecord, model: ModelConfig,
                                space: Mapping[str, Param], index: int, source: str) -> None:
    """Each value a head's or fusion's default search space gives must suit the parameters the model fixes
    (``timesteps = 20`` fixed, mcsdr's default ``steps`` up to 50): such a trial would fail after stage 1 and the
    features. The model's own ``search_space`` entries are held to this by ``check_search_space``."""
    for key, param in space.items():
        if key in model.search_space or key in TRAINER_PARAMS:
            continue
        record, name, fixed, key_path = ((fusion, key[len(FUSION_PREFIX):], model.fusion_params, "fusion_params")
                                         if key.startswith(FUSION_PREFIX) else (head, key, model.params, "params"))
        refused = _range_problem(record.factory, fixed, name, param)
        if refused:
            raise ConfigError(f"{source}: `models[{index}].{key_path}`: tuning searches the default range of "
                              f"{record.kind} {record.name!r} for {name!r}, which can give {refused[0]!r} with "
                              f"{json.dumps(dict(fixed), sort_keys=True)}: {refused[1]}. Give "
                              f"`models[{index}].search_space.{key}` a range that fits, or fix {name!r} in "
                              f"`models[{index}].{key_path}`.")


def _check_default_spaces(records: Sequence[ComponentRecord], index: int, source: str) -> None:
    """Each key of a head's or fusion's own default search space (its registration's ``search_space``) must be what a
    trial can hand it: a trainer setting or a head parameter, a parameter of the fusion. A plugin's misspelt key
    would otherwise pass validate and fail every trial once stage 1 and the features are done."""
    for record in records:
        declared, open_ended = declared_parameters(record.factory)
        allowed = [*(TRAINER_PARAMS if record.kind == "head" else ()),
                   *(key for key in declared if key not in ENGINE_PARAMS[record.kind])]
        for key in record.search_space:
            if key not in allowed and not open_ended:
                raise ConfigError(f"{source}: `models[{index}].{record.kind}`: {record.kind} {record.name!r} "
                                  f"({record.origin}) declares the default search-space key {key!r}, which is "
                                  f"{'neither a trainer setting nor ' if record.kind == 'head' else ''}a parameter "
                                  f"of it.{did_you_mean(key, allowed)} Tunable: {', '.join(allowed)}.")


def search_space(registry: Registry, model: ModelConfig) -> dict[str, Param]:
    """What tuning ``model`` searches: the head's and fusion's default spaces without the parameters the model
    fixes in ``params`` and ``fusion_params`` (a default range would otherwise replace the value it was given,
    unseen) and those the head would not read (mcsdr's ``steps`` with ``sampler = "ddpm"``: trials would differ
    in nothing), then the model's own ``search_space``, which tunes whatever it names."""
    fixed = {*model.params, *(FUSION_PREFIX + key for key in model.fusion_params)}
    head = registry.describe("head", model.head)
    fusion = registry.describe("fusion", model.fusion).search_space
    defaults = {**head.search_space, **{FUSION_PREFIX + key: param for key, param in fusion.items()}}
    space = {key: param for key, param in defaults.items() if key not in fixed}
    for key, spec in model.search_space.items():
        try:
            space[key] = param_from_spec(spec)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"model {model.key!r}: search_space.{key}: {error}. Write e.g. "
                              "lr = {float = [1e-4, 1e-2], log = true}, width = {choices = [64, 128]}") from None
    unread = [key for key in _unread(head.factory, model, space) if key not in model.search_space]
    return {key: param for key, param in space.items() if key not in unread}


def check_parameters_read(factory: Callable[..., Any], model: ModelConfig, space: Mapping[str, Param], index: int,
                          source: str) -> None:
    """Refuse a head parameter the model sets (``params``) or tunes (its own ``search_space``) that the head would not
    read with any value its controlling option can take here: ``steps`` with mcsdr's ``sampler = "ddpm"`` (which
    runs all T steps) would be ignored without a word. ``space``: what tuning searches ({} when the model is not
    tuned)."""
    unread = _unread(factory, model, space)
    for table, keys in (("params", model.params), ("search_space", model.search_space)):
        for key in (key for key in keys if key in unread):
            option, readers, possible, given = unread[key]
            given = f"`models[{index}].params.{option}` sets it" if given == "params" else given
            raise ConfigError(f"{source}: `models[{index}].{table}.{key}`: head {model.head!r} reads {key} only with "
                              f"{option} = {' or '.join(map(repr, readers))}, and {option} is "
                              f"{' or '.join(map(repr, possible))} ({given}), so it would be ignored. Remove it, or "
                              f"set {option}.")


def _unread(factory: Callable[..., Any], model: ModelConfig, space: Mapping[str, Param]) -> dict[str, tuple]:
    """The head parameters read only with values of an option (the head's ``read_only_with = {parameter: (option,
    values that read it)}``) that the option cannot take here, each as (option, those values, the values it can take,
    where they come from). An option tuning searches can take any value of its range, one it does not is the
    model's ``params`` value or the head's default."""
    defaults = {name: parameter.default for name, parameter in inspect.signature(factory).parameters.items()}
    unread = {}
    for key, (option, readers) in getattr(factory, "read_only_with", {}).items():
        if option in space:
            possible, given = range_values(space[option]), "tuning gives it"
        elif option in model.params:
            possible, given = (model.params[option],), "params"
        else:
            possible, given = (defaults.get(option),), "its default"
        if not set(possible) & set(readers):
            unread[key] = (option, readers, possible, given)
    return unread


def range_values(param) -> tuple:
    """The values that stand for all a search-space entry can give: a range's two ends, or every choice."""
    return getattr(param, "choices", None) or (param.low, param.high)


def _check_search_value(key: str, value: Any, annotation: Any, where: str) -> None:
    """A trial's value must fit what it feeds: the parameter's type, and a trainer setting's [train] rule (the
    head and fusion check the rest in the pre-flight, at every such value)."""
    expected = _type_problem(annotation, value)
    if expected:
        raise ConfigError(f"{where} can give {value!r}, but it must be {expected}.{_choice_hint(annotation, value)}")
    if key in TRAINER_RULES:
        holds, message = TRAINER_RULES[key]
        if not holds(value):
            raise ConfigError(f"{where} can give {value!r}, but like `train.{key}` it {message}.")


def _type_hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # an annotation naming something not importable here: the names are still checked
        return {}


def _type_problem(annotation: Any, value: Any) -> str | None:
    """What ``value`` should have been when it does not fit ``annotation``; None when it fits or the
    annotation is beyond what a TOML value can be checked against (a Path, a module...)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(option, value) for option in typing.get_args(annotation)
                    if option is not type(None)]
        return None if None in problems else " or ".join(problems)
    if origin is Literal:
        choices = typing.get_args(annotation)
        return None if value in choices else f"one of {', '.join(map(repr, choices))}"
    if origin in (list, tuple, collections.abc.Sequence):
        return None if isinstance(value, list) else "a list"
    if origin in (dict, collections.abc.Mapping) or annotation in (dict, collections.abc.Mapping):
        return None if isinstance(value, dict) else "a table"
    if annotation is bool:
        return None if isinstance(value, bool) else "true or false"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if annotation is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if annotation is str:
        return None if isinstance(value, str) else "a string"
    return None


def _choice_hint(annotation: Any, value: Any) -> str:
    choices = [str(choice) for arg in [annotation, *typing.get_args(annotation)] if typing.get_origin(arg) is Literal
               for choice in typing.get_args(arg)]
    return did_you_mean(str(value), choices) if choices else ""


@dataclass
class Resolved:
    experiment: Experiment
    registry: Registry
    warnings: list[str] = field(default_factory=list)


def resolve(experiment: Experiment) -> Resolved:
    """Load the experiment's plugins and check every component it names and every parameter it gives them.

    The returned experiment has the dataset's own first protocol filled in where ``dataset.protocol`` is empty.
    """
    try:
        registry = load_registry(experiment.plugins, base_dir=experiment.base_dir)
    except RegistryError as error:
        raise ConfigError(f"{experiment.source}: `plugins`: {error}") from None
    warnings = [f"{failure} (ignored: the experiment does not name it)" for failure in registry.failures]
    warnings += registry.warnings
    source = experiment.source

    def check(kind: str, name: str, key_path: str):
        try:
            return registry.describe(kind, name)
        except RegistryError as error:
            # An installed plugin whose component broke its contract is left out with the others it
            # registers; the name is then unknown, and the failure says why.
            failed = "".join(f" {failure}." for failure in registry.failures)
            raise ConfigError(f"{experiment.source}: `{key_path}`: {error}{failed}") from None

    dataset = check("dataset", experiment.dataset.name, "dataset.name")
    loader = _format_loader(registry, dataset, experiment.dataset.params)
    experiment = _with_protocol(experiment, loader or dataset.factory)
    _check_view(experiment, loader or dataset.factory)
    _check_unread_settings(experiment, loader or dataset.factory)
    _check_fold_read(experiment, loader or dataset.factory)
    root = Path(experiment.dataset.root)
    if not experiment.dataset.synthetic_if_missing and not root.exists():
        raise ConfigError(f"{source}: `dataset.root` = {experiment.dataset.root!r} does not exist ({root.resolve()}), "
                          "and `dataset.synthetic_if_missing` is false. Point dataset.root at the dataset, or set "
                          "synthetic_if_missing = true to benchmark on the labelled synthetic stand-in.")
    check_component_params(dataset.factory, experiment.dataset.params, "dataset", dataset.name, "dataset.params",
                           source, wraps=loader)
    _refuse_overrides(experiment.dataset.params, "dataset.params", source,
                      {key: f"dataset.{key}" for key in accepted(dataset.factory, dataset_offered(experiment.dataset))})
    stand_in = registry.describe("dataset", "synthetic") if "synthetic" in registry.names("dataset") else None
    if experiment.dataset.uses_stand_in:
        _check_stand_in_format(experiment, stand_in)
    if stand_in is not None:
        _refuse_overrides(experiment.synthetic.params, "synthetic.params", source, STAND_IN_KEYS,
                          " (and regenerate the cached stand-in named after it)")
        check_component_params(stand_in.factory, experiment.synthetic.params, "dataset", "synthetic",
                               "synthetic.params", source, wraps=dataset.factory)
    _check_folders(experiment)  # after both tables' types: a video_cache that is no string is no path to check
    if experiment.dataset.uses_stand_in:
        _check_stand_in_loader(experiment, stand_in)
    encoder = check("encoder", experiment.encoder.name, "encoder.name").factory
    check_component_params(encoder, experiment.encoder.params, "encoder", experiment.encoder.name, "encoder.params",
                           source)
    # The protocol line of the leaderboard states clips.size and clips.frames: an override would make it lie.
    _refuse_overrides(experiment.encoder.params, "encoder.params", source,
                      {key: f"clips.{key}" for key in accepted(encoder, encoder_offered(experiment))},
                      f", which encoder {experiment.encoder.name!r} takes (and the leaderboard reports)")
    # A class shows whether it segments before anything is built; a factory function is checked in stage 1.
    problem = unable_to_segment(encoder, experiment.encoder.name) if isinstance(encoder, type) else None
    if experiment.encoder.pretrain.objective == "tracings" and problem:
        raise ConfigError(f"{source}: `encoder.pretrain.objective`: {problem}")
    dataset_tabular = declared_columns(dataset.factory)
    tuned = {}  # index -> head record of each model tuned.trials will tune
    for index, model in enumerate(experiment.models):
        head = check("head", model.head, f"models[{index}].head")
        if model.key == PRIOR.key and model.head != PRIOR.head:
            raise ConfigError(f"{source}: `models[{index}].label`: {PRIOR.key!r} names the training-"
                              f"distribution row every leaderboard has; give this {model.head!r} model another label")
        fusion = check("fusion", model.fusion, f"models[{index}].fusion")
        if model.conformal:
            _check_conformal(head, model, f"{source}: `models[{index}].conformal`")
        check_component_params(head.factory, model.params, "head", model.head, f"models[{index}].params", source)
        check_component_params(fusion.factory, model.fusion_params, "fusion", model.fusion,
                               f"models[{index}].fusion_params", source)
        check_search_space(registry, model, index, source)
        trains = head.metadata.get("needs_training", True) and not model.checkpoint
        if experiment.tune.trials and trains:
            _check_default_spaces((head, fusion), index, source)
        space = search_space(registry, model) if experiment.tune.trials and trains else {}  # {}: not tuned
        _check_default_space_values(head, fusion, model, space, index, source)
        if not model.checkpoint:  # a checkpoint's bundle records its own parameters
            _check_required_params(head, model.params, f"models[{index}].params", source)
            _check_required_params(fusion, model.fusion_params, f"models[{index}].fusion_params", source)
        check_parameters_read(head.factory, model, space, index, source)
        if experiment.tune.trials and trains and not space:
            warnings.append(f"{source}: `models[{index}]` ({model.key}): nothing to tune (neither head {model.head!r} "
                            f"nor fusion {model.fusion!r} has a search space its params leave open, and the model "
                            f"gives none): it is trained with its own settings, not tuned (its "
                            f"{experiment.tune.trials} trials would all be alike)")
        elif experiment.tune.trials and trains:
            tuned[index] = head
        if model.search_space and not (experiment.tune.trials and trains):
            why = ("`tune.trials` is 0" if not experiment.tune.trials else
                   "the model is loaded from its checkpoint" if model.checkpoint else f"head {model.head!r} does not train")
            warnings.append(f"{source}: `models[{index}].search_space` ({model.key}) is not used: {why}, so the model "
                            "is not tuned")
        if fusion.metadata.get("needs_tabular") and dataset_tabular is not None and not dataset_tabular:
            raise ConfigError(
                f"{source}: `models[{index}].fusion`: {model.fusion!r} combines tabular "
                f"attributes, but dataset {experiment.dataset.name!r} has none. Use fusion = \"none\"."
            )
        if fusion.metadata.get("needs_tabular") and experiment.dataset.tabular == [] and not model.checkpoint:
            # it would run on vision alone, its row still named for the fusion
            raise ConfigError(f"{source}: `models[{index}].fusion`: {model.fusion!r} combines tabular attributes, "
                              "but `dataset.tabular = []` gives none. Use fusion = \"none\".")
    if experiment.tune.artifacts and not experiment.tune.storage:
        warnings.append(f"{source}: `tune.artifacts` is used only by workers sharing a storage, and `tune.storage` is "
                        "empty: it applies only to a run given --storage")
    for index, metric in enumerate(experiment.evaluate.metrics):  # by name or label, in any case, as tune.metric
        find_metric(registry, metric, f"{source}: `evaluate.metrics[{index}]`")
    # Checked also while trials = 0: it is set, and a misspelt one would wait until tuning is switched on.
    metric = registry.describe("metric", find_metric(registry, experiment.tune.metric, f"{source}: `tune.metric`"))
    if not metric.metadata.get("ranked", True):
        raise ConfigError(f"{source}: `tune.metric`: {metric.name!r} is not ranked (only meaningful beside another "
                          "metric: tuning would shrink it for its own sake). Tune on a ranked metric such as CRPS.")
    _check_needs_known(registry, metric, source)
    for index, head in tuned.items():
        lacking = [need for need in metric.metadata.get("needs", ()) if not has_capability(head, need)]
        if lacking:
            raise ConfigError(f"{source}: `tune.metric`: {metric.name!r} is NaN for model `models[{index}]` "
                              f"({experiment.models[index].key}): the metric needs "
                              f"{' and '.join(map(repr, lacking))}, which head {head.name!r} does not declare, so "
                              "every trial would fail. Tune on a metric every tuned model gives, such as CRPS.")
    return Resolved(experiment, registry, warnings)


def _check_needs_known(registry: Registry, metric: ComponentRecord, source: str) -> None:
    """A metric's ``needs`` entry that no registered head could have (a closed form, or a flag some head's metadata
    sets) is the metric's misspelling: refused naming the metric, where every tuned head would be blamed for it."""
    # a flag is set by any true value, as has_capability reads it
    known = set(CLOSED_FORMS) | {key for head in registry.records("head") for key, value in head.metadata.items()
                                 if value}
    for need in metric.metadata.get("needs", ()):
        if need not in known:
            raise ConfigError(f"{source}: `tune.metric`: metric {metric.name!r} ({metric.origin}) needs {need!r}, "
                              f"which is neither a closed form ({', '.join(CLOSED_FORMS)}) nor a flag any registered "
                              f"head sets.{did_you_mean(str(need), sorted(known))} Its add_metric(needs=...) names it.")


def has_capability(head: ComponentRecord, capability: str) -> bool:
    """Whether a head has what a metric ``needs``: a closed form it defines (``log_prob``...) or a metadata flag it
    sets (``probabilistic``); capabilities are declared, never guessed."""
    if capability in CLOSED_FORMS:
        return hasattr(head.factory, capability)
    return bool(head.metadata.get(capability, False))


def _format_loader(registry: Registry, dataset: ComponentRecord, params: Mapping[str, Any]) -> Callable[..., Any] | None:
    """For a dataset that writes its data in another's on-disk format and reads them with that dataset's loader (its
    metadata ``formats``: the synthetic dataset named as ``dataset.name``, by its ``format`` parameter), that loader:
    its protocols, views and parameters are the ones the data are read with. None for any other dataset, or a format
    it does not write (refused with the dataset's own parameters)."""
    formats = dataset.metadata.get("formats")
    if not formats:
        return None
    declared = inspect.signature(dataset.factory).parameters.get("format")
    form = params.get("format", declared.default if declared is not None else None)
    if form not in formats or form not in registry.names("dataset"):
        return None
    return registry.describe("dataset", form).factory


def _check_stand_in_format(experiment: Experiment, stand_in: ComponentRecord | None) -> None:
    """The stand-in writes its data in the on-disk format of a dataset it knows (its metadata ``formats``): for
    another, the run would stop once it came to generate them."""
    formats = list(stand_in.metadata.get("formats", ())) if stand_in is not None else []
    config = experiment.dataset
    if config.name not in formats:
        raise ConfigError(f"{experiment.source}: `dataset.root` = {config.root!r} does not exist, and the synthetic "
                          f"stand-in that `dataset.synthetic_if_missing` would use instead has no {config.name!r} "
                          f"format (it writes {', '.join(formats) or 'none: no synthetic dataset is registered'}). "
                          "Point dataset.root at the data.")


def _check_stand_in_loader(experiment: Experiment, stand_in: ComponentRecord) -> None:
    """The stand-in hands ``synthetic.params`` and then ``dataset.params`` to the loader that reads its generation;
    given the format, its ``parameter_problems`` names a setting the generation cannot meet (CAMUS ``release =
    "2019"``: it writes 2023; Pediatric ``dataset.view = "PSAX"``: it writes A4C), which would otherwise stop the run
    only after generating."""
    config = experiment.dataset
    handed = {**experiment.synthetic.params, **config.params, "view": config.view}
    for key, problem in parameter_problems_of(stand_in.factory, {"format": config.name, **handed}).items():
        raise ConfigError(f"{experiment.source}: `{_handed_key(key, config)}`: {problem}")


def _handed_key(parameter: str, config: DatasetConfig) -> str:
    """The experiment key that handed the stand-in's loader ``parameter``."""
    if parameter == "view":
        return "dataset.view"
    return f"{'dataset' if parameter in config.params else 'synthetic'}.params.{parameter}"


def _check_folders(experiment: Experiment) -> None:
    """Where the data step writes must take its files: the stand-in's folder (when the data are absent) and the
    video-check cache's file."""
    problems = {}
    stand_in = experiment.dataset.uses_stand_in
    for table, params in (("dataset", experiment.dataset.params), ("synthetic", experiment.synthetic.params)):
        if params.get("video_cache") and (table == "dataset" or stand_in):
            problems[f"{table}.params.video_cache"] = file_problem(params["video_cache"], "video_checks.json")
    if stand_in:
        problems["synthetic.root"] = folder_problem(experiment.synthetic.root)
    for key, problem in problems.items():
        if problem:
            raise ConfigError(f"{experiment.source}: `{key}`: {problem}")


def _refuse_overrides(params: Mapping[str, Any], key_path: str, source: str, set_by: Mapping[str, str],
                      why: str = "") -> None:
    """A parameter that another key already sets (``set_by``: parameter -> that key) would override it unseen."""
    for key in params:
        if key in set_by:
            raise ConfigError(f"{source}: `{key_path}.{key}` would override `{set_by[key]}`{why}; set "
                              f"`{set_by[key]}` instead.")


def _with_protocol(experiment: Experiment, dataset: Callable[..., Any]) -> Experiment:
    """``dataset.protocol`` as given, or the dataset's own first protocol (Dynamic ``official``, Pediatric
    ``fold``, CAMUS ``official``); a protocol the dataset does not have is an error naming the key."""
    protocols = _declared_values(dataset, "protocols")
    config = experiment.dataset
    if not config.protocol:
        if not protocols:
            raise ConfigError(f"{experiment.source}: `dataset.protocol` must be set: dataset {config.name!r} "
                              "declares no protocols of its own")
        return dataclasses.replace(experiment, dataset=dataclasses.replace(config, protocol=protocols[0]))
    _check_declared(experiment, "protocol", protocols)
    return experiment


def _check_view(experiment: Experiment, dataset: Callable[..., Any]) -> None:
    """``dataset.view`` must be one of the dataset's declared ``views`` (ignoring case, as the datasets read it),
    where it takes a view at all: another would stop the run only once the data are loaded or generated."""
    if "view" in accepted(dataset, dataset_offered(experiment.dataset)):
        _check_declared(experiment, "view", _declared_values(dataset, "views"), fold=str.casefold)


def _check_unread_settings(experiment: Experiment, dataset: Callable[..., Any]) -> None:
    """``dataset.view`` or ``dataset.strict`` given another value than its default while the dataset has no such
    parameter (a plugin's may not): ``strict = true`` would be ignored unseen, every damaged item still excluded."""
    config, defaults = experiment.dataset, DatasetConfig()
    offered = dataset_offered(config)
    taken = accepted(dataset, offered)
    for key, value in offered.items():
        if key not in taken and value != getattr(defaults, key):
            raise ConfigError(f"{experiment.source}: `dataset.{key}` = {json.dumps(value)}, but dataset "
                              f"{config.name!r} has no {key!r} parameter, so it would be ignored; leave it out")


def _check_fold_read(experiment: Experiment, dataset: Callable[..., Any]) -> None:
    """``dataset.fold`` given another value than 0 where the data's splits do not read it: a protocol outside the
    ``fold_protocols`` the dataset's class declares (none for EchoNet-Dynamic and CAMUS; Pediatric's ``fold0`` and
    ``cv10``), or a dataset whose ``splits`` cannot take a ``fold`` at all. The run went on with the split it always
    deals, under a config that records fold 3. A dataset that declares nothing and takes ``**options`` may read it."""
    config = experiment.dataset
    if config.fold == DatasetConfig().fold:
        return
    readers = getattr(dataset, "fold_protocols", None)
    if not isinstance(readers, (list, tuple)):
        readers = None if accepted(dataset.splits, {"fold": config.fold}) else ()
    if readers is not None and config.protocol not in readers:
        which = f"only {' and '.join(map(repr, readers))} of its protocols" if readers else "none of its protocols"
        raise ConfigError(f"{experiment.source}: `dataset.fold` = {config.fold}, but dataset {config.name!r} reads it "
                          f"in {which}, and `dataset.protocol` is {config.protocol!r}, so it would be ignored; leave "
                          "it out" + (", or choose that protocol" if readers else ""))


def _declared_values(dataset: Callable[..., Any], attribute: str) -> list[str]:
    """The values a dataset class declares in ``attribute`` (``protocols``, ``views``); [] when it declares none
    (a property of the instance, as the stand-in's, is known only once it is built)."""
    values = getattr(dataset, attribute, None)
    return list(values) if isinstance(values, (list, tuple)) else []


def declared_columns(dataset: Callable[..., Any]) -> dict[str, str] | None:
    """The tabular columns a dataset class declares in ``tabular_columns`` (name -> "numeric" or "categorical", as
    its ``load()`` gives them): {} for a dataset without any, None for one that does not say (known once loaded)."""
    columns = getattr(dataset, "tabular_columns", None)
    return dict(columns) if isinstance(columns, Mapping) else None


def _check_declared(experiment: Experiment, key: str, choices: list[str],
                    fold: Callable[[str], str] = str) -> None:
    """``dataset.KEY`` is one of ``choices`` (compared after ``fold``), when the dataset declares any."""
    config = experiment.dataset
    value = getattr(config, key)
    if choices and fold(value) not in {fold(choice) for choice in choices}:
        raise ConfigError(f"{experiment.source}: `dataset.{key}`: dataset {config.name!r} has no {key} "
                          f"{value!r}.{did_you_mean(value, choices)} Its {key}s: {', '.join(choices)}.")


def _check_conformal(head, model, where: str) -> None:
    """Conformal calibration stretches a trained head's samples on VAL: it needs both a spread and VAL."""
    if not head.metadata.get("probabilistic", False):
        raise ConfigError(f"{where}: head {model.head!r} predicts a point; its intervals have zero width and "
                          "cannot be calibrated by stretching. Use a probabilistic head.")
    if model.checkpoint or not head.metadata.get("needs_training", True):
        raise ConfigError(f"{where}: only a head trained in this run is calibrated on VAL; "
                          f"{model.key!r} is not trained here (checkpoint or oracle).")


def find_metric(registry: Registry, name: str, where: str) -> str:
    """The registered metric called ``name`` or labelled so (case-insensitive)."""
    for record in registry.records("metric"):
        if name.lower() in (record.name.lower(), str(record.metadata.get("label", "")).lower()):
            return record.name
    raise ConfigError(f"{where}: {UnknownComponentError('metric', name, registry.names('metric'))}")
