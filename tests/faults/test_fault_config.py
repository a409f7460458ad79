"""Config faults: the run stops before any work (exit 2, no run directory) with a message that names the
file and the key and says what to write instead."""
from __future__ import annotations

import pytest
from faultkit import cli, run_args


def edit(experiment, old: str, new: str):
    text = experiment.read_text()
    assert old in text, f"the tiny experiment no longer contains {old!r}"
    experiment.write_text(text.replace(old, new, 1))
    return experiment


CASES = {
    "malformed TOML": (("epochs = 2\n", "epochs = = 2\n"),
                       ["experiment.toml is not valid TOML", "line", "Fix the syntax at that line"]),
    "unknown key": (("epochs = 2\n", "epoch = 2\n"),
                    ["`train.epoch` is not a known key", "Did you mean 'epochs'?", "Keys of [train]:"]),
    "wrong type": (("epochs = 2\n", 'epochs = "two"\n'),
                   ["`train.epochs` expected int, got a string 'two'"]),
    "wrong type of list": (("seeds = [0]\n", "seeds = 0\n"), ["`seeds` expected a list, got an integer 0"]),
    "invalid value": (("samples = 4\n", "samples = 1\n"),
                      ["`evaluate.samples` must be at least 2"]),
    "unknown head": (('head = "mse"', 'head = "msee"'),
                     ["`models[0].head`: unknown head 'msee'. Did you mean 'mse'?", "Registered heads:"]),
    "unknown encoder": (('name = "tiny3d"', 'name = "tiny_3d"'),
                        ["`encoder.name`: unknown encoder 'tiny_3d'. Did you mean 'tiny3d'?"]),
    "unknown dataset": (('name = "echonet_pediatric"', 'name = "echonet_pediatrics"'),
                        ["`dataset.name`: unknown dataset 'echonet_pediatrics'. Did you mean 'echonet_pediatric'?"]),
    "tabular fusion without tabular columns": (
        ('name = "echonet_pediatric"', 'name = "echonet_dynamic"'),
        ["`models[0].fusion`: 'concat' combines tabular attributes, but dataset 'echonet_dynamic' has none",
         'Use fusion = "none"']),
}


@pytest.mark.parametrize("case", CASES)
def test_config_fault_stops_before_any_work(tmp_path, experiment, case):
    (old, new), expected = CASES[case]
    edit(experiment, old, new)
    outcome = cli(*run_args(experiment, tmp_path / "run"))
    assert outcome.code == 2, outcome.text
    message = " ".join(outcome.err.split())  # the CLI wraps the paragraph at 100 columns
    assert message.startswith("error: "), message
    assert str(experiment) in message, "the message must name the experiment file"
    for phrase in expected:
        assert phrase in message
    assert not (tmp_path / "run").exists(), "a refused experiment must not create its run directory"


def test_bad_override_names_the_key(tmp_path, experiment):
    outcome = cli(*run_args(experiment, tmp_path / "run", "--set", "train.epohcs=3"))
    assert outcome.code == 2
    message = " ".join(outcome.err.split())
    assert "`train.epohcs` is not a known key. Did you mean 'epochs'?" in message


def test_missing_experiment_file(tmp_path):
    outcome = cli(*run_args(tmp_path / "nowhere.toml", tmp_path / "run"))
    assert outcome.code == 2
    assert f"cannot read experiment file {tmp_path / 'nowhere.toml'}" in " ".join(outcome.err.split())


def test_validate_rejects_what_run_rejects(experiment):
    edit(experiment, 'head = "mse"', 'head = "msee"')
    outcome = cli("validate", experiment)
    assert outcome.code == 2 and "unknown head 'msee'" in outcome.err
