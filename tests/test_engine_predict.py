"""TrainedModel.predict: EF units, closed forms through the scaler, clip pooling, head checks, storage."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_engine_helpers import ConcatFusion, GaussianTestHead, linear_features, single_thread  # noqa: F401
from torch import nn

from benchmark.config import TrainConfig
from benchmark.device import seed_everything
from benchmark.encoding.feature_set import FeatureSet
from benchmark.training.checks import HeadError
from benchmark.training.loop import train_model
from benchmark.training.model import TrainedModel
from benchmark.training.scaling import TargetScaler

pytestmark = pytest.mark.usefixtures("single_thread")
SCALER = TargetScaler(mean=55.0, std=8.0)


def untrained(head: nn.Module, dim: int = 4, scaler: TargetScaler = SCALER) -> TrainedModel:
    return TrainedModel(ConcatFusion(dim), head, scaler, name=type(head).__name__)


def gaussian(seed: int = 0) -> GaussianTestHead:
    seed_everything(seed)
    return GaussianTestHead(4)


def clip_normals(model: TrainedModel, data: FeatureSet) -> torch.distributions.Normal:
    """Each clip's predictive in EF units, computed here independently of the engine."""
    with torch.no_grad():
        normal = model.head._normal(torch.from_numpy(data.features))
    return torch.distributions.Normal(normal.mean.double() * SCALER.std + SCALER.mean,
                                      normal.stddev.double() * SCALER.std)


def test_closed_forms_are_mapped_back_to_ef_units():
    data = linear_features(16, seed=1)
    model = untrained(gaussian())
    predictive = model.predict(data, samples=4000, seed=0)
    expected = clip_normals(model, data)
    y = torch.as_tensor(data.ef)

    np.testing.assert_allclose(predictive.mean, expected.mean, rtol=1e-5)
    np.testing.assert_allclose(predictive.std, expected.stddev, rtol=1e-5)
    np.testing.assert_allclose(predictive.log_prob(data.ef), expected.log_prob(y), rtol=1e-5)
    np.testing.assert_allclose(predictive.cdf(data.ef), expected.cdf(y), rtol=1e-5, atol=1e-7)
    # and the samples follow the same distribution
    np.testing.assert_allclose(predictive.samples.mean(axis=1), predictive.mean, atol=0.1 * predictive.std.max())
    np.testing.assert_allclose((predictive.samples <= data.ef[:, None]).mean(axis=1), predictive.cdf(data.ef),
                               atol=0.04)


def test_density_is_the_derivative_of_the_cdf_in_ef_units():
    data = linear_features(8, seed=1, clips=3)  # also covers the clip mixture
    predictive = untrained(gaussian()).predict(data, samples=6, seed=0)
    step = 1e-2
    slope = (predictive.cdf(data.ef + step) - predictive.cdf(data.ef - step)) / (2 * step)
    np.testing.assert_allclose(slope, np.exp(predictive.log_prob(data.ef)), rtol=1e-3, atol=1e-6)


