"""Shared fixtures for the engine and tuning tests, written against the public contracts only.

This module is also a plugin (``load_extra(["test_engine_helpers"])``): it registers a tiny Gaussian
head, a concatenating fusion and an MAE metric, so the tests do not depend on the built-in plugins.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.api import add_metric, weighted_mean
from benchmark.encoding.feature_set import FeatureSet
from registry import Categorical, FloatParam, hookimpl


@pytest.fixture(scope="module")
def single_thread():
    """Models this small train fastest on one thread; on a busy 2-core machine two threads spin
    against each other and run ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SLOPE, INTERCEPT, NOISE = 10.0, 55.0, 1.0  # EF = 55 + 10 * (x . w) + N(0, 1)


class GaussianTestHead(nn.Module):
    """A heteroscedastic Gaussian from a one-hidden-layer MLP, with every closed form."""

    def __init__(self, condition_dim: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(condition_dim, width), nn.Tanh(), nn.Linear(width, 2))

    def _normal(self, condition):
        mean, log_std = self.net(condition).unbind(-1)
        return torch.distributions.Normal(mean, log_std.clamp(-5, 3).exp())

    def loss(self, condition, target):
        return -self._normal(condition).log_prob(target).mean()

    def sample(self, condition, n):
        return self._normal(condition).sample((n,)).T

    def mean(self, condition):
        return self._normal(condition).mean

    def std(self, condition):
        return self._normal(condition).stddev

    def log_prob(self, condition, y):
        return self._normal(condition).log_prob(y)

    def cdf(self, condition, y):
        return self._normal(condition).cdf(y)


class ConcatFusion(nn.Module):
    """Video feature and tabular attributes side by side."""

    def __init__(self, feature_dim: int, tabular_dim: int = 0):
        super().__init__()
        self.out_dim = feature_dim + tabular_dim

    def forward(self, feature, tabular):
        return feature if tabular is None else torch.cat([feature, tabular], dim=1)


def mae(items, weights: np.ndarray) -> np.ndarray:
    return weighted_mean(items["abs_error"], weights)


@hookimpl
def register_heads(registry):
    registry.add("gauss_test", GaussianTestHead, metadata={"probabilistic": True},
                 search_space={"lr": FloatParam(1e-3, 3e-2, log=True), "width": Categorical((8, 16))})


@hookimpl
def register_fusions(registry):
    registry.add("concat_test", ConcatFusion)


@hookimpl
def register_metrics(registry):
    add_metric(registry, "mae_test", mae, label="TestMAE", direction="min", probabilistic=False, order=1000,
               description="The tests' own MAE.")


def linear_features(n: int, dim: int = 4, seed: int = 0, prefix: str = "item", clips: int = 1) -> FeatureSet:
    """Gaussian features whose EF is a known linear function plus unit noise.

    With ``clips`` > 1 each item gets that many rows: its features plus small clip-to-clip jitter.
    """
    rng = np.random.default_rng(seed)
    weights = np.linspace(1.0, -1.0, dim) / math.sqrt(dim)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    ef = INTERCEPT + SLOPE * x @ weights + rng.normal(scale=NOISE, size=n)
    clip_item = np.repeat(np.arange(n), clips)
    rows = x[clip_item] + rng.normal(scale=0.05, size=(n * clips, dim)).astype(np.float32) * (clips > 1)
    return FeatureSet([f"{prefix}{i}" for i in range(n)], rows, ef, clip_item=clip_item)
