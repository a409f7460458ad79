"""`include`: an experiment states only what differs from another; and the protocol each dataset defaults to."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.components import resolve
from benchmark.config import load_experiment
from benchmark.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# experiments/quick.toml as it was written out in full, before it became a delta of pediatric.toml
QUICK_IN_FULL = ROOT / "tests" / "data" / "quick_in_full.toml"

BASE = '''
name = "base"
seeds = [0, 1, 2]
[dataset]
name = "echonet_pediatric"
tabular = ["Sex", "Age"]
[encoder]
name = "tiny3d"
params = { width = 8, depth = 2 }
[[models]]
head = "mse"
[[models]]
head = "gaussian"
[train]
epochs = 7
lr = 1e-3
'''


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_quick_resolves_to_exactly_the_experiment_it_was_before_it_included_pediatric():
    quick, before = load_experiment(ROOT / "experiments" / "quick.toml"), load_experiment(QUICK_IN_FULL)
    assert quick.to_dict() == before.to_dict()
    assert quick.hash() == before.hash()


def test_tables_merge_key_by_key_and_arrays_replace(tmp_path):
    write(tmp_path, "base.toml", BASE)
    delta = write(tmp_path, "delta.toml", '''
include = "base.toml"
name = "delta"
seeds = [4]
[encoder]
params = { width = 16 }
[[models]]
head = "mdn"
[train]
epochs = 3
''')
    experiment = load_experiment(delta)
    assert experiment.name == "delta" and experiment.seeds == [4]
    assert experiment.encoder.name == "tiny3d" and experiment.encoder.params == {"width": 16, "depth": 2}
    assert [model.head for model in experiment.models] == ["mdn"]
    assert experiment.train.epochs == 3 and experiment.train.lr == 1e-3
    assert experiment.dataset.tabular == ["Sex", "Age"]
    assert experiment.source == str(delta)


def test_include_is_relative_to_the_including_file_and_chains(tmp_path):
    write(tmp_path, "shared/base.toml", BASE)
    write(tmp_path, "shared/middle.toml", 'include = "base.toml"\n[train]\nepochs = 5\n')
    top = write(tmp_path, "top.toml", 'include = "shared/middle.toml"\nname = "top"\n')
    experiment = load_experiment(top, ["train.lr=0.01"])
    assert (experiment.name, experiment.train.epochs, experiment.train.lr, experiment.seeds) == ("top", 5, 0.01,
                                                                                                 [0, 1, 2])


def test_tabular_all_restores_the_default_of_every_column(tmp_path):
    write(tmp_path, "base.toml", BASE)
    delta = write(tmp_path, "delta.toml", 'include = "base.toml"\n[dataset]\ntabular = "all"\n')
    experiment = load_experiment(delta)
    assert experiment.dataset.tabular is None
    assert experiment.hash() == load_experiment(write(tmp_path, "plain.toml", BASE.replace(
        'tabular = ["Sex", "Age"]\n', ""))).hash()


@pytest.mark.parametrize("files, fragment", [
    ({"a.toml": 'include = "b.toml"\n' + BASE, "b.toml": 'include = "a.toml"\n'}, "makes a cycle: {a} -> {b} -> {a}"),
    ({"a.toml": 'include = "a.toml"\n' + BASE}, "makes a cycle: {a} -> {a}"),
    ({"a.toml": 'include = "absent.toml"\n' + BASE}, "= 'absent.toml': there is no file {folder}/absent.toml"),
    ({"a.toml": "include = 3\n" + BASE}, "`include` expected the path of another experiment file, got an integer 3"),
    ({"a.toml": 'include = "b.toml"\n' + BASE, "b.toml": "name = \n"}, "{b} is not valid TOML"),
])
def test_include_errors_name_the_file(tmp_path, files, fragment):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(ConfigError) as error:
        load_experiment(tmp_path / "a.toml")
    message = str(error.value)
    assert str(tmp_path / "a.toml") in message
    assert fragment.format(a=(tmp_path / "a.toml").resolve(), b=(tmp_path / "b.toml").resolve(),
                           folder=tmp_path) in message


@pytest.mark.parametrize("dataset, protocol", [("echonet_dynamic", "official"), ("echonet_pediatric", "fold"),
                                               ("camus", "official")])
def test_protocol_defaults_to_the_datasets_own_first(tmp_path, dataset, protocol):
    experiment = load_experiment(write(tmp_path, "e.toml", f'name = "p"\n[dataset]\nname = "{dataset}"\n'
                                                           '[[models]]\nhead = "mse"\nfusion = "none"\n'))
    assert experiment.dataset.protocol == ""
    assert resolve(experiment).experiment.dataset.protocol == protocol


@pytest.mark.parametrize("dataset, view", [("echonet_dynamic", "a4c"), ("echonet_pediatric", "PSAX"),
                                           ("echonet_pediatric", "Both"), ("camus", "A4C"), ("camus", "a2c"),
                                           ("camus", "4CH")])
def test_every_view_a_dataset_declares_passes_in_any_case(tmp_path, dataset, view):
    """The views a dataset declares are compared ignoring case, as the datasets read them (CAMUS takes A2C/A4C
    for its 2CH/4CH, so the default dataset.view "A4C" suits it too). On real data: the stand-in writes fewer."""
    experiment = load_experiment(write(tmp_path, "e.toml", f'name = "v"\n[dataset]\nname = "{dataset}"\n'
                                                           f'root = "{tmp_path}"\nview = "{view}"\n[[models]]\n'
                                                           'head = "mse"\nfusion = "none"\n'))
    assert resolve(experiment).experiment.dataset.view == view
