"""The jobs study in one process: claims, duplicates, failed jobs, stored results (the worker processes
themselves are in test_cluster_workers.py)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import optuna
import pytest

from benchmark.cli import main
from benchmark.errors import ConfigError
from benchmark.orchestration import cluster
from benchmark.orchestration.artifacts import open_artifacts
from benchmark.orchestration.cluster import CHUNK, JOB, MODEL, SKIPPED, JobBoard, decode_files, encode_files
from benchmark.orchestration.storage import open_storage
from benchmark.store import RunDir, atomic_write_text, read_json

JOBS = ["mse__seed0__fold0__aaaa", "mse__seed1__fold0__bbbb"]
MANIFEST = {"experiment": "exp", "jobs": JOBS}


@pytest.fixture
def board(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)
    return JobBoard(storage, "exp/jobs/plan", open_artifacts("", tmp_path / "worker"))


def recorder(folder: Path, fail: tuple[str, ...] = ()):
    """A worker's ``run_one``: each job writes its predictions and its model into ``folder``."""
    ran = []

    def run_one(job: str):
        ran.append(job)
        status = {"status": "failed", "error": "HeadError: NaN"} if job in fail else {"status": "ok"}
        atomic_write_text(folder / job / "predictions.csv", f"FileName\n{job}\n")
        atomic_write_text(folder / job / "model.pt", f"weights of {job}")
        return {"job": job, "seconds": 0.5, **status}, folder / job
    return ran, run_one


def test_a_job_enqueued_twice_runs_once_and_a_done_job_never_again(board, tmp_path):
    assert board.publish(JOBS, MANIFEST) == 2
    board.study.enqueue_trial({}, user_attrs={JOB: JOBS[0]})  # a worker that looked before the first enqueued
    assert board.publish(JOBS, MANIFEST) == 0
    ran, run_one = recorder(tmp_path)
    assert board.work(run_one, say=lambda _: None) == 2
    assert sorted(ran) == JOBS
    skipped = [trial.user_attrs[SKIPPED] for trial in board.study.get_trials() if SKIPPED in trial.user_attrs]
    assert len(skipped) == 1 and skipped[0].startswith("duplicate")
    assert [state.state for state in board.states(JOBS)] == ["done", "done"]

    assert board.publish(JOBS, MANIFEST) == 0
    assert board.work(run_one, say=lambda _: None) == 0  # nothing is run twice

    run = RunDir(tmp_path / "elsewhere")
    assert board.materialise(run, JOBS) == 2
    assert read_json(run.result(JOBS[1]))["status"] == "ok"
    assert (run.job(JOBS[1]) / "predictions.csv").read_text() == f"FileName\n{JOBS[1]}\n"
    assert not (run.job(JOBS[1]) / "model.pt").exists()  # models come only from an artifact store
    assert board.manifest() == MANIFEST


def test_models_travel_through_the_artifact_store_and_a_changed_one_is_refused(board, tmp_path):
    board.publish(JOBS, MANIFEST)
    board.work(recorder(tmp_path)[1], say=lambda _: None)
    said = []
    elsewhere = RunDir(tmp_path / "elsewhere")  # a machine reading the workers' store (their run folder here)
    board.materialise(elsewhere, JOBS, say=said.append, models=open_artifacts("", elsewhere.root))
    assert [(elsewhere.job(job) / "model.pt").read_text() for job in JOBS] == [f"weights of {job}" for job in JOBS]
    assert said == []

    record = board.study.get_trials()[-1].user_attrs[MODEL]  # the last job's model, tampered with in the store
    (Path(record["folder"]) / record["artifact"]).write_text("weights of someone else")
    again = RunDir(tmp_path / "again")
    board.materialise(again, JOBS, say=said.append, models=open_artifacts("", again.root))
    assert len(said) == 1 and f"refused artifact {record['artifact']} (model.pt of job" in said[0]
    assert "SHA-256" in said[0]
    assert sum((again.job(job) / "model.pt").exists() for job in JOBS) == 1


