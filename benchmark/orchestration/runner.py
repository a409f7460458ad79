"""``run``: the whole benchmark of one experiment, resumable at any point.

Order of work: data and split manifest -> per (split, seed) the encoder stage and cached features ->
tuning of each model on that split's VAL (at the first seed) -> the pending jobs -> tables and plots.
Every step's output is stored atomically and reused by a rerun; only jobs without a ``result.json``
(or that failed) run again. With a storage (``--storage`` or ``tune.storage``) the run is one worker of
many: tuning, job claims and results go through the storage (``benchmark.orchestration.cluster``).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from benchmark.components import PRIOR, resolve, search_space
from benchmark.config import Experiment, ModelConfig, artifacts_problem
from benchmark.contracts import Split
from benchmark.data.prepare import LoadedData, PreparedData, check_tabular, load_data, store_data
from benchmark.device import amp_dtype, resolve_device, resolve_precision
from benchmark.encoding.encoder_stage import EncoderStage, encoder_identity
from benchmark.encoding.feature_set import FeatureSet
from benchmark.encoding.preflight import preflight_encoder
from benchmark.errors import ConfigError, StoreError
from benchmark.evaluation.predictions_file import check_subgroup_names
from benchmark.evaluation.run_records import read_manifest, read_result
from benchmark.identity import (NOT_MADE_HERE, TUNING_ENGINE, engine_digests, file_digest, ledger_problem, made_here_file,
                                vouch_file)
from benchmark.orchestration.artifacts import artifacts_machine_problem
from benchmark.orchestration.checkpoint_models import check_checkpoint_models
from benchmark.orchestration.jobs import Job, JobContext, plan_jobs, run_job
from benchmark.orchestration.lock import LOCK_FILE, RunLock
from benchmark.orchestration.manifest import build_manifest
from benchmark.orchestration.processes import run_in_processes
from benchmark.orchestration.provenance import (changes, checkpoint_path, component_sources, digest,
                                                stage_name, study_identity)
from benchmark.orchestration.report_inputs import report_if_changed
from benchmark.orchestration.run_directory import (
    check_fresh,
    check_not_foreign,
    check_out,
    check_received,
    refuse_stand_in_over_real,
    start_over,
)
from benchmark.orchestration.storage import check_storage, local_storage, storage_url, study_name
from benchmark.orchestration.timings import TIMINGS_FILE, StageTimes
from benchmark.orchestration.tuning import TuningResult, open_study, own_study, study_direction, tune_model
from benchmark.store import RunDir, atomic_write_json, read_json, safe_name
from benchmark.training.preflight import preflight
from registry import Registry


@dataclass
class RunInfo:
    """What lifecycle hooks receive as ``run``."""

    experiment: Experiment
    directory: Path
    registry: Registry


@dataclass
class RunContext:
    """What every step of one run shares, built once when the data is ready."""

    experiment: Experiment
    registry: Registry
    data: PreparedData
    run: RunDir
    device: torch.device
    info: RunInfo
    quiet: bool
    say: Callable[[str], None]
    times: StageTimes = field(default_factory=StageTimes)
    # The stage built last: with a shared encoder (encoder.shared) the seeds that follow one another reuse it.
    _last_stage: tuple[tuple[str, int], EncoderStage] | None = None

    def encoder_stage(self, split: Split, seed: int) -> EncoderStage:
        """The encoder stage whose features the heads of run seed ``seed`` train on."""
        key = (split.name, self.experiment.stage_seed(seed))
        if self._last_stage is None or self._last_stage[0] != key:
            stage = EncoderStage(self.experiment, self.registry, self.data, split, key[1], self.run, self.device,
                                 self.say, self.quiet)
            for name, seconds in stage.seconds.items():
                self.times.add(name, seconds, self.part(*key))
            self._last_stage = key, stage
        return self._last_stage[1]

    def part(self, split: str, seed: int) -> str:
        """How the timings name the work of one (split, seed)."""
        return f"seed {seed}" if len(self.data.splits) == 1 else f"{split}/seed {seed}"


def run_experiment(experiment: Experiment, out: str | Path | None = None, fresh: bool = False,
                   storage: str = "", quiet: bool = False, say: Callable[[str], None] = print,
                   heartbeat: int = 10, artifacts: str = "", trust_results: bool = False) -> RunDir:
    # Everything that can be checked is checked before the run directory exists: settings, components, the
    # directory itself, the pre-flight of every model, and the data (loaded, split; synthetic data generated if it
    # must be).
    _check_artifacts(experiment, storage, artifacts)
    times = StageTimes()
    resolved = resolve(experiment)
    experiment, registry = resolved.experiment, resolved.registry
    for warning in resolved.warnings:
        say(f"warning: {warning}")
    check_tabular(experiment, registry)
    check_checkpoint_models(experiment, registry)
    for warning in check_machine(experiment, storage, artifacts):
        say(f"warning: {warning}")
    run = RunDir(out or Path("runs") / experiment.name)
    check_out(run, "--out" if out else f"{experiment.source}: `name` (the run directory runs/{experiment.name})")
    if fresh:
        check_fresh(run)
    else:
        check_not_foreign(run)
        refuse_stand_in_over_real(experiment, run)
    preflight_encoder(experiment, registry)
    preflight(experiment, registry)
    with times.measure("data"):  # synthetic generation included, when the stand-in is generated now
        loaded = load_data(experiment, registry, say)
    check_subgroup_names(loaded.index.items, experiment.dataset.name)
    try:
        run.root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"cannot create the run directory {run.root}: {error.strerror or error}. "
                         "Choose a writable place with --out.") from None
    with RunLock(run.root):
        if fresh:
            start_over(run, say, keep=LOCK_FILE)
        check_received(run, say, trust=trust_results)
        return _run_locked(experiment, registry, loaded, run, storage, quiet, say, heartbeat, artifacts, times)


def check_machine(experiment: Experiment, storage: str = "", artifacts: str = "") -> list[str]:
    """What only this machine can say about the settings, said before any work: that ``train.device`` exists here,
    that the tuning storage (``--storage``, else ``tune.storage``) opens, and that the artifact store its workers
    share (``--artifacts``, else ``tune.artifacts``) takes files. Returns the warnings: settings that this machine
    would leave without effect."""
    source = experiment.source
    device = resolve_device(experiment.train.device, f"{source}: `train.device`")
    warnings = []
    if experiment.train.amp and amp_dtype(device, enabled=True) is None:  # `device = "cpu"` itself is refused
        warnings.append(f"{source}: `train.amp` is mixed precision on CUDA, and `train.device` = "
                        f"\"{experiment.train.device}\" is the {device.type.upper()} on this machine: it is off here")
    check_storage(storage or experiment.tune.storage, "--storage" if storage else f"{source}: `tune.storage`")
    if storage or experiment.tune.storage:  # the store is used only with a shared storage
        problem = artifacts_machine_problem(artifacts or experiment.tune.artifacts)
        if problem:
            raise ConfigError(f"{'--artifacts' if artifacts else f'{source}: `tune.artifacts`'} {problem}")
    problem = ledger_problem()
    if problem:
        raise ConfigError(problem)
    return warnings


def _run_locked(experiment: Experiment, registry: Registry, loaded: LoadedData, run: RunDir, storage: str,
                quiet: bool, say: Callable[[str], None], heartbeat: int, artifacts: str,
                times: StageTimes) -> RunDir:
    info = RunInfo(experiment, run.root, registry)
    registry.hook.on_run_start(run=info)

    data = store_data(loaded, run)
    device = resolve_device(experiment.train.device)
    experiment = _with_precision(_with_prior(_models_for(experiment, registry, data, say)), device, say)
    # Only now, with the configuration found sound: a run stopped by a configuration error touches nothing.
    run.remove_temporaries()
    if experiment.train.threads:
        torch.set_num_threads(experiment.train.threads)
    # One tuning study per model and split (see below), named by what it depends on.
    studies = {(model.key, split.name): study_identity(experiment, registry, data, model, split,
                                                       search_space(registry, model))
               for model in experiment.models if _needs_tuning(experiment, registry, model) for split in data.splits}
    jobs = plan_jobs(experiment, registry, data, {key: digest(identity) for key, identity in studies.items()})
    context = RunContext(experiment, registry, data, run, device, info, quiet, say, times)
    stages = {stage_name(experiment, registry, data, split, seed): (split, seed)
              for split in data.splits for seed in _stage_seeds(experiment)}
    manifest = build_manifest(
        experiment, storage=storage, protocol=protocol(experiment, data), split_hash=data.split_hash,
        data_root=str(data.root.resolve()), synthetic=data.synthetic,
        oracle=str(data.index.oracle_path.resolve()) if data.index.oracle_path else "",
        excluded=len(data.index.excluded_items), dataset_notes=list(data.index.notes),
        split_sources={split.name: split.source for split in data.splits}, device=str(device),
        jobs=[job.id for job in jobs], stages=list(stages), identity=_manifest_identity(context, studies))
    atomic_write_json(run.manifest, manifest)
    if storage or experiment.tune.storage:
        _run_shared(context, jobs, stages, studies, manifest, storage or experiment.tune.storage, heartbeat,
                    artifacts or experiment.tune.artifacts)
        return _finish(context)
    pending = [job for job in jobs if not _finished(context, job)]
    say(f"{len(jobs)} jobs ({len(experiment.models)} models x {len(experiment.seeds)} seeds x "
        f"{len(data.splits)} splits): {len(jobs) - len(pending)} already done, {len(pending)} to run")
    for job in pending:
        _say_why(context, job)

    # Each split is tuned on its own TRAIN and VAL at the first seed, so the parameters that predict a
    # split's TEST never come from a trial that trained or validated on those items (in cv10 every fold
    # is some split's TEST). Tuning stored by an earlier invocation with the same identity is reused.
    to_tune = [m for m in experiment.models if _needs_tuning(experiment, registry, m)]
    tuned: dict[tuple[str, str], dict[str, Any]] = {}
    untuned = {split.name: _untuned(context, to_tune, split.name, pending, studies, tuned) for split in data.splits}
    needed = [(split, seed) for split in data.splits for seed in experiment.seeds
              if any((job.split, job.seed) == (split.name, seed) for job in pending)
              or (seed == experiment.seeds[0] and untuned[split.name])]
    _build_stages_in_workers(context, list(_distinct_stages(experiment, needed).values()))
    ran = _tune_and_run_in_workers(context, needed, untuned, pending, studies, tuned, storage)
    # What no worker process did (all of it with train.workers = 1), in this process.
    for split, seed in needed:
        to_tune = [model for model in untuned[split.name]
                   if seed == experiment.seeds[0] and (model.key, split.name) not in tuned]
        to_run = [job for job in pending if (job.split, job.seed) == (split.name, seed) and job.id not in ran]
        if not (to_tune or to_run):
            continue
        stage = context.encoder_stage(split, seed)
        for model in to_tune:
            with context.times.measure("tuning", model.key):
                tuned[model.key, split.name] = _tune(context, model, split.name, stage.features, storage,
                                                     studies[model.key, split.name])
        for job in to_run:
            _count(context, job, _run(context, job, stage, tuned.get((job.model.key, job.split), {})))

    return _finish(context)


def _untuned(context: RunContext, to_tune: list[ModelConfig], split: str, pending: list[Job],
             studies: dict[tuple[str, str], dict[str, Any]],
             tuned: dict[tuple[str, str], dict[str, Any]]) -> list[ModelConfig]:
    """The models that still need tuning on ``split``; the stored winners of the others go into ``tuned``."""
    untuned = []
    for model in to_tune:
        if not any(job.model.key == model.key and job.split == split for job in pending):
            continue
        stored = _stored_tuning(context, model, split, studies[model.key, split])
        if stored is None:
            untuned.append(model)
        else:
            tuned[model.key, split] = stored
    return untuned


def _build_stages_in_workers(context: RunContext, stages: list[tuple[Split, int]]) -> None:
    """With ``encoder.workers`` > 1, build the encoder stages in that many processes first; the run then
    reloads what they stored. Their stage-1 and feature seconds go into the timings."""
    workers = min(context.experiment.encoder.workers, len(stages))
    if workers < 2:
        return
    builds = {context.part(split.name, seed): _stage_build(context, split, seed) for split, seed in stages}
    with context.times.measure_parallel(f"encoder stages in {workers} processes"):
        seconds = run_in_processes(builds, workers, context.say)
    for part, figures in seconds.items():
        for name, value in figures.items():
            context.times.add(name, value, part)


def _tune_and_run_in_workers(context: RunContext, needed: list[tuple[Split, int]],
                             untuned: dict[str, list[ModelConfig]], pending: list[Job],
                             studies: dict[tuple[str, str], dict[str, Any]],
                             tuned: dict[tuple[str, str], dict[str, Any]],
                             storage: str) -> set[str]:
    """With ``train.workers`` > 1 on the CPU, tune the models and run the pending jobs in that many processes
    of one torch thread each, every job once its model is tuned on its split; the ids of the jobs that ran
    there. Tuning winners go into ``tuned``."""
    workers, experiment = context.experiment.train.workers, context.experiment
    if workers < 2 or not pending:
        return set()
    if context.device.type != "cpu":
        context.say(f"train.workers = {workers} is for the CPU: on {context.device.type} the jobs run one after "
                    "another in this process (a forked process cannot use its parent's GPU context)")
        return set()
    stage_seed = experiment.stage_seed
    stages = {key: context.encoder_stage(split, seed)
              for key, (split, seed) in _distinct_stages(experiment, needed).items()}
    local_storage(storage_url(storage or experiment.tune.storage, context.run.root)).engine.dispose()  # its tables
    pieces, after, tunings = {}, {}, {}
    for split, models in untuned.items():
        for model in models:
            name = _tuning_piece(model.key, split)
            tunings[name] = (model.key, split)
            pieces[name] = _tuning(context, model, split, stages[split, stage_seed(experiment.seeds[0])], storage,
                                   studies[model.key, split])
    for job in pending:
        stage = stages[job.split, stage_seed(job.seed)]
        # ``tuned`` is read in the job's process, forked after its model's tuning answered (see on_done).
        pieces[job.id] = lambda job=job, stage=stage: _run(context, job, stage,
                                                           tuned.get((job.model.key, job.split), {}))
        after[job.id] = (_tuning_piece(job.model.key, job.split),)
    by_id = {job.id: job for job in pending}

    def on_done(name: str, answer: Any) -> None:
        if name in by_id:
            _count(context, by_id[name], answer)
        else:
            (key, split), (params, seconds) = tunings[name], answer
            tuned[key, split] = params
            context.times.add("tuning", seconds, key)

    with context.times.measure_parallel(f"tuning and jobs in {workers} processes"):
        answers = run_in_processes(pieces, workers, context.say, after=after, on_done=on_done)
    return set(answers) & set(by_id)


def _tuning_piece(model: str, split: str) -> str:
    return f"tuning {model} on {split}"


def _tuning(context: RunContext, model: ModelConfig, split: str, stage: EncoderStage, storage: str,
            identity: dict[str, Any]):
    def tune() -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        params = _tune(context, model, split, stage.features, storage, identity)
        return params, time.perf_counter() - started
    return tune


def _stage_build(context: RunContext, split: Split, seed: int):
    def build() -> dict[str, float]:
        return EncoderStage(context.experiment, context.registry, context.data, split, seed, context.run,
                            context.device, context.say, context.quiet).seconds
    return build


def _distinct_stages(experiment: Experiment,
                     needed: list[tuple[Split, int]]) -> dict[tuple[str, int], tuple[Split, int]]:
    """The encoder stages that the (split, run seed) pairs ``needed`` train on, each once, keyed by (split name,
    stage seed): with a shared encoder every seed of a split maps to one stage."""
    return {(split.name, experiment.stage_seed(seed)): (split, experiment.stage_seed(seed)) for split, seed in needed}


def _stage_seeds(experiment: Experiment) -> list[int]:
    """The seeds of the encoder stages of each split: the run's seeds, or the one seed of a shared encoder."""
    return list(dict.fromkeys(experiment.stage_seed(seed) for seed in experiment.seeds))


