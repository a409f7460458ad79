"""Optuna tuning of one model (fusion + head) on the validation split.

The signature of ``tune_model`` takes the training and validation features only: TEST data cannot
reach tuning. Studies live in a storage URL (by default a sqlite file in the run directory) under a
stable name, so an interrupted run resumes its study and runs only the trials still missing from the
budget; every model gets the same number of trials.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from benchmark.components import ModelParams, search_space, split_params
from benchmark.config import ModelConfig, TrainConfig, TuneConfig
from benchmark.encoding.feature_set import FeatureSet
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.identity import made_here, vouch
from benchmark.orchestration.cluster import INTERRUPTED, counted_trials
from benchmark.progress import progress_bar
from benchmark.training.checks import HeadError
from benchmark.training.loop import train_model
from benchmark.training.model import build_model
from registry.errors import did_you_mean
from registry.records import ComponentRecord

RETRY_OF = "retry_of"        # trial user attr: the number of the interrupted trial whose parameters it reruns
PRUNER_STARTUP = 2           # MedianPruner prunes a trial only once this many trials completed


def resolve_metric(registry, name: str) -> ComponentRecord:
    """A registered metric by name or leaderboard label, case-insensitively (``crps``, ``CRPS``)."""
    records = registry.records("metric")
    wanted = name.casefold()
    for record in records:
        if wanted in (record.name.casefold(), str(record.metadata.get("label", "")).casefold()):
            return record
    known = sorted({record.name for record in records} | {str(r.metadata["label"]) for r in records
                                                          if r.metadata.get("label")})
    raise ConfigError(f"tune.metric = {name!r} is not a registered metric.{did_you_mean(name, known)} "
                      f"Metrics: {', '.join(known) or 'none are registered'}.")


@dataclass(frozen=True)
class TuningResult:
    params: dict[str, Any]
    value: float
    finished_trials: int
    study: str

    @property
    def split(self) -> ModelParams:
        return split_params(self.params)


@dataclass
class TuningStudy:
    """One model's study, ready for trials: the Optuna study, the objective of one trial and the budget.

    The trial in budget slot k (the k-th trial handed out; a rerun of an interrupted trial takes its slot)
    samples with ``sampler_for(k)``, seeded by ``seed + k``: whichever process runs it, and after whatever
    interruption, it suggests what an undisturbed single process would."""

    model: str                           # its key, for messages
    handle: Any                          # the optuna.Study
    objective: Callable[[Any], float]    # one trial: train on TRAIN, score on VAL
    budget: int                          # tune.trials
    startup: int                         # trials TPE samples at random before modelling the finished ones
    seed: int
    timeout: float | None
    catch: tuple = (HeadError,)          # a head that produced NaN fails its trial, not the run
    # The first trials see no history in any order: nothing is pruned before PRUNER_STARTUP trials completed,
    # and TPE samples at random before ``startup`` (at least as many) finished. Workers run them side by side.
    side_by_side: int = PRUNER_STARTUP

    def sampler_for(self, slot: int):
        import optuna

        return optuna.samplers.TPESampler(seed=self.seed + slot, n_startup_trials=self.startup)

    def counted(self) -> list:
        """The finished trials that used the budget: not those interrupted (their reruns count in their place)
        nor, with workers, those ended unrun or a dead worker's trial that a retry replaced."""
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        return counted_trials(self.handle.get_trials(deepcopy=False, states=states))

    def result(self) -> TuningResult:
        """The best completed trial; of equal values the first (a database's own order differs between
        PostgreSQL and sqlite)."""
        import optuna

        completed = self.handle.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not completed:
            raise BenchmarkError(f"tuning {self.model!r} (study {self.handle.study_name!r}) finished no trial: all "
                                 "were pruned or failed. Check the search space and train.lr, or raise tune.trials.")
        sign = -1.0 if self.handle.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        best = min(completed, key=lambda trial: (sign * trial.value, trial.number))
        return TuningResult(dict(best.params), float(best.value), len(self.counted()), self.handle.study_name)


