"""Many workers, one benchmark: tuning trials, job claims and results shared through an Optuna storage.

Every worker is an ordinary ``run`` of the same experiment with the same ``--storage``. Nothing here
schedules: the storage does, through Optuna's own mechanisms.

* Tuning: the workers run the trials of every model's study (``tune_together``). The budget ``tune.trials``
  is the slots ``0 .. trials-1`` the storage hands out one by one as new trials (a dead worker's retried
  trial keeps its slot); a trial asked past it (in the same instant as another worker took the last slot)
  fails unrun. Slot k samples with its own seed once the trials of the slots before it are finished (a dead
  worker's once its retry has run), so the winners are those of one process; a worker that would wait runs
  another study's trial. Everyone then waits until every study is settled, so every worker trains its jobs
  with the same best parameters.
* Jobs: one study ``<experiment>/jobs/<plan>`` holds one trial per job (user attr ``job``), enqueued
  WAITING. ``study.optimize`` takes a WAITING trial atomically (``ask``), so a job is claimed by one
  worker; the claim records ``worker`` = host:pid; the finished trial holds the result record and the
  job's files (its ``model.pt`` goes to the artifact store, ``orchestration.artifacts``). Two enqueues of
  one job (workers starting together) are harmless: of two live claims the lower trial number runs, the
  other is pruned as a duplicate, and a job done is never run again.
* Encoder stages are claimed the same way (``ClaimBoard``, the study ``<experiment>/stages/<plan>``,
  ``orchestration.stages``), their outputs travelling through the artifact store.
* Dead workers: RDB storages (sqlite, PostgreSQL, MySQL) record a heartbeat of each running trial. A
  trial silent for a grace period goes FAIL when any worker next looks, and
  ``RetryHeartbeatStaleTrialCallback`` enqueues a copy, which another worker takes (``Reaper`` mends a dead
  claim left without one); Ctrl-C enqueues the copy at once. A journal file has no heartbeats: a killed
  worker's trial stays RUNNING (``status`` shows whose) and the others wait for it.
"""
from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import logging
import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmark import store  # the module: its MAX_ARRAY_BYTES is read when used
from benchmark.config import ModelConfig
from benchmark.errors import StoreError
from benchmark.evaluation.run_records import read_manifest
from benchmark.identity import vouch_file
from benchmark.orchestration.artifacts import Artifacts, describe, download, upload
from benchmark.orchestration.storage import GRACE_BEATS, MAX_RETRY, optuna_module, worker_name
from benchmark.store import RunDir, atomic_write_bytes, atomic_write_json, read_regular

JOB = "job"                  # user attr: the job id a jobs-study trial stands for
WORKER = "worker"            # user attr: host:pid of the worker that claimed the trial
RESULT = "result"            # user attr: the job's result.json record
FILE = "file:"               # user attr prefix: a job file, zlib-compressed, base64, in numbered chunks
CHUNK = 60_000               # characters per file attr: MySQL's TEXT column holds 64 KiB
SKIPPED = "skipped"          # user attr: why a claim ended unrun (a duplicate or empty claim, a trial over budget)
INTERRUPTED = "interrupted"  # user attr: a tuning trial stopped by Ctrl-C or a kill, not by its parameters
CLOSED = "closed"            # study user attr of a tuning study: a worker's tune.timeout ended it for everyone
ERROR = "error"              # user attr: the exception that failed a trial (a dead worker's trial has none)
MANIFEST = "manifest"        # study user attr of the jobs study: the run's manifest.json
MODEL = "model"              # user attr: the artifact record of the job's model.pt
STORED_FILES = ("predictions.csv", "samples.npz", "trajectories.npz", "traceback.txt")
MODEL_FILE = "model.pt"      # too large for the rows: it goes to the artifact store
POLL_S = 1.0                 # the longest sleep between two looks at the storage while waiting


class Backoff:
    """How long a worker waiting on others sleeps between looks at the storage: ``first_s`` after what it
    waits on changed (or after it did work itself), doubling up to ``longest_s``. A claim that ends t seconds
    into a quiet wait is seen at most about t (and at most ``longest_s``) later, where a fixed second made
    every short wait a second; a long quiet wait costs the database one look a second, each change a few more."""

    def __init__(self, first_s: float = 0.05, longest_s: float = POLL_S) -> None:
        self.first_s, self.longest_s = first_s, longest_s
        self.delay, self.waiting_on = first_s, None

    def wait(self, waiting_on: object = None) -> None:
        """Sleep once; ``waiting_on`` (the claims running elsewhere) unlike the last call's starts short again."""
        if waiting_on != self.waiting_on:
            self.delay, self.waiting_on = self.first_s, waiting_on
        time.sleep(self.delay)
        self.delay = min(2 * self.delay, self.longest_s)

    def reset(self) -> None:
        """After work of its own: whatever it waits on may have moved meanwhile."""
        self.delay = self.first_s