def test_a_failed_job_is_enqueued_again_by_the_next_worker(board, tmp_path):
    board.publish(JOBS, MANIFEST)
    ran, run_one = recorder(tmp_path, fail=(JOBS[0],))
    board.work(run_one, say=lambda _: None)
    states = board.states(JOBS)
    assert [(state.state, state.detail) for state in states] == [("failed", "HeadError: NaN"), ("done", "0.5 s")]
    assert board.publish(JOBS, MANIFEST) == 1
    ran, run_one = recorder(tmp_path)
    assert board.work(run_one, say=lambda _: None) == 1 and ran == [JOBS[0]]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the other workers' claims are asked by hand
def test_a_waiting_worker_looks_again_soon_after_a_change_then_once_a_second(board, tmp_path, monkeypatch):
    jobs = [*JOBS, "mse__seed2__fold0__cccc"]
    board.publish(jobs, {"experiment": "exp", "jobs": jobs})
    elsewhere = []
    for worker in ("a:1", "b:2"):  # two other workers hold the first two jobs; this one runs the third
        elsewhere.append(JobBoard(board.study._storage, board.study.study_name).study.ask())
        elsewhere[-1].set_user_attr(cluster.WORKER, worker)
    assert [trial.user_attrs[JOB] for trial in elsewhere] == JOBS

    def finish(trial) -> None:
        trial.set_user_attr(cluster.RESULT, {"job": trial.user_attrs[JOB], "seconds": 1.0, "status": "ok"})
        board.study.tell(trial, 1.0)

    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 7:  # a:1 stores its result during the 7th look's sleep, b:2 during the 11th
            finish(elsewhere[0])
        elif len(slept) == 11:
            finish(elsewhere[1])
        elif len(slept) > 11:
            pytest.fail(f"the worker went on waiting for jobs that had ended: {slept}")

    monkeypatch.setattr(cluster.time, "sleep", sleep)
    said = []
    assert board.work(recorder(tmp_path)[1], say=said.append) == 1
    # Doubling to the longest sleep while nothing changes; short again once a:1's job ended.
    assert slept == [0.05, 0.1, 0.2, 0.4, 0.8, cluster.POLL_S, cluster.POLL_S, 0.05, 0.1, 0.2, 0.4]
    assert said == ["waiting for jobs running on a:1, b:2", "waiting for jobs running on b:2"]


def test_a_tuning_trial_starts_only_where_one_process_would_have_its_history():
    """Trials 0 and 1 see no history and run side by side; trial k waits for 0 .. k-1, a dead worker's trial
    until its retry has run; the budget holds, a dead worker's trial and its retry taking one slot of it."""
    from types import SimpleNamespace

    from optuna.trial import TrialState

    tuning = SimpleNamespace(budget=4, side_by_side=2, timeout=None)
    running, done, pruned = TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED
    failed, dead = "failed", "dead"  # FAIL with the objective's error, FAIL without (its worker died)

    def may_start(*states, first_trial: float | None = None) -> bool:
        trials = []
        for number, state in enumerate(states):
            state, retry_of = state if isinstance(state, tuple) else (state, None)  # (state, the number it reruns)
            trials.append(SimpleNamespace(
                number=number, state=TrialState.FAIL if state in (failed, dead) else state,
                user_attrs={cluster.ERROR: "ValueError"} if state == failed else {},
                system_attrs={"retry_history": [retry_of]} if retry_of is not None else {}))
        return cluster._may_start(tuning, trials, first_trial)

    assert may_start() and may_start(running)                      # slots 0 and 1: nothing to see yet
    assert not may_start(running, running) and not may_start(done, running)  # slot 2 waits for 0 and 1
    assert may_start(done, pruned) and may_start(done, failed, done)
    assert not may_start(done, dead, done)                         # trial 1's retry is due: it goes first
    assert not may_start(done, done, done, done)                   # the budget is handed out
    assert may_start(done, done, done, done, TrialState.WAITING)   # but a dead worker's retried trial runs
    assert may_start(done, dead, done, (done, 1))                  # trial 1 died, 3 reran it: slot 3 is free
    assert not may_start(done, dead, done, (running, 1))           # ... once its rerun has finished
    import optuna

    tuning.timeout, tuning.handle = 5.0, optuna.create_study()
    assert may_start(done, done, first_trial=cluster.time.monotonic() - 4)
    assert not may_start(done, done, first_trial=cluster.time.monotonic() - 6)  # this worker's timeout ran out:
    assert tuning.handle.user_attrs[cluster.CLOSED] == "tune.timeout of 5 s after 2 trials"
    assert not may_start(done, done, first_trial=cluster.time.monotonic())  # ... the study ends for every worker