def _finish(context: RunContext) -> RunDir:
    with context.times.measure("report"):
        # The oracle posteriors the figures draw: where this run found them, not where manifest.json says.
        board = report_if_changed(context.run, context.registry, context.data.index.oracle_path, say=context.say)
    context.registry.hook.on_run_end(run=context.info, leaderboard=board)
    context.say(context.times.summary())
    atomic_write_json(context.run.root / TIMINGS_FILE, context.times.record())
    return context.run


def _run_shared(context: RunContext, jobs: list[Job], stages: dict[str, tuple[Split, int]],
                studies: dict[tuple[str, str], dict[str, Any]], manifest: dict[str, Any], spec: str, heartbeat: int,
                artifacts_spec: str) -> None:
    """One worker of many on the storage ``spec``: compute the encoder stages no worker has taken, tune
    together, then claim jobs until none is left anywhere, then copy every stored result into this run
    directory for the report. Stage outputs and trained models travel through the artifact store."""
    from benchmark.orchestration.artifacts import open_artifacts
    from benchmark.orchestration.cluster import JobBoard, jobs_study_name, other_plans, tune_together
    from benchmark.orchestration.stages import StageBoard, stages_study_name
    from benchmark.orchestration.storage import open_storage

    experiment, run, say = context.experiment, context.run, context.say
    storage = open_storage(spec, run.root, heartbeat)
    artifacts = open_artifacts(artifacts_spec, run.root)
    # The manifest goes into the storage before the stages and tuning, most of the run, so that ``status`` shows
    # them; the jobs are enqueued after tuning as before (``publish``, below; until then status says so).
    jobs_board = JobBoard(storage, jobs_study_name(experiment.name, [job.id for job in jobs]), artifacts)
    jobs_board.announce(manifest)
    for line in other_plans(jobs_board, manifest):
        say(f"note: {line}")
    named = {(split.name, seed): name for name, (split, seed) in stages.items()}
    loaded: dict[tuple[str, int], EncoderStage] = {}

    def compute(name: str) -> list[Path]:
        split, seed = stages[name]
        loaded.clear()  # one (split, seed) in memory: claims come in plan order
        loaded[split.name, seed] = context.encoder_stage(split, seed)
        return loaded[split.name, seed].files

    board = StageBoard(storage, stages_study_name(experiment.name, stages), run, artifacts, compute, say)
    board.enqueue_missing(stages)
    board.compute_waiting()

    def stage_of(split: str, seed: int) -> EncoderStage:
        seed = experiment.stage_seed(seed)
        if (split, seed) not in loaded:
            board.fetch(named[split, seed])  # if it cannot, the stage computes here, as without a storage
        if (split, seed) not in loaded:  # (fetching may have computed it here)
            compute(named[split, seed])
        return loaded[split, seed]

    seed, tunings = experiment.seeds[0], {}  # each split tuned on its own TRAIN and VAL, as in a single process
    for (key, split), identity in studies.items():
        features = stage_of(split, seed).features  # (its own time is the stage's)
        tunings[key, split] = open_study(**_tuning_inputs(context, experiment.model(key), split, features, identity,
                                                          storage))
        say(f"tuning {key} on {split}: {experiment.tune.trials} trials, shared through study "
            f"{tunings[key, split].handle.study_name!r}")
    started = time.perf_counter()
    tune_together(list(tunings.values()))
    seconds = time.perf_counter() - started
    if tunings:
        context.times.add("tuning", seconds, "all studies together")
    tuned = {(key, split): _keep_winner(context, experiment.model(key), split, studies[key, split], tuning.result(),
                                        f"{seconds:.1f} s, all studies together")
             for (key, split), tuning in tunings.items()}
    tunings.clear()  # their objectives hold each split's features, no longer needed
    by_id = {job.id: job for job in jobs}
    enqueued = jobs_board.publish(list(by_id), manifest)
    say(f"{len(jobs)} jobs shared through study {jobs_board.name!r}; this worker enqueued {enqueued}")

    def run_one(job_id: str) -> tuple[dict[str, Any], Path]:
        job = by_id[job_id]
        result = _run(context, job, stage_of(job.split, job.seed), tuned.get((job.model.key, job.split), {}))
        _count(context, job, result)
        return result, run.job(job_id)

    ran = jobs_board.work(run_one, say)
    say(f"computed {board.computed} of {len(stages)} encoder stages and ran {ran} jobs here; "
        f"{jobs_board.materialise(run, by_id)} of {len(jobs)} results stored")