def _beat_now(trial) -> None:
    """Record a claimed trial's first heartbeat before any work. Optuna's heartbeat thread records its
    first beat concurrently, and a RUNNING trial that never beat is never found stale: a worker killed
    before that beat would hold its claim forever. (Optuna keys heartbeats by its internal trial id.)"""
    storage = trial.study._storage
    if hasattr(storage, "record_heartbeat") and storage.get_heartbeat_interval():
        storage.record_heartbeat(trial._trial_id)


def _pruned(trial, reason: str):
    import optuna

    trial.set_user_attr(SKIPPED, reason)
    return optuna.TrialPruned(reason)


def _marking_errors(objective: Callable) -> Callable:
    """``objective(trial, claimed)`` as an Optuna objective (``claimed``: the trial as it was claimed, before
    this worker's marks) that records on its trial the exception that fails it, so that a FAIL trial without
    one is known to be a dead worker's. A trial stopped by Ctrl-C is not failed by its work: like a dead
    worker's, it is enqueued again for whichever worker looks next (with the parameters it drew)."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    def marked(trial):
        storage = trial.study._storage
        claimed = storage.get_trial(trial._trial_id)
        try:
            value = objective(trial, claimed)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # Optuna fails the trial, unmarked
            _enqueue_again(trial.study, trial._trial_id, claimed.user_attrs)
            raise
        except SystemExit:  # Optuna leaves the trial running: it goes stale and is retried, unmarked
            raise
        except BaseException as error:
            trial.set_user_attr(ERROR, f"{type(error).__name__}: {error}")
            raise
        if storage.get_trial(trial._trial_id).state.is_finished():  # failed as stale while this worker was paused
            raise UpdateFinishedTrialError(f"trial {trial.number} was taken over while this worker was paused")
        if not math.isfinite(value):  # Optuna fails the trial without an exception
            trial.set_user_attr(ERROR, f"the objective's value is {value}")
        return value
    return marked


def _optimize_one(study, objective: Callable, catch: tuple = ()) -> None:
    """``study.optimize`` for one claimed trial. A worker paused past the heartbeats' grace (suspended,
    stopped, swapping) finds on resuming that another worker failed its claim as a dead worker's and took
    over the rerun: Optuna refuses to record the trial, and this worker goes on with the next claim
    instead of dying of it."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    claimed: list[int] = []

    def claiming(trial):
        claimed.append(trial._trial_id)
        return objective(trial)

    try:
        study.optimize(claiming, n_trials=1, catch=catch)
    except (UpdateFinishedTrialError, ValueError):
        trial = study._storage.get_trial(claimed[-1]) if claimed else None
        if trial is None or trial.state != TrialState.FAIL or ERROR in trial.user_attrs:
            raise
        logging.getLogger(__name__).warning(
            "trial %d of %s was taken over by another worker while this one was paused past the heartbeat grace; "
            "going on", trial.number, study.study_name)


def _enqueue_again(study, trial_id: int, user_attrs: dict[str, Any]) -> None:
    """A copy of the trial, waiting, made as Optuna's retry of a dead worker's trial is (its retry history
    names the trial, so it keeps the trial's budget slot and replaces it), with its parameters and the
    user attrs it was claimed with."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    again = copy.deepcopy(study._storage.get_trial(trial_id))
    again.user_attrs = dict(user_attrs)
    Retry()(study, again)


def _open(trials: list) -> list:
    """The trials not yet settled: waiting, running, or a dead worker's trial still due for its rerun (Optuna
    fails a stale trial first and enqueues its copy just after; a worker looking in between must see it open).
    A claim is given up once its workers died ``MAX_RETRY + 1`` times, as Optuna's callback retries it
    ``MAX_RETRY`` times (``claim_deaths``)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
    from optuna.trial import TrialState

    replaced = {number for trial in trials for number in Retry.retry_history(trial)}
    return [trial for trial in trials if trial.state in (TrialState.WAITING, TrialState.RUNNING)
            or (_dead(trial) and trial.number not in replaced and claim_deaths(trial, trials) <= MAX_RETRY)]


def claim_deaths(trial, trials: list) -> int:
    """How many runs of ``trial``'s claim, itself included, died (or were stopped). A copy made when a trial
    gave way to an earlier slot's rerun is no death, though Optuna's own count of retries takes it in."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    by_number = {other.number: other for other in trials}
    return sum(_dead(by_number[number]) for number in [*Retry.retry_history(trial), trial.number]
               if number in by_number)


def _dead(trial) -> bool:
    """Failed without a verdict: its worker died (or was stopped), so its claim is due for a rerun."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and ERROR not in trial.user_attrs and SKIPPED not in trial.user_attrs


