"""A model bundle: encoder, fusion and head with how to build each, in one file readable with
``weights_only=True``.

Bundle file (``save_bundle``/``load_bundle``), a ``torch.save`` dict of plain data and tensors::

    {"format": "lvefbench.bundle/1",
     "target_scale": "raw" | "standardised",
     "source": {"path": str, "epoch": int | None, "metric": float | None,
                "samples": int | None, "tabular_columns": [str] | None,    # K and inputs it was evaluated with
                "clips": {"frames": int, "frequency": int, "test_window"?: float} | None},
     "input_spec": {"frames", "size", "channels", "mean", "std"},     # what the encoder expects
     "encoder" | "fusion" | "head": {"name": str, "params": dict, "state_dict": {key: tensor}}}

Building each part is ``registry.build(kind, name, **params)`` then ``load_state_dict(state_dict)``.
"""
from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

import registry as default_registry
from benchmark.components import parameter_problems_of
from benchmark.config import MAX_CLIP_FRAMES, MAX_CLIP_SIZE
from benchmark.contracts import InputSpec, LoadReport
from benchmark.encoding.weights import load_state, read_checkpoint
from benchmark.errors import BenchmarkError, ConfigError, shown
from benchmark.store import atomic_write_bytes

BUNDLE_FORMAT = "lvefbench.bundle/1"


PARTS = ("encoder", "fusion", "head")


@dataclass(frozen=True)
class Part:
    """One component of a bundle: how to build it and the module itself."""

    name: str
    params: Mapping[str, Any]
    module: nn.Module


@dataclass
class ModelBundle:
    """An encoder, fusion and head ready to evaluate, with where they came from."""

    encoder: Part
    fusion: Part
    head: Part
    target_scale: str
    source: Mapping[str, Any]
    reports: tuple[LoadReport, ...] = ()

    def parts(self) -> dict[str, Part]:
        return {kind: getattr(self, kind) for kind in PARTS}

    def report(self) -> str:
        return "\n".join(str(report) for report in self.reports)


def save_bundle(bundle: ModelBundle, path: str | Path) -> Path:
    """Write ``bundle`` to ``path`` atomically: an interrupted save leaves no half-written bundle."""
    content = {"format": BUNDLE_FORMAT, "target_scale": bundle.target_scale, "source": dict(bundle.source),
               "input_spec": dataclasses.asdict(bundle.encoder.module.input_spec)}
    for kind, part in bundle.parts().items():
        content[kind] = {"name": part.name, "params": dict(part.params), "state_dict": part.module.state_dict()}
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_bundle(path: str | Path, registry=None, head_params: Mapping[str, Any] | None = None) -> ModelBundle:
    """Rebuild the three modules of a bundle file, loaded strictly and in eval mode. ``head_params``
    override the stored ones (e.g. another sampler for the same weights)."""
    registry = registry or default_registry.default()
    content = read_checkpoint(path)
    if not isinstance(content, Mapping) or content.get("format") != BUNDLE_FORMAT:
        raise BenchmarkError(f"{path} is not a model bundle ({BUNDLE_FORMAT}); write one with "
                             "`python -m benchmark import-mcsdr`")
    for key, problem in _content_problems(content).items():
        raise ConfigError(f"{path}: its `{key}`: {problem}")
    parts = {}
    for kind in PARTS:
        spec = content[kind]
        params = {**spec["params"], **(head_params or {})} if kind == "head" else dict(spec["params"])
        extra = {"condition_dim": parts["fusion"].module.out_dim} if kind == "head" else {}
        try:
            record = registry.describe(kind, spec["name"])
        except default_registry.RegistryError as error:  # a name no plugin of this experiment registers
            raise ConfigError(f"{path}: its `{kind}.name`: {error}") from None
        # The file names the sizes: held to the component's ranges before building (depth = 1e9 would build for ever)
        for key, problem in parameter_problems_of(record.factory, params).items():
            raise ConfigError(f"{path}: its {kind} {spec['name']!r} has `{key}`: {problem}")
        try:
            module = registry.build(kind, spec["name"], **extra, **params)
        except ValueError as error:  # the component's own refusal of a value (mcsdr's "unknown sampler 'foo'")
            given = ", ".join(f"{key} = {value!r}" for key, value in params.items())
            raise ConfigError(f"{path}: its {kind} {spec['name']!r} cannot be built with {given}: {error}") from None
        load_state(module, spec["state_dict"], f"{path}: {kind}", strict=True, drop_prefixes=())
        parts[kind] = Part(spec["name"], params, module.eval())
    parts["encoder"].module.input_spec = InputSpec(**content["input_spec"])
    source = content.get("source")
    if not isinstance(source, Mapping):
        raise ConfigError(f"{path}: its `source`: must be a table of how it was evaluated, got {shown(source)}")
    for key, problem in source_problems(source).items():
        raise ConfigError(f"{path}: its source has `{key}`: {problem}")
    return ModelBundle(**parts, target_scale=content["target_scale"], source=source)


