"""Split-conformal calibration on VAL (``[[models]] conformal = true``): coverage on held-out data, the
stretched closed forms, and the experiment-level checks."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from benchmark.components import resolve
from benchmark.config import from_dict
from benchmark.errors import ConfigError
from benchmark.evaluation.conformal import calibrated_stretch, stretched
from benchmark.evaluation.scoring import INTERVAL_LEVELS
from benchmark.predictive import mixture_predictive

K = 40


def overconfident(n: int, rng: np.random.Generator):
    """Targets y ~ N(mu, (2 s)^2) and a predictive N(mu, s^2) that is twice too narrow, with its samples."""
    mu, s = rng.normal(50, 10, n), rng.uniform(2, 6, n)
    y = mu + 2 * s * rng.standard_normal(n)
    samples = mu[:, None] + s[:, None] * rng.standard_normal((n, K))
    return y, mixture_predictive(np.ones((n, 1)), mu[:, None], s[:, None], samples)


def coverage(predictive, y: np.ndarray, level: float) -> float:
    low, high = np.quantile(predictive.samples, [(1 - level) / 2, (1 + level) / 2], axis=1, method="weibull")
    return float(((y >= low) & (y <= high)).mean())


def test_conformalised_intervals_cover_at_least_nominal_on_held_out_data():
    """Averaged over many calibration sets of 95 items (finite-sample guarantee >= nominal in expectation),
    both levels reach nominal, where the uncalibrated predictive covers far less."""
    rng = np.random.default_rng(0)
    before, after = {level: [] for level in INTERVAL_LEVELS}, {level: [] for level in INTERVAL_LEVELS}
    for _ in range(200):
        val_y, val = overconfident(95, rng)
        test_y, test = overconfident(500, rng)
        calibrated = stretched(test, calibrated_stretch(val.samples, val_y))
        for level in INTERVAL_LEVELS:
            before[level].append(coverage(test, test_y, level))
            after[level].append(coverage(calibrated, test_y, level))
    for level in INTERVAL_LEVELS:
        assert np.mean(before[level]) < level - 0.2, "the toy predictive must start miscalibrated"
        assert np.mean(after[level]) >= level, f"{level:.0%} interval covers {np.mean(after[level]):.3f}"


def test_a_too_wide_predictive_is_narrowed():
    rng = np.random.default_rng(1)
    y, predictive = overconfident(400, rng)
    wide = stretched(predictive, 5.0)
    assert calibrated_stretch(wide.samples, y) < 1


def test_stretched_closed_forms_match_the_stretched_samples():
    rng = np.random.default_rng(2)
    y, predictive = overconfident(50, rng)
    predictive.samples = predictive.mean[:, None] + predictive.std[:, None] * rng.standard_normal((50, 20000))
    wide = stretched(predictive, 1.7)
    np.testing.assert_allclose(wide.mean, wide.samples.mean(axis=1), atol=0.05 * wide.std.max())
    np.testing.assert_allclose(wide.std, wide.samples.std(axis=1), rtol=0.03)
    np.testing.assert_allclose(wide.cdf(y), (wide.samples <= y[:, None]).mean(axis=1), atol=0.015)
    exact = norm(wide.mean, wide.std)  # a Gaussian stretched about any centre stays Gaussian
    np.testing.assert_allclose(wide.log_prob(y), exact.logpdf(y), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(wide.crps(y), mixture_predictive(np.ones((50, 1)), wide.mean[:, None],
                                                                wide.std[:, None], wide.samples).crps(y), rtol=1e-3)


def test_too_few_calibration_items_is_a_clear_error():
    y, predictive = overconfident(10, np.random.default_rng(3))
    with pytest.raises(ValueError, match="at least 19 calibration items"):
        calibrated_stretch(predictive.samples, y)


def experiment(**model) -> dict:
    return {"name": "c", "dataset": {"name": "echonet_pediatric", "protocol": "fold"}, "encoder": {"name": "tiny3d"},
            "models": [{"head": "gaussian", **model}]}


def test_conformal_rows_are_marked_and_distinct_from_the_plain_model():
    config = from_dict({**experiment(), "models": [{"head": "gaussian", "label": "g"},
                                                   {"head": "gaussian", "label": "g", "conformal": True}]})
    assert [model.key for model in config.models] == ["g", "g (conformal)"]


@pytest.mark.parametrize("model, problem", [({"head": "mse"}, "predicts a point"),
                                            ({"head": "oracle", "fusion": "none"}, "not trained here")])
def test_conformal_is_refused_where_it_cannot_calibrate(model, problem):
    with pytest.raises(ConfigError, match=rf"models\[0\]\.conformal.*{problem}"):
        resolve(from_dict(experiment(**model, conformal=True)))