class Reaper:
    """What every worker does before it looks at a study's claims: Optuna's ``fail_stale_trials`` fails the
    claims whose heartbeats stopped and enqueues their copies. If the worker doing that dies between the two
    steps, or a second Ctrl-C cuts a worker's own enqueue, a dead claim is left without its copy, and every
    worker would wait for it for ever: a dead claim seen without a copy for twice the heartbeats' grace gets
    one here (a duplicate, should two workers do so, is ended unrun by whichever claims it later)."""

    def __init__(self, study) -> None:
        self.study, self.seen = study, {}
        beat = study._storage.get_heartbeat_interval() if hasattr(study._storage, "get_heartbeat_interval") else None
        self.patience_s = 2 * GRACE_BEATS * (beat or 10)

    def trials(self) -> list:
        """The study's trials, after reaping."""
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        fail_stale_trials(self.study)
        trials = self.study.get_trials(deepcopy=False)
        now = time.monotonic()
        orphans = {trial.number: trial for trial in _open(trials) if trial.state == TrialState.FAIL}
        self.seen = {number: self.seen.get(number, now) for number in orphans}
        late = [orphans[number] for number, since in self.seen.items() if now - since > self.patience_s]
        for trial in late:
            _enqueue_again(self.study, trial._trial_id,
                           {key: value for key, value in trial.user_attrs.items() if key not in (WORKER, INTERRUPTED)})
        return self.study.get_trials(deepcopy=False) if late else trials


def _settled(trials: list) -> bool:
    return not _open(trials)


# --------------------------------------------------------------------------- tuning
def counted_trials(trials: Iterable) -> list:
    """The trials that use the tuning budget: not those ended unrun, nor a trial interrupted or a dead worker's
    trial that a rerun replaced (the rerun counts in its place)."""
    Retry = optuna_module().storages.RetryHeartbeatStaleTrialCallback

    trials = list(trials)
    replaced = {number for trial in trials for number in Retry.retry_history(trial)}
    return [trial for trial in trials if SKIPPED not in trial.user_attrs and not trial.user_attrs.get(INTERRUPTED)
            and trial.number not in replaced]


class _Unrun(Exception):
    """A tuning trial ended before its objective ran: asked past the budget in the same instant as another
    worker's last one, or giving way to the rerun of an earlier slot's trial."""


class _UnloggedUnrun(logging.Filter):
    """Optuna logs a failed trial in two lines, its error with a traceback, then its value. A trial ended
    unrun fails on purpose, in races that are routine when workers tune together: both go."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = ""  # the first line dropped: the next one, of the same trial, goes too

    def filter(self, record: logging.LogRecord) -> bool:
        message, dropped = record.getMessage(), self.dropped
        self.dropped = ""
        if record.exc_info and isinstance(record.exc_info[1], _Unrun):
            self.dropped = message.split(" failed", 1)[0]  # "Trial 7"
            return False
        return not (dropped and message.startswith(f"{dropped} failed with value"))


def tune_together(studies: list) -> None:
    """Run trials of ``studies`` (``tuning.TuningStudy``) alongside the other workers until every one is
    settled, to the result one process gets from ``tuning.tune_model``.

    The trial in budget slot k samples with its slot's seed and starts only once the trials before it are
    finished, so it sees the history and prunes against the completed trials that it would see in one
    process. The first ``side_by_side`` trials see none either way, so workers run them side by side. A
    worker that would wait on one study runs a trial of another, and waits only when no study has a trial it
    may start. A trial asked past the budget in the same instant as another worker's last one fails unrun:
    failed trials are invisible to the sampler and the pruner, where a pruned one would count. A worker whose
    ``tune.timeout`` ran out closes the study for every worker, so that all train with one winner."""
    from optuna.trial import TrialState

    unlogged, quiet = logging.getLogger("optuna.study._optimize"), _UnloggedUnrun()
    unlogged.addFilter(quiet)
    backoff, first_trial = Backoff(), {}
    reapers = {tuning.handle.study_name: Reaper(tuning.handle) for tuning in studies}
    try:
        while True:
            unsettled, running = False, set()
            for tuning in studies:
                trials = reapers[tuning.handle.study_name].trials()
                if _may_start(tuning, trials, first_trial.get(tuning.handle.study_name)):
                    first_trial.setdefault(tuning.handle.study_name, time.monotonic())
                    _optimize_one(tuning.handle, _in_slot(tuning), catch=(*tuning.catch, _Unrun))
                    backoff.reset()
                    break
                if not _settled(trials):
                    unsettled = True
                    running |= {(tuning.handle.study_name, t.number) for t in trials if t.state == TrialState.RUNNING}
            else:
                if not unsettled:
                    return
                backoff.wait(frozenset(running))
    finally:
        unlogged.removeFilter(quiet)


def _slot(trial, trials: list) -> int:
    """The budget slot of ``trial``: how many trials before it (before the trial it reruns, for a retry) were
    handed out as new ones. A dead worker's trial and its retries share one slot; trials asked past the
    budget take none."""
    root = _root(trial)
    return sum(1 for other in trials if other.number < root and _new_slot(other))


def _new_slot(trial) -> bool:
    """Whether the storage handed ``trial`` out as a new slot of the budget: not a rerun, not ended unrun."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    return not Retry.retry_history(trial) and SKIPPED not in trial.user_attrs


