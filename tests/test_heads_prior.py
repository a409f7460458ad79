"""The prior head: the training split's EF distribution with exact closed forms, and its reserved row label."""
import numpy as np
import pytest
from faults.faultkit import cli, write_experiment

import registry
from benchmark.errors import ConfigError
from benchmark.predictive import empirical_predictive


def test_the_empirical_predictive_has_the_exact_cdf_crps_and_moments():
    training = np.array([30.0, 45.0, 55.0, 55.0, 62.0, 70.0])
    y = np.array([20.0, 55.0, 58.5, 90.0])
    predictive = empirical_predictive(training, len(y), samples=50, seed=3)
    np.testing.assert_allclose(predictive.point, training.mean())
    np.testing.assert_allclose(predictive.std, training.std())
    np.testing.assert_allclose(predictive.cdf(y), [0, 4 / 6, 4 / 6, 1])
    # CRPS = integral of (F(x) - 1[x >= y])^2 dx, on a grid fine enough for a step function
    grid = np.linspace(0, 100, 200_001)
    cdf = (training[None, :] <= grid[:, None]).mean(axis=1)
    expected = [np.trapezoid((cdf - (grid >= target)) ** 2, grid) for target in y]
    np.testing.assert_allclose(predictive.crps(y), expected, atol=2e-3)
    assert predictive.log_prob is None  # point masses have no density
    assert predictive.samples.shape == (4, 50) and np.isin(predictive.samples, training).all()
    np.testing.assert_array_equal(predictive.samples, empirical_predictive(training, 4, 50, seed=3).samples)


def test_the_prior_head_predicts_the_same_distribution_for_every_item():
    head = registry.build("head", "prior", condition_dim=0, training_ef=np.array([40.0, 60.0]))
    predictive = head.predict_ids(["a", "b", "c"], n=8, seed=0)
    np.testing.assert_allclose(predictive.point, 50.0)
    with pytest.raises(ConfigError, match="training split's EF"):
        registry.build("head", "prior", condition_dim=0)


def test_the_prior_label_is_reserved_for_the_prior_head(tmp_path):
    models = '[[models]]\nhead = "mse"\nlabel = "prior"\n'
    experiment = write_experiment(tmp_path / "e.toml", synthetic_root=tmp_path / "data", models=models)
    outcome = cli("validate", experiment)
    assert outcome.code == 2 and "models[0].label" in outcome.text and "'prior'" in outcome.text
