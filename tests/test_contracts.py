"""Every registered component against its contract, as timm tests every model of ``list_models()``.

The cases come from the registry, so a head, fusion, encoder, metric or dataset that a plugin registers
is checked without editing this file. To check plugins that are not installed, name their files or
modules: ``LVEFBENCH_CHECK_PLUGINS=my_heads.py pytest tests/test_contracts.py`` (several joined by the
path separator ``:``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.api import ContractViolation, check_dataset, check_encoder, check_fusion, check_head, check_metric
from benchmark.cli import main
from benchmark.components import TRAINER_PARAMS, accepted, declared_parameters, range_values
from registry import load_registry

PLUGINS_VARIABLE = "LVEFBENCH_CHECK_PLUGINS"
REGISTRY = load_registry([spec for spec in os.environ.get(PLUGINS_VARIABLE, "").split(os.pathsep) if spec])
# Video encoders are checked on 32-pixel frames where they take a size: the smallest UniFormer-S accepts.
SMALL_INPUT = {"size": 32}


def cases(kind: str):
    return [pytest.param(record, id=record.name) for record in REGISTRY.records(kind)]


@pytest.fixture(scope="module")
def synthetic_items(tmp_path_factory):
    """A tiny synthetic generation: the items a head serving known posteriors (the oracle, the prior) is asked
    about."""
    record = REGISTRY.describe("dataset", "synthetic")
    dataset = record.factory(**record.factory.example_params(tmp_path_factory.mktemp("synthetic")))
    return dataset.load()


@pytest.mark.parametrize("record", cases("head"))
def test_head(record, request):
    if not record.metadata.get("needs_training", True):  # served heads get what a run offers them
        index = request.getfixturevalue("synthetic_items")
        offered = {"oracle_path": index.oracle_path, "training_ef": np.array([item.ef for item in index.items])}
        check_head(record, ids=[item.id for item in index.items[:6]], **accepted(record.factory, offered))
    else:
        check_head(record)


@pytest.mark.parametrize("record", cases("fusion"))
def test_fusion(record):
    check_fusion(record)


@pytest.mark.parametrize("record", cases("encoder"))
def test_encoder(record):
    check_encoder(record, **accepted(record.factory, SMALL_INPUT))


@pytest.mark.parametrize("record", [*cases("head"), *cases("fusion"), *cases("encoder")])
def test_defaults_and_own_search_space_are_within_the_components_ranges(record):
    """What a component's ``parameter_problems`` refuses (its sizes' ranges) must leave its own defaults and every
    value of its own search space: `validate` asks it about each, and would refuse the component as it comes."""
    problems = getattr(record.factory, "parameter_problems", lambda params: {})
    assert problems({}) == {}
    for key, param in record.search_space.items():
        if key not in TRAINER_PARAMS:
            for value in range_values(param):
                assert problems({key: value}) == {}, (key, value)


@pytest.mark.parametrize("record", [*cases("head"), *cases("fusion"), *cases("encoder")])
def test_parameters_read_only_with_an_option_name_the_components_own(record):
    """``read_only_with = {parameter: (option, values)}``: validate refuses ``parameter`` where ``option`` can take none
    of ``values``; a misspelt name would refuse nothing."""
    declared, _ = declared_parameters(record.factory)
    for key, (option, readers) in getattr(record.factory, "read_only_with", {}).items():
        assert key in declared and option in declared and readers, (key, option, readers)


@pytest.mark.parametrize("record", cases("metric"))
def test_metric(record):
    check_metric(record)


@pytest.mark.parametrize("record", cases("dataset"))
def test_dataset(record, tmp_path):
    check_dataset(record, directory=tmp_path)


# --------------------------------------------------------------------------- a plugin file is checked too
PLUGIN_FILE = textwrap.dedent('''
    import torch
    from torch import nn
    from registry import hookimpl


    class LaplaceHead(nn.Module):
        def __init__(self, condition_dim: int):
            super().__init__()
            self.net = nn.Linear(condition_dim, 2)

        def distribution(self, condition):
            location, scale = self.net(condition).unbind(-1)
            return torch.distributions.Laplace(location, nn.functional.softplus(scale) + 1e-3)

        def loss(self, condition, target):
            return -self.distribution(condition).log_prob(target).mean()

        def sample(self, condition, n):
            return self.distribution(condition).sample((n,)){transpose}

        def mean(self, condition):
            return self.distribution(condition).mean


    @hookimpl
    def register_heads(registry):
        registry.add("{name}", LaplaceHead)
''')


def test_heads_from_plugin_files_are_checked_without_editing_this_file(tmp_path):
    """A correct head passes; the same head whose samples come out (n, B) instead of (B, n) fails."""
    plugins = []
    for name, transpose in (("laplace_correct", ".T"), ("laplace_transposed", "")):
        plugins.append(tmp_path / f"{name}.py")
        plugins[-1].write_text(PLUGIN_FILE.format(name=name, transpose=transpose))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-rfE", str(Path(__file__)),
         "-k", "test_head and laplace"],
        env={**os.environ, PLUGINS_VARIABLE: os.pathsep.join(map(str, plugins))},
        capture_output=True, text=True, timeout=300)
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 failed, 1 passed" in summary, result.stdout + result.stderr
    assert "FAILED" in result.stdout and "test_head[laplace_transposed]" in result.stdout
    assert "sample(condition 3x5, n=7) must return shape (3, 7), got shape (7, 3)" in result.stdout


# --------------------------------------------------------------------------- the checks catch broken components
class ToyGaussian(nn.Module):
    """A correct head with every closed form but the mixture; the broken variants below change one thing."""

    def __init__(self, condition_dim: int):
        super().__init__()
        self.net = nn.Linear(condition_dim, 2)

    def distribution(self, condition):
        mean, raw = self.net(condition).unbind(-1)
        return torch.distributions.Normal(mean, nn.functional.softplus(raw) + 0.1)

    def loss(self, condition, target):
        return -self.distribution(condition).log_prob(target).mean()

    def sample(self, condition, n):
        return self.distribution(condition).sample((n,)).T

    def mean(self, condition):
        return self.distribution(condition).mean

    def std(self, condition):
        return self.distribution(condition).stddev

    def cdf(self, condition, y):
        return self.distribution(condition).cdf(y)

    def log_prob(self, condition, y):
        return self.distribution(condition).log_prob(y)


class PerItemLoss(ToyGaussian):
    def loss(self, condition, target):
        return -self.distribution(condition).log_prob(target)


class DetachedLoss(ToyGaussian):
    def loss(self, condition, target):
        return super().loss(condition, target).detach()


class NaNSamples(ToyGaussian):
    def sample(self, condition, n):
        return super().sample(condition, n) * torch.nan


class ShiftedMean(ToyGaussian):
    def mean(self, condition):
        return super().mean(condition) + 0.5


class DoubledStd(ToyGaussian):
    def std(self, condition):
        return 2 * super().std(condition)


class ReversedCdf(ToyGaussian):
    def cdf(self, condition, y):
        return 1 - super().cdf(condition, y)


class UnsavedScale(ToyGaussian):
    """Keeps a random scale outside the state_dict: a reloaded model predicts something else."""

    def __init__(self, condition_dim: int):
        super().__init__(condition_dim)
        self.scale = 1 + torch.rand(())

    def mean(self, condition):
        return self.scale * super().mean(condition)

    def sample(self, condition, n):
        return self.scale * super().sample(condition, n)


class NoTrajectory(ToyGaussian):
    def sample(self, condition, n, record=False):
        return super().sample(condition, n)


def test_a_correct_head_passes():
    check_head(ToyGaussian)
    check_head(NoTrajectory)  # declares no trajectories, so none are asked for


@pytest.mark.parametrize("head, metadata, message", [
    (PerItemLoss, {}, "must be a scalar tensor, got shape (3,)"),
    (DetachedLoss, {}, "does not depend on anything trainable"),
    (NaNSamples, {}, "returned non-finite values"),
    (ShiftedMean, {}, "closed-form mean"),
    (DoubledStd, {}, "closed-form std"),
    (ReversedCdf, {}, "cdf must be non-decreasing"),
    (UnsavedScale, {}, "outputs differ after a state_dict save/load round trip"),
    (NoTrajectory, {"trajectories": True}, "record=True) must return shape (steps + 1, 3, 7)"),
], ids=lambda value: value.__name__ if isinstance(value, type) else None)
def test_check_head_catches(head, metadata, message):
    with pytest.raises(ContractViolation) as caught:
        check_head(head, metadata=metadata)
    assert message in str(caught.value)


class ToyFusion(nn.Module):
    def __init__(self, feature_dim: int, tabular_dim: int = 0):
        super().__init__()
        self.out_dim = feature_dim + 2
        self.embed = nn.Linear(max(tabular_dim, 1), 2)

    def forward(self, feature, tabular=None):
        extra = self.embed(tabular) if tabular is not None else self.embed(feature.new_zeros(len(feature), 1))
        return torch.cat([feature, extra], dim=1)


class DetachedFusion(ToyFusion):
    def forward(self, feature, tabular=None):
        return super().forward(feature.detach(), tabular)


class NarrowFusion(ToyFusion):
    def forward(self, feature, tabular=None):
        return super().forward(feature, tabular)[:, :-1]


def test_check_fusion():
    check_fusion(ToyFusion)
    with pytest.raises(ContractViolation, match="must depend"):
        check_fusion(DetachedFusion)
    with pytest.raises(ContractViolation, match=r"must return shape \(3, 8\), got shape \(3, 7\)"):
        check_fusion(NarrowFusion)


def test_check_metric():
    aggregate = REGISTRY.describe("metric", "mae").metadata["aggregate"]
    check_metric(lambda y, predictive: float(abs(predictive.point - y).mean()),
                 metadata={"label": "MAE", "direction": "min", "aggregate": aggregate})
    with pytest.raises(ContractViolation, match="direction"):
        check_metric(lambda y, predictive: 0.0, metadata={"label": "x", "aggregate": aggregate})
    with pytest.raises(ContractViolation, match="finite float"):
        check_metric(lambda y, predictive: abs(predictive.point - y),
                     metadata={"label": "x", "direction": "min", "aggregate": aggregate})


BARE_METRIC = textwrap.dedent('''
    import numpy as np
    from registry import hookimpl

    def median_ae(y, predictive):
        return float(np.median(np.abs(predictive.point - y)))

    @hookimpl
    def register_metrics(registry):
        registry.add("medae", median_ae, metadata={"label": "MedAE", "direction": "min"})
''')


def test_a_metric_without_an_aggregate_is_refused_when_registered(write_plugin):
    """The tables compute every metric from the stored per-item columns through its aggregate: a bare function
    used to register, pass check_metric and validate, and then stand as n/a in every table of the run."""
    plugin = write_plugin("bare_metrics", BARE_METRIC)
    (failure,) = load_registry([str(plugin)], strict_extra=False).failures
    assert "metric 'medae'" in failure.error and "lacks the required metadata 'aggregate'" in failure.error
    assert "benchmark.api.add_metric" in failure.error


def test_a_component_refused_when_registered_is_located_at_the_plugins_own_line(write_plugin):
    """registry.add raises in registry/manager.py; the line to fix is the plugin's call, not the engine's raise."""
    plugin = write_plugin("bare_metrics", BARE_METRIC)
    line = next(number for number, text in enumerate(BARE_METRIC.splitlines(), 1) if 'registry.add("medae"' in text)
    (failure,) = load_registry([str(plugin)], strict_extra=False).failures
    assert failure.error.endswith(f"(at bare_metrics.py:{line})"), failure.error


def test_check_encoder_catches_a_wrong_feature_dim():
    tiny = REGISTRY.describe("encoder", "tiny3d").factory

    class Overstated(tiny):
        def __init__(self, **params):
            super().__init__(**params)
            self.feature_dim += 1

    with pytest.raises(ContractViolation, match=r"must return shape \(2, 9\), got shape \(2, 8\)"):
        check_encoder(Overstated, width=4, depth=1, feature_dim=8, size=16)


LOSS_ONLY_HEAD = textwrap.dedent('''
    from torch import nn
    from registry import hookimpl

    class LossOnly(nn.Module):
        def loss(self, condition, target):
            return condition.sum()

    @hookimpl
    def register_heads(registry):
        registry.add("loss_only", LossOnly)
''')


def test_registering_a_head_without_sample_names_the_plugin_and_the_member(write_plugin):
    plugin = write_plugin("lazy_heads", LOSS_ONLY_HEAD)
    registry = load_registry([str(plugin)], strict_extra=False)
    (failure,) = registry.failures
    assert failure.plugin == "lazy_heads" and "lacks the required 'sample'" in failure.error


def test_validate_refuses_a_plugin_head_without_sample(write_plugin, tmp_path, capsys):
    write_plugin("lazy_heads", LOSS_ONLY_HEAD)
    experiment = tmp_path / "experiment.toml"
    experiment.write_text('name = "x"\nplugins = ["lazy_heads.py"]\n[[models]]\nhead = "loss_only"\n')
    assert main(["validate", str(experiment)]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "plugin 'lazy_heads'" in message and "lacks the required 'sample'" in message
    assert "Traceback" not in message



def test_validate_says_why_a_head_of_an_installed_plugin_is_unknown(write_plugin, tmp_path, monkeypatch, capsys):
    """An installed plugin that breaks a contract is only a warning when loaded; naming its head says why."""
    import benchmark.components

    plugin = write_plugin("installed_heads", LOSS_ONLY_HEAD)
    monkeypatch.setattr(benchmark.components, "load_registry",  # as if installed: loaded, not demanded
                        lambda extra, base_dir: load_registry([str(plugin)], strict_extra=False))
    experiment = tmp_path / "experiment.toml"
    experiment.write_text('name = "x"\n[[models]]\nhead = "loss_only"\n')
    assert main(["validate", str(experiment)]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "`models[0].head`: unknown head 'loss_only'" in message
    assert "plugin 'installed_heads'" in message and "lacks the required 'sample'" in message
