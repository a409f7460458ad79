"""Import MCSDR's ``best.pth`` as encoder ``uniformer_s`` + fusion ``concat`` + head ``mcsdr``.

``best.pth`` holds ``model_state_dict`` (the UniFormer-S encoder) and ``regressor_state_dict`` (the
diffusion head, with ``tabular_encoder.*`` when patient attributes were used). The head's sizes are read
from the tensor shapes; ``tabular_encoder.*`` goes to the fusion, everything else to the head, and each
part is loaded strictly. Every mismatch of all three parts is reported together, key by key.

The reference trained on raw EF, so the head is built ``faithful`` (``target_scale == "raw"``, raw
features, the reference's DDIM grid and sigma), and it fed clips scaled to 0-1 without per-channel
normalisation, which the encoder's ``input_spec`` records.

How the reference evaluated the model is read from the checkpoint's ``config`` where it has one (the
reference saves its whole YAML config there): attention heads, sampler, DDIM steps and eta, K
(``evaluation.inference_samples``), the tabular columns in their order (``data.tabular_cols``) and the clips
(``data.frames``, ``data.frequency``, ``data.p_interval_test``), which ``checkpoint_models`` holds an
experiment's clips to.
Missing keys of a present config take the reference code's own defaults; without a config the
published setting (8 heads, DDIM, 10 steps, eta 0) is used and K and the columns stay unknown.
Explicit arguments override both.

The result is a ``ModelBundle`` (``benchmark.training.bundle``), which ``import-mcsdr`` saves; K and
the columns go into its ``source``.
"""
from __future__ import annotations

import numbers
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

import registry as default_registry
from benchmark.components import parameter_problems_of
from benchmark.contracts import InputSpec
from benchmark.encoding.weights import HEAD_PREFIXES, extract_state_dict, load_state, read_checkpoint
from benchmark.errors import BenchmarkError
from benchmark.training.bundle import ModelBundle, Part, clips_problems, is_share

FUSION_PREFIX = "tabular_encoder."
# The reference scales frames to 0-1 and does not normalise channels: mean 0, std 255 on the 0-255 scale.
MCSDR_INPUT = InputSpec(frames=None, size=112, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))


# The published evaluation (mcsdr.md), used when the checkpoint holds no config.
PUBLISHED = {"heads": 8, "sampler": "ddim", "steps": 10, "eta": 0.0}
# What the reference's dataset reads when its config's data table lacks them (src/data/dataset.py).
REFERENCE_CLIPS = {"frames": 32, "frequency": 1}
REFERENCE_TEST_WINDOW = [0.95]  # p_interval_test: one share, the central window of the test clip
# Where in the reference's config each recorded clip setting is read
CONFIG_KEYS = {"clips.frames": "data.frames", "clips.frequency": "data.frequency",
               "clips.test_window": "data.p_interval_test"}
# The components an import builds, whatever the file: what its results depend on besides its bytes.
BUILT = {"encoder": "uniformer_s", "fusion": "concat", "head": "mcsdr"}


