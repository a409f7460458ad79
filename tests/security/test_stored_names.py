"""What the artifact store and the shared storage hold cannot make a worker read outside its run directory or
the store, block on a FIFO or read without end: a stored artifact that is not a regular file, or is longer
than its record says, is refused before its SHA-256 is checked, and a stored result that names files outside
its job folder is counted as damaged without reading them. An object S3 fails to serve, or one larger than
the free disk, is refused too. Each test is bounded by an alarm, so that a regression fails instead of hanging
the suite."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import optuna
import pytest
import test_cluster_stages
from test_cluster_stages import Worker, forged, stored_files

from benchmark.errors import StoreError
from benchmark.orchestration.artifacts import Artifacts, download
from benchmark.orchestration.cluster import JOB, RESULT, JobBoard
from benchmark.orchestration.storage import open_storage
from benchmark.store import RunDir, read_json

ROOT = Path(__file__).resolve().parents[2]
STAGE, JOB_ID = "fold0__seed0__aaaa", "mse__seed0__fold0__aaaa"
PREDICTIONS = b"FileName,EF_pred\nx,55.0\n"
s3_bucket = test_cluster_stages.s3_bucket  # the fixture of a bucket served by moto


pytestmark = pytest.mark.usefixtures("deadline")


@pytest.mark.parametrize("kind", ["a FIFO", "a symbolic link"])
def test_an_artifact_swapped_for_a_fifo_or_a_link_is_refused_unopened(tmp_path, kind):
    shared = tmp_path / "store"
    first, second = Worker(tmp_path, "w0", str(shared)), Worker(tmp_path, "w1", str(shared))
    first.board.enqueue_missing([STAGE])
    first.board.compute_waiting()
    record = stored_files(first, STAGE)[f"encoders/{STAGE}.pt"]
    path = shared / record["artifact"]
    genuine = shutil.copy(path, tmp_path / "elsewhere.pt")  # a link to the very bytes recorded is refused too
    path.unlink()
    if kind == "a FIFO":
        os.mkfifo(path)
    else:
        path.symlink_to(genuine)

    assert not second.board.fetch(STAGE)
    assert f"refused artifact {record['artifact']} (encoders/{STAGE}.pt of stage {STAGE}) from {shared}: " \
           f"{path} is {kind}, not a regular file; computing stage {STAGE} here" in second.said


def test_a_record_without_a_size_is_refused(tmp_path):
    first, second = Worker(tmp_path, "w0"), Worker(tmp_path, "w1")
    first.board.enqueue_missing([STAGE])
    first.board.compute_waiting()
    sizeless = {name: {key: value for key, value in record.items() if key != "size"}
                for name, record in stored_files(first, STAGE).items()}
    forged(first, "fold0__seed1__bbbb", sizeless)  # as an older version of the benchmark recorded it
    assert not second.board.fetch("fold0__seed1__bbbb")
    assert "its record gives no size" in second.said[0] and "computing stage fold0__seed1__bbbb here" in second.said[0]


class Endless:
    """A store whose every artifact streams zeros without end, counting what it served."""

    def __init__(self):
        self.served = 0

    def open_reader(self, artifact_id: str):
        return self

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "a stream from the store was read without a bound"
        self.served += size
        return bytes(size)

    def close(self) -> None:
        pass


def test_a_stream_longer_than_its_record_is_refused_once_past_its_size(tmp_path):
    """Read in bounded chunks straight to disk, stopped one byte past the recorded size, and nothing kept."""
    store, size = Endless(), 3 << 20
    record = {"artifact": "a1", "sha256": hashlib.sha256(bytes(size)).hexdigest(), "size": size, "store": "s3://b/p"}
    with pytest.raises(StoreError, match=rf"refused artifact a1 \(model.pt\) from s3://b/p: it holds more than the "
                                         rf"{size} bytes recorded"):
        download(record, Artifacts(store, {"store": "s3://b/p"}), "model.pt", tmp_path / "model.pt")
    assert store.served == size + 1
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial temporary


def test_an_s3_object_longer_than_its_record_is_refused(tmp_path, s3_bucket):
    spec = "s3://lvef-bench/pediatric"
    first, second = Worker(tmp_path, "w0", spec), Worker(tmp_path, "w1", spec)
    first.board.enqueue_missing([STAGE])
    first.board.compute_waiting()
    record = stored_files(first, STAGE)[f"encoders/{STAGE}.pt"]
    s3_bucket.put_object(Bucket="lvef-bench", Key=f"pediatric/{record['artifact']}", Body=bytes(4 << 20))
    assert not second.board.fetch(STAGE)
    assert f"it holds more than the {record['size']} bytes recorded" in second.said[0]


@pytest.mark.parametrize("failure", ["no permission", "a stream cut off"])
def test_an_s3_object_s3_fails_to_serve_is_refused_and_computed_here(tmp_path, s3_bucket, failure):
    """Not a botocore error out of the worker: the stage is computed here instead."""
    from botocore.exceptions import ClientError, ResponseStreamingError

    spec = "s3://lvef-bench/pediatric"
    first, second = Worker(tmp_path, "w0", spec), Worker(tmp_path, "w1", spec)
    first.board.enqueue_missing([STAGE])
    first.board.compute_waiting()
    client = second.board.artifacts.store.store.client
    if failure == "no permission":
        denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                              "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")
        client.get_object = lambda **_: (_ for _ in ()).throw(denied)
        expected = "it cannot be read (S3: An error occurred (AccessDenied)"
    else:
        get_object = client.get_object

        def cut_off(**request):
            answer = get_object(**request)
            answer["Body"].read = lambda *_: (_ for _ in ()).throw(ResponseStreamingError(error="connection reset"))
            return answer
        client.get_object = cut_off
        expected = "it cannot be read (S3: An error occurred while reading from response stream: connection reset)"
    assert not second.board.fetch(STAGE)
    assert expected in second.said[0] and f"computing stage {STAGE} here" in second.said[0]
    assert not (second.run.root / "encoders" / f"{STAGE}.pt").exists()


def test_a_record_larger_than_the_free_disk_is_refused_before_a_byte_is_read(tmp_path, monkeypatch):
    store, size = Endless(), 3 << 20
    free = shutil.disk_usage(tmp_path)._replace(free=size - 1)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: free)
    record = {"artifact": "a1", "sha256": hashlib.sha256(bytes(size)).hexdigest(), "size": size, "store": "s3://b/p"}
    with pytest.raises(StoreError, match=rf"refused artifact a1 \(model.pt\) from s3://b/p: its record gives {size} "
                                         rf"bytes and {tmp_path} has {size - 1} bytes free"):
        download(record, Artifacts(store, {"store": "s3://b/p"}), "model.pt", tmp_path / "new" / "model.pt")
    assert store.served == 0 and list(tmp_path.iterdir()) == []


def _stored_result(tmp_path, files: dict) -> RunDir:
    """A worker's run directory after fetching a result record, written by whoever can write the storage,
    whose ``files`` are ``files``."""
    board = JobBoard(open_storage(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path, heartbeat=1), "exp/jobs/plan")
    board.study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=0.0, user_attrs={
        JOB: JOB_ID, RESULT: {"job": JOB_ID, "status": "ok", "seconds": 1.0, "files": files}}))
    run = RunDir(tmp_path / "worker")
    assert board.materialise(run, [JOB_ID], say=lambda _: None) == 1
    return run


@pytest.mark.parametrize("name", ["absolute", "../../../outside.csv", "fifo"])
def test_a_stored_result_naming_a_file_outside_its_job_folder_is_damage_and_unread(tmp_path, name):
    (tmp_path / "outside.csv").write_bytes(PREDICTIONS)  # the very bytes recorded: read, it would pass the check
    os.mkfifo(tmp_path / "fifo")
    name = {"absolute": str(tmp_path / "outside.csv"), "fifo": str(tmp_path / "fifo")}.get(name, name)
    record = {"sha256": hashlib.sha256(PREDICTIONS).hexdigest(), "rows": 1}
    run = _stored_result(tmp_path, {name: record})

    problem = run.damage(JOB_ID, read_json(run.result(JOB_ID)))
    assert problem and f"result.json of {run.job(JOB_ID)} names a file that was refused: stored file name " \
                       f"{name!r} contains" in problem


@pytest.mark.parametrize("kind", ["a FIFO", "a symbolic link"])
def test_a_job_file_that_is_a_fifo_or_a_link_is_damage_and_unread(tmp_path, kind):
    record = {"sha256": hashlib.sha256(PREDICTIONS).hexdigest(), "rows": 1}
    run = _stored_result(tmp_path, {"predictions.csv": record})
    path = run.job(JOB_ID) / "predictions.csv"
    (tmp_path / "outside.csv").write_bytes(PREDICTIONS)
    if kind == "a FIFO":
        os.mkfifo(path)
    else:
        path.symlink_to(tmp_path / "outside.csv")

    assert run.damage(JOB_ID, read_json(run.result(JOB_ID))) == f"{path} is {kind}, not a regular file"


def test_report_creates_no_artifact_folder_a_received_manifest_names(tmp_path, capsys):
    """``report --storage`` falls back on the run's recorded ``tune.artifacts``; a received manifest could name
    any folder, which must not be created."""
    from benchmark.commands.report import _recorded_artifacts
    from benchmark.config import load_experiment
    from benchmark.store import RunDir, atomic_write_json

    run = RunDir(tmp_path / "received")
    named = tmp_path / "anywhere" / "at" / "all"
    config = load_experiment(ROOT / "experiments" / "quick.toml", [f'tune.artifacts="{named}"']).to_dict()
    atomic_write_json(run.manifest, {"jobs": [], "protocol": {}, "config": config})
    assert _recorded_artifacts(run) == ""
    assert not (tmp_path / "anywhere").exists()
    assert f"the run's tune.artifacts, {named}, is no folder on this machine" in capsys.readouterr().out
    named.mkdir(parents=True)
    assert _recorded_artifacts(run) == str(named)