def _open_before(slot: int, trials: list) -> list:
    """The trials of slots before ``slot`` that are not settled. A retry has a later number than the trials
    asked while its slot's first attempt ran, yet those must wait for it as they would for that attempt."""
    return [trial for trial in _open(trials) if _slot(trial, trials) < slot]


def _may_start(tuning, trials: list, first_trial: float | None) -> bool:
    """A retry of a dead worker's trial is waiting (it may always run), or the next slot of the budget may
    start now: every trial before it settled (a dead worker's only once its retry has run), and the study
    not closed by a worker whose ``tune.timeout`` (from its first trial of the study) ran out."""
    from optuna.trial import TrialState

    if any(trial.state == TrialState.WAITING for trial in trials):
        return True
    handed_out = sum(map(_new_slot, trials))
    if handed_out >= tuning.budget:
        return False
    if tuning.timeout and _closed(tuning, handed_out, first_trial):
        return False
    return handed_out < tuning.side_by_side or not _open(trials)


def _closed(tuning, handed_out: int, first_trial: float | None) -> bool:
    """Whether a worker closed the study, this one now if its ``tune.timeout`` (from its first trial of the
    study) ran out: from then on no worker starts a new slot, so all of them end with the same trials."""
    if CLOSED in tuning.handle.user_attrs:
        return True
    if first_trial is None or time.monotonic() - first_trial <= tuning.timeout:
        return False
    tuning.handle.set_user_attr(CLOSED, f"tune.timeout of {tuning.timeout:g} s after {handed_out} trials")
    return True


def _in_slot(tuning) -> Callable:
    """The study's objective for one claimed trial: ended unrun where it would not be one process's trial,
    else waiting for the trials of the slots before it, then sampling with its slot's seed (a dead worker's
    trial rerun keeps its slot)."""
    from optuna.trial import TrialState

    study, me = tuning.handle, worker_name()

    def in_slot(trial, claimed) -> float:
        _beat_now(trial)
        trial.set_user_attr(WORKER, me)
        backoff, reaper = Backoff(), Reaper(study)
        while True:  # a slot only moves down, as an earlier trial ends unrun: it is worked out on every look
            trials = reaper.trials()
            reason = _unrun_reason(tuning, claimed, trials)
            if reason:
                trial.set_user_attr(SKIPPED, reason)
                raise _Unrun(f"trial {trial.number}: {reason}")
            slot = _slot(claimed, trials)
            before = [t for t in _open_before(slot, trials) if t.number != trial.number]
            if slot < tuning.side_by_side or not before:
                break
            rerun = [t.number for t in before if t.state == TrialState.WAITING]
            if rerun:  # a dead worker's trial enqueued again: this worker may be the only one left to run it
                trial.set_user_attr(SKIPPED, f"gave way to trial {rerun[0]}, the rerun of an earlier slot's trial")
                if _root(claimed) != claimed.number:  # a rerun itself: it must run later, in its slot
                    _enqueue_again(study, trial._trial_id, claimed.user_attrs)
                raise _Unrun(f"trial {trial.number} gave way to trial {rerun[0]}")
            backoff.wait(frozenset(t.number for t in before))
        study.sampler = tuning.sampler_for(slot)
        return tuning.objective(trial)

    return _marking_errors(in_slot)