def tuning_of(study, ran: list, budget: int = 4):
    """A study tuned together (``tuning.TuningStudy``'s fields): each trial's objective records its number and
    the trials finished when it began."""
    from types import SimpleNamespace

    import optuna

    def objective(trial) -> float:
        ran.append((trial.number, sorted(t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()
                                         and cluster.SKIPPED not in t.user_attrs)))
        return trial.suggest_float("x", 0, 1)

    return SimpleNamespace(handle=study, budget=budget, side_by_side=2, timeout=None, catch=(), objective=objective,
                           sampler_for=lambda slot: optuna.samplers.RandomSampler(seed=slot))


def never_waits(self, waiting_on=None):
    pytest.fail(f"a lone worker waits on {set(waiting_on)}, which only a worker outside a trial would run: forever")


def died(study, trial) -> None:
    """What a worker's death does to its trial, once another worker sees it: FAIL, then a waiting copy."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=3)(study, study._storage.get_trial(trial._trial_id))


def test_a_trial_asked_while_an_earlier_slot_ran_gives_way_to_that_slots_rerun(tmp_path, monkeypatch):
    """Trial 3 (slot 3) is asked while trial 2 (slot 2) runs; 2's worker dies and its rerun is trial 4. Slot 3
    must see slot 2's result, yet trial 4 waits for a worker outside a trial, maybe this one: trial 3 ends
    unrun, taking no slot, and the worker runs trial 4, then slot 3 as trial 5."""
    import optuna

    storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)
    study = optuna.create_study(study_name="tuning", storage=storage)
    for value in (3.0, 2.0):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), value)
    dying, asked = study.ask(), study.ask()
    died(study, dying)
    ran = []
    tuning = tuning_of(study, ran)
    monkeypatch.setattr(cluster.Backoff, "wait", never_waits)
    with pytest.raises(cluster._Unrun, match="trial 3 gave way to trial 4"):
        cluster._in_slot(tuning)(asked)
    assert study.trials[3].user_attrs[SKIPPED] == "gave way to trial 4, the rerun of an earlier slot's trial"
    study._storage.set_trial_state_values(asked._trial_id, optuna.trial.TrialState.FAIL)  # as Optuna does
    cluster.tune_together([tuning])
    # Slot 3 (trial 5) began once slot 2's rerun had finished; the unrun trial 3 is not in anyone's history.
    assert ran == [(4, [0, 1, 2]), (5, [0, 1, 2, 4])]
    assert [trial.number for trial in cluster.counted_trials(study.trials)] == [0, 1, 4, 5]


def test_a_rerun_waits_for_the_rerun_of_an_earlier_slot(tmp_path, monkeypatch):
    """Trials 2 and 3 die (3 while it waited for 2, before drawing anything); the rerun of 3 is enqueued first.
    It must not draw before slot 2's rerun has run: it gives way and is enqueued again, keeping its slot."""
    import optuna

    storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)
    study = optuna.create_study(study_name="tuning", storage=storage)
    for value in (3.0, 2.0):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), value)
    slot_two, slot_three = study.ask(), study.ask()
    slot_two.suggest_float("x", 0, 1)
    died(study, slot_three)  # its rerun: trial 4
    died(study, slot_two)    # its rerun: trial 5, with trial 2's parameters
    ran = []
    monkeypatch.setattr(cluster.Backoff, "wait", never_waits)
    cluster.tune_together([tuning_of(study, ran)])
    assert [number for number, _ in ran] == [5, 6]  # slot 2's rerun, then slot 3's (4 gave way, enqueued as 6)
    assert study.trials[4].user_attrs[SKIPPED].startswith("gave way to trial 5")
    assert study.trials[6].system_attrs["retry_history"] == [3, 4]
    assert study.trials[5].params == study.trials[2].params
    assert [trial.number for trial in cluster.counted_trials(study.trials)] == [0, 1, 5, 6]


def new_study(tmp_path, done: int = 2):
    """A shared tuning study whose first ``done`` slots finished."""
    import optuna

    storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)
    study = optuna.create_study(study_name="tuning", storage=storage)
    for value in range(done):
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), float(3 - value))
    return study


