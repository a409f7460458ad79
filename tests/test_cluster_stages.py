"""Encoder stages shared through the storage and the artifact store (a run's own folder, a named folder, an
S3 bucket served by moto), in one process: claimed once, fetched byte for byte by another worker, refused when
changed in the store or named to escape the run directory (the worker processes themselves are in
test_cluster_workers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config import load_experiment
from benchmark.errors import ConfigError
from benchmark.orchestration.artifacts import open_artifacts
from benchmark.orchestration.stages import FILES, STAGE, StageBoard
from benchmark.orchestration.storage import open_storage
from benchmark.store import RunDir, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["fold0__seed0__aaaa", "fold0__seed1__bbbb"]


class Worker:
    """A worker's stage board over its own run directory; ``compute`` writes a stage's files there."""

    def __init__(self, tmp_path: Path, name: str, artifacts: str = ""):
        self.run = RunDir(tmp_path / name)
        self.computed: list[str] = []
        self.said: list[str] = []
        storage = open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1)
        self.board = StageBoard(storage, "exp/stages/plan", self.run, open_artifacts(artifacts, self.run.root),
                                self.compute, self.said.append)

    def compute(self, stage: str) -> list[Path]:
        self.computed.append(stage)
        return [atomic_write_text(self.run.root / "encoders" / f"{stage}.pt", f"weights of {stage}"),
                atomic_write_text(self.run.root / "cache" / f"{stage}.npz", f"features of {stage}")]

    def files(self, stage: str) -> list[str]:
        return [(self.run.root / folder / f"{stage}.{suffix}").read_text()
                for folder, suffix in (("encoders", "pt"), ("cache", "npz"))]


def stored_files(worker: Worker, stage: str) -> dict:
    trial = next(t for t in worker.board.study.get_trials() if t.user_attrs.get(STAGE) == stage and FILES in t.user_attrs)
    return trial.user_attrs[FILES]


def forged(worker: Worker, stage: str, files: dict) -> None:
    """Whoever can write to the storage records a done stage with ``files``."""
    import optuna

    worker.board.study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=0.0,
                                                           user_attrs={STAGE: stage, FILES: files}))


def test_each_stage_is_computed_once_and_fetched_by_the_others(tmp_path):
    first, second = Worker(tmp_path, "w0"), Worker(tmp_path, "w1")
    assert first.board.enqueue_missing(STAGES) == 2
    assert second.board.enqueue_missing(STAGES) == 0
    first.board.compute_waiting()
    assert first.computed == STAGES
    for stage in STAGES:  # the second worker reads the first one's run folder: the same machine
        assert second.board.fetch(stage)
        assert second.files(stage) == first.files(stage)
    assert second.computed == [] and second.said == []
    assert [state.state for state in second.board.states(STAGES)] == ["done", "done"]


def test_a_stage_changed_in_the_store_is_refused_and_computed_here(tmp_path):
    first, second = Worker(tmp_path, "w0"), Worker(tmp_path, "w1")
    first.board.enqueue_missing(STAGES)
    first.board.compute_waiting()
    record = stored_files(first, STAGES[0])[f"encoders/{STAGES[0]}.pt"]
    (Path(record["folder"]) / record["artifact"]).write_text("weights of someone else")
    assert not second.board.fetch(STAGES[0])
    assert len(second.said) == 1
    assert f"refused artifact {record['artifact']} (encoders/{STAGES[0]}.pt of stage {STAGES[0]})" in second.said[0]
    assert "SHA-256" in second.said[0] and f"computing stage {STAGES[0]} here" in second.said[0]
    assert not (second.run.root / "encoders" / f"{STAGES[0]}.pt").exists()


@pytest.mark.parametrize("name", ["../outside.pt", "encoders/../../outside.pt", "jobs/x.pt", "cache/a/b.npz"])
def test_a_stage_file_named_to_leave_its_folders_is_refused(tmp_path, name):
    first, second = Worker(tmp_path, "w0"), Worker(tmp_path, "w1")
    first.board.enqueue_missing(STAGES[:1])
    first.board.compute_waiting()
    files = stored_files(first, STAGES[0])
    forged(first, STAGES[1], {name: next(iter(files.values()))})
    assert not second.board.fetch(STAGES[1])
    assert f"refused a file of stage {STAGES[1]} in the storage" in second.said[0]
    assert not (tmp_path / "outside.pt").exists() and not (second.run.root / "jobs").exists()


def test_a_stage_failed_beside_a_pruned_duplicate_claim_is_an_error_not_a_wait(tmp_path, monkeypatch):
    """Two workers enqueued the stage together: one claim failed with an error, its duplicate was pruned
    unrun. The failure is the stage's last word (the duplicate says nothing), so a worker needing it stops."""
    import optuna

    from benchmark.errors import StoreError
    from benchmark.orchestration.cluster import ERROR, SKIPPED, WORKER

    worker = Worker(tmp_path, "w1")
    failed = optuna.trial.TrialState.FAIL
    for attrs in ({ERROR: "RuntimeError: CUDA out of memory", WORKER: "gpu-1:7"}, {SKIPPED: "duplicate"}):
        worker.board.study.add_trial(optuna.trial.create_trial(state=failed, user_attrs={STAGE: STAGES[0], **attrs}))
    monkeypatch.setattr("benchmark.orchestration.stages.Backoff.wait",
                        lambda self, waiting_on=None: pytest.fail("waits for a retry that never comes"))
    with pytest.raises(StoreError, match=f"stage {STAGES[0]} failed on gpu-1:7: RuntimeError: CUDA out of memory"):
        worker.board.fetch(STAGES[0])