def _root(trial) -> int:
    """The number of the trial whose slot ``trial`` holds: its own, or the first of those it reruns."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    history = Retry.retry_history(trial)
    return history[0] if history else trial.number


def _unrun_reason(tuning, claimed, trials: list) -> str:
    """Why the claimed trial must end unrun, if it must: past the budget (asked in the same instant as another
    worker's last slot, or a copy of such a trial), a copy of a trial that itself ended unrun, another copy of
    its slot's trial finished or claimed first (two workers mended one dead trial; the trials it reruns are
    no rivals, though one may still show running for an instant), or, for a new slot, the study closed by a
    worker's ``tune.timeout``."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
    from optuna.trial import TrialState

    root, ancestors = _root(claimed), set(Retry.retry_history(claimed))
    by_number = {trial.number: trial for trial in trials}
    if SKIPPED in claimed.user_attrs or SKIPPED in getattr(by_number.get(root), "user_attrs", {}):
        return "a copy of a trial that ended unrun"
    if _slot(claimed, trials) >= tuning.budget:
        return "over budget: another worker took the last trial"
    if root != claimed.number and any(
            _root(other) == root and other.number not in {claimed.number, *ancestors}
            and SKIPPED not in other.user_attrs
            and (other.state == TrialState.RUNNING and other.number < claimed.number
                 or other.state.is_finished() and not _dead(other)) for other in trials):
        return "a duplicate: another copy of this slot's trial ran or runs"
    if root == claimed.number and tuning.timeout and CLOSED in tuning.handle.user_attrs:
        return "the study was closed by a worker's tune.timeout"
    return ""


# --------------------------------------------------------------------------- jobs
def jobs_study_name(experiment: str, job_ids: Iterable[str]) -> str:
    """One jobs study per experiment and plan: workers of another configuration never meet."""
    plan = hashlib.sha256("\n".join(sorted(job_ids)).encode()).hexdigest()[:8]
    return f"{experiment}/jobs/{plan}"


def encode_files(files: dict[str, bytes]) -> dict[str, str]:
    """Job files as user attrs ``file:NAME#i``."""
    attrs = {}
    for name, data in files.items():
        text = base64.b64encode(zlib.compress(data)).decode("ascii")
        attrs.update({f"{FILE}{name}#{index}": text[start:start + CHUNK]
                      for index, start in enumerate(range(0, max(len(text), 1), CHUNK))})
    return attrs


def decode_files(attrs: dict[str, Any], what: str = "a trial") -> dict[str, bytes]:
    """The files ``encode_files`` stored in ``what``'s user attrs. Whoever writes to the storage chooses them: a
    chunk that is no text or has no number, bytes that are not base64 or zlib, or more than ``MAX_ARRAY_BYTES``
    unpacked (a few kB of zlib can claim gigabytes) is a StoreError naming the file, before more is unpacked."""
    chunks: dict[str, list[tuple[int, str]]] = {}
    for key, text in attrs.items():
        if key.startswith(FILE):
            name, _, index = key[len(FILE):].rpartition("#")
            if not (name and index.isdigit() and isinstance(text, str)):
                raise StoreError(f"{key[len(FILE):]} of {what} in the storage is not a chunk of a file as workers "
                                 "store them (file:NAME#N, text)")
            chunks.setdefault(name, []).append((int(index), text))
    files = {}
    for name, parts in chunks.items():
        unpacker = zlib.decompressobj()
        try:
            data = unpacker.decompress(base64.b64decode("".join(text for _, text in sorted(parts)), validate=True),
                                       store.MAX_ARRAY_BYTES + 1)
        except (binascii.Error, zlib.error) as error:
            raise StoreError(f"{name} of {what} in the storage cannot be unpacked ({error})") from None
        if len(data) > store.MAX_ARRAY_BYTES:
            raise StoreError(f"{name} of {what} in the storage unpacks to more than {store.MAX_ARRAY_BYTES:,} bytes")
        files[name] = data
    return files


@dataclass(frozen=True)
class ClaimState:
    name: str           # the job or stage
    state: str          # done, running, pending, failed
    worker: str = ""
    detail: str = ""