def test_a_trial_whose_slot_moved_down_does_not_wait_for_itself(tmp_path, monkeypatch):
    """Trials 2, 3 and 4 were asked in one instant (slots 2, 3, 4), and 4 waits. Meanwhile 2 dies, 3 gives way
    to its rerun 5, which finishes: trial 4 now holds slot 3, and must sample as slot 3, not wait for itself."""
    import optuna

    study = new_study(tmp_path)
    dying, gave_way, waiting = study.ask(), study.ask(), study.ask()
    ran, seeds = [], []
    tuning = tuning_of(study, ran, budget=5)
    tuning.sampler_for = lambda slot: seeds.append(slot) or optuna.samplers.RandomSampler(seed=slot)

    def meanwhile(self, waiting_on=None):  # what the other workers do during trial 4's first wait
        monkeypatch.setattr(cluster.Backoff, "wait", never_waits)
        died(study, dying)
        with pytest.raises(cluster._Unrun, match="gave way to trial 5"):
            cluster._in_slot(tuning)(gave_way)
        study._storage.set_trial_state_values(gave_way._trial_id, optuna.trial.TrialState.FAIL)
        study.tell(study.ask(), 1.0)  # the rerun 5

    monkeypatch.setattr(cluster.Backoff, "wait", meanwhile)
    cluster._in_slot(tuning)(waiting)
    assert seeds == [3] and [number for number, _ in ran] == [4]


def test_copies_of_a_slot_beyond_the_first_and_of_a_trial_past_the_budget_end_unrun(tmp_path, monkeypatch):
    """Two workers mended one dead trial (two copies), and a trial asked past the budget died before it could
    say so (its copy looks like any rerun): one process runs slot 2 once and nothing past the budget."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    study = new_study(tmp_path)
    dying, past = study.ask(), study.ask()  # trial 3 was asked as the budget (3) was used up
    died(study, dying)  # its copy: trial 4
    died(study, past)   # its copy: trial 5
    RetryHeartbeatStaleTrialCallback()(study, study.trials[dying.number])  # trial 2's second copy: trial 6
    study.tell(study.ask(), 2.5)  # trial 4, run by another worker
    ran = []
    monkeypatch.setattr(cluster.Backoff, "wait", never_waits)
    cluster.tune_together([tuning_of(study, ran, budget=3)])
    assert ran == []
    reasons = {trial.number: trial.user_attrs.get(SKIPPED, "") for trial in study.trials}
    assert reasons[5].startswith("over budget") and reasons[6].startswith("a duplicate")
    assert [trial.number for trial in cluster.counted_trials(study.trials)] == [0, 1, 4]


def waiting_a_second_a_look(monkeypatch) -> list[float]:
    """Each wait of a worker moves a clock of its own by a second, up to half a minute."""
    clock = [1000.0]
    monkeypatch.setattr(cluster.time, "monotonic", lambda: clock[0])

    def wait(self, waiting_on=None):
        clock[0] += 1.0
        assert clock[0] < 1030, f"waits on {waiting_on} for ever"

    monkeypatch.setattr(cluster.Backoff, "wait", wait)
    return clock


def test_a_dead_claim_left_without_its_copy_is_mended_not_waited_on_for_ever(tmp_path, monkeypatch):
    """The worker failing a stale claim died before enqueuing its copy (or a second Ctrl-C cut a worker's own
    enqueue): after twice the grace, a waiting worker enqueues the copy, for tuning and jobs alike."""
    clock = waiting_a_second_a_look(monkeypatch)
    study = new_study(tmp_path)
    orphan = study.ask()
    orphan.suggest_float("x", 0, 1)
    orphan.set_user_attr(cluster.INTERRUPTED, True)
    study._storage.set_trial_state_values(orphan._trial_id, cluster.optuna_module().trial.TrialState.FAIL)
    ran = []
    cluster.tune_together([tuning_of(study, ran, budget=3)])
    assert [number for number, _ in ran] == [3] and study.trials[3].params == study.trials[2].params
    assert [trial.number for trial in cluster.counted_trials(study.trials)] == [0, 1, 3]
    assert 1006 < clock[0] < 1010  # twice the grace of 3 s

    board = JobBoard(open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1), "exp/jobs/plan")
    board.publish(JOBS[:1], MANIFEST)
    claim = board.study.ask()
    board.study._storage.set_trial_state_values(claim._trial_id, cluster.optuna_module().trial.TrialState.FAIL)
    ran, run_one = recorder(tmp_path / "w")
    assert board.work(run_one, say=lambda _: None) == 1 and ran == JOBS[:1]


def test_only_deaths_use_up_a_slots_reruns(tmp_path, monkeypatch):
    """Slot 2's trial died; its rerun gave way twice (each time enqueued again, on purpose), then died: one
    more death than Optuna's retry limit counts in the history, yet only two deaths, so the slot runs."""
    study = new_study(tmp_path)
    died(study, study.ask())  # trial 2; its rerun: 3
    for _ in range(2):  # 3 gives way (enqueued again as 4), then 4 (as 5)
        rerun = study.ask()
        cluster._enqueue_again(study, rerun._trial_id, {})
        rerun.set_user_attr(SKIPPED, "gave way")
        study._storage.set_trial_state_values(rerun._trial_id, cluster.optuna_module().trial.TrialState.FAIL)
    died(study, study.ask())  # trial 5: Optuna's callback enqueues no copy past 3 in its history
    assert len(study.trials) == 6
    waiting_a_second_a_look(monkeypatch)
    ran = []
    cluster.tune_together([tuning_of(study, ran, budget=3)])
    assert [number for number, _ in ran] == [6]
    assert [trial.number for trial in cluster.counted_trials(study.trials)] == [0, 1, 6]


