"""Fixtures of the security suite: a private copy of the shared reference run (tests/conftest.py), a
crafted pickle that leaves a proof file behind if anything ever unpickles it, and an alarm that ends a test
blocked on a FIFO or an endless stream."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch


@pytest.fixture
def run_copy(tmp_path, reference_run) -> Path:
    """A private copy of the finished run (with its experiment file beside it, as the manifest says)."""
    shutil.copy(reference_run.parent / "experiment.toml", tmp_path / "experiment.toml")
    return Path(shutil.copytree(reference_run, tmp_path / "run"))


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


