"""NLL (closed form and KDE), PIT-based calibration error and interval coverage."""
import math

import numpy as np
import pytest
from scipy.stats import kstest, norm

import registry
from benchmark.contracts import Predictive
from benchmark.evaluation.scoring import KDE_FLOOR, item_scores, kde_log_density, randomised_pit


def metric(name):
    return registry.default().describe("metric", name).factory


def gaussian_predictive(rng, mean, std, k=40, closed_form=True):
    samples = mean[:, None] + std[:, None] * rng.standard_normal((len(mean), k))
    if not closed_form:
        return Predictive(samples, samples.mean(axis=1))
    return Predictive(samples, mean, mean, std, log_prob=lambda t: norm.logpdf(t, mean, std),
                      cdf=lambda t: norm.cdf(t, mean, std))


def test_nll_uses_the_closed_form_and_is_nan_without_one():
    rng = np.random.default_rng(0)
    mean, std = rng.uniform(30, 70, 100), rng.uniform(2, 6, 100)
    y = rng.normal(mean, std)
    exact = gaussian_predictive(rng, mean, std)
    assert metric("nll")(y, exact) == pytest.approx(-norm.logpdf(y, mean, std).mean())
    samples_only = gaussian_predictive(rng, mean, std, closed_form=False)
    assert np.isnan(metric("nll")(y, samples_only))
    assert "no closed-form" in item_scores(y, samples_only).notes["nll"]


def test_kde_density_is_the_silverman_kernel_sum():
    rng = np.random.default_rng(1)
    samples, y = rng.normal(50, 5, (3, 25)), np.array([48.0, 55.0, 61.0])
    expected = []
    for row, target in zip(samples, y):
        q75, q25 = np.percentile(row, [75, 25])
        h = max(0.9 * min(row.std(ddof=1), (q75 - q25) / 1.349) * len(row) ** -0.2, KDE_FLOOR)
        density = np.mean(np.exp(-0.5 * ((target - row) / h) ** 2)) / (h * math.sqrt(2 * math.pi))
        expected.append(math.log(density))
    assert np.allclose(kde_log_density(samples, y), expected)


def test_kde_nll_approaches_the_exact_nll_with_many_samples():
    rng = np.random.default_rng(2)
    mean, std = rng.uniform(30, 70, 200), np.full(200, 5.0)
    y = rng.normal(mean, std)
    predictive = gaussian_predictive(rng, mean, std, k=2000)
    assert metric("nll_kde")(y, predictive) == pytest.approx(metric("nll")(y, predictive), abs=0.05)


def test_kde_bandwidth_floor_keeps_narrow_ensembles_finite():
    samples = 50 + 1e-6 * np.arange(10.0)[None, :]
    log_density = kde_log_density(samples, np.array([50.0]))
    assert np.isfinite(log_density).all()
    assert log_density[0] == pytest.approx(norm.logpdf(0, 0, KDE_FLOOR), abs=1e-3)


def test_point_predictions_have_no_kde_nll_and_say_why():
    y, point = np.array([40.0, 55.0, 62.0]), np.array([41.0, 50.0, 62.0])
    scores = item_scores(y, Predictive(np.repeat(point[:, None], 8, axis=1), point))
    assert np.isnan(scores.columns["nll_kde"]).all()
    assert "zero spread" in scores.notes["nll_kde"]


def test_randomised_pit_is_uniform_for_calibrated_ensembles_and_spreads_ties():
    rng = np.random.default_rng(3)
    y, samples = rng.standard_normal(4000), rng.standard_normal((4000, 9))
    assert kstest(randomised_pit(samples, y), "uniform").pvalue > 0.01
    # a point mass at the target: PIT uniform over [0, 1], not stuck at 0 or 1
    ties = randomised_pit(np.zeros((4000, 5)), np.zeros(4000))
    assert kstest(ties, "uniform").pvalue > 0.01
    assert np.array_equal(randomised_pit(samples, y), randomised_pit(samples, y))  # reproducible


def test_calibration_error_separates_calibrated_overconfident_and_point_heads():
    rng = np.random.default_rng(4)
    mean = rng.uniform(30, 70, 3000)
    y = rng.normal(mean, 5.0)
    calibrated = metric("calibration")(y, gaussian_predictive(rng, mean, np.full(3000, 5.0)))
    overconfident = metric("calibration")(y, gaussian_predictive(rng, mean, np.full(3000, 1.5)))
    point = metric("calibration")(y, Predictive(np.repeat(mean[:, None], 10, axis=1), mean))
    assert calibrated < 0.02 < overconfident < point
    # textbook: mean over levels of |fraction of PIT <= level - level|
    pit = norm.cdf(y, mean, 1.5)
    levels = np.linspace(0.05, 0.95, 19)
    assert overconfident == pytest.approx(np.mean([abs(np.mean(pit <= a) - a) for a in levels]))


def calibrated_samples(seed: int, n: int, k: int) -> tuple[np.ndarray, Predictive]:
    """Targets and k samples per item, both from the same N(mean, 4^2) per item: a calibrated predictive."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(30, 70, n)
    return rng.normal(mean, 4.0), gaussian_predictive(rng, mean, np.full(n, 4.0), k=k, closed_form=False)


def test_interval_coverage_and_width_of_gaussian_samples():
    y, predictive = calibrated_samples(5, n=2000, k=400)
    assert metric("picp90")(y, predictive) == pytest.approx(0.90, abs=0.02)
    assert metric("picp95")(y, predictive) == pytest.approx(0.95, abs=0.015)
    assert metric("width90")(y, predictive) == pytest.approx(2 * norm.ppf(0.95) * 4.0, rel=0.03)
    lows, highs = np.quantile(predictive.samples, [0.025, 0.975], axis=1, method="weibull")
    assert metric("picp95")(y, predictive) == pytest.approx(np.mean((lows <= y) & (y <= highs)))


def test_interval_coverage_is_nominal_for_few_samples_from_the_true_predictive():
    # 20 samples per item from the predictive the targets come from: the interval must still cover 90%
    # on average (the linear sample quantile would cover (19.05 - 1.95) / 21 = 81%).
    y, predictive = calibrated_samples(6, n=20000, k=20)
    assert metric("picp90")(y, predictive) == pytest.approx(0.90, abs=0.01)
