"""The experiment file: a typed schema, validated with errors that name the file, key path and fix.

Every key documented in README.md lives here, with its default. ``load_experiment`` reads TOML (and the
file its ``include`` key names, which it then states only the differences to), applies ``--set key.path=value``
overrides and returns an ``Experiment`` whose every value has been type- and range-checked.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmark.errors import ConfigError
from benchmark.store import check_name
from registry.errors import did_you_mean

N_FOLDS = 10  # the fold protocols (EchoNet-Pediatric's fold and cv10, CAMUS cv10) deal ten folds
MAX_SEED = 2**32 - 1  # numpy's seed range; torch accepts it too
# Each job holds K samples per test item (8 bytes each) several times over while it scores them: K = 10,000
# on a 10,000-video test set is already 0.8 GB a copy, and more samples move no metric by a visible digit.
MAX_SAMPLES = 10_000
# Patient bootstrap: each interval draws an (replicates, patients) count matrix, 80 MB a copy for 10,000 replicates
# of 1,000 patients; the Monte Carlo error of a 95% bound at 10,000 replicates is already a small fraction of the
# interval's width (1,000 is usual).
MAX_BOOTSTRAP = 10_000
# A clip is channels x frames x size x size floats per item in a batch: at these maxima 3 x 256 x 512 x 512 float32
# is 0.8 GB a clip. The datasets are 112 px (EchoNet) and their videos a few hundred frames at most, so anything
# larger is a typo that would otherwise surface as a MemoryError in stage 1.
MAX_CLIP_SIZE = 512
MAX_CLIP_FRAMES = 256
# Synthetic generation takes about 30 ms of CPU a video: 100,000 videos (ten times EchoNet-Dynamic, the largest
# real set) are about an hour of CPU and tens of GB of disk.
MAX_SYNTHETIC_N = 100_000
# train.threads and train.num_workers each start that many OS threads or processes at once: torch takes a C int
# (2**31 and above stop the run once its data are generated) and thousands exhaust the process table (Linux's
# pid_max is 32,768 by default) long before they speed up decoding or arithmetic on any machine's cores.
MAX_THREADS = 1024
# TOML integers are Python's, of any size; torch, numpy and the standard library take counts as C integers (a batch
# size by itertools.islice, a range by len(), a split size as a long long), so a count past 2**63 - 1 passed every
# rule above and stopped the run with an OverflowError only after stage 1 and the features were built.
MAX_INTEGER = 2**63 - 1
# The trainer settings a model's search space may tune too, each with the rule it is held to in [train] and in
# every value a search-space range can give it.
TRAINER_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda value: value > 0, "must be positive"),
    "weight_decay": (lambda value: value >= 0, "must be 0 or positive"),
    "batch_size": (lambda value: value >= 1, "must be at least 1"),
    "epochs": (lambda value: value >= 1, "must be at least 1"),
    "patience": (lambda value: value >= 1, "must be at least 1 epoch"),
    "grad_clip": (lambda value: value >= 0, "must be 0 (off) or a positive norm"),
}


@dataclass
class SyntheticConfig:
    """How the labelled synthetic stand-in is generated when the real data is absent."""

    n: int = 400
    seed: int = 0
    root: str = "data/synthetic"
    ambiguous_fraction: float = 0.2
    label_noise: float = 3.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetConfig:
    name: str = "echonet_pediatric"
    root: str = "data/echonet-pediatric"
    view: str = "A4C"
    protocol: str = ""  # "" = the dataset's own first protocol, filled in when the registry is loaded
    fold: int = 0
    synthetic_if_missing: bool = True
    strict: bool = False
    tabular: Literal["all"] | list[str] | None = None
    # "auto": the standard transform for models trained here, MCSDR's own for models from a checkpoint
    tabular_transform: Literal["auto", "standard", "reference"] = "auto"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # "all" is how an experiment that includes another restores the default (TOML has no null); it is
        # stored as the default itself so that both spellings are one experiment with one hash.
        if self.tabular == "all":
            self.tabular = None

    @property
    def uses_stand_in(self) -> bool:
        """Whether this resolves to the synthetic stand-in: the root is absent and that is allowed."""
        return self.synthetic_if_missing and not Path(self.root).exists()


@dataclass
class ClipsConfig:
    mode: Literal["mcsdr", "echonet"] = "mcsdr"
    frames: int = 16
    size: int = 112
    frequency: int = 1
    # mcsdr mode: the share of the kept frames a window covers, drawn from [low, high) in training (the reference's
    # p_interval_train; [1.0, 1.0] is its CAMUS setting, the whole video) and fixed, centred, at test
    train_window: list[float] = field(default_factory=lambda: [0.9, 1.0])
    test_window: float = 0.95
    period: int = 2
    test_clips: int = 1
    augment: bool = True
    normalise: Literal["encoder", "dataset", "none"] = "encoder"
    intensity_jitter: float = 0.0  # training gain jitter: frames scaled by 1 +- up to this fraction
    speckle: float = 0.0  # training multiplicative gamma noise with this std (0 = off)


@dataclass
class PretrainConfig:
    """Stage 1: the shared encoder training, once per seed, before the encoder is frozen."""

    objective: Literal["none", "l1", "mse", "rnc", "tracings"] = "l1"
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 16
    rnc_weight: float = 1.0
    temperature: float = 2.0


@dataclass
class EncoderConfig:
    name: str = "tiny3d"
    weights: str = ""
    strict_weights: bool = True
    finetune: bool = False
    finetune_epochs: int = 5
    lr_mult: float = 0.1
    params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8  # clips per forward pass when features are extracted
    # Processes that build the encoder stages (stage 1 and features) of different seeds side by side, one
    # torch thread each: small convolutions do not scale over threads, processes do. 1 = in the run's process.
    workers: int = 1
    # False: one encoder per (split, seed), so the seeds' spread includes stage 1's. True: stage 1 and the
    # features are built once per split with the first seed and every seed's heads train on them (DESIGN's
    # "shared encoder"): the seeds then vary the heads only, and every head sees the very same features.
    shared: bool = False
    # The arithmetic of stage 1 and feature extraction. "bfloat16" runs the encoder's matrix products and
    # convolutions under torch.autocast (on the CPU too: area_length's stage-1 step 1.7x and feature pass
    # 2.6x as fast on a CPU with native bfloat16, perf/encoder_precision.py) and keeps float32 weights, losses
    # and features; "auto" takes it where the device computes bfloat16 natively, float32 elsewhere.
    precision: Literal["float32", "bfloat16", "auto"] = "float32"
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class ModelConfig:
    head: str = ""
    fusion: str = "concat"
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    fusion_params: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    samples: int = 0  # K for this model; 0 = evaluate.samples (a checkpoint: the K it was evaluated with)
    conformal: bool = False  # stretch the TEST predictive so its intervals reach nominal coverage on VAL

    @property
    def key(self) -> str:
        """The row name; a conformalised model says so, and stays distinct from the same model without."""
        name = self.label or f"{self.head}+{self.fusion}"
        return f"{name} (conformal)" if self.conformal else name


@dataclass
class TuneConfig:
    trials: int = 0
    timeout: float = 0.0
    metric: str = "CRPS"
    storage: str = ""
    artifacts: str = ""  # where shared workers keep stage outputs and model weights: a folder or s3://bucket/prefix
    epochs: int = 0


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 1e-5
    patience: int = 10
    monitor: Literal["loss", "mae", "crps"] = "loss"  # early stopping on validation loss, MAE or CRPS
    grad_clip: float = 1.0
    ema: float = 0.0  # decay of an exponential moving average of the weights per step; 0 = none
    # Validate (and so keep the best weights, stop early, report to Optuna) every this many epochs and at the
    # last: a diffusion head's validation MAE samples every VAL item, several times the cost of its epoch.
    validate_every: int = 1
    device: str = "auto"
    amp: bool = False
    num_workers: int = 0
    threads: int = 0
    # Processes that tune the models and run the jobs side by side on the CPU, one torch thread each, every
    # job once its model is tuned: small heads do not scale over threads, processes do. 1 = in the run's process.
    workers: int = 1


@dataclass
class EvaluateConfig:
    samples: int = 40
    point: Literal["mean", "median"] = "mean"
    pool: Literal["video", "visit"] = "video"
    bootstrap: int = 1000
    metrics: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    name: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])
    plugins: list[str] = field(default_factory=list)
    baseline: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    models: list[ModelConfig] = field(default_factory=list)
    tune: TuneConfig = field(default_factory=TuneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    source: str = field(default="", metadata={"internal": True})  # the file it came from

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    def stage_seed(self, seed: int) -> int:
        """The seed of the encoder stage whose features the heads of run seed ``seed`` train on."""
        return self.seeds[0] if self.encoder.shared else seed

    def model(self, key: str) -> ModelConfig:
        for model in self.models:
            if model.key == key:
                return model
        raise ConfigError(f"no model {key!r};{did_you_mean(key, [m.key for m in self.models])} "
                          f"models: {', '.join(m.key for m in self.models)}")


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    path = Path(path)
    raw = _read_with_includes(path, ())
    for override in overrides:
        apply_override(raw, override, str(path))
    return from_dict(raw, str(path))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read experiment file {path}: {error.strerror or error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}. Fix the syntax at that line.") from None


def _read_with_includes(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The raw table of ``path`` laid over the file its ``include`` names (relative to ``path``), recursively.

    ``chain``: the files that include this one, outermost first, to name a cycle instead of recursing forever.
    """
    raw = _read_toml(path)
    if "include" not in raw:
        return raw
    include = raw.pop("include")
    if not isinstance(include, str) or not include:
        _fail(str(path), "include", f"expected the path of another experiment file, got {_kind(include)} {include!r}")
    base = path.parent / include
    here = chain + (path.resolve(),)
    if base.resolve() in here:
        cycle = " -> ".join(str(p) for p in here[here.index(base.resolve()):] + (base.resolve(),))
        _fail(str(path), "include", f"= {include!r} makes a cycle: {cycle}")
    if not base.is_file():
        _fail(str(path), "include", f"= {include!r}: there is no file {base} (the path is relative to {path})")
    try:
        included = _read_with_includes(base, here)
    except ConfigError as error:
        raise ConfigError(f"{error} (included by {path})") from None
    return _merged(included, raw)


