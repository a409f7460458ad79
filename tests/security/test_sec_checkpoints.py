"""Checkpoints are data from someone else: nothing in one may run code. A crafted pickle given to each
entry point (import-mcsdr, [encoder] weights, [[models]] checkpoint) is refused naming the file and what it
asked for, and leaves no proof file; --trust-checkpoint is the only way to unpickle it."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from faults.faultkit import cli, run_args, write_experiment

from benchmark.encoding.weights import read_checkpoint


def test_import_mcsdr_refuses_a_crafted_pickle(crafted, tmp_path):
    path, proof = crafted()
    outcome = cli("import-mcsdr", path, "--out", tmp_path / "imported")
    assert outcome.code == 2
    message = " ".join(outcome.err.split())
    assert f"refused to load {path}" in message and "io.open" in message and "--trust-checkpoint" in message
    assert not proof.exists() and not (tmp_path / "imported").exists()


def test_encoder_weights_refuse_a_crafted_pickle(crafted, tmp_path, synthetic_root):
    path, proof = crafted("encoder.pth")
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root)
    outcome = cli(*run_args(experiment, tmp_path / "run", "--set", f"encoder.weights={path}"))
    assert outcome.code == 2
    assert f"refused to load {path}" in " ".join(outcome.err.split())
    assert not proof.exists()
    assert not (tmp_path / "run").exists()  # the encoder's pre-flight loads them before any work


def test_a_model_checkpoint_refuses_a_crafted_pickle(crafted, tmp_path, synthetic_root):
    path, proof = crafted()
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, models=(
        f'[[models]]\nhead = "mcsdr"\nfusion = "none"\nlabel = "received"\ncheckpoint = "{path}"\n'))
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert not proof.exists()
    # The checkpoint's inputs are checked before any work, so the refusal stops the run there (exit 2).
    assert outcome.code == 2 and f"refused to load {path}" in " ".join(outcome.err.split()), outcome.text
    assert not (tmp_path / "run").exists()


def test_only_trust_checkpoint_unpickles_arbitrary_objects(crafted, tmp_path):
    path, proof = crafted()
    outcome = cli("import-mcsdr", path, "--out", tmp_path / "imported", "--trust-checkpoint")
    assert proof.exists()  # the opt-in did unpickle (the file is no MCSDR checkpoint beyond that)
    assert outcome.code == 1 and "regressor_state_dict has no" in " ".join(outcome.err.split())


def test_what_a_real_training_checkpoint_holds_besides_tensors_still_loads(tmp_path):
    """MCSDR-style best.pth content: numpy numbers, an argparse config, a real optimizer state."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    content = {"epoch": np.int64(37), "current_metric_val": np.float64(4.22), "model_state_dict": model.state_dict(),
               "regressor_state_dict": {}, "optimizer_state_dict": optimizer.state_dict(),
               "config": {"args": argparse.Namespace(lr=3e-4, tabular=["Age", "Sex"]), "mean": np.zeros(3)}}
    torch.save(content, tmp_path / "best.pth")
    loaded = read_checkpoint(tmp_path / "best.pth")
    assert loaded["current_metric_val"] == pytest.approx(4.22) and loaded["epoch"] == 37
    assert loaded["config"]["args"].tabular == ["Age", "Sex"]
    assert torch.equal(loaded["optimizer_state_dict"]["state"][0]["exp_avg"],
                       optimizer.state_dict()["state"][0]["exp_avg"])