def _check_artifacts(experiment: Experiment, storage: str, artifacts: str) -> None:
    """``--artifacts`` names a store only shared-storage workers use (``tune.artifacts`` is checked with the
    experiment)."""
    if not artifacts:
        return
    problem = artifacts_problem(artifacts)
    if problem:
        raise ConfigError(f"--artifacts {problem}")
    if not (storage or experiment.tune.storage):
        raise ConfigError(f"--artifacts {artifacts}: the artifact store is where workers sharing a storage exchange "
                          "encoder stages and models; give the storage too (--storage URL or tune.storage)")


def _models_for(experiment: Experiment, registry: Registry, data: PreparedData, say) -> Experiment:
    """Oracle heads serve the exact posteriors of generated data; on real data they are left out, loudly."""
    if data.synthetic:
        return experiment
    oracles = [m.key for m in experiment.models if registry.describe("head", m.head).metadata.get("oracle")]
    if oracles:
        say(f"left out {', '.join(oracles)}: an oracle needs the synthetic data's posteriors, and this data is real")
    if len(oracles) == len(experiment.models):
        raise ConfigError(f"{experiment.source}: every model is an oracle, and oracles need synthetic data")
    return dataclasses.replace(experiment, models=[m for m in experiment.models if m.key not in oracles])