def _merged(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """``delta`` over ``base``: tables merge key by key; anything else, arrays included, replaces."""
    merged = dict(base)
    for key, value in delta.items():
        both_tables = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both_tables else value
    return merged


def from_dict(raw: dict[str, Any], source: str = "<dict>") -> Experiment:
    experiment = _convert(Experiment, raw, "", source)
    experiment.source = source
    _check_semantics(experiment, source)
    return experiment


def apply_override(raw: dict[str, Any], override: str, source: str) -> None:
    """Apply ``key.path=value`` (value in TOML syntax, bare words taken as strings) to ``raw``."""
    if "=" not in override:
        raise ConfigError(f"--set {override!r}: expected key.path=value, e.g. --set train.epochs=5")
    key_path, text = (part.strip() for part in override.split("=", 1))
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    parts = key_path.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_element(node, part, ".".join(parts[: depth + 1]), source)
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {override!r}: {'.'.join(parts[:depth + 1])} is not a table")
    if isinstance(node, list):
        index = _list_index(node, parts[-1], key_path, source)
        node[index] = value
    else:
        node[parts[-1]] = value


def _list_index(node: list, part: str, key_path: str, source: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{source}: `{key_path}` (--set): {part!r} is not an index of a list of {len(node)} "
                          f"(0 to {len(node) - 1})")
    return int(part)


def _list_element(node: list, part: str, key_path: str, source: str) -> Any:
    return node[_list_index(node, part, key_path, source)]


# --------------------------------------------------------------------------- type checking
def _convert(annotation: Any, value: Any, key_path: str, source: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _convert_table(annotation, value, key_path, source)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        for option in inner[:-1]:  # the last option's error is the one reported
            try:
                return _convert(option, value, key_path, source)
            except ConfigError:
                continue
        return _convert(inner[-1], value, key_path, source)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            hint = did_you_mean(str(value), [str(c) for c in choices])
            _fail(source, key_path, f"must be one of {', '.join(map(repr, choices))}, got {value!r}.{hint}")
        return value
    if origin is list:
        if not isinstance(value, list):
            _fail(source, key_path, f"expected a list, got {_kind(value)} {value!r}")
        (inner,) = typing.get_args(annotation)
        return [_convert(inner, element, f"{key_path}[{i}]", source) for i, element in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _fail(source, key_path, f"expected a table, got {_kind(value)} {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (str, int, float, bool) and (
        not isinstance(value, annotation) or (annotation is int and isinstance(value, bool))
    ):
        _fail(source, key_path, f"expected {annotation.__name__}, got {_kind(value)} {value!r}")
    return value


def _convert_table(cls: type, value: Any, key_path: str, source: str) -> Any:
    if not isinstance(value, dict):
        _fail(source, key_path or "<top level>", f"expected a table, got {_kind(value)} {value!r}")
    hints = typing.get_type_hints(cls)
    public = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    kwargs = {}
    for key, element in value.items():
        child = f"{key_path}.{key}" if key_path else key
        if key not in public:
            hint = did_you_mean(key, public)
            siblings = f" Keys of {'[' + key_path + ']' if key_path else 'the top level'}: {', '.join(public)}."
            _fail(source, child, f"is not a known key.{hint}{siblings}")
        kwargs[key] = _convert(hints[key], element, child, source)
    return cls(**kwargs)


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a float"}.get(type(value), type(value).__name__)


def _fail(source: str, key_path: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"{source}: `{key_path}` {message}")


def _check_semantics(experiment: Experiment, source: str) -> None:
    _check_finite(experiment, "", source)
    e = experiment
    clips, encoder, pretrain, train, tune, evaluate = e.clips, e.encoder, e.encoder.pretrain, e.train, e.tune, e.evaluate
    checks = [
        (not e.name, "name", "must be set: it names the run directory, e.g. name = \"pediatric\""),
        (not e.seeds, "seeds", "must list at least one seed, e.g. seeds = [0, 1, 2]"),
        (len(set(e.seeds)) != len(e.seeds), "seeds", f"has duplicates: {e.seeds}"),
        (any(not 0 <= seed <= MAX_SEED for seed in e.seeds), "seeds",
         f"must be between 0 and {MAX_SEED} (the seed range of numpy and torch), got {e.seeds}"),
        (not e.models, "models", "needs at least one [[models]] table with a head"),
        (e.dataset.tabular is not None and len(set(e.dataset.tabular)) != len(e.dataset.tabular), "dataset.tabular",
         f"names a column twice: {e.dataset.tabular} (each column is one input)"),
        # Path("") is the current directory: the data would be read from, or generated into, wherever run starts
        (not e.dataset.root, "dataset.root", "must name the dataset's folder (\"\" would be the current directory)"),
        (not e.synthetic.root, "synthetic.root",
         "must name a folder for the generated stand-ins (\"\" would be the current directory)"),
        (not 0 <= e.dataset.fold < N_FOLDS, "dataset.fold",
         f"must be between 0 and {N_FOLDS - 1} (the test fold of a ten-fold protocol), got {e.dataset.fold}"),
        (e.synthetic.n < 10, "synthetic.n", "must be at least 10 videos"),
        (e.synthetic.n > MAX_SYNTHETIC_N, "synthetic.n",
         f"must be at most {MAX_SYNTHETIC_N:,} videos (about 30 ms of CPU and a few hundred kB of disk each)"),
        (not 0 <= e.synthetic.seed <= MAX_SEED, "synthetic.seed", f"must be between 0 and {MAX_SEED}"),
        (not 0 <= e.synthetic.ambiguous_fraction <= 1, "synthetic.ambiguous_fraction", "must be between 0 and 1"),
        (e.synthetic.label_noise < 0, "synthetic.label_noise", "must be 0 (none) or a positive std in EF points"),
        (clips.frames < 1, "clips.frames", "must be at least 1"),
        (clips.frames > MAX_CLIP_FRAMES, "clips.frames",
         f"must be at most {MAX_CLIP_FRAMES}: every clip of a batch holds frames x size x size values per channel"),
        (clips.size < 8, "clips.size", "must be at least 8 pixels"),
        (clips.size > MAX_CLIP_SIZE, "clips.size",
         (f"must be at most {MAX_CLIP_SIZE} pixels: every clip of a batch holds frames x size x size values per "
          "channel (the datasets are 112 px)")),
        (clips.frequency < 1, "clips.frequency", "must be at least 1"),
        (clips.period < 1, "clips.period", "must be at least 1"),
        # A stride past the longest echo video (a few hundred frames) keeps one frame, repeated as the clip.
        *((getattr(clips, key) > MAX_CLIP_FRAMES, f"clips.{key}",
           f"must be at most {MAX_CLIP_FRAMES} frames: a longer stride keeps one frame of an echo video, repeated")
          for key in ("frequency", "period")),
        (not (len(clips.train_window) == 2 and 0 < clips.train_window[0] <= clips.train_window[1] <= 1),
         "clips.train_window", f"must be [low, high] with 0 < low <= high <= 1, got {clips.train_window}"),
        (not 0 < clips.test_window <= 1, "clips.test_window",
         f"must be above 0 and at most 1, got {clips.test_window}"),
        *((clips.mode == "echonet" and getattr(clips, key) != getattr(ClipsConfig(), key), f"clips.{key}",
           "applies to mode \"mcsdr\" (a window of the video's frames); mode \"echonet\" takes frames `period` "
           "apart. Remove it or set clips.mode = \"mcsdr\"") for key in ("train_window", "test_window")),
        (clips.test_clips < 0, "clips.test_clips", "must be 0 (all clips) or a positive count"),
        # Refused here, not first by the clip sampler: that stopped the run once its data were loaded, in its folder.
        (clips.mode == "mcsdr" and clips.test_clips != 1, "clips.test_clips",
         ("applies to mode \"echonet\"; mode \"mcsdr\" tests one clip (the central `test_window`). Set "
          "clips.test_clips = 1 or clips.mode = \"echonet\"")),
        (not 0 <= clips.intensity_jitter < 1, "clips.intensity_jitter", "must be at least 0 (off) and below 1"),
        (clips.speckle < 0, "clips.speckle", "must be 0 (off) or a positive std"),
        (encoder.batch_size < 1, "encoder.batch_size", "must be at least 1"),
        (encoder.workers < 1, "encoder.workers", "must be at least 1 (1 = stages built in the run's process)"),
        (encoder.workers > MAX_THREADS, "encoder.workers", f"must be at most {MAX_THREADS}: each is a process"),
        (encoder.finetune_epochs < 1 and encoder.finetune, "encoder.finetune_epochs",
         "must be at least 1 when encoder.finetune is set"),
        (encoder.lr_mult <= 0, "encoder.lr_mult", "must be positive"),
        (pretrain.epochs < 0, "encoder.pretrain.epochs", "must be 0 (no stage 1) or more"),
        (pretrain.lr <= 0, "encoder.pretrain.lr", "must be positive"),
        (pretrain.batch_size < 1, "encoder.pretrain.batch_size", "must be at least 1"),
        (pretrain.objective == "rnc" and pretrain.batch_size < 2, "encoder.pretrain.batch_size",
         "must be at least 2 with objective 'rnc': Rank-N-Contrast contrasts the clips of a batch with each other"),
        (pretrain.rnc_weight < 0, "encoder.pretrain.rnc_weight", "must be 0 or positive"),
        (pretrain.temperature <= 0, "encoder.pretrain.temperature", "must be positive"),
        (tune.trials < 0, "tune.trials", "must be 0 (no tuning) or more"),
        (tune.timeout < 0, "tune.timeout", "must be 0 (no limit) or a positive number of seconds"),
        (tune.epochs < 0, "tune.epochs", "must be 0 (train.epochs) or more"),
        *((not holds(getattr(train, key)), f"train.{key}", message) for key, (holds, message) in TRAINER_RULES.items()),
        (train.validate_every < 1, "train.validate_every", "must be at least 1 (1 = every epoch)"),
        # Mixed precision is CUDA's only (benchmark.device.amp_dtype): on a device named as the CPU it was off unsaid.
        (train.amp and train.device.strip().lower() == "cpu", "train.amp",
         "is mixed precision on CUDA, and `train.device` = \"cpu\", where it would be off; set amp = false, or device "
         "= \"auto\" or \"cuda\""),
        (not 0 <= train.ema < 1, "train.ema", "must be at least 0 (off) and below 1"),
        (train.num_workers < 0, "train.num_workers", "must be 0 (decode in the main process) or more"),
        (train.num_workers > MAX_THREADS, "train.num_workers",
         f"must be at most {MAX_THREADS}: each is a decoding process, all started at once"),
        (train.threads < 0, "train.threads", "must be 0 (torch's default) or a positive thread count"),
        (train.threads > MAX_THREADS, "train.threads",
         f"must be at most {MAX_THREADS}: each is an OS thread of torch's pool, all started at once"),
        (train.workers < 1, "train.workers", "must be at least 1 (1 = tuning and jobs in the run's process)"),
        (train.workers > MAX_THREADS, "train.workers", f"must be at most {MAX_THREADS}: each is a process"),
        (evaluate.samples < 2, "evaluate.samples", "must be at least 2 (the fair CRPS needs two samples)"),
        (evaluate.samples > MAX_SAMPLES, "evaluate.samples",
         (f"must be at most {MAX_SAMPLES}: each job keeps K samples per test item in memory several times over "
          f"(K = {evaluate.samples} on a 1,000-video test set: {evaluate.samples * 1000 * 8 / 1e9:.3g} GB a copy)")),
        (evaluate.bootstrap < 1, "evaluate.bootstrap", "must be at least 1 replicate (1000 is usual)"),
        (evaluate.bootstrap > MAX_BOOTSTRAP, "evaluate.bootstrap",
         (f"must be at most {MAX_BOOTSTRAP:,} replicates: each interval draws a (replicates x patients) count "
          "matrix (1000 is usual)")),
    ]
    for failed, key_path, message in checks:
        if failed:
            _fail(source, key_path, message)
    _check_integers(experiment, "", source)  # after the rules above, whose own bounds say more where they have one
    check_name(experiment.name, f"{source}: `name`")  # it names the run directory and the studies
    problem = artifacts_problem(tune.artifacts)
    if problem:
        _fail(source, "tune.artifacts", problem)
    for index, model in enumerate(experiment.models):
        if not model.head:
            _fail(source, f"models[{index}].head", "must name a head, e.g. head = \"mcsdr\"")
        check_name(model.key, f"{source}: `models[{index}].label`")  # it names the model's folders
        if model.samples == 1 or model.samples < 0 or model.samples > MAX_SAMPLES:
            _fail(source, f"models[{index}].samples",
                  f"must be 0 (the default K) or from 2 to {MAX_SAMPLES} (like evaluate.samples)")
    keys = [model.key for model in experiment.models]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        _fail(source, "models", f"has two models called {duplicated[0]!r}: give one a distinct `label`")
    if experiment.baseline and experiment.baseline not in keys:
        # A model with conformal = true is labelled "<label> (conformal)": the plain label no longer names its row.
        conformal = f"{experiment.baseline} (conformal)"
        hint = (f" Its model sets conformal = true, so its row is {conformal!r}: name that." if conformal in keys
                else did_you_mean(experiment.baseline, keys))
        _fail(source, "baseline", f"names no model.{hint} Models: {', '.join(keys)}")


def artifacts_problem(spec: str) -> str | None:
    """What is wrong with an artifact store setting (``tune.artifacts``, ``--artifacts``), or None: a folder
    path, or ``s3://bucket/prefix``; another scheme would otherwise be taken for a folder name."""
    if "://" not in spec:
        return None
    scheme, rest = spec.split("://", 1)
    if scheme != "s3":
        return (f"is {spec!r}: give a folder every worker can reach (e.g. /mnt/shared/artifacts) or an "
                "S3-compatible bucket as s3://bucket/prefix")
    if not rest.split("/", 1)[0]:
        return f"is {spec!r}, which names no bucket: write s3://bucket or s3://bucket/prefix"
    return None


def _check_integers(node: Any, key_path: str, source: str) -> None:
    """Every integer setting of the experiment's own tables fits a machine integer (``MAX_INTEGER``); component
    parameters are held to their components' ranges instead."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            if not f.name.endswith("params") and f.name != "search_space":
                _check_integers(getattr(node, f.name), f"{key_path}.{f.name}" if key_path else f.name, source)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_integers(value, f"{key_path}[{index}]", source)
    elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_INTEGER:
        _fail(source, key_path, f"must be at most {MAX_INTEGER} (what a machine integer holds), got {node}")


def _check_finite(node: Any, key_path: str, source: str) -> None:
    """Every float anywhere in the experiment, component parameters included, is finite: NaN or inf would
    pass every range check above and surface as a NaN loss in every job."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            _check_finite(getattr(node, f.name), f"{key_path}.{f.name}" if key_path else f.name, source)
    elif isinstance(node, dict):
        for key, value in node.items():
            _check_finite(value, f"{key_path}.{key}", source)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_finite(value, f"{key_path}[{index}]", source)
    elif isinstance(node, float) and not math.isfinite(node):
        _fail(source, key_path, f"must be a finite number, got {node}")