def import_mcsdr(path: str | Path, heads: int | None = None, steps: int | None = None, eta: float | None = None,
                 sampler: str | None = None, registry=None) -> ModelBundle:
    """Read ``best.pth`` and load it strictly; raises ``BenchmarkError`` listing every mismatch.
    ``heads``, ``steps``, ``eta``, ``sampler``: None = as the checkpoint's config says (see above)."""
    registry = registry or default_registry.default()
    checkpoint = read_checkpoint(path)
    for key in ("model_state_dict", "regressor_state_dict"):
        if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get(key), Mapping):
            found = ", ".join(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
            raise BenchmarkError(f"{path} is not an MCSDR best.pth: it has no {key!r} (found: {found})")
    regressor = extract_state_dict(checkpoint["regressor_state_dict"], f"{path}: regressor_state_dict")
    fusion_state = {k: v for k, v in regressor.items() if k.startswith(FUSION_PREFIX)}
    head_state = {k: v for k, v in regressor.items() if not k.startswith(FUSION_PREFIX)}

    try:
        recorded = recorded_settings(checkpoint.get("config"))
    except BenchmarkError as error:
        raise BenchmarkError(f"{path}: {error}") from None
    # a received file's clips become the settings the experiment is held to: held to their ranges here
    for key, problem in clips_problems(recorded["clips"]).items():
        raise BenchmarkError(f"{path}: its config's `{CONFIG_KEYS[key]}`: {problem}")
    if recorded["samples"] is not None and recorded["samples"] < 1:  # K = -3 would reach the job as it is
        raise BenchmarkError(f"{path}: its config's `evaluation.inference_samples`: must be at least 1, got "
                             f"{recorded['samples']}")
    explicit = {"heads": heads, "steps": steps, "eta": eta, "sampler": sampler}
    options = {key: value if value is not None else recorded[key] for key, value in explicit.items()}
    fusion_params = _fusion_params(fusion_state, head_state, path)
    head_params = _head_params(head_state, path, **options)
    for key, problem in parameter_problems_of(registry.describe("head", BUILT["head"]).factory, head_params).items():
        raise BenchmarkError(f"{path}: its mcsdr head, with {key} = {head_params[key]!r} (from its config or the "
                             f"sampler settings given): {problem}")
    encoder = Part(BUILT["encoder"], {}, registry.build("encoder", BUILT["encoder"]))
    encoder.module.input_spec = MCSDR_INPUT
    fusion = Part(BUILT["fusion"], fusion_params, registry.build("fusion", BUILT["fusion"], **fusion_params))
    try:
        head = Part(BUILT["head"], head_params,
                    registry.build("head", BUILT["head"], condition_dim=fusion.module.out_dim, **head_params))
    except ValueError as error:  # the head's own refusal of a sampling setting ("unknown sampler 'foo'")
        given = ", ".join(f"{key} = {value!r}" for key, value in options.items())
        raise BenchmarkError(f"{path}: its mcsdr head cannot be built with {given} (from its config's evaluation "
                             f"table and n_head, or the sampler settings given): {error}") from None

    loads = (
        (encoder, extract_state_dict(checkpoint, str(path)), "model_state_dict", HEAD_PREFIXES),
        (fusion, fusion_state, "regressor_state_dict[tabular_encoder.*] -> fusion concat", ()),
        (head, head_state, "regressor_state_dict -> head mcsdr", ()),
    )
    reports, failures = [], []
    for part, state, label, drop in loads:
        try:
            with warnings.catch_warnings():  # a partial load is not kept: the error below lists it
                warnings.filterwarnings("ignore", message="loaded weights partially")
                reports.append(load_state(part.module, state, f"{path}: {label}", strict=False,
                                          drop_prefixes=drop))
        except BenchmarkError as error:  # a shape mismatch: keep going to report every part
            failures.append(str(error))
    failures += [str(report) for report in reports if not report.ok]
    if failures:
        raise BenchmarkError(f"{path} does not match uniformer_s + concat + mcsdr(legacy_attention):\n"
                             + "\n".join(failures))
    source = {"path": str(path), "epoch": _plain(checkpoint.get("epoch")),
              "metric": _plain(checkpoint.get("current_metric_val")), "samples": recorded["samples"],
              "tabular_columns": recorded["tabular_columns"], "clips": recorded["clips"]}
    bundle = ModelBundle(encoder, fusion, head, target_scale=head.module.target_scale, source=source,
                         reports=tuple(reports))
    for part in bundle.parts().values():
        part.module.eval()
    return bundle


def recorded_settings(config: Any) -> dict[str, Any]:
    """Heads, sampler, steps, eta, K, tabular columns and clips from the reference's saved config. A key its
    ``evaluation`` table lacks takes the reference code's default (``.get('sampler', 'ddpm')``,
    ``ddim_steps`` 1000, ``inference_samples`` 10), as the reference itself would have run; without the
    table: ``PUBLISHED`` and K unknown. Columns only where ``data.use_tabular_data`` is on; clips (frames and
    the stride ``frequency``, ``REFERENCE_CLIPS`` where the data table lacks them) where there is a data table,
    with the test window where ``p_interval_test`` is one share in (0, 1]. A value of the wrong type is a
    BenchmarkError naming its key."""
    config = config if isinstance(config, Mapping) else {}
    settings = {**PUBLISHED, "samples": None, "tabular_columns": None, "clips": None}
    predictor = _table(_table(_table(_table(config, "model"), "regressor_head"), "diffusion"), "predictor_config")
    settings["heads"] = _number(_table(predictor, "params"), "model.regressor_head.diffusion.predictor_config.params",
                                "n_head", PUBLISHED["heads"], int)
    if isinstance(evaluation := config.get("evaluation"), Mapping):
        sampler = evaluation.get("sampler", "ddpm")
        if not isinstance(sampler, str):
            raise BenchmarkError(f"its config's `evaluation.sampler`: must be a sampler's name, got {sampler!r}")
        settings.update(sampler=sampler, steps=_number(evaluation, "evaluation", "ddim_steps", 1000, int),
                        eta=_number(evaluation, "evaluation", "ddim_eta", 0.0, float),
                        samples=_number(evaluation, "evaluation", "inference_samples", 10, int))
    data = _table(config, "data")
    if data.get("use_tabular_data") and data.get("tabular_cols"):
        if not isinstance(data["tabular_cols"], (list, tuple)):  # a string would be read as one column per letter
            raise BenchmarkError(f"its config's `data.tabular_cols`: must be a list of column names, got "
                                 f"{data['tabular_cols']!r}")
        settings["tabular_columns"] = [str(column) for column in data["tabular_cols"]]
    if data:
        clips = {key: _number(data, "data", key, default, int) for key, default in REFERENCE_CLIPS.items()}
        window = data.get("p_interval_test", REFERENCE_TEST_WINDOW)
        if isinstance(window, (list, tuple)) and len(window) == 1 and is_share(window[0]):
            clips["test_window"] = float(window[0])
        settings["clips"] = clips
    return settings


def _number(table: Mapping, where: str, key: str, default: Any, kind: type) -> Any:
    """``table[key]`` (or ``default``) as ``kind``: a number, whole for ``int``; a BenchmarkError naming ``where.key``
    otherwise, where ``int()`` stopped the import with Python's ValueError or cut 2.7 to 2 unseen."""
    value = table.get(key, default)
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy's scalars too
    if not number or (kind is int and not (isinstance(value, numbers.Integral) or float(value).is_integer())):
        raise BenchmarkError(f"its config's `{where}.{key}`: must be a {'whole ' if kind is int else ''}number, got "
                             f"{value!r}")
    return kind(value)


def _table(config: Mapping, key: str) -> Mapping:
    value = config.get(key)
    return value if isinstance(value, Mapping) else {}


def _fusion_params(fusion_state, head_state, path) -> dict[str, int]:
    condition_dim = _shape(head_state, "noise_predictor.map_cond.weight", path)[1]
    if not fusion_state:
        return {"feature_dim": condition_dim, "tabular_dim": 0}
    embed_dim, tabular_dim = _shape(fusion_state, FUSION_PREFIX + "0.weight", path)
    return {"feature_dim": condition_dim - embed_dim, "tabular_dim": tabular_dim, "embed_dim": embed_dim}


def _head_params(head_state, path, **options) -> dict[str, Any]:
    return {"predictor": "legacy_attention", "faithful": True,
            "width": _shape(head_state, "noise_predictor.map_y_t.weight", path)[0],
            "time_dim": _shape(head_state, "time_mlp.1.weight", path)[0],
            "timesteps": _shape(head_state, "betas", path)[0], **options}


def _shape(state, key, path) -> tuple[int, ...]:
    if key not in state:
        raise BenchmarkError(f"{path}: regressor_state_dict has no {key!r}, which sizes the imported model; "
                             "is this an MCSDR LegacyAttention checkpoint?")
    return tuple(state[key].shape)


def _plain(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value if isinstance(value, (int, float, str, type(None))) else repr(value)


# --------------------------------------------------------------------------- bundle files