def _with_prior(experiment: Experiment) -> Experiment:
    """Every leaderboard gets the ``prior`` row (the training EF distribution for every item), the floor a
    head must beat; an experiment that names the prior head already keeps its own."""
    if any(model.head == PRIOR.head for model in experiment.models):
        return experiment
    return dataclasses.replace(experiment, models=[*experiment.models, PRIOR])


def _with_precision(experiment: Experiment, device: torch.device, say) -> Experiment:
    """``[encoder] precision = "auto"`` resolved for this machine before any identity is computed: a stage, job
    or study computed in bfloat16 is never taken for one computed in float32."""
    precision = resolve_precision(experiment.encoder.precision, device)
    if precision == experiment.encoder.precision:
        return experiment
    say(f"encoder precision auto: {precision} on this {device.type}")
    return dataclasses.replace(experiment, encoder=dataclasses.replace(experiment.encoder, precision=precision))


def protocol(experiment: Experiment, data: PreparedData) -> dict[str, Any]:
    clips = experiment.clips
    sampling = (f"{clips.mode}: {clips.frames} frames, every {clips.frequency}"
                if clips.mode == "mcsdr" else f"echonet: {clips.frames} frames, period {clips.period}")
    test_clips = "all" if clips.test_clips == 0 else clips.test_clips
    return {"dataset": experiment.dataset.name, "protocol": experiment.dataset.protocol,
            "split hash": data.split_hash, "clips": f"{sampling}, {clips.size} px, test clips {test_clips}",
            "K": experiment.evaluate.samples, "seeds": list(experiment.seeds), "synthetic": data.synthetic,
            "tuning trials": experiment.tune.trials,
            "encoder": (f"one per split (seed {experiment.seeds[0]}), shared by every seed"
                        if experiment.encoder.shared else "one per seed") + f", {experiment.encoder.precision}"}