def test_several_clips_pool_into_their_equal_mixture():
    data = linear_features(10, seed=1, clips=3)
    model = untrained(gaussian())
    predictive = model.predict(data, samples=3000, seed=0)
    clips = clip_normals(model, data)
    y = torch.as_tensor(data.ef[data.clip_item])

    assert predictive.samples.shape == (10, 3000)
    np.testing.assert_allclose(predictive.mean, clips.mean.numpy().reshape(10, 3).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(predictive.cdf(data.ef), clips.cdf(y).numpy().reshape(10, 3).mean(axis=1),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(predictive.std, predictive.samples.std(axis=1), rtol=0.1)


class ClipIdentity(nn.Module):
    """'Samples' equal to the first condition feature, so each draw tells which clip produced it."""

    def loss(self, condition, target):
        return condition.sum() * 0

    def sample(self, condition, n):
        return condition[:, :1].expand(-1, n)


@pytest.mark.parametrize("samples", [1, 2, 10])
def test_every_item_gets_k_samples_spread_evenly_over_its_clips(samples):
    clip_item = np.array([0, 0, 0, 1, 2, 2])
    rows = np.arange(6, dtype=np.float32)[:, None]  # clip c has feature c
    data = FeatureSet(["a", "b", "c"], rows, np.zeros(3), clip_item=clip_item)
    draws = untrained(ClipIdentity(), dim=1, scaler=TargetScaler()).predict(data, samples=samples).samples

    assert draws.shape == (3, samples)
    for item in range(3):
        counts = np.bincount(draws[item].astype(int), minlength=6)[clip_item == item]
        assert counts.sum() == samples
        assert counts.max() - counts.min() <= 1, (item, counts)  # clip by clip in turn


class WrongShape(GaussianTestHead):
    def sample(self, condition, n):
        return super().sample(condition, n)[..., None]


class NaNSamples(GaussianTestHead):
    def sample(self, condition, n):
        return super().sample(condition, n) * float("nan")


@pytest.mark.parametrize(("head", "message"), [(WrongShape, r"shape \(16, 5, 1\), expected \(16, 5\)"),
                                               (NaNSamples, r"80 non-finite")])
def test_bad_samples_raise_naming_the_head(head, message):
    model = untrained(head(4))
    with pytest.raises(HeadError, match=rf"head '{head.__name__}': sample\(condition, 5\) returned {message}"):
        model.predict(linear_features(16, seed=1), samples=5)


def test_point_estimates():
    data = linear_features(16, seed=1)
    model = untrained(gaussian())
    mean = model.predict(data, samples=50, point="mean")
    median = model.predict(data, samples=50, point="median")
    np.testing.assert_array_equal(mean.point, mean.mean)  # the closed form where the head has one
    np.testing.assert_array_equal(median.point, np.median(median.samples, axis=1))
    sampled = untrained(ClipIdentity(), scaler=TargetScaler()).predict(data, samples=3)
    np.testing.assert_array_equal(sampled.point, sampled.samples.mean(axis=1))
    assert sampled.mean is None and sampled.log_prob is None and sampled.cdf is None


def test_saved_model_predicts_identically_after_loading(tmp_path):
    train, val = linear_features(64, seed=1), linear_features(32, seed=2, prefix="val")
    seed_everything(0)
    trained = train_model(ConcatFusion(4), GaussianTestHead(4, width=8), train, val,
                          TrainConfig(epochs=2, batch_size=32, device="cpu"), seed=0, quiet=True)
    trained.save(tmp_path / "model.pt")
    loaded = TrainedModel.load(tmp_path / "model.pt", ConcatFusion(4), GaussianTestHead(4, width=8), device="cpu")

    assert loaded.scaler == trained.scaler and loaded.best_epoch == trained.best_epoch
    assert loaded.feature_scaler == trained.feature_scaler and len(loaded.feature_scaler.mean) == 4
    assert loaded.history == trained.history
    np.testing.assert_array_equal(loaded.predict(val, samples=5, seed=3).samples,
                                  trained.predict(val, samples=5, seed=3).samples)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"features": np.zeros((5, 2))}, "5 feature rows for 3 ids"),
    ({"ef": np.zeros(2)}, "one value per id"),
    ({"features": np.zeros((4, 2)), "clip_item": np.array([0, 0, 1, 1])}, "have no clip"),
    ({"tabular": np.zeros((2, 1))}, "tabular must be"),
])
def test_feature_sets_reject_inconsistent_arrays(kwargs, message):
    arrays = {"ids": ["a", "b", "c"], "features": np.zeros((3, 2)), "ef": np.zeros(3), **kwargs}
    with pytest.raises(ValueError, match=message):
        FeatureSet(**arrays)


def test_mixture_heads_get_exact_closed_forms_and_crps_per_item():
    """A head exposing mixture() (here the built-in gaussian) gets every closed form exactly, CRPS
    included, pooled over an item's clips as the equal mixture of the clips' Gaussians."""
    import registry
    from benchmark.predictive import mixture_crps

    data = linear_features(6, seed=2, clips=2)
    seed_everything(0)
    model = untrained(registry.build("head", "gaussian", condition_dim=4, width=8, depth=1))
    predictive = model.predict(data, samples=8, seed=0)
    with torch.no_grad():
        log_weights, means, stds = model.head.mixture(model.condition(torch.from_numpy(data.features), None))
    means = means[:, 0].double().numpy() * SCALER.std + SCALER.mean
    stds = stds[:, 0].double().numpy() * SCALER.std
    by_item = [np.flatnonzero(data.clip_item == item) for item in range(data.n_items)]
    expected = np.array([mixture_crps(data.ef[[item]], np.full((1, len(rows)), 1 / len(rows)),
                                      means[rows][None], stds[rows][None])[0] for item, rows in enumerate(by_item)])
    assert predictive.crps is not None
    np.testing.assert_allclose(predictive.crps(data.ef), expected, rtol=1e-6)
    np.testing.assert_allclose(predictive.mean, [means[rows].mean() for rows in by_item], rtol=1e-6)
