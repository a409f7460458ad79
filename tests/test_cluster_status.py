"""``status`` of a shared storage while its run is in the encoder stages and in tuning, most of a run: the
worker stores the run's manifest before them, so status shows the stages, the tuning trials and the jobs (not
yet enqueued: a job is claimable only once tuning is done) from the start."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config import load_experiment
from benchmark.orchestration import cluster
from benchmark.orchestration.runner import run_experiment
from benchmark.orchestration.stages import StageBoard
from benchmark.orchestration.storage import open_storage

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "quick.toml"


class Stop(Exception):
    """Ends the run once status has been looked at during tuning."""


def tiny(data: Path) -> list[str]:
    return [f'synthetic.root="{data}"', "synthetic.n=24", "clips.frames=4", "clips.size=32", "encoder.params={width=4}",
            "encoder.pretrain.epochs=1", "train.epochs=2", "evaluate.samples=4", "tune.trials=2", "seeds=[0]",
            'models=[{head="mse",label="mse"}]']


def test_status_shows_the_stages_and_tuning_of_a_run_before_its_jobs(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    seen = {}

    def status(phase: str, *target: str) -> None:
        capsys.readouterr()  # the run's own output so far
        assert main(["status", *target]) == 0
        seen[phase] = capsys.readouterr().out

    compute_waiting = StageBoard.compute_waiting

    def before_stages(board):
        status("stages", url)
        status("stages, of the run directory", str(tmp_path / "run"), "--storage", url)
        compute_waiting(board)

    def instead_of_tuning(studies):
        status("tuning", url)
        raise Stop

    monkeypatch.setattr(StageBoard, "compute_waiting", before_stages)
    monkeypatch.setattr(cluster, "tune_together", instead_of_tuning)
    with pytest.raises(Stop):
        run_experiment(load_experiment(EXPERIMENT, tiny(tmp_path / "data")), out=tmp_path / "run", storage=url,
                       quiet=True, say=lambda _: None)

    # The jobs: mse and the prior row every run adds, enqueued only after tuning.
    for phase in ("stages", "stages, of the run directory"):
        assert "quick (jobs study 'quick/jobs/" in seen[phase], seen[phase]
        assert "2 jobs: 0 done, 0 running, 2 pending" in seen[phase]
        assert seen[phase].count("not yet enqueued") == 2
        assert "1 encoder stages: 0 done, 0 running, 1 pending, 0 failed" in seen[phase]
    assert "1 encoder stages: 1 done, 0 running, 0 pending, 0 failed" in seen["tuning"], seen["tuning"]
    assert "mse on fold0" in seen["tuning"] and "0/2" in seen["tuning"]
    assert seen["tuning"].count("not yet enqueued") == 2


def test_status_of_a_jobs_study_whose_manifest_is_not_stored_yet(tmp_path, capsys):
    """A worker creates the jobs study and stores the manifest in it just after: status looking in between."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cluster.JobBoard(open_storage(url, tmp_path), "quick/jobs/1234abcd")
    assert main(["status", url]) == 0
    assert "jobs study 'quick/jobs/1234abcd': a worker is starting this run" in capsys.readouterr().out


def test_status_of_a_worker_given_storage_on_the_command_line_asks_for_it(tmp_path, monkeypatch, capsys):
    """README's recipe starts workers with --storage, not tune.storage: its run directory records the storage, so
    `status RUN_DIR` says which the run shares and asks for it, instead of showing its own files as a one-process
    run (it said "one process" and none of the other workers' jobs)."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    seen = {}

    def before_stages(board):  # the manifest is written; the worker has yet to compute anything
        capsys.readouterr()
        seen["code"] = main(["status", str(tmp_path / "run")])
        seen["said"] = " ".join(capsys.readouterr().err.split())
        raise Stop

    monkeypatch.setattr(StageBoard, "compute_waiting", before_stages)
    with pytest.raises(Stop):
        run_experiment(load_experiment(EXPERIMENT, tiny(tmp_path / "data")), out=tmp_path / "run", storage=url,
                       quiet=True, say=lambda _: None)
    assert seen["code"] == 2, seen
    assert f"shared the storage {url}" in seen["said"] and "--storage URL" in seen["said"], seen
