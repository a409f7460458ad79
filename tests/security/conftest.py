"""Fixtures of the security suite: the fault suite's tiny experiment (20 synthetic videos of 32 px, two
heads, seconds per run), one finished run to copy, and a crafted pickle that leaves a proof file behind
if anything ever unpickles it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from faults.faultkit import cli, run_args, write_experiment


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture
def experiment(tmp_path, synthetic_root) -> Path:
    return write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, synthetic_root) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    experiment = write_experiment(folder / "experiment.toml", synthetic_root=synthetic_root)
    outcome = cli(*run_args(experiment, folder / "run"))
    assert outcome.code == 0, outcome.text
    return folder / "run"


@pytest.fixture
def run_copy(tmp_path, finished_run) -> Path:
    """A private copy of the finished run (with its experiment file beside it, as the manifest says)."""
    shutil.copy(finished_run.parent / "experiment.toml", tmp_path / "experiment.toml")
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


class _Payload:
    """Unpickled, it opens (creates) its proof file: code from the checkpoint has run."""

    def __init__(self, proof: Path):
        self.proof = str(proof)

    def __reduce__(self):
        return open, (self.proof, "w")


@pytest.fixture
def crafted(tmp_path):
    """``crafted(name)``: a checkpoint laid out like MCSDR's best.pth whose ``config`` is the payload;
    returns (checkpoint path, proof path)."""
    def make(name: str = "best.pth") -> tuple[Path, Path]:
        path, proof = tmp_path / name, tmp_path / f"{name}.proof"
        torch.save({"epoch": 3, "model_state_dict": {"w": torch.zeros(2)}, "regressor_state_dict": {"b": torch.zeros(1)},
                    "config": _Payload(proof)}, path)
        return path, proof
    return make
