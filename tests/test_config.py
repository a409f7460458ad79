import re

import pytest

from benchmark.config import Experiment, load_experiment
from benchmark.errors import ConfigError

MINIMAL = '''
name = "t"
seeds = [0, 1]
[dataset]
name = "echonet_pediatric"
[[models]]
head = "mse"
'''


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_minimal_experiment_gets_documented_defaults(tmp_path):
    experiment = load_experiment(write(tmp_path, MINIMAL))
    assert isinstance(experiment, Experiment)
    assert experiment.seeds == [0, 1]
    assert experiment.models[0].key == "mse+concat"
    assert experiment.clips.frames == 16 and experiment.evaluate.samples == 40
    assert experiment.train.device == "auto"


@pytest.mark.parametrize("text, fragment", [
    (MINIMAL + "[tune]\ntrails = 3\n", "`tune.trails` is not a known key. Did you mean 'trials'?"),
    (MINIMAL + "[train]\nepochs = \"ten\"\n", "`train.epochs` expected int, got a string 'ten'"),
    (MINIMAL + "[train]\nlr = true\n", "`train.lr` expected float, got a boolean True"),
    (MINIMAL.replace("seeds = [0, 1]", "seeds = [0, \"a\"]"), "`seeds[1]` expected int"),
    (MINIMAL + "[clips]\nmode = \"mcsd\"\n", "`clips.mode` must be one of 'mcsdr', 'echonet', got 'mcsd'. "
                                           "Did you mean 'mcsdr'?"),
    (MINIMAL + "[[models]]\nhead = \"mse\"\n", "two models called 'mse+concat'"),
    (MINIMAL.replace("seeds = [0, 1]", "seeds = []"), "`seeds` must list at least one seed"),
    ("baseline = \"mse+concta\"\n" + MINIMAL, "Did you mean 'mse+concat'?"),
    ("baseline = \"plain\"\n" + MINIMAL.replace('head = "mse"', 'head = "gaussian"\nlabel = "plain"\nconformal = true'),
     "`baseline` names no model. Its model sets conformal = true, so its row is 'plain (conformal)': name that."),
    ("name = \"t\"\n", "`models` needs at least one"),
    ("dataset = 3\n", "`dataset` expected a table"),
    (MINIMAL + "[train]\nema = 1.0\n", "`train.ema` must be at least 0 (off) and below 1"),
    (MINIMAL + "[train]\nmonitor = \"crsp\"\n", "Did you mean 'crps'?"),
    (MINIMAL + "[train]\nmonitor = \"MAE\"\n", "got 'MAE'. Did you mean 'mae'?"),  # case is ignored
    (MINIMAL + "[encoder]\nbatch_size = 0\n", "`encoder.batch_size` must be at least 1"),
    (MINIMAL.replace("head = \"mse\"", "head = \"mse\"\nsamples = 10001"),
     "`models[0].samples` must be 0 (the default K) or from 2 to 10000"),
    (MINIMAL + "[evaluate]\nbootstrap = 10000000\n", "`evaluate.bootstrap` must be at most 10,000 replicates"),
    (MINIMAL + "[clips]\nsize = 100000\n", "`clips.size` must be at most 512 pixels"),
    (MINIMAL + "[clips]\nframes = 100000\n", "`clips.frames` must be at most 256"),
    (MINIMAL + "[synthetic]\nn = 10000000\n", "`synthetic.n` must be at most 100,000 videos"),
    (MINIMAL + "[encoder.pretrain]\nobjective = \"rnc\"\nbatch_size = 1\n",
     "`encoder.pretrain.batch_size` must be at least 2 with objective 'rnc'"),
    (MINIMAL.replace("[dataset]\n", "[dataset]\ntabular = [\"Age\", \"Age\"]\n"),
     "`dataset.tabular` names a column twice"),
])
def test_config_errors_name_file_key_and_fix(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert str(path) in str(error.value)
    assert fragment in str(error.value)


def test_malformed_toml_names_the_line(tmp_path):
    path = write(tmp_path, "name = \n")
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 1"):
        load_experiment(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read experiment file"):
        load_experiment(tmp_path / "absent.toml")


def test_overrides_set_any_key_with_toml_values(tmp_path):
    experiment = load_experiment(write(tmp_path, MINIMAL), [
        "train.epochs=3", "dataset.root=/data/x", "models.0.head=gaussian", "tune.metric=MAE",
        "seeds=[4, 5]", "train.lr=1e-3",
    ])
    assert experiment.train.epochs == 3
    assert experiment.dataset.root == "/data/x"
    assert experiment.models[0].head == "gaussian"
    assert experiment.seeds == [4, 5] and experiment.train.lr == 1e-3


@pytest.mark.parametrize("override, fragment", [
    ("train.epochs", "expected key.path=value"),
    ("models.3.head=x", "`models.3` (--set): '3' is not an index of a list of 1 (0 to 0)"),
    ("train.epoch=3", "Did you mean 'epochs'"),
])
def test_bad_overrides(tmp_path, override, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_experiment(write(tmp_path, MINIMAL), [override])


def test_hash_changes_with_content_only(tmp_path):
    a = load_experiment(write(tmp_path, MINIMAL))
    b = load_experiment(write(tmp_path, MINIMAL))
    c = load_experiment(write(tmp_path, MINIMAL), ["train.epochs=2"])
    assert a.hash() == b.hash() != c.hash()
