"""Fixtures of the fault-injection suite: the CLI driven in-process, a synthetic dataset generated once
per session, and one undisturbed reference run that every crashed-then-resumed run must reproduce."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main
from faultkit import SYNTHETIC, run_args, write_experiment


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The folder holding the session's synthetic Pediatric stand-in, generated once."""
    from benchmark.synth.generate import ensure_generated

    root = tmp_path_factory.mktemp("synthetic")
    ensure_generated(root / "echonet_pediatric-n{n}-seed{seed}-amb0.2-noise3".format(**SYNTHETIC),
                     workers=1, format="echonet_pediatric", size=32, **SYNTHETIC)
    return root


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, synthetic_root) -> Path:
    """An undisturbed run of the tiny experiment: what every interrupted-then-resumed run must reproduce."""
    folder = tmp_path_factory.mktemp("reference")
    experiment = write_experiment(folder / "experiment.toml", synthetic_root=synthetic_root)
    assert main(run_args(experiment, folder / "run")) == 0
    return folder / "run"


@pytest.fixture
def experiment(tmp_path, synthetic_root) -> Path:
    """The tiny experiment on the shared synthetic data, in this test's folder."""
    return write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root)
