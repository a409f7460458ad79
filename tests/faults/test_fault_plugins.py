"""Plugin faults. A plugin the experiment names that cannot load stops the run before any work (exit 2,
naming the plugin and its error); a broken plugin it does not name is a warning. A head that passes the
pre-flight but misbehaves on the real data fails its own job only: the job is stored as failed with its
traceback, the other jobs finish, and the leaderboard lists it as failed, never as a number."""
from __future__ import annotations

import importlib.metadata
import json

import pandas as pd
import pytest
from faultkit import cli, leaderboard, run_args, write_experiment

BROKEN_HEADS = '''
import torch
from torch.nn import functional as F

from benchmark.training.trunk import PointHead
from registry import hookimpl


def misbehaves(head) -> bool:
    """False on the first call of a head class (the pre-flight's random batch), True on every later one: a
    head that breaks only on the real data, which the pre-flight cannot see and only its job can catch."""
    cls = type(head)
    cls.calls = getattr(cls, "calls", 0) + 1
    return cls.calls > 1


class NaNLoss(PointHead):
    """Its loss turns NaN."""

    criterion = staticmethod(F.mse_loss)

    def loss(self, condition, target):
        return super().loss(condition, target) * (float("nan") if misbehaves(self) else 1.0)


class NaNSamples(PointHead):
    """Trains, then samples NaN."""

    criterion = staticmethod(F.mse_loss)

    def sample(self, condition, n):
        return torch.full((len(condition), n), float("nan")) if misbehaves(self) else super().sample(condition, n)


class WrongShape(PointHead):
    """Trains, then returns one sample when asked for n."""

    criterion = staticmethod(F.mse_loss)

    def sample(self, condition, n):
        return super().sample(condition, n)[:, :1] if misbehaves(self) else super().sample(condition, n)


@hookimpl
def register_heads(registry):
    registry.add("nan_loss", NaNLoss)
    registry.add("nan_samples", NaNSamples)
    registry.add("wrong_shape", WrongShape)
'''

MODELS = "".join(f'[[models]]\nhead = "{head}"\nlabel = "{head}"\n\n'
                 for head in ("mse", "nan_loss", "nan_samples", "wrong_shape"))
EXPECTED_ERRORS = {
    "nan_loss": "HeadError: head 'nan_loss': training loss is nan at epoch 1, batch 1. Lower train.lr",
    "nan_samples": "HeadError: head 'nan_samples': sample(condition, 4) returned 8 non-finite value(s) of 8",
    "wrong_shape": "HeadError: head 'wrong_shape': sample(condition, 4) returned shape (2, 1), expected (2, 4)",
}


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory, synthetic_root):
    """A run with one good head, three heads that fail at run time, and a broken installed plugin."""
    folder = tmp_path_factory.mktemp("broken")
    (folder / "broken_heads.py").write_text(BROKEN_HEADS)
    broken_entry_point = importlib.metadata.EntryPoint(name="broken_dist", value="lvef_no_such_module",
                                                       group="lvefbench")
    installed = importlib.metadata.entry_points

    def entry_points(**selection):
        if selection.get("group") == "lvefbench":
            return importlib.metadata.EntryPoints([broken_entry_point])
        return installed(**selection)

    experiment = write_experiment(folder / "experiment.toml", synthetic_root=synthetic_root, models=MODELS,
                                  plugins=["broken_heads.py"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importlib.metadata, "entry_points", entry_points)
        outcome = cli(*run_args(experiment, folder / "run"))
    return experiment, folder / "run", outcome


def test_failing_heads_fail_only_their_jobs(broken_run):
    _, run, outcome = broken_run
    # Exit 3 once the leaderboard is written: a sweep or CI can tell that jobs failed.
    assert outcome.code == 3, outcome.text
    assert (run / "leaderboard.csv").is_file()
    (summary,) = [line for line in outcome.err.splitlines() if line.startswith("failed: ")]
    assert summary.startswith("failed: 3 job(s) failed: ") and all(model in summary for model in EXPECTED_ERRORS)
    results = {record["model"]: record for record in
               (json.loads(path.read_text()) for path in (run / "jobs").glob("*/result.json"))}
    assert results["mse"]["status"] == "ok"
    for model, error in EXPECTED_ERRORS.items():
        assert results[model]["status"] == "failed"
        assert results[model]["error"].startswith(error), results[model]["error"]
        job = run / "jobs" / results[model]["job"]
        assert "Traceback (most recent call last)" in (job / "traceback.txt").read_text()
        assert not (job / "predictions.csv").exists(), "a failed job must leave no predictions to be scored"
        assert f"FAILED {results[model]['job']}: {error}" in outcome.out


def test_leaderboard_lists_failed_jobs_as_failed_never_as_numbers(broken_run):
    _, run, _ = broken_run
    board = leaderboard(run).set_index("model")
    metrics = ["mae", "rmse", "crps"]
    assert board.loc["mse", "status"] == "ok" and board.loc["mse", metrics].notna().all()
    for model, error in EXPECTED_ERRORS.items():
        assert board.loc[model, "status"] == "failed"
        assert board.loc[model, metrics].isna().all(), f"{model} failed and must have no metric values"
        assert error in board.loc[model, "error"]
    table = (run / "leaderboard.md").read_text()
    main_table = table[table.index("\n|"):].split("\n\n")[0]  # the main board; per-seed, CI and subgroup tables follow
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in main_table.splitlines()
            if line.startswith("|") and not line.startswith("|--")]
    header = rows[0]
    body = {row[header.index("model")]: dict(zip(header, row)) for row in rows[1:]}
    for column in ("MAE", "RMSE", "CRPS"):
        assert body["mse"][column][:1].isdigit() or body["mse"][column].startswith("**")
        for model in EXPECTED_ERRORS:
            assert body[model][column] == "failed", body[model]
    assert "## Failed jobs" in table


