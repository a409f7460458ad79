"""Exact and ensemble forms of predictive distributions: CRPS of samples, Gaussians and Gaussian
mixtures, and a ``Predictive`` with every closed form of a mixture. Shared by training (the
validation CRPS), evaluation and heads."""
from __future__ import annotations

import math

import numpy as np

from benchmark.contracts import Predictive


def fair_crps(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unbiased ("fair") ensemble CRPS per item: mean|X - y| - sum_{i != j}|X_i - X_j| / (2K(K-1)).

    Its expectation over ensembles drawn from F equals CRPS(F, y) for every K >= 2, so heads scored
    with different K remain comparable. Pairwise differences come from the sorted ensemble in O(K log K).
    """
    samples = np.asarray(samples, dtype=float)
    k = samples.shape[1]
    if k < 2:
        raise ValueError("the fair CRPS needs at least 2 samples per item")
    error = np.abs(samples - np.asarray(y, dtype=float)[:, None]).mean(axis=1)
    return error - pairwise_spread(samples) / (2 * k * (k - 1))


def pairwise_spread(samples: np.ndarray) -> np.ndarray:
    """sum_{i, j} |X_i - X_j| per row, from order statistics: 2 * sum_j (2j - K + 1) x_(j)."""
    ordered = np.sort(samples, axis=1)
    k = ordered.shape[1]
    return 2 * ordered @ (2 * np.arange(k) - k + 1.0)


def mixture_crps(y: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Exact CRPS of Gaussian mixtures (components (N, M)) at y (N,) (Grimit et al., 2006):

    sum_m w_m A(y - mu_m, s_m^2) - 1/2 sum_{m,l} w_m w_l A(mu_m - mu_l, s_m^2 + s_l^2),
    with A(d, v) = E|d + sqrt(v) Z| = d (2 Phi(d / sqrt v) - 1) + 2 sqrt(v) phi(d / sqrt v).
    """
    weights, means, stds = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (weights, means, stds))
    y = np.asarray(y, dtype=float)[:, None]
    first = (weights * _expected_abs(y - means, stds**2)).sum(axis=1)
    spread = _expected_abs(means[:, :, None] - means[:, None, :], stds[:, :, None] ** 2 + stds[:, None, :] ** 2)
    second = np.einsum("nm,nml,nl->n", weights, spread, weights)
    return first - 0.5 * second


def gaussian_crps(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Exact CRPS of N(mean, std^2): the one-component mixture."""
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    return mixture_crps(y, np.ones_like(mean)[:, None], mean[:, None], std[:, None])


def mixture_predictive(weights: np.ndarray, means: np.ndarray, stds: np.ndarray, samples: np.ndarray,
                       point: np.ndarray | None = None) -> Predictive:
    """A ``Predictive`` with every exact closed form of Gaussian mixtures (components (N, M), EF units).

    For heads whose distribution is a Gaussian (M = 1) or a mixture (MDN, the synthetic oracle).
    ``point`` defaults to the mixture mean.
    """
    from scipy.special import logsumexp, ndtr

    weights, means, stds = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (weights, means, stds))
    mean = (weights * means).sum(axis=1)
    std = np.sqrt(np.maximum((weights * (stds**2 + means**2)).sum(axis=1) - mean**2, 0.0))

    def log_prob(y: np.ndarray) -> np.ndarray:
        z = (np.asarray(y, dtype=float)[:, None] - means) / stds
        # b= weights lets zero-weight (padding) components drop out without log(0)
        return logsumexp(-0.5 * z**2 - np.log(stds * math.sqrt(2 * math.pi)), b=weights, axis=1)

    def cdf(y: np.ndarray) -> np.ndarray:
        return (weights * ndtr((np.asarray(y, dtype=float)[:, None] - means) / stds)).sum(axis=1)

    return Predictive(samples=np.asarray(samples, dtype=float), point=mean if point is None else point,
                      mean=mean, std=std, log_prob=log_prob, cdf=cdf,
                      crps=lambda y: mixture_crps(y, weights, means, stds))


def empirical_predictive(values: np.ndarray, n_items: int, samples: int, seed: int) -> Predictive:
    """The same empirical distribution of ``values`` (e.g. the training split's EF) for ``n_items`` items,
    with its exact closed forms: mean (the point), std, CDF and CRPS. It has no density (point masses);
    ``samples`` draws per item are taken from ``values`` with replacement (seeded)."""
    values = np.sort(np.asarray(values, dtype=float))
    n = len(values)
    if n == 0:
        raise ValueError("an empirical distribution needs at least one value")
    mean, std = np.full(n_items, values.mean()), np.full(n_items, values.std())
    spread = pairwise_spread(values[None, :])[0] / n**2  # E|X - X'| with X, X' drawn independently

    def cdf(y: np.ndarray) -> np.ndarray:
        return np.searchsorted(values, np.asarray(y, dtype=float), side="right") / n

    def crps(y: np.ndarray) -> np.ndarray:  # E|X - y| - E|X - X'| / 2, exact for this distribution
        return np.abs(values[None, :] - np.asarray(y, dtype=float)[:, None]).mean(axis=1) - spread / 2

    draws = np.random.default_rng(seed).choice(values, size=(n_items, samples))
    return Predictive(samples=draws, point=mean, mean=mean, std=std, cdf=cdf, crps=crps)


def _expected_abs(d: np.ndarray, variance: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    scale = np.sqrt(variance)
    z = d / scale
    return d * (2 * ndtr(z) - 1) + 2 * scale * np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