def _finished(context: RunContext, job: Job) -> bool:
    """Done, ok, and its stored files are the ones it wrote; a damaged job is named and runs again."""
    run = context.run
    if not run.is_done(job.id):
        return False
    record = read_result(run.result(job.id))
    if record["status"] != "ok":
        return False
    problem = run.damage(job.id, record)
    if problem is None and (record["job"] != job.id or digest(record.get("identity") or {}) != job.digest):
        problem = f"its result.json is that of {record['job']} (another job, or the same with other settings)"
    if problem:
        context.say(f"damaged {job.id}: {problem}; it runs again")
        return False
    if not made_here_file(run.result(job.id)):  # received, or copied from another machine
        context.say(f"{job.id}: its result was {NOT_MADE_HERE}; it runs again")
        return False
    return True


def _say_why(context: RunContext, job: Job) -> None:
    """Why a job runs: what changed since an earlier version of it (same model, seed and split) ran."""
    if context.run.is_done(job.id):
        return  # failed or damaged: said already, or in its result
    earlier = []
    for found in context.run.jobs.glob(f"{job.prefix}__*/result.json"):
        try:
            result = context.run.result(found.parent.name)  # a linked job folder is refused, not read through
            identity = read_json(result).get("identity")
        except StoreError:
            continue
        if isinstance(identity, dict):
            earlier.append((result.stat().st_mtime_ns, identity))
    if earlier:
        changed = changes(max(earlier, key=lambda pair: pair[0])[1], dict(job.identity))
        context.say(f"{job.model.key} (seed {job.seed}, {job.split}) runs again: {', '.join(changed)}")