class ClaimBoard:
    """A study whose trials are claims on named units of work (the user attr ``attr``): enqueue the
    missing ones, claim one waiting claim at a time, and tell each unit's state."""

    attr = JOB
    unit = "job"

    def __init__(self, storage, name: str):
        optuna = optuna_module()
        self.name = name
        self.storage = storage
        self.study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
        self.reaper = Reaper(self.study)

    def succeeded(self, trial) -> bool:
        """Whether a COMPLETE claim did its work (a job may complete with a failed result)."""
        return True

    def detail(self, trial) -> str:
        """What a finished claim shows in ``status``."""
        return ""

    def states(self, names: Iterable[str], trials: Iterable | None = None) -> list[ClaimState]:
        """Per unit, the most advanced of its claims: done > running > pending > failed."""
        from optuna.trial import TrialState

        claims: dict[str, list] = {}
        for trial in self.study.get_trials(deepcopy=False) if trials is None else trials:
            if self.attr in trial.user_attrs and SKIPPED not in trial.user_attrs:
                claims.setdefault(trial.user_attrs[self.attr], []).append(trial)
        states = []
        for name in names:
            mine = sorted(claims.get(name, []), key=lambda trial: trial.number)
            done = [t for t in mine if t.state == TrialState.COMPLETE and self.succeeded(t)]
            running = [t for t in mine if t.state == TrialState.RUNNING]
            waiting = [t for t in mine if t.state == TrialState.WAITING]
            if done:
                states.append(ClaimState(name, "done", done[0].user_attrs.get(WORKER, ""), self.detail(done[0])))
            elif running:
                states.append(ClaimState(name, "running", running[0].user_attrs.get(WORKER, "")))
            elif waiting:
                retry = [t for t in waiting if "failed_trial" in t.system_attrs]
                detail = "retry after a dead or stopped worker" if retry else ""
                states.append(ClaimState(name, "pending", detail=detail))
            elif mine:
                last = mine[-1]
                error = (last.user_attrs[RESULT].get("error", "") if RESULT in last.user_attrs
                         else last.user_attrs.get(ERROR, f"the worker stopped during the {self.unit} (crash or kill)"))
                states.append(ClaimState(name, "failed", last.user_attrs.get(WORKER, ""), error))
            else:
                states.append(ClaimState(name, "pending", detail="not yet enqueued"))
        return states

    def enqueue_missing(self, names: Iterable[str]) -> int:
        """Enqueue every unit not done, running or waiting; returns how many. A failed one is enqueued
        again, as a local rerun retries it."""
        missing = [state.name for state in self.states(names)
                   if state.state == "failed" or state.detail == "not yet enqueued"]
        for name in missing:
            self.study.enqueue_trial({}, user_attrs={self.attr: name})
        return len(missing)

    def waiting(self, trials: Iterable | None = None) -> bool:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False) if trials is None else trials
        return any(trial.state == TrialState.WAITING for trial in trials)

    def claim_one(self, run_one: Callable[[str, Any], float]) -> None:
        """Take the first waiting claim (atomically, with Optuna's ``ask``) and run ``run_one(name, trial)``,
        which does the unit's work and stores its outcome in the trial; its return value is the trial's."""
        me = worker_name()

        def objective(trial, claimed) -> float:
            _beat_now(trial)
            name = trial.user_attrs.get(self.attr)
            if name is None:
                raise _pruned(trial, f"empty: another worker took the last waiting {self.unit}")
            trial.set_user_attr(WORKER, me)
            if self._taken_elsewhere(name, claimed):
                raise _pruned(trial, f"duplicate: the {self.unit} is done or claimed by an earlier trial")
            return run_one(name, trial)

        _optimize_one(self.study, _marking_errors(objective))

    def _taken_elsewhere(self, name: str, claimed) -> bool:
        """Another claim of the unit succeeded, or runs and was claimed first. The claims this one reruns are
        no rivals: a worker stopped with Ctrl-C enqueues its copy an instant before Optuna fails its claim."""
        from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
        from optuna.trial import TrialState

        number, ancestors = claimed.number, set(Retry.retry_history(claimed))
        for trial in self.study.get_trials(deepcopy=False):
            if (trial.user_attrs.get(self.attr) != name or trial.number == number or trial.number in ancestors
                    or SKIPPED in trial.user_attrs):
                continue
            if trial.state == TrialState.RUNNING and trial.number < number:
                return True
            if trial.state == TrialState.COMPLETE and self.succeeded(trial):
                return True
        return False