def _content_problems(content: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with the parts, target scale and input spec of a bundle, by field: a received file's, read before
    anything is built from it (a part that is no table, or an input spec with another key, stopped validate with a
    KeyError or TypeError)."""
    problems = {}
    for kind in PARTS:
        spec = content.get(kind)
        if not isinstance(spec, Mapping):
            problems[kind] = f"must be a table of name, params and state_dict, got {shown(spec)}"
            continue
        for key, wanted, what in (("name", str, "a component's name"), ("params", Mapping, "a table"),
                                  ("state_dict", Mapping, "a table of tensors")):
            if not isinstance(spec.get(key), wanted):
                problems[f"{kind}.{key}"] = f"must be {what}, got {shown(spec.get(key))}"
    if content.get("target_scale") not in ("raw", "standardised"):
        problems["target_scale"] = f"must be \"raw\" or \"standardised\", got {shown(content.get('target_scale'))}"
    spec = content.get("input_spec")
    fields = [field.name for field in dataclasses.fields(InputSpec)]
    if not (isinstance(spec, Mapping) and set(spec) <= set(fields) and {"frames", "size"} <= set(spec)):
        return {**problems, "input_spec": f"must be a table of {', '.join(fields)}, got {shown(spec)}"}
    frames, size, channels = spec["frames"], spec["size"], spec.get("channels", 3)
    fits = {"frames": frames is None or _whole(frames) and 1 <= frames <= MAX_CLIP_FRAMES,
            "size": _whole(size) and 1 <= size <= MAX_CLIP_SIZE,
            "channels": _whole(channels) and channels >= 1,  # grey clips are repeated to any count
            "mean": _per_channel(spec.get("mean"), channels),
            "std": _per_channel(spec.get("std"), channels, positive=True)}  # clips are divided by it
    for key in (key for key, fit in fits.items() if not fit):
        problems[f"input_spec.{key}"] = f"must be what an encoder's InputSpec holds, got {shown(spec.get(key, 3))}"
    return problems


def _per_channel(value: Any, channels: Any, positive: bool = False) -> bool:
    return value is None or (isinstance(value, (list, tuple)) and len(value) == channels
                             and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                     and (v > 0 or not positive) for v in value))


def source_problems(source: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with the parts of a bundle's ``source`` that decide how it is evaluated (K, tabular columns,
    clips), by key: a received bundle's values reach the experiment's checks and its evaluation as they are."""
    problems = {}
    samples, columns = source.get("samples"), source.get("tabular_columns")
    # K past MAX_SAMPLES is refused where the model can override it (check_checkpoint_models), not here
    if samples is not None and not (_whole(samples) and samples >= 1):
        problems["samples"] = f"must be none or a positive whole number, got {shown(samples)}"
    if columns is not None and not (isinstance(columns, list) and all(isinstance(name, str) for name in columns)):
        problems["tabular_columns"] = f"must be none or a list of column names, got {shown(columns)}"
    return {**problems, **clips_problems(source.get("clips"))}


def clips_problems(clips: Any) -> dict[str, str]:
    """What is wrong with recorded clips (None, or ``frames``, ``frequency`` and optionally ``test_window``), by
    ``clips.`` + key."""
    if clips is None:
        return {}
    if not isinstance(clips, Mapping):
        return {"clips": f"must be none or a table of frames, frequency and test_window, got {shown(clips)}"}
    problems = {f"clips.{key}": "is not a recorded clip setting (frames, frequency, test_window)"
                for key in clips if key not in ("frames", "frequency", "test_window")}
    for key in ("frames", "frequency"):
        value = clips.get(key)
        if not (_whole(value) and 1 <= value <= MAX_CLIP_FRAMES):
            problems[f"clips.{key}"] = f"must be a whole number from 1 to {MAX_CLIP_FRAMES}, got {shown(value)}"
    window = clips.get("test_window", 1.0)
    if not is_share(window):
        problems["clips.test_window"] = f"must be a share above 0 and at most 1, got {shown(window)}"
    return problems


def is_share(value: Any) -> bool:
    """A number above 0 and at most 1 (a window's share of a video's frames)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
