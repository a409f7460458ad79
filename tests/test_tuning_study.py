"""Optuna tuning: VAL only, resumable studies with a fixed budget, search spaces and metric lookup."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from test_engine_helpers import linear_features, single_thread  # noqa: F401

from benchmark.components import search_space, split_params
from benchmark.config import ModelConfig, TrainConfig, TuneConfig
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.orchestration import tuning
from benchmark.orchestration.storage import storage_url, study_name
from benchmark.orchestration.tuning import tune_model
from benchmark.training import model as engine
from benchmark.training.checks import HeadError
from registry import Categorical, FloatParam, IntParam, Registry, load_registry

pytest.importorskip("optuna")
pytestmark = pytest.mark.usefixtures("single_thread")

MODEL = ModelConfig(head="gauss_test", fusion="concat_test")
TRAIN = TrainConfig(epochs=3, batch_size=32, device="cpu")


@pytest.fixture(scope="module")
def components():
    """Only the test components: the tests do not depend on the built-in plugins."""
    registry = Registry()
    registry.load_extra(["test_engine_helpers"])
    return registry


@pytest.fixture(scope="module")
def splits():
    return (linear_features(64, seed=1, prefix="train"), linear_features(32, seed=2, prefix="val"),
            linear_features(32, seed=3, prefix="test"))


def tune(components, splits, tmp_path, trials, model=MODEL, **kwargs):
    train, val, _test = splits
    return tune_model(components, model, train, val, TRAIN, TuneConfig(trials=trials, metric="testmae", epochs=3),
                      storage=storage_url("", tmp_path), study=study_name("exp", model.key),
                      samples=4, quiet=True, **kwargs)


def count_trainings(monkeypatch) -> list[tuple[list[str], list[str]]]:
    """Record the ids of the (train, val) sets every tuning trial trains on."""
    calls = []
    original = tuning.train_model

    def spy(fusion, head, train, val, *args, **kwargs):
        calls.append((train.ids, val.ids))
        return original(fusion, head, train, val, *args, **kwargs)

    monkeypatch.setattr(tuning, "train_model", spy)
    return calls


def test_a_resumed_study_runs_only_the_remaining_trials(components, splits, tmp_path, monkeypatch):
    calls = count_trainings(monkeypatch)
    first = tune(components, splits, tmp_path, trials=2)
    assert first.finished_trials == 2 and len(calls) == 2

    resumed = tune(components, splits, tmp_path, trials=5)  # e.g. a rerun after an interruption
    assert resumed.finished_trials == 5 and len(calls) == 5

    again = tune(components, splits, tmp_path, trials=5)
    assert again.finished_trials == 5 and len(calls) == 5  # the budget is spent: nothing reruns
    assert again.params == resumed.params and again.value == resumed.value

    import optuna
    study = optuna.load_study(study_name=first.study, storage=storage_url("", tmp_path))
    assert len(study.trials) == 5
    assert len({tuple(sorted(trial.params.items())) for trial in study.trials}) == 5  # no replayed suggestions


def test_tuning_trains_on_train_and_scores_on_validation_only(components, splits, tmp_path, monkeypatch):
    train, val, test = splits
    calls = count_trainings(monkeypatch)
    predicted = []
    original = engine.TrainedModel.predict

    def spy(self, features, *args, **kwargs):
        predicted.append(features.ids)
        return original(self, features, *args, **kwargs)

    monkeypatch.setattr(engine.TrainedModel, "predict", spy)
    tune(components, splits, tmp_path, trials=2)

    assert calls and all(seen == (train.ids, val.ids) for seen in calls)
    assert predicted and all(ids == val.ids for ids in predicted)
    assert not set(test.ids) & {item for ids in predicted for item in ids}
    assert "test" not in inspect.signature(tune_model).parameters


def test_best_parameters_come_back_split_by_consumer(components, splits, tmp_path):
    followed = []
    result = tune(components, splits, tmp_path, trials=2, on_trial=lambda number, value: followed.append(number))
    assert followed == [0, 1]
    assert set(result.params) == {"lr", "width"}
    assert result.split.trainer == {"lr": result.params["lr"]}
    assert result.split.head == {"width": result.params["width"]}
    assert np.isfinite(result.value) and result.value > 0


def test_the_toml_search_space_overrides_the_head_defaults(components):
    model = ModelConfig(head="gauss_test", fusion="concat_test",
                        search_space={"width": {"choices": [32]}, "fusion.depth": {"int": [1, 3]}})
    space = search_space(components, model)
    assert space == {"lr": FloatParam(1e-3, 3e-2, log=True), "width": Categorical((32,)),
                     "fusion.depth": IntParam(1, 3)}
    bad = ModelConfig(head="gauss_test", fusion="concat_test", search_space={"lr": {"float": [1e-3]}})
    with pytest.raises(ConfigError, match=r"model 'gauss_test\+concat_test': search_space.lr"):
        search_space(components, bad)


def test_a_parameter_the_model_fixes_is_left_out_of_the_default_space(components, splits, tmp_path):
    """A default range would replace the value ``params`` gives, unseen (``steps = 20`` tuned from 10 to 50); the
    model's own ``search_space`` still tunes whatever it names."""
    fixed = ModelConfig(head="gauss_test", fusion="concat_test", params={"width": 24})
    assert search_space(components, fixed) == {"lr": FloatParam(1e-3, 3e-2, log=True)}
    assert set(tune(components, splits, tmp_path, trials=2, model=fixed).params) == {"lr"}
    named = ModelConfig(head="gauss_test", fusion="concat_test", params={"width": 24},
                        search_space={"width": {"choices": [32, 48]}})
    assert search_space(components, named)["width"] == Categorical((32, 48))

    builtins = load_registry([])
    model = ModelConfig(head="mcsdr", fusion="concat", params={"steps": 20, "predictor": "mlp"},
                        fusion_params={"embed_dim": 64})
    defaults = {**builtins.describe("head", "mcsdr").search_space,
                **{f"fusion.{key}": param for key, param in builtins.describe("fusion", "concat").search_space.items()}}
    assert {"steps", "predictor", "fusion.embed_dim"} <= set(defaults)  # what the model fixes is tuned by default
    assert set(search_space(builtins, model)) == set(defaults) - {"steps", "predictor", "fusion.embed_dim"}
    # nor what the head would not read: DDPM runs all T steps, whatever a trial gives steps
    ddpm = ModelConfig(head="mcsdr", fusion="concat", params={"sampler": "ddpm"})
    assert set(search_space(builtins, ddpm)) == set(defaults) - {"steps"}