def test_a_worker_paused_past_the_grace_goes_on_when_its_claim_was_taken_over(tmp_path):
    """Suspended mid-stage, the worker was failed as dead and its claim enqueued again; on resuming, Optuna
    refuses its result. It says so and goes on (here it takes the rerun itself), where it used to die."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    worker = Worker(tmp_path, "w0")
    worker.board.enqueue_missing(STAGES)
    compute, paused = worker.compute, []

    def suspended(stage: str) -> list[Path]:
        files = compute(stage)
        if not paused:  # meanwhile another worker found the claim silent: FAIL, then its rerun
            study = worker.board.study
            trial = next(t for t in study.get_trials() if t.state == TrialState.RUNNING)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            RetryHeartbeatStaleTrialCallback(max_retry=3)(study, study.trials[trial.number])
            paused.append(stage)
        return files

    worker.board.compute = suspended
    worker.board.compute_waiting()
    assert worker.computed == [STAGES[0], STAGES[1], STAGES[0]]
    assert [state.state for state in worker.board.states(STAGES)] == ["done", "done"]


def test_a_stage_in_another_machines_run_folder_is_computed_here(tmp_path):
    first, second = Worker(tmp_path, "w0"), Worker(tmp_path, "w1")
    first.board.enqueue_missing(STAGES[:1])
    first.board.compute_waiting()
    files = stored_files(first, STAGES[0])
    forged(first, STAGES[1], {name: {**record, "host": "another-machine"} for name, record in files.items()})
    assert not second.board.fetch(STAGES[1])
    assert "which this worker cannot read" in second.said[0] and "--artifacts" in second.said[0]


def test_workers_given_one_artifact_folder_share_it(tmp_path):
    shared = tmp_path / "shared-artifacts"
    first, second = Worker(tmp_path, "w0", str(shared)), Worker(tmp_path, "w1", str(shared))
    first.board.enqueue_missing(STAGES)
    first.board.compute_waiting()
    files = stored_files(first, STAGES[1])
    assert {record["store"] for record in files.values()} == {str(shared)}
    assert second.board.fetch(STAGES[1]) and second.files(STAGES[1]) == first.files(STAGES[1])
    assert not (first.run.root / "artifacts").exists()


@pytest.fixture
def s3_bucket(monkeypatch):
    """An S3-compatible bucket served in this process by moto (no network): boto3 reads its keys and
    region from the environment, as it would for MinIO or AWS."""
    import boto3
    import moto

    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="lvef-bench")
        yield client


def test_workers_given_one_s3_prefix_share_it_and_refuse_a_changed_object(tmp_path, s3_bucket):
    spec = "s3://lvef-bench/pediatric/"
    first, second = Worker(tmp_path, "w0", spec), Worker(tmp_path, "w1", spec)
    first.board.enqueue_missing(STAGES)
    first.board.compute_waiting()
    files = stored_files(first, STAGES[1])
    assert {record["store"] for record in files.values()} == {spec}
    objects = {item["Key"] for item in s3_bucket.list_objects_v2(Bucket="lvef-bench")["Contents"]}
    assert objects == {f"pediatric/{record['artifact']}" for stage in STAGES
                       for record in stored_files(first, stage).values()}  # under the prefix, nothing else
    assert second.board.fetch(STAGES[1]) and second.files(STAGES[1]) == first.files(STAGES[1])
    assert not (first.run.root / "artifacts").exists() and not (second.run.root / "artifacts").exists()

    record = stored_files(first, STAGES[0])[f"encoders/{STAGES[0]}.pt"]
    s3_bucket.put_object(Bucket="lvef-bench", Key=f"pediatric/{record['artifact']}", Body=b"weights of someone else")
    assert not second.board.fetch(STAGES[0])
    assert f"refused artifact {record['artifact']}" in second.said[0] and spec in second.said[0]
    assert "SHA-256" in second.said[0]


def test_the_artifact_setting_is_checked_with_its_key(tmp_path, capsys):
    experiment = ROOT / "experiments" / "quick.toml"
    with pytest.raises(ConfigError, match=r"`tune.artifacts` is 'gs://bucket/x': give a folder"):
        load_experiment(experiment, ['tune.artifacts="gs://bucket/x"'])
    with pytest.raises(ConfigError, match=r"`tune.artifacts` is 's3:///x', which names no bucket"):
        load_experiment(experiment, ['tune.artifacts="s3:///x"'])
    assert load_experiment(experiment, ['tune.artifacts="s3://bucket/lvef"']).tune.artifacts == "s3://bucket/lvef"
    with pytest.raises(ConfigError, match=r"--artifacts is 'http://x'"):
        open_artifacts("http://x", tmp_path)
    for given, said in ((["--artifacts", "http://x", "--storage", "s.db"], "--artifacts is 'http://x'"),
                        (["--artifacts", str(tmp_path / "store")], "give the storage too")):
        assert main(["run", str(experiment), "--out", str(tmp_path / "run"), *given]) == 2
        assert said in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "run").exists()  # refused before the run directory exists
    assert open_artifacts("", tmp_path).where["folder"] == str((tmp_path / "artifacts").resolve())