def test_unnamed_broken_plugin_is_a_warning(broken_run):
    _, _, outcome = broken_run
    assert "warning: " in outcome.out and "broken_dist" in outcome.out
    assert "lvef_no_such_module" in outcome.out and "the experiment does not name it" in outcome.out


def test_rerun_retries_failed_jobs_only(broken_run):
    experiment, run, _ = broken_run
    before = leaderboard(run)
    outcome = cli(*run_args(experiment, run))
    assert outcome.code == 3
    assert "2 already done, 3 to run" in outcome.out  # mse and the prior row are done
    pd.testing.assert_frame_equal(leaderboard(run), before)


NAMED_PLUGIN_FAULTS = {
    "fails to import": ("import lvef_missing_dependency\n",
                        "import failed: ModuleNotFoundError: No module named 'lvef_missing_dependency' "
                        "(at bad_plugin.py:1)"),
    "raises in its hook": ("from registry import hookimpl\n\n@hookimpl\ndef register_heads(registry):\n"
                           "    raise RuntimeError('cannot find my weights')\n",
                           "register_heads raised RuntimeError: cannot find my weights (at bad_plugin.py:5)"),
    # its message holds the line; its traceback only the import machinery's ('(at <frozen importlib._bootstrap>:241)')
    "has a syntax error": ("def broken(:\n    pass\n",
                           "import failed: SyntaxError: invalid syntax (bad_plugin.py, line 1)"),
    "misspells a hook": ("from registry import hookimpl\n\n@hookimpl\ndef register_head(registry):\n    pass\n",
                         "implements unknown hook(s) 'register_head': Did you mean 'register_heads'?"),
    "is not there": (None, "import failed: FileNotFoundError: no plugin file at"),
}


@pytest.mark.parametrize("case", NAMED_PLUGIN_FAULTS)
def test_named_plugin_that_cannot_load_stops_the_run(tmp_path, synthetic_root, case):
    source, expected = NAMED_PLUGIN_FAULTS[case]
    if source is not None:
        (tmp_path / "bad_plugin.py").write_text(source)
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root,
                                  plugins=["bad_plugin.py"])
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 2, outcome.text
    message = " ".join(outcome.err.split())
    assert f"{experiment}: `plugins`:" in message
    assert "bad_plugin" in message and str(tmp_path / "bad_plugin.py") in message
    assert expected in message
    assert "(at <frozen" not in message and "(at manager.py" not in message  # no line the author could fix
    assert not (tmp_path / "run").exists()