def open_study(registry, model: ModelConfig, train: FeatureSet, val: FeatureSet, train_settings: TrainConfig,
               tune_settings: TuneConfig, *, storage: Any, study: str, seed: int = 0, samples: int = 40,
               point: str = "mean", on_trial: Callable[[int, float | None], None] | None = None) -> TuningStudy:
    """The study ``study`` in ``storage`` (a URL or an Optuna storage), created or resumed, for tuning
    ``model`` on ``val``. Each trial builds the model with the suggested parameters, trains it on ``train``
    with early stopping and pruning on ``val``, draws ``samples`` per validation item and scores the metric
    named by ``tune_settings.metric``. A trial whose head produces NaN is recorded as failed and uses its
    slot of the budget. ``on_trial(number, value)`` follows each trial this process runs (value None when
    it was pruned or failed)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = resolve_metric(registry, tune_settings.metric)
    space = search_space(registry, model)
    score = _objective_score(metric)

    def objective(trial) -> float:
        params = split_params({key: param.suggest(trial, key) for key, param in space.items()})
        vouch(_to_run(study, trial.number, trial.params))  # chosen here: a run killed now resumes this trial
        settings = dataclasses.replace(train_settings, **params.trainer)
        fusion, head = build_model(registry, model, train.feature_dim, train.tabular_dim, seed,
                                   params.head, params.fusion)
        epochs = params.trainer.get("epochs") or tune_settings.epochs or None
        try:
            trained = train_model(fusion, head, train, val, settings, seed, epochs=epochs, trial=trial,
                                  quiet=True, name=model.head)
        except KeyboardInterrupt:  # Optuna marks the trial failed; the mark says it was not the parameters
            trial.set_user_attr(INTERRUPTED, True)
            raise
        return score(val.ef, trained.predict(val, samples=samples, point=point, seed=seed))

    def reported(trial) -> float:
        # Reported from inside the trial, so that a worker tuning a shared study reports its own trials too.
        value = None
        try:
            value = objective(trial)
            return value
        finally:
            if on_trial is not None:
                on_trial(trial.number, value if value is not None and math.isfinite(value) else None)

    direction = study_direction(registry, tune_settings.metric)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP, n_warmup_steps=2)
    handle = optuna.create_study(study_name=study, storage=storage, direction=direction, pruner=pruner,
                                 load_if_exists=True)
    startup = max(PRUNER_STARTUP, tune_settings.trials // 3)
    return TuningStudy(model.key, handle, reported, tune_settings.trials, startup, seed, tune_settings.timeout or None)


def study_direction(registry, metric: str) -> str:
    """How Optuna optimises the tuning metric: "maximize" for a metric best when largest, else "minimize" (a
    metric with a target value is tuned on its distance to it)."""
    return "maximize" if resolve_metric(registry, metric).metadata.get("direction") == "max" else "minimize"


def tune_model(registry, model: ModelConfig, train: FeatureSet, val: FeatureSet, train_settings: TrainConfig,
               tune_settings: TuneConfig, *, storage: Any, study: str, seed: int = 0, samples: int = 40,
               point: str = "mean", quiet: bool = False,
               on_trial: Callable[[int, float | None], None] | None = None) -> TuningResult:
    """Tune ``model`` on ``val`` in this process for the trials of ``tune_settings.trials`` not yet finished
    in ``study`` (see ``open_study``), one after another. Workers sharing a storage tune their studies
    together instead (``benchmark.orchestration.cluster.tune_together``), to the same result."""
    tuning = open_study(registry, model, train, val, train_settings, tune_settings, storage=storage, study=study,
                        seed=seed, samples=samples, point=point, on_trial=on_trial)
    handle = tuning.handle
    _requeue_interrupted(handle)  # a run directory's own study: nobody else runs in it, so RUNNING is dead

    def reseed() -> int:
        # The trial after k finished ones samples for slot k (an interrupted trial does not count: its
        # parameters run again in its place), so a resumed study suggests what the undisturbed one would.
        finished = len(tuning.counted())
        handle.sampler = tuning.sampler_for(finished)
        return finished

    done = reseed()
    remaining = max(tuning.budget - done, 0)
    if remaining:
        with progress_bar(total=tuning.budget, initial=done, quiet=quiet, desc=f"tune {model.key}",
                          unit="trial", leave=False) as progress:
            def after_trial(study, trial) -> None:
                vouch(trial_record(study.study_name, trial))
                reseed()
                progress.update()

            handle.optimize(tuning.objective, n_trials=remaining, timeout=tuning.timeout, catch=tuning.catch,
                            callbacks=[after_trial])
    return tuning.result()


def own_study(storage: Any, name: str, direction: str, say: Callable[[str], None]) -> str:
    """``name``, or ``name-1``, ``name-2``...: the first study in the run directory's own ``storage`` that is new, or
    that this machine made: optimised in ``direction``, and every trial of it in the ledger (``identity``). A
    received ``optuna.db`` could hold trials of any parameters and values, queued trials that would fill the budget
    with the sender's parameters, or the opposite direction: tuning resumed in it would pick the sender's winner."""
    import optuna

    candidate, attempt = name, 0
    while True:
        try:
            study = optuna.load_study(study_name=candidate, storage=storage)
        except KeyError:  # none of that name: a new study
            return candidate
        foreign = [trial.number for trial in study.get_trials(deepcopy=False)
                   if not made_here(trial_record(candidate, trial))]
        if study.direction.name.lower() == direction and not foreign:
            return candidate
        attempt += 1
        why = (f"{len(foreign)} trials not in this machine's ledger (received or copied, made before the ledger "
               "existed, or run by a process killed before noting them)" if foreign else f"not {direction}s")
        say(f"study {candidate!r} in the run directory's optuna.db {'holds' if foreign else 'is'} {why}: tuning in "
            f"study {name}-{attempt} instead")
        candidate = f"{name}-{attempt}"


def trust_trials(storage: Any) -> int:
    """Note every trial in ``storage`` (the run directory's own) as made here (``run --trust-results``); how many
    were not yet."""
    import optuna

    trusted = 0
    for name in optuna.get_all_study_names(storage):
        for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            record = trial_record(name, trial)
            if not made_here(record):
                vouch(record)
                trusted += 1
    return trusted


def trial_record(study: str, trial) -> bytes:
    """What the ledger notes of a trial of a run directory's own study. One still to run (queued, running, or cut
    short and run again in its place: failed and interrupted, which no sampler learns from) by the parameters it
    runs, which are this machine's choice: its value is computed here when it runs. Any other by all that
    counting the budget, choosing the winner and sampling read of it."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.WAITING, TrialState.RUNNING) or \
            trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED):
        # A queued trial's parameters are fixed when it is enqueued, and become its params once it runs.
        return _to_run(study, trial.number, trial.params or trial.system_attrs.get("fixed_params") or {})
    return _json({"study": study, "number": trial.number, "params": trial.params, "state": trial.state.name,
                  "value": trial.value, "user_attrs": trial.user_attrs,
                  "intermediate": {str(step): value for step, value in trial.intermediate_values.items()}})


def _to_run(study: str, number: int, params: dict[str, Any]) -> bytes:
    return _json({"study": study, "number": number, "params": params, "to run": True})


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, default=repr).encode()


def _requeue_interrupted(study) -> None:
    """Enqueue once more, with the same parameters, every trial that was cut short: failed by Ctrl-C, or
    left RUNNING by a killed process (then marked failed and interrupted here). Interrupted-then-resumed
    tuning thus runs exactly the trials of an undisturbed one."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried, enqueued = {trial.user_attrs.get(RETRY_OF) for trial in trials}, set()
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        elif not (trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED)):
            continue
        if trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
            enqueued.add(trial.number)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):  # queued here: noted (``own_study``)
        if trial.user_attrs.get(RETRY_OF) in enqueued:
            vouch(trial_record(study.study_name, trial))


def _objective_score(metric: ComponentRecord) -> Callable[..., float]:
    """The metric as Optuna optimises it: as is, or for direction "target" (e.g. interval coverage)
    its distance to the target value, minimised."""
    target = metric.metadata.get("target") if metric.metadata.get("direction") == "target" else None

    def score(y, predictive) -> float:
        value = float(metric.factory(y, predictive))
        return value if target is None else abs(value - float(target))

    return score
