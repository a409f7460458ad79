"""Names that reach file paths (experiment names, model labels, external names, job ids from manifests
and storages) cannot steer a write out of the run directory."""
from __future__ import annotations

import json

import pytest
from faults.faultkit import MODELS, cli, run_args, write_experiment

from benchmark.errors import ConfigError, StoreError
from benchmark.store import RunDir, inside


@pytest.mark.parametrize("name", ["../escaped", "..", "a/b", "tab\there"])
def test_an_experiment_name_that_is_not_a_plain_name_is_refused(tmp_path, synthetic_root, monkeypatch, name):
    experiment = write_experiment(tmp_path / "work" / "experiment.toml", synthetic_root=synthetic_root)
    experiment.write_text(experiment.read_text().replace('name = "faults"', f"name = {json.dumps(name)}"))
    monkeypatch.chdir(tmp_path / "work")
    outcome = cli("run", experiment, "--quiet", "--fresh")
    assert outcome.code == 2
    assert "`name`" in outcome.err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["work"]  # nothing made beside or above
    assert not (tmp_path / "work" / "runs").exists()


def test_a_model_label_with_a_path_is_refused(tmp_path, synthetic_root):
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root,
                                  models=MODELS.replace('label = "mse"', 'label = "../../mse"'))
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 2 and "`models[0].label`" in outcome.err
    assert not (tmp_path / "run").exists()


def test_an_external_name_with_a_path_is_refused(run_copy, tmp_path):
    predictions = tmp_path / "preds.csv"
    predictions.write_text("FileName,EF_pred\n")
    outcome = cli("score", run_copy, predictions, "--name", "../../../outside")
    assert outcome.code == 2 and "--name" in outcome.err
    assert not (tmp_path / "outside").exists() and not (run_copy / "external").exists()


def test_job_folders_stay_inside_the_run_directory(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match="job id '../../x'"):
        run.job("../../x")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "jobs").symlink_to(tmp_path)  # a link planted in a received run directory
    with pytest.raises(StoreError, match="outside"):
        run.job("a")
    with pytest.raises(StoreError, match="outside"):
        inside(tmp_path / "run", tmp_path / "run" / ".." / "x")