class JobBoard(ClaimBoard):
    """The jobs study of one run: enqueue, claim and run, and read back the stored results (and, from the
    artifact store, the trained models)."""

    def __init__(self, storage, name: str, artifacts: Artifacts | None = None):
        super().__init__(storage, name)
        self.artifacts = artifacts

    def succeeded(self, trial) -> bool:
        return trial.user_attrs[RESULT]["status"] == "ok"

    def detail(self, trial) -> str:
        return f"{trial.user_attrs[RESULT]['seconds']:.1f} s"

    def announce(self, manifest: dict[str, Any]) -> None:
        """Store the run's manifest, from which ``status`` and ``report --storage`` know the run."""
        self.study.set_user_attr(MANIFEST, manifest)

    def publish(self, job_ids: list[str], manifest: dict[str, Any]) -> int:
        """Store the manifest and enqueue every job not done, running or waiting; returns how many."""
        self.announce(manifest)
        return self.enqueue_missing(job_ids)

    def work(self, run_one: Callable[[str], tuple[dict[str, Any], Path]], say: Callable[[str], None] = print) -> int:
        """Claim and run jobs until none is waiting or running anywhere; returns how many ran here.
        ``run_one(job_id)`` returns the result record and the job's folder, whose files are stored (its
        ``model.pt`` in the artifact store)."""
        from optuna.trial import TrialState

        ran, waited, backoff = 0, set(), Backoff()

        def run_and_store(job: str, trial) -> float:
            nonlocal ran
            record, directory = run_one(job)
            # Read before the result is stored: a file refused (a link or FIFO planted in a received run directory)
            # fails the claim with the error naming it, and no result stands without its files.
            files, model, uploaded = job_files(directory), directory / MODEL_FILE, None
            if self.artifacts is not None and os.path.lexists(model):
                uploaded = upload(self.artifacts, trial, model)
            trial.set_user_attr(RESULT, record)
            for key, text in encode_files(files).items():
                trial.set_user_attr(key, text)
            if uploaded is not None:
                trial.set_user_attr(MODEL, uploaded)
            ran += 1
            return float(record["seconds"])

        while True:
            trials = self.reaper.trials()
            if self.waiting(trials):
                self.claim_one(run_and_store)
                backoff.reset()
            elif _settled(trials):
                return ran
            else:
                running = {t.user_attrs.get(WORKER, "?") for t in trials if t.state == TrialState.RUNNING}
                if running and running != waited:
                    say(f"waiting for jobs running on {', '.join(sorted(running))}")
                    waited = running
                backoff.wait(frozenset(trial.number for trial in trials if trial.state == TrialState.RUNNING))

    def manifest(self) -> dict[str, Any] | None:
        return self.study.user_attrs.get(MANIFEST)

    def materialise(self, run: RunDir, job_ids: Iterable[str], say: Callable[[str], None] = print,
                    models: Artifacts | None = None) -> int:
        """Write each stored job's files and then its ``result.json`` into ``run``; returns how many.
        Whoever can write to the storage chooses the stored names: only the known job file names are
        written (a name like ``../x`` would land outside the run directory); others are refused and named.
        With ``models`` (this machine's artifact store) also each job's ``model.pt`` that it can reach."""
        from optuna.trial import TrialState

        best: dict[str, Any] = {}
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            job = trial.user_attrs.get(JOB)
            if job is None or RESULT not in trial.user_attrs:
                continue
            # An ok result wins over a failed one; among equals the latest.
            if job not in best or trial.user_attrs[RESULT]["status"] == "ok" or \
                    best[job].user_attrs[RESULT]["status"] != "ok":
                best[job] = trial
        written = 0
        for job in job_ids:
            if job not in best:
                continue
            attrs = best[job].user_attrs
            for name, data in decode_files(attrs, f"job {job}").items():
                if name not in STORED_FILES:
                    say(f"refused a file of job {job} in the storage: {name!r} is not one of {', '.join(STORED_FILES)}")
                    continue
                atomic_write_bytes(run.job(job) / name, data)
            if models is not None and MODEL in attrs:
                _fetch_model(run, job, attrs[MODEL], models, say)
            vouch_file(atomic_write_json(run.result(job), attrs[RESULT]))  # the storage's result, which the run trusts
            written += 1
        return written


def _fetch_model(run: RunDir, job: str, record: dict[str, Any], models: Artifacts, say: Callable[[str], None]) -> None:
    """The job's ``model.pt`` from the artifact store, unless this machine cannot reach it (said) or has it."""
    try:
        reachable = download(record, models, f"{MODEL_FILE} of job {job}", run.job(job) / MODEL_FILE)
    except StoreError as error:
        say(str(error))
        return
    if not reachable:
        say(f"{MODEL_FILE} of job {job} is in {describe(record)}, which this machine cannot read: give --artifacts")


def job_files(directory: Path) -> dict[str, bytes]:
    """The files of a finished job that other machines need for the report. Each must be a regular file: the job
    writes some of them only (``trajectories.npz`` for some heads, ``traceback.txt`` when it fails), and a link
    planted under another name in a received run directory (``traceback.txt -> ~/.ssh/id_rsa``) would send what
    it points at to every machine that shares the storage; such a file, or a FIFO, is refused (``open_regular``)."""
    doing = f"store the files of job {directory.name} in the storage"
    return {name: read_regular(directory / name, doing)
            for name in STORED_FILES if os.path.lexists(directory / name)}


def jobs_studies(storage) -> list[str]:
    """Names of every jobs study in ``storage``, oldest first. (By name only: Optuna's study summaries read every
    trial of every study, stored results included, so they cost what the storage ever held.)"""
    return [name for name in optuna_module().get_all_study_names(storage) if "/jobs/" in name]


# What a worker's plan (its jobs and stages, named by content) follows from: where two plans of one experiment
# differ, these say why. Times, paths and the machine's description are left out.
PLAN_SOURCES = ("config", "identity", "device", "protocol", "split_hash")