def test_a_claim_is_given_up_after_as_many_deaths_as_optuna_retries_it_plus_one(tmp_path):
    """Optuna's callback retries a dead claim ``MAX_RETRY`` times: the claim is open (its copy due) until its
    ``MAX_RETRY + 1``-th death, so no worker leaves while Optuna is about to enqueue a copy."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    study = new_study(tmp_path, done=0)
    study.ask()
    for death in range(1, cluster.MAX_RETRY + 2):
        trial = study.trials[-1]
        study._storage.set_trial_state_values(trial._trial_id, cluster.optuna_module().trial.TrialState.FAIL)
        trials = study.get_trials()
        assert cluster._settled(trials) == (death > cluster.MAX_RETRY), death  # between FAIL and its copy
        RetryHeartbeatStaleTrialCallback(max_retry=cluster.MAX_RETRY)(study, trials[-1])
        if death <= cluster.MAX_RETRY:
            study.ask()  # the copy, claimed
    assert len(study.trials) == cluster.MAX_RETRY + 1  # no copy after the last death


def test_a_trial_failed_as_stale_while_its_worker_was_paused_does_not_kill_the_worker(tmp_path, monkeypatch):
    """Paused after the objective's last write to the storage, the worker resumes with a value for a trial
    another worker failed and enqueued again: it goes on with the rerun, where Optuna's tell used to fail."""
    study = new_study(tmp_path)
    ran = []
    tuning = tuning_of(study, ran, budget=3)
    objective = tuning.objective

    def paused(trial):
        value = objective(trial)
        if trial.number == 2:
            died(study, trial)
        return value

    tuning.objective = paused
    monkeypatch.setattr(cluster.Backoff, "wait", never_waits)
    cluster.tune_together([tuning])
    assert [number for number, _ in ran] == [2, 3]
    assert [trial.number for trial in cluster.counted_trials(study.trials)] == [0, 1, 3]


