"""CRPS estimators against properscoring and textbook definitions."""
import numpy as np
import properscoring as ps
import pytest

from benchmark.contracts import Predictive
from benchmark.evaluation.scoring import item_scores
from benchmark.predictive import fair_crps, gaussian_crps, mixture_crps


def test_fair_estimator_is_the_v_statistic_minus_its_diagonal_bias():
    rng = np.random.default_rng(1)
    samples, y = rng.normal(50, 6, (40, 7)), rng.normal(50, 6, 40)
    k = samples.shape[1]
    biased = ps.crps_ensemble(y, samples)
    mean_error = np.abs(samples - y[:, None]).mean(axis=1)
    pair_sum = np.abs(samples[:, :, None] - samples[:, None, :]).sum(axis=(1, 2))
    assert np.allclose(biased, mean_error - pair_sum / (2 * k * k))
    # fair = biased + correction, the correction removing the zero diagonal of the pair average
    assert np.allclose(fair_crps(samples, y), biased - pair_sum / (2 * k * k * (k - 1)))
    assert np.all(fair_crps(samples, y) < biased)


def test_fair_and_biased_agree_in_the_large_ensemble_limit_and_match_the_closed_form():
    rng = np.random.default_rng(2)
    y = np.array([0.3, -1.2, 2.5])
    gaps = []
    for k in (200, 2000):
        samples = rng.standard_normal((3, k))
        fair, biased = fair_crps(samples, y), ps.crps_ensemble(y, samples)
        gaps.append(np.abs(biased - fair).max())
    assert gaps[1] < 1e-3 and gaps[1] < gaps[0] / 5  # the gap shrinks like 1/K
    assert np.allclose(fair, ps.crps_gaussian(y, 0, 1), atol=0.08)  # ~4 Monte Carlo standard errors


def test_fair_estimator_is_unbiased_for_tiny_ensembles_and_the_v_statistic_is_not():
    rng = np.random.default_rng(3)
    repeats, k, y = 40000, 3, 0.7
    samples = rng.standard_normal((repeats, k))
    truth = ps.crps_gaussian(y, 0, 1)
    fair = fair_crps(samples, np.full(repeats, y))
    biased = ps.crps_ensemble(np.full(repeats, y), samples)
    standard_error = fair.std() / np.sqrt(repeats)
    assert abs(fair.mean() - truth) < 4 * standard_error
    assert biased.mean() - truth > 20 * standard_error


def test_point_mass_crps_is_the_absolute_error():
    point = np.array([40.0, 55.0])
    samples = np.repeat(point[:, None], 10, axis=1)
    assert np.allclose(fair_crps(samples, np.array([43.0, 50.0])), [3.0, 5.0])


def test_gaussian_closed_form_matches_properscoring():
    rng = np.random.default_rng(4)
    y, mean, std = rng.normal(55, 10, 50), rng.normal(55, 10, 50), rng.uniform(0.5, 9, 50)
    assert np.allclose(gaussian_crps(y, mean, std), ps.crps_gaussian(y, mean, std))


def test_mixture_closed_form_matches_the_integral_definition():
    rng = np.random.default_rng(5)
    weights = rng.dirichlet(np.ones(3), size=4)
    means, stds = rng.normal(50, 8, (4, 3)), rng.uniform(1, 5, (4, 3))
    y = rng.normal(50, 8, 4)
    from scipy.stats import norm

    grid = np.linspace(-50, 150, 200001)
    expected = []
    for w, m, s, target in zip(weights, means, stds, y):
        cdf = (w * norm.cdf((grid[:, None] - m) / s)).sum(axis=1)
        expected.append(np.trapezoid((cdf - (grid >= target)) ** 2, grid))
    assert np.allclose(mixture_crps(y, weights, means, stds), expected, atol=1e-4)


def test_item_scores_use_the_closed_form_only_when_the_head_declares_one():
    rng = np.random.default_rng(6)
    mean, std, y = np.full(5, 50.0), np.full(5, 4.0), rng.normal(50, 4, 5)
    samples = mean[:, None] + std[:, None] * rng.standard_normal((5, 30))
    exact = Predictive(samples, mean, mean, std, crps=lambda t: gaussian_crps(t, mean, std))
    scores = item_scores(y, exact)
    assert np.allclose(scores.columns["crps"], ps.crps_gaussian(y, mean, std))
    assert scores.notes["crps"] == "closed form"
    # mean and std alone do not make a Gaussian: the fair estimator on the samples is used
    moments_only = item_scores(y, Predictive(samples, mean, mean, std))
    assert np.allclose(moments_only.columns["crps"], fair_crps(samples, y))
    assert "fair" in moments_only.notes["crps"]


def test_fair_estimator_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        fair_crps(np.ones((3, 1)), np.ones(3))


def test_mixture_predictive_carries_exact_gaussian_closed_forms():
    from scipy.stats import norm

    from benchmark.predictive import mixture_predictive

    rng = np.random.default_rng(7)
    mean, std, y = rng.normal(55, 8, 20), rng.uniform(2, 6, 20), rng.normal(55, 8, 20)
    predictive = mixture_predictive(np.ones((20, 1)), mean[:, None], std[:, None], np.zeros((20, 4)))
    assert np.allclose(predictive.point, mean) and np.allclose(predictive.std, std)
    assert np.allclose(predictive.log_prob(y), norm.logpdf(y, mean, std))
    assert np.allclose(predictive.cdf(y), norm.cdf(y, mean, std))
    assert np.allclose(predictive.crps(y), ps.crps_gaussian(y, mean, std))


def test_mixture_predictive_moments_and_density_of_a_two_component_mixture():
    from benchmark.predictive import mixture_predictive

    grid = np.linspace(0, 100, 4001)
    components = (np.array([[0.25, 0.75]]), np.array([[40.0, 60.0]]), np.array([[3.0, 5.0]]))
    # the same mixture for every grid point, so log_prob(grid) is its density on the grid
    predictive = mixture_predictive(*(np.repeat(c, len(grid), axis=0) for c in components),
                                    np.zeros((len(grid), 4)))
    density = np.exp(predictive.log_prob(grid))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-6)
    assert predictive.mean[0] == pytest.approx(np.trapezoid(grid * density, grid))
    assert predictive.std[0] == pytest.approx(np.sqrt(np.trapezoid((grid - 55.0) ** 2 * density, grid)))
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    assert np.allclose(predictive.cdf(grid), cdf, atol=1e-4)