def _manifest_identity(context: RunContext, studies: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """What the run's results are identified by: data content per split and role, each component's
    source, the weight files, and the tuning study of each tuned model."""
    experiment, registry = context.experiment, context.registry
    encoder = encoder_identity(experiment, registry)
    return {"data": context.data.fingerprints(),
            "sources": {key: value for model in experiment.models
                        for key, value in component_sources(registry, experiment, model).items()},
            "engine": engine_digests(TUNING_ENGINE),
            "weights": {"encoder": encoder["weights"],
                        **{f"checkpoint {key}": bytes_hash for key, bytes_hash in _checkpoints(experiment).items()}},
            "tuning studies": _study_names(experiment, studies)}


def _study_names(experiment: Experiment, studies: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Model key -> split -> the name of its tuning study in the storage."""
    names: dict[str, dict[str, str]] = {}
    for (key, split), identity in studies.items():
        names.setdefault(key, {})[split] = _study_name(experiment, experiment.model(key), digest(identity))
    return names


def _checkpoints(experiment: Experiment) -> dict[str, str]:
    paths = {model.key: checkpoint_path(experiment, model) for model in experiment.models}
    return {key: file_digest(path) for key, path in paths.items() if path is not None and path.is_file()}


def failed_jobs(run: RunDir) -> list[str]:
    """The run's jobs without a sound ok result (failed, damaged, or never stored), by id."""
    failed = []
    for job in read_manifest(run)["jobs"]:
        record = read_result(run.result(job)) if run.is_done(job) else {}
        if record.get("status") != "ok" or run.damage(job, record):
            failed.append(job)
    return failed


def _needs_tuning(experiment: Experiment, registry: Registry, model: ModelConfig) -> bool:
    """Models that train are tuned; an oracle, a model loaded from a checkpoint, or one with nothing to tune
    (no search space: every trial would be alike, ``resolve`` warns) is not."""
    trains = registry.describe("head", model.head).metadata.get("needs_training", True) and not model.checkpoint
    return experiment.tune.trials > 0 and trains and bool(search_space(registry, model))


def _tuning_path(run: RunDir, model: ModelConfig, split: str) -> Path:
    return run.tuning / f"{safe_name(model.key)}__{safe_name(split)}.json"


def _study_name(experiment: Experiment, model: ModelConfig, identity: str) -> str:
    """Named by its identity: a changed search space, budget, data, split or code opens a new study."""
    return study_name(experiment.name, experiment.encoder.name, model.key, identity[:12])


def _stored_tuning(context: RunContext, model: ModelConfig, split: str,
                   identity: dict[str, Any]) -> dict[str, Any] | None:
    """The stored winner of the model's study on ``split`` with this identity; for another identity None,
    saying why."""
    path = _tuning_path(context.run, model, split)
    if not path.is_file():
        return None
    if not made_here_file(path):  # received, or copied from another machine: its trials are not taken on trust
        context.say(f"{model.key} is tuned again on {split}: its stored winner was {NOT_MADE_HERE}")
        return None
    stored = read_json(path)
    if stored.get("identity") == digest(identity):
        return stored["params"]
    if isinstance(stored.get("parts"), dict):
        context.say(f"{model.key} is tuned again on {split}: {', '.join(changes(stored['parts'], identity))}")
    return None


def _tune(context: RunContext, model: ModelConfig, split: str, features: dict[str, FeatureSet], storage: str,
          identity: dict[str, Any]) -> dict[str, Any]:
    """Tune on VAL of ``split`` at the first seed, in this process; the winner is stored, and every seed of
    that split trains with it. ``identity``: what the study depends on (see ``study_identity``)."""
    url = local_storage(storage_url(storage or context.experiment.tune.storage, context.run.root))
    context.say(f"tuning {model.key} on {split}: {context.experiment.tune.trials} trials")
    started = time.perf_counter()
    inputs = _tuning_inputs(context, model, split, features, identity, url)
    inputs["study"] = own_study(url, inputs["study"], study_direction(context.registry, context.experiment.tune.metric),
                                context.say)
    result = tune_model(**inputs, quiet=context.quiet)
    return _keep_winner(context, model, split, identity, result, f"{time.perf_counter() - started:.1f} s")


def _tuning_inputs(context: RunContext, model: ModelConfig, split: str, features: dict[str, FeatureSet],
                   identity: dict[str, Any], storage: Any) -> dict[str, Any]:
    """What ``tune_model`` and ``open_study`` take to tune ``model`` on ``split``: its data and settings, the
    study named by its identity in ``storage``, and the ``on_trial_end`` hook."""
    experiment = context.experiment
    tuned = Job(model, experiment.seeds[0], split, digest(identity))  # what on_trial_end receives as ``job``

    def on_trial(number: int, value: float | None) -> None:
        context.registry.hook.on_trial_end(run=context.info, job=tuned, trial=number, value=value)

    return {"registry": context.registry, "model": model, "train": features["train"], "val": features["val"],
            "train_settings": experiment.train, "tune_settings": experiment.tune, "storage": storage,
            "study": _study_name(experiment, model, digest(identity)), "seed": experiment.seeds[0],
            "samples": experiment.evaluate.samples, "point": experiment.evaluate.point, "on_trial": on_trial}


def _keep_winner(context: RunContext, model: ModelConfig, split: str, identity: dict[str, Any], result: TuningResult,
                 took: str) -> dict[str, Any]:
    """Say and store the winner of ``model``'s study on ``split``; its parameters."""
    context.say(f"tuned {model.key} on {split}: {context.experiment.tune.metric} {result.value:.3f} on VAL after "
                f"{result.finished_trials} trials in {took}, {result.params}")
    record = {"params": result.params, "value": result.value, "trials": result.finished_trials, "study": result.study,
              "split": split, "identity": digest(identity), "parts": identity}
    vouch_file(atomic_write_json(_tuning_path(context.run, model, split), record))
    return result.params


def _count(context: RunContext, job: Job, result: dict[str, Any]) -> None:
    """A finished job's seconds into the timings (in the run's process: a worker's own timings are lost)."""
    training = result.get("training_seconds", 0.0)
    context.times.add("training", training, context.part(job.split, job.seed))
    context.times.add("evaluation", result["seconds"] - training, context.part(job.split, job.seed))


def _run(context: RunContext, job: Job, stage: EncoderStage, params: dict[str, Any]) -> dict[str, Any]:
    hook, info = context.registry.hook, context.info
    hook.on_job_start(run=info, job=job)
    context.say(f"start {job.id}")
    job_context = JobContext(context.experiment, context.registry, context.data, context.run, stage, params,
                             context.quiet)
    result = run_job(job, job_context, on_epoch=lambda epoch, logs: hook.on_epoch_end(
        run=info, job=job, epoch=epoch, logs=logs))
    hook.on_job_end(run=info, job=job, result=result)
    if result["status"] == "ok":
        context.say(f"done {job.id} in {result['seconds']:.1f} s")
    else:
        context.say(f"FAILED {job.id}: {result['error']} (traceback in {context.run.job(job.id) / 'traceback.txt'})")
    return result