def test_a_ctrl_c_copy_claimed_before_its_original_failed_still_runs(tmp_path, monkeypatch):
    """Ctrl-C: the copy is enqueued while Optuna has not yet failed the original. Another worker claiming the
    copy in that instant sees the original running; it is the trial the copy reruns, no rival, for tuning and
    jobs alike (the copy ended unrun as a duplicate and the slot, or the job, was never run)."""
    import optuna

    study = new_study(tmp_path)
    ran = []
    tuning = tuning_of(study, ran, budget=3)
    objective, stopped = tuning.objective, []

    def stops_once(trial):
        if not stopped:
            stopped.append(trial.number)
            raise KeyboardInterrupt
        return objective(trial)

    tuning.objective = stops_once
    real = cluster._enqueue_again

    def then_another_worker_claims(study_, trial_id, attrs):
        real(study_, trial_id, attrs)
        monkeypatch.setattr(cluster, "_enqueue_again", real)
        other = optuna.load_study(study_name="tuning", storage=study._storage)
        cluster._optimize_one(other, cluster._in_slot(tuning_of(other, ran, budget=3)), catch=(cluster._Unrun,))

    monkeypatch.setattr(cluster, "_enqueue_again", then_another_worker_claims)
    monkeypatch.setattr(cluster.Backoff, "wait", never_waits)
    with pytest.raises(KeyboardInterrupt):
        cluster.tune_together([tuning])
    assert stopped == [2] and [number for number, _ in ran] == [3]
    assert [trial.number for trial in cluster.counted_trials(study.trials)] == [0, 1, 3]  # slot 2, run by the copy

    board = JobBoard(study._storage, "exp/jobs/plan")
    board.publish(JOBS[:1], MANIFEST)
    done, run_one = recorder(tmp_path / "w")

    def interrupted(job):
        raise KeyboardInterrupt

    def then_another_worker_runs(study_, trial_id, attrs):
        real(study_, trial_id, attrs)
        monkeypatch.setattr(cluster, "_enqueue_again", real)
        JobBoard(study._storage, "exp/jobs/plan").claim_one(
            lambda job, trial: trial.set_user_attr(cluster.RESULT, run_one(job)[0]) or 0.5)

    monkeypatch.setattr(cluster, "_enqueue_again", then_another_worker_runs)
    with pytest.raises(KeyboardInterrupt):
        board.work(interrupted, say=lambda _: None)
    assert done == JOBS[:1] and [state.state for state in board.states(JOBS[:1])] == ["done"]


def test_a_worker_leaving_on_system_exit_leaves_its_claim_unmarked_for_a_retry(tmp_path, monkeypatch):
    """Optuna does not fail a trial for a SystemExit: it stays running, goes stale and is retried. Marked as an
    error, its retry inherited the mark, and the retry ended unrun as a duplicate of a finished trial."""
    study = new_study(tmp_path)

    def leaves(trial, claimed):
        raise SystemExit(0)

    with pytest.raises(SystemExit):
        study.optimize(cluster._marking_errors(leaves), n_trials=1)
    assert cluster.ERROR not in study.trials[2].user_attrs


def test_no_new_slot_starts_in_a_study_a_timeout_closed(tmp_path, monkeypatch):
    """A worker may ask a new trial after another closed the study (it found a rerun waiting, which a third
    worker took first): that trial ends unrun, so every worker ends with the same trials."""
    study = new_study(tmp_path)
    study.set_user_attr(cluster.CLOSED, "tune.timeout of 5 s after 2 trials")
    ran = []
    tuning = tuning_of(study, ran, budget=4)
    tuning.timeout = 5.0
    with pytest.raises(cluster._Unrun, match="closed by a worker's tune.timeout"):
        cluster._in_slot(tuning)(study.ask())
    assert ran == []


def test_a_claim_stopped_by_ctrl_c_is_enqueued_again_as_it_was_claimed(tmp_path):
    """Ctrl-C fails the trial but is no verdict on its work: a copy waits for the next worker, with the
    parameters the trial drew and none of this worker's marks; the interrupted trial uses no budget slot."""
    import optuna

    storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)
    study = optuna.create_study(study_name="tuning", storage=storage)
    study.enqueue_trial({}, user_attrs={JOB: "a job"})

    def stopped(trial, claimed):
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("interrupted", True)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study.optimize(cluster._marking_errors(stopped), n_trials=1)
    first, again = study.trials
    assert first.state == optuna.trial.TrialState.FAIL and cluster.ERROR not in first.user_attrs
    assert again.state == optuna.trial.TrialState.WAITING and again.user_attrs == {JOB: "a job"}
    assert again.params == first.params and again.system_attrs["retry_history"] == [0]
    assert cluster.counted_trials(study.trials) == [again] and not cluster._settled(study.trials)


