"""The uncertainty baselines (card, ensemble, quantile, evidential, mc_dropout) on the bimodal toy of
test_heads_toy.py: what each can and cannot represent, and each head's samples against its closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_heads_toy import MODE, bimodal, draw, train

import registry
from benchmark.predictive import mixture_predictive

TOY = {  # small, so the whole file stays well under a minute on two busy cores
    "card": (dict(width=64, depth=2, sampler="ddim", steps=20), 600),
    "ensemble": (dict(width=32, depth=2, dropout=0.0, members=3), 200),
    "quantile": (dict(width=64, depth=2, dropout=0.0), 300),
    "evidential": (dict(width=64, depth=2, dropout=0.0), 200),
}
SAMPLES = 32


@pytest.fixture(scope="module")
def toy():
    """For each head: samples (N, K) at held-out bimodal x, with the trained heads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, _ = draw(600, torch.Generator().manual_seed(2))
        x = x[bimodal(x[:, 0])]
        heads, samples = {}, {}
        for name, (params, steps) in TOY.items():
            heads[name] = train(name, params, steps)
            torch.manual_seed(3)
            with torch.no_grad():
                samples[name] = heads[name].sample(x, SAMPLES)
        return heads, samples
    finally:
        torch.set_num_threads(threads)


def shares(drawn: torch.Tensor) -> tuple[float, float, float]:
    """Fractions of samples near +MODE, near -MODE, and between the modes."""
    return ((drawn > MODE / 2).float().mean().item(), (drawn < -MODE / 2).float().mean().item(),
            (drawn.abs() < MODE / 2).float().mean().item())


@pytest.mark.parametrize("name", ["card", "ensemble", "quantile"])
def test_heads_place_samples_in_both_modes(toy, name):
    upper, lower, _ = shares(toy[1][name])
    assert upper > 0.25 and lower > 0.25, f"{name}: near +{MODE} {upper:.2f}, near -{MODE} {lower:.2f}"


def test_quantile_interpolation_leaves_the_gap_between_modes_nearly_empty(toy):
    """Its piecewise-uniform predictive can put little mass where few training targets fall."""
    assert shares(toy[1]["quantile"])[2] < 0.25


@pytest.mark.parametrize("name", ["ensemble", "evidential"])
def test_unimodal_fits_fill_the_gap_between_modes(toy, name):
    """A Student-t is unimodal, and every ensemble member fits the same unimodal Gaussian to +-MODE: they
    reach the modes only by a wide spread that puts as much mass between them as a single Gaussian does."""
    between = shares(toy[1][name])[2]
    assert between > 0.3, f"{name} puts only {between:.2f} between the modes"


def conditions(n: int = 6, dim: int = 3) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(5)) * 2


def untrained(name: str, **params) -> torch.nn.Module:
    torch.manual_seed(4)
    return registry.build("head", name, condition_dim=3, width=16, depth=1, dropout=0.0, **params).eval()


def assert_samples_match(samples: torch.Tensor, mean, std, cdf, probes: torch.Tensor) -> None:
    """Sample mean, std and empirical CDF at ``probes`` (B, P) against the closed forms."""
    samples = torch.as_tensor(samples, dtype=torch.float64)
    mean, std = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    torch.testing.assert_close(samples.mean(1), mean, atol=0.03 * float(std.max()), rtol=0)
    torch.testing.assert_close(samples.std(1), std, atol=0.03 * float(std.max()), rtol=0.02)
    for column in probes.T:
        empirical = (samples <= column[:, None]).double().mean(1)
        torch.testing.assert_close(empirical, torch.as_tensor(cdf(column), dtype=torch.float64), atol=0.015, rtol=0)


def probes_around(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return mean[:, None] + std[:, None] * torch.tensor([-1.5, -0.5, 0.0, 0.7, 1.6])


@torch.no_grad()
def test_evidential_samples_follow_its_student_t_closed_forms():
    head, condition = untrained("evidential"), conditions()
    head.out.bias[2] += 4.0  # alpha near 5, df near 10: a sample std converges slowly for df near 2
    mean, std = head.mean(condition), head.std(condition)
    assert_samples_match(head.sample(condition, 20000), mean, std, lambda y: head.cdf(condition, y),
                         probes_around(mean, std))
    y, step = mean + 0.3 * std, 1e-3  # the density is the CDF's derivative
    slope = (head.cdf(condition, y + step).double() - head.cdf(condition, y - step).double()) / (2 * step)
    torch.testing.assert_close(head.log_prob(condition, y).double().exp(), slope, rtol=2e-3, atol=1e-6)


@torch.no_grad()
def test_evidential_loss_is_the_nig_marginal_nll_plus_the_evidence_regulariser():
    head, condition = untrained("evidential", regulariser=0.3), conditions()
    target = torch.randn(len(condition), generator=torch.Generator().manual_seed(6))
    gamma, nu, alpha, _ = head.evidence(condition)
    regulariser = (target - gamma).abs() * (2 * nu + alpha)
    expected = (-head.log_prob(condition, target) + 0.3 * regulariser).mean()
    torch.testing.assert_close(head.loss(condition, target), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_quantile_samples_follow_its_interpolated_quantile_function():
    head, condition = untrained("quantile", levels=5), conditions()
    mean, std = head.mean(condition), head.std(condition)
    assert_samples_match(head.sample(condition, 20000), mean, std, lambda y: head.cdf(condition, y),
                         probes_around(mean, std))
    levels, values = head.knots(condition)
    assert (values.diff(dim=-1) > 0).all(), "quantiles must not cross"
    torch.testing.assert_close(head.cdf(condition, values[:, 3]), levels[3].expand(len(condition)))


@torch.no_grad()
def test_ensemble_samples_follow_its_mixture_closed_forms():
    head, condition = untrained("ensemble", members=4), conditions()
    log_weights, means, stds = head.mixture(condition)
    assert len(set(means[0].tolist())) == 4, "each member must start from its own initialisation"
    closed = mixture_predictive(log_weights.exp().numpy(), means.numpy(), stds.numpy(), np.zeros((6, 2)))
    probes = probes_around(torch.as_tensor(closed.mean), torch.as_tensor(closed.std))
    assert_samples_match(head.sample(condition, 40000), closed.mean, closed.std,
                         lambda y: closed.cdf(y.numpy()), probes)
    torch.testing.assert_close(head.mean(condition).double(), torch.as_tensor(closed.mean), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_mc_dropout_keeps_dropout_on_after_eval():
    head = registry.build("head", "mc_dropout", condition_dim=3, width=32, depth=2, dropout=0.3).eval()
    condition = conditions(1)
    first, second = head.parameters_of(condition)[0], head.parameters_of(condition)[0]
    assert not torch.equal(first, second), "two passes in eval mode must use different dropout masks"
    samples = head.sample(conditions(), 200)
    assert samples.shape == (6, 200) and samples.std(dim=1).min() > 0
