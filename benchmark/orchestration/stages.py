"""Encoder stages shared by workers: the stage of each (split, seed), stage-1 training and the features of
every role, is computed by one worker and fetched by the others.

The study ``<experiment>/stages/<plan>`` holds one claim per stage (user attr ``stage``: its content name,
``provenance.stage_name``), claimed like jobs (``cluster.ClaimBoard``: Optuna's ``ask``, heartbeats, the
retry of a dead worker's claim). The worker that computes a stage uploads its files (the stage-1 weights,
the feature cache entries) to the artifact store and records them in the trial: path in the run directory
-> artifact record with the SHA-256 (``orchestration.artifacts``). A worker that needs a stage downloads
them into its own run directory, where the encoder stage finds them as if it had computed them. While the
stage it needs runs elsewhere it computes other waiting stages, and it waits only when none is left.

A stage done into a store this worker cannot read (another machine's run folder, no ``--artifacts``) or
whose files are refused is computed here again, as every worker did before stages were shared.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmark.errors import ConfigError, StoreError
from benchmark.identity import vouch_stored
from benchmark.orchestration.artifacts import Artifacts, describe, download, upload
from benchmark.orchestration.cluster import ERROR, SKIPPED, Backoff, ClaimBoard, claim_deaths
from benchmark.orchestration.storage import MAX_RETRY
from benchmark.store import RunDir, check_name

STAGE = "stage"               # user attr: the stage a stages-study trial stands for
FILES = "files"               # user attr: path in the run directory -> artifact record
STAGE_FOLDERS = ("encoders", "cache")  # where an encoder stage writes in a run directory


def stages_study_name(experiment: str, stages: Iterable[str]) -> str:
    plan = hashlib.sha256("\n".join(sorted(stages)).encode()).hexdigest()[:8]
    return f"{experiment}/stages/{plan}"


class StageClaims(ClaimBoard):
    """The stages study as ``status`` reads it: each stage's claims, and where a done one's files are."""

    attr = STAGE
    unit = "stage"

    def detail(self, trial) -> str:
        records = list(trial.user_attrs.get(FILES, {}).values())
        return f"{len(records)} files in {describe(records[0])}" if records else ""


class StageBoard(StageClaims):
    """The stages study of one worker's run. ``compute(stage)`` computes a stage in this run directory and
    returns its files."""

    def __init__(self, storage, name: str, run: RunDir, artifacts: Artifacts,
                 compute: Callable[[str], list[Path]], say: Callable[[str], None] = print):
        super().__init__(storage, name)
        self.run, self.artifacts, self.compute, self.say = run, artifacts, compute, say
        self.computed = 0

    def compute_waiting(self) -> None:
        """Claim and compute stages while any is waiting: every worker starts with one, so the stages of
        different seeds and splits run side by side."""
        while self.waiting(self.reaper.trials()):
            self.claim_one(self._compute_and_store)

    def fetch(self, stage: str) -> bool:
        """Bring ``stage``'s files into this run directory; False when that cannot be done (the caller
        then computes it here). Meanwhile computes other waiting stages; waits only when none is left."""
        waited, backoff = "", Backoff()
        while True:
            trials = self.reaper.trials()
            state = self.states([stage], trials)[0]
            if state.state == "done":
                return self._download(stage, self._done(stage, trials))
            if self.waiting(trials):
                self.claim_one(self._compute_and_store)
                backoff.reset()
            elif state.detail == "not yet enqueued":
                self.enqueue_missing([stage])
            elif state.state == "failed" and self._given_up(stage, trials):
                raise StoreError(f"the encoder stage {stage} failed on {state.worker or 'a worker'}: {state.detail}")
            else:  # running elsewhere, or a dead worker's claim about to be retried
                if state.worker != waited:
                    self.say(f"waiting for stage {stage} running on {state.worker or 'a worker that stopped'}")
                    waited = state.worker
                backoff.wait(state.worker)

    def _compute_and_store(self, stage: str, trial) -> float:
        started = time.perf_counter()
        self.say(f"stage {stage}: computing it here")
        paths = self.compute(stage)
        trial.set_user_attr(FILES, {path.relative_to(self.run.root).as_posix(): upload(self.artifacts, trial, path)
                                    for path in paths})
        self.computed += 1
        return time.perf_counter() - started

    def _done(self, stage: str, trials: list):
        from optuna.trial import TrialState

        return next(trial for trial in trials if trial.user_attrs.get(STAGE) == stage
                    and trial.state == TrialState.COMPLETE and FILES in trial.user_attrs)

    def _given_up(self, stage: str, trials: list) -> bool:
        """The stage's last claim raised an error, or its workers died once more than it is retried: no
        rerun is coming."""
        claims = [trial for trial in trials  # not a duplicate claim pruned unrun: it says nothing of the stage
                  if trial.user_attrs.get(STAGE) == stage and SKIPPED not in trial.user_attrs]
        last = max(claims, key=lambda trial: trial.number)
        return ERROR in last.user_attrs or claim_deaths(last, trials) > MAX_RETRY

    def _download(self, stage: str, trial) -> bool:
        files: dict[str, Any] = trial.user_attrs[FILES]
        try:
            for name, record in files.items():
                if not download(record, self.artifacts, f"{name} of stage {stage}", self._local_path(stage, name)):
                    self.say(f"stage {stage} is stored in {describe(record)}, which this worker cannot read: "
                             "computing it here too (give every worker the same --artifacts to share stages)")
                    return False
                vouch_stored(Path(name).name, record["sha256"])  # the bytes the storage recorded, checked on the way in
        except StoreError as error:
            self.say(f"{error}; computing stage {stage} here")
            return False
        return True

    def _local_path(self, stage: str, name: str) -> Path:
        """Where a stage file named in the storage goes in this run directory: only into ``encoders/`` or
        ``cache/`` (a name like ``../x`` would land outside the run directory)."""
        folder, _, file = str(name).partition("/")
        try:
            if folder not in STAGE_FOLDERS:
                raise ConfigError(f"{name!r} is not in {' or '.join(STAGE_FOLDERS)}")
            check_name(file, "its file name")
        except ConfigError as error:
            raise StoreError(f"refused a file of stage {stage} in the storage: {error}") from None
        return self.run.path(folder, file)