def test_status_counts_an_interrupted_trial_once_its_rerun_is_there():
    """A single process's Ctrl-C'd trial (marked interrupted) and its rerun on the next run use one slot of the
    budget: ``status`` showed 4/3 for a budget of 3."""
    import optuna

    study = optuna.create_study()
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    interrupted = {cluster.INTERRUPTED: True}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs=interrupted))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert [trial.number for trial in cluster.counted_trials(study.trials)] == [0, 2, 3]


def test_tuning_ends_past_the_budget_and_after_a_non_finite_value(tmp_path, monkeypatch):
    """A trial asked past the budget (another worker asked in the same instant) fails unrun and unlogged:
    failed, not pruned, as TPE counts pruned trials in its history. A trial whose value is NaN fails with its
    reason, so that workers do not wait for a retry that never comes."""
    from types import SimpleNamespace

    import optuna

    storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)
    values = {"tuning": 1.0, "nan": float("nan")}
    studies, ran = [], []
    for name, value in values.items():
        studies.append(SimpleNamespace(handle=optuna.create_study(study_name=name, storage=storage), budget=1,
                                       side_by_side=2, timeout=None, catch=(),
                                       objective=lambda trial, value=value: ran.append(trial.number) or value,
                                       sampler_for=lambda slot: optuna.samplers.RandomSampler(seed=slot)))
    real, raced = cluster._may_start, []

    def racing(tuning, trials, first_trial):  # once, the check passes after the last slot was taken
        if tuning.handle.study_name == "tuning" and len(trials) == 1 and not raced:
            raced.append(True)
            return True
        return real(tuning, trials, first_trial)

    def wait(self, waiting_on=None):
        pytest.fail(f"the workers would wait forever on {waiting_on}")

    monkeypatch.setattr(cluster, "_may_start", racing)
    monkeypatch.setattr(cluster.Backoff, "wait", wait)
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage().split(" failed")[0])
    logging.getLogger("optuna.study._optimize").addHandler(handler)  # after the logger's filters
    try:
        cluster.tune_together(studies)
        studies[0].handle.optimize(lambda trial: float("nan"), n_trials=1)  # a failure outside: logged
    finally:
        logging.getLogger("optuna.study._optimize").removeHandler(handler)
    assert raced and ran == [0, 0]
    first, over, outside = studies[0].handle.trials
    assert over.state == optuna.trial.TrialState.FAIL and over.user_attrs[SKIPPED].startswith("over budget")
    assert cluster.counted_trials([first, over]) == [first]
    nan = studies[1].handle.trials[0]
    assert nan.state == optuna.trial.TrialState.FAIL and nan.user_attrs[cluster.ERROR] == "the objective's value is nan"
    assert logged == ["Trial 0", "Trial 0", "Trial 2", "Trial 2"]  # the NaN trial's two lines, then the outside one's


def test_a_worker_is_told_of_another_plan_of_its_experiment_and_how_it_differs(tmp_path):
    """Workers whose plans differ (an override, or machines resolving ``encoder.precision = "auto"`` apart)
    share nothing, silently until now: the worker names the other study, its progress and what differs."""
    storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)

    def manifest(precision: str, device: str, jobs: list[str]) -> dict:
        return {"experiment": "exp", "jobs": jobs, "device": device, "created": device,
                "config": {"encoder": {"precision": precision, "name": "area_length"}, "seeds": [0, 1]},
                "identity": {"engine": {"training/loop.py": "aaaa"}}}  # the same code

    gpu = JobBoard(storage, "exp/jobs/gpu-plan")
    gpu.publish(JOBS, manifest("bfloat16", "cuda", JOBS))
    _, run_one = recorder(tmp_path / "gpu")
    gpu.claim_one(lambda job, trial: trial.set_user_attr(cluster.RESULT, run_one(job)[0]) or 0.5)
    JobBoard(storage, "other/jobs/plan").publish(JOBS, {**manifest("float32", "cpu", JOBS), "experiment": "other"})
    cpu = JobBoard(storage, "exp/jobs/cpu-plan")
    mine = manifest("float32", "cpu", ["mse__seed0__fold0__cccc"])
    cpu.announce(mine)
    gpu.study.ask()  # a job running on the other plan
    began = f"{gpu.study.trials[0].datetime_start:%Y-%m-%d %H:%M}"
    assert cluster.other_plans(cpu, mine) == [(
        f"the storage holds another plan of 'exp', study 'exp/jobs/gpu-plan' (began {began}, 1 of its jobs running "
        'now), whose workers share nothing with this one; it differs in config.encoder.precision ("float32" '
        'here, "bfloat16" there), device ("cpu" here, "cuda" there)')]
    assert cluster.other_plans(gpu, gpu.manifest())[0].startswith(
        "the storage holds another plan of 'exp', study 'exp/jobs/cpu-plan' (0 of its jobs running now)")