def other_plans(board: JobBoard, manifest: dict[str, Any]) -> list[str]:
    """One line per other jobs study of the same experiment in the storage: when it began, how many of its
    jobs run now, and the settings, code or data by which its plan differs from ``manifest``'s. Its workers
    share nothing with this one, as when an override differs or machines resolve ``device`` or
    ``encoder.precision = "auto"`` differently. (Only the trials of those studies are read: every worker asks
    at its start, and a long-used storage holds many runs' stored results.)"""
    optuna = optuna_module()
    from optuna.trial import TrialState

    prefix = manifest["experiment"] + "/jobs/"
    lines = []
    for study in board.storage.get_all_studies():
        theirs, name = study.user_attrs.get(MANIFEST), study.study_name
        if not name.startswith(prefix) or name == board.name or not isinstance(theirs, dict):
            continue
        trials = optuna.load_study(study_name=name, storage=board.storage).get_trials(deepcopy=False)
        running = sum(trial.state == TrialState.RUNNING for trial in trials)
        differing = _differences({key: manifest.get(key) for key in PLAN_SOURCES},
                                 {key: theirs.get(key) for key in PLAN_SOURCES})
        shown = ", ".join(differing[:6]) + (f" and {len(differing) - 6} more" if len(differing) > 6 else "")
        started = min((trial.datetime_start for trial in trials if trial.datetime_start), default=None)
        began = f"began {started:%Y-%m-%d %H:%M}, " if started else ""
        lines.append(f"the storage holds another plan of {manifest['experiment']!r}, study {name!r} ({began}"
                     f"{running} of its jobs running now), whose workers share nothing with this one; it differs in "
                     f"{shown or 'the jobs it plans'}")
    return lines


def _differences(mine: Any, theirs: Any, path: str = "") -> list[str]:
    """The dotted keys at which two JSON values differ, with both values where they are short."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return [found for key in sorted(set(mine) | set(theirs), key=str)
                for found in _differences(mine.get(key), theirs.get(key), f"{path}.{key}" if path else str(key))]
    if mine == theirs:
        return []
    here, there = json.dumps(mine), json.dumps(theirs)
    return [f"{path} ({here} here, {there} there)" if len(here) + len(there) < 60 else path]


def open_board(storage, run: RunDir) -> JobBoard:
    """The jobs study of ``run``: the one its manifest names, or, for a directory that has none yet, the
    only jobs study of the storage (or the one of the experiment named like the directory)."""
    studies = jobs_studies(storage)
    if run.manifest.is_file():
        manifest = read_manifest(run)
        wanted = [jobs_study_name(manifest["experiment"], manifest["jobs"])]
    else:
        wanted = [name for name in studies if name.split("/jobs/")[0] == run.root.name] or studies
    found = [name for name in wanted if name in studies]
    if len(found) != 1:
        raise StoreError(f"the storage holds {'no' if not found else 'several'} jobs studies for {run.root} "
                         f"({', '.join(found or studies) or 'none at all'}): name the run directory after "
                         "the experiment, or copy the worker's manifest.json into it")
    return JobBoard(storage, found[0])


def fetch_results(storage, run: RunDir, models: Artifacts | None = None) -> int:
    """Bring every result stored for ``run`` (and its manifest, if missing) into the run directory; with
    ``models``, the artifact store this machine reads, also the trained models."""
    board = open_board(storage, run)
    manifest = board.manifest()
    if manifest is None:  # the worker that created the study stores it the next instant
        raise StoreError(f"the jobs study {board.name!r} has no manifest yet: a worker is starting this run; "
                         "try again in a moment")
    if not run.manifest.is_file():
        atomic_write_json(run.manifest, manifest)
    return board.materialise(run, manifest["jobs"], models=models)


@dataclass(frozen=True)
class TuningProgress:
    model: str
    finished: int
    running: int
    budget: int


def tuning_progress(storage, manifest: dict[str, Any]) -> list[TuningProgress]:
    """Per tuned model and split of the run (each split is tuned on its own VAL): trials finished and
    running in its study, against ``tune.trials``."""
    optuna = optuna_module()
    from optuna.trial import TrialState

    config = manifest["config"]
    existing = set(optuna.get_all_study_names(storage))
    studies = manifest.get("identity", {}).get("tuning studies", {})  # model key -> split -> name (its identity)
    progress = []
    for model in config["models"]:
        key = ModelConfig(**model).key
        for split, name in studies.get(key, {}).items():
            if name not in existing:
                continue
            trials = counted_trials(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
            finished = sum(trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
                           for trial in trials)
            running = sum(trial.state == TrialState.RUNNING for trial in trials)
            progress.append(TuningProgress(f"{key} on {split}", finished, running, config["tune"]["trials"]))
    return progress