def test_parameters_split_into_trainer_head_and_fusion():
    params = split_params({"lr": 1e-3, "batch_size": 16, "epochs": 4, "weight_decay": 0.0, "width": 64,
                           "fusion.hidden": 32})
    assert params.trainer == {"lr": 1e-3, "batch_size": 16, "epochs": 4, "weight_decay": 0.0}
    assert params.head == {"width": 64}
    assert params.fusion == {"hidden": 32}


@pytest.mark.parametrize("name", ["TestMAE", "testmae", "MAE_TEST"])
def test_metrics_resolve_by_name_or_label_ignoring_case(components, name):
    assert tuning.resolve_metric(components, name).name == "mae_test"


def test_an_unknown_metric_lists_the_registered_ones(components):
    with pytest.raises(ConfigError, match=r"'TestMEA' is not a registered metric. Did you mean 'TestMAE'"):
        tuning.resolve_metric(components, "TestMEA")


def test_storage_urls(tmp_path):
    assert storage_url("", tmp_path) == f"sqlite:///{(tmp_path / 'optuna.db').resolve()}"
    assert storage_url("postgresql://host/db", tmp_path) == "postgresql://host/db"
    assert storage_url(str(tmp_path / "elsewhere.db"), "ignored") == f"sqlite:///{tmp_path / 'elsewhere.db'}"


def test_an_sqlite_storage_is_the_same_file_whichever_way_its_url_names_it(tmp_path):
    """The schema check (a trigger in a received optuna.db runs inside this process) and the in-memory refusal read
    a URL as SQLAlchemy does: a driver suffix or an SQLite file: URI names the same file, not "no file"."""
    import sqlite3

    import optuna

    from benchmark.orchestration.storage import check_sqlite_schema, check_storage
    from benchmark.store import StoreError

    rigged = tmp_path / "optuna.db"
    optuna.create_study(storage=f"sqlite:///{rigged}")
    with sqlite3.connect(rigged) as connection:
        connection.execute("CREATE VIEW trials_view AS SELECT * FROM trials")
    for url in (f"sqlite:///{rigged}", f"sqlite+pysqlite:///{rigged}", f"sqlite:///file:{rigged}?mode=ro&uri=true"):
        with pytest.raises(StoreError, match="view trials_view"):
            check_sqlite_schema(url)
    check_storage(f"sqlite+pysqlite:///{tmp_path / 'new.db'}", "--storage")  # a file to be made: fine
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:shared?mode=memory&cache=shared&uri=true"):
        with pytest.raises(ConfigError, match="an in-memory database lives as long as one process"):
            check_storage(url, "--storage")


def test_failed_trials_use_their_budget_and_all_failing_is_an_error(components, splits, tmp_path, monkeypatch):
    attempts = []

    def diverges(*args, name, **kwargs):
        attempts.append(name)
        raise HeadError(f"head {name!r}: training loss is nan at epoch 1, batch 1.")

    monkeypatch.setattr(tuning, "train_model", diverges)
    for _ in range(2):  # the rerun finds the budget spent and trains nothing
        with pytest.raises(BenchmarkError, match=r"tuning 'gauss_test\+concat_test' .* finished no trial"):
            tune(components, splits, tmp_path, trials=2)
    assert attempts == ["gauss_test", "gauss_test"]