def test_a_starting_worker_and_status_read_no_trials_of_other_runs(tmp_path, monkeypatch, capsys):
    """A storage serves a cluster for months: every run's stored results stay in it as trial attributes. A worker
    at its start (asking for other plans of its experiment) and ``status`` (per run, its tuning progress) read the
    trials they show, never every study's (Optuna's study summaries do: on a PostgreSQL storage holding 214
    studies, ``status`` took 148 s)."""
    from optuna.storages import RDBStorage

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    storage = open_storage(url, tmp_path, heartbeat=1)
    manifest = {**MANIFEST, "config": {"models": [], "tune": {"trials": 0}}}
    old = JobBoard(storage, "old/jobs/plan")  # a finished run of another experiment, with its stored result
    old.publish(JOBS, {**manifest, "experiment": "old"})
    _, run_one = recorder(tmp_path / "old")
    old.claim_one(lambda job, trial: trial.set_user_attr(cluster.RESULT, run_one(job)[0]) or 0.5)
    unrelated = optuna.create_study(study_name="old-mse-tuning", storage=storage)
    unrelated.tell(unrelated.ask(), 1.0)
    mine, other_plan = JobBoard(storage, "exp/jobs/plan"), JobBoard(storage, "exp/jobs/other-plan")
    mine.publish(JOBS, manifest)
    other_plan.publish(JOBS, {**manifest, "device": "cuda"})
    names = {study._study_id: study.study_name for study in storage.get_all_studies()}
    read = []
    trials_of = RDBStorage._get_trials
    monkeypatch.setattr(RDBStorage, "_get_trials", lambda self, study_id, *rest, **named:
                        read.append(names[study_id]) or trials_of(self, study_id, *rest, **named))

    assert len(cluster.other_plans(mine, manifest)) == 1
    assert set(read) == {"exp/jobs/other-plan"}
    read.clear()
    assert main(["status", url]) == 0
    assert "old (jobs study 'old/jobs/plan')" in capsys.readouterr().out
    assert "old-mse-tuning" not in read  # no run's tuning study: nothing shows it


def test_files_round_trip_and_storage_errors_are_actionable(tmp_path):
    files = {"samples.npz": np.random.default_rng(0).bytes(CHUNK), "traceback.txt": b"", "a#b.csv": b"x"}
    attrs = encode_files(files)
    assert max(len(text) for text in attrs.values()) <= CHUNK and len(attrs) > len(files)  # chunked
    assert decode_files(attrs) == files
    with pytest.raises(ConfigError, match="at least 1"):
        open_storage(str(tmp_path / "s.db"), tmp_path, heartbeat=0)
    with pytest.raises(ConfigError, match=r"cannot open the storage postgresql://user:\*\*\*@127.0.0.1:1/db"):
        open_storage("postgresql://user:secret@127.0.0.1:1/db", tmp_path)


POP = """
import sys
import optuna
from benchmark.orchestration.storage import open_storage

study = optuna.load_study(study_name="race", storage=open_storage(sys.argv[1], ".", heartbeat=5))
while True:
    trial = study.ask()
    if "n" not in trial.user_attrs:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        break
    print(trial.user_attrs["n"], flush=True)
    study.tell(trial, 0.0)
"""


def test_on_sqlite_a_waiting_trial_is_taken_by_one_process_only(tmp_path):
    import subprocess
    import sys

    import optuna

    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=open_storage(url, tmp_path))
    for number in range(30):
        study.enqueue_trial({}, user_attrs={"n": number})
    script = tmp_path / "pop.py"
    script.write_text(POP)
    processes = [subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, text=True)
                 for _ in range(3)]
    taken = [int(line) for process in processes for line in process.communicate(timeout=120)[0].split()]
    assert [process.returncode for process in processes] == [0, 0, 0]
    assert sorted(taken) == list(range(30))
