"""train_model: learning a known relation, early stopping, seeding, NaN losses, pruning."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_engine_helpers import NOISE, ConcatFusion, GaussianTestHead, linear_features, single_thread  # noqa: F401

import registry
from benchmark.config import TrainConfig
from benchmark.device import seed_everything
from benchmark.encoding.feature_set import FeatureSet
from benchmark.training.checks import HeadError
from benchmark.training.loop import train_model
from benchmark.training.scaling import FeatureScaler, TargetScaler

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = TrainConfig(epochs=40, batch_size=64, lr=2e-2, weight_decay=0.0, patience=40, device="cpu")


def fit(head_factory=GaussianTestHead, seed=0, settings=FAST, train=None, val=None, **kwargs):
    train = train if train is not None else linear_features(256, seed=1)
    val = val if val is not None else linear_features(64, seed=2, prefix="val")
    seed_everything(seed)  # before building: initial weights belong to the seed
    fusion = ConcatFusion(train.feature_dim)
    return train_model(fusion, head_factory(fusion.out_dim), train, val, settings, seed=seed, quiet=True, **kwargs)


def test_learns_the_linear_relation_with_calibrated_spread():
    test = linear_features(128, seed=3, prefix="test")
    predictive = fit().predict(test, samples=20, seed=0)

    assert predictive.samples.shape == (128, 20)
    error = np.abs(predictive.point - test.ef).mean()
    assert error < 1.5 * NOISE, error  # predicting the mean EF would err by about 8
    assert 0.6 * NOISE < np.median(predictive.std) < 1.6 * NOISE


@pytest.mark.skipif("mse" not in registry.names("head"), reason="the built-in mse head is not written yet")
def test_registered_mse_head_learns_the_relation():
    test = linear_features(128, seed=3, prefix="test")
    model = fit(lambda dim: registry.build("head", "mse", condition_dim=dim))
    assert np.abs(model.predict(test, samples=4).point - test.ef).mean() < 2 * NOISE


def test_early_stopping_restores_the_best_epoch():
    # Validation labels unrelated to the features: fitting the training set soon hurts validation.
    train = linear_features(32, seed=1)
    val = linear_features(64, seed=2, prefix="val")
    val.ef = np.random.default_rng(0).permutation(val.ef)
    settings = TrainConfig(epochs=200, batch_size=8, lr=3e-2, weight_decay=0.0, patience=5, device="cpu")
    seen: list[float] = []
    model = fit(lambda dim: GaussianTestHead(dim, width=64), settings=settings, train=train, val=val,
                on_epoch=lambda epoch, logs: seen.append(logs["val_loss"]))

    assert len(seen) == len(model.history) < settings.epochs
    assert model.best_epoch == int(np.argmin(seen)) + 1
    assert len(seen) == model.best_epoch + settings.patience
    with torch.no_grad():
        condition = model.condition(torch.from_numpy(val.features), None)
        target = torch.as_tensor(model.scaler.standardise(val.ef), dtype=torch.float32)
        restored = float(model.head.loss(condition, target))
    assert restored == pytest.approx(min(seen), rel=1e-5)


def test_validation_every_few_epochs_keeps_and_stops_only_at_those_epochs():
    # The same overfitting setting: with validate_every = 3 the run validates at epochs 3, 6, ... and at the
    # last, keeps the best of those, and stops once patience epochs passed since it.
    train = linear_features(32, seed=1)
    val = linear_features(64, seed=2, prefix="val")
    val.ef = np.random.default_rng(0).permutation(val.ef)
    settings = TrainConfig(epochs=200, batch_size=8, lr=3e-2, weight_decay=0.0, patience=5, validate_every=3,
                           device="cpu")
    seen: dict[int, float] = {}
    model = fit(lambda dim: GaussianTestHead(dim, width=64), settings=settings, train=train, val=val,
                on_epoch=lambda epoch, logs: seen.update({epoch: logs["val_loss"]} if "val_loss" in logs else {}))

    assert seen and all(epoch % 3 == 0 for epoch in seen) and len(model.history) < settings.epochs
    assert list(seen) == list(range(3, len(model.history) + 1, 3))
    assert model.best_epoch == min(seen, key=seen.get)
    assert len(model.history) - model.best_epoch >= settings.patience
    assert len(model.history) - model.best_epoch < settings.patience + 3  # the first validation past patience
    short = fit(settings=dataclasses.replace(FAST, epochs=7, validate_every=3))
    assert [epoch for epoch, logs in enumerate(short.history, 1) if "val_loss" in logs] == [3, 6, 7]  # and the last


def test_early_stopping_on_mae_logs_it_in_ef_units():
    settings = TrainConfig(epochs=3, batch_size=64, lr=1e-2, monitor="mae", device="cpu")
    model = fit(settings=settings)
    assert all(0 < logs["val_mae"] < 20 for logs in model.history)


def test_early_stopping_on_crps_equals_mae_for_a_point_head():
    # A point head's samples repeat its point, so its fair CRPS is its absolute error, epoch by epoch.
    mse = lambda dim: registry.build("head", "mse", condition_dim=dim, width=16, depth=1, dropout=0.0)  # noqa: E731
    settings = TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cpu")
    by_mae = fit(mse, settings=dataclasses.replace(settings, monitor="mae"))
    by_crps = fit(mse, settings=dataclasses.replace(settings, monitor="crps"))
    np.testing.assert_allclose([logs["val_crps"] for logs in by_crps.history],
                               [logs["val_mae"] for logs in by_mae.history], rtol=1e-6)


def test_a_moving_average_is_what_gets_validated_and_kept():
    # One step per epoch and a decay of almost 1: the average stays at the weights after the first step
    # (it starts as a copy of them), so five epochs keep exactly what one epoch without averaging gives.
    train, val = linear_features(64, seed=1), linear_features(32, seed=2, prefix="val")
    settings = TrainConfig(epochs=5, batch_size=64, lr=1e-2, patience=0, device="cpu")
    averaged = fit(settings=dataclasses.replace(settings, ema=1 - 1e-12), train=train, val=val)
    one_step = fit(settings=dataclasses.replace(settings, epochs=1), train=train, val=val)
    last = fit(settings=settings, train=train, val=val)
    assert len({round(logs["val_loss"], 6) for logs in averaged.history}) == 1 and averaged.best_epoch == 1
    for name, value in averaged.head.state_dict().items():
        torch.testing.assert_close(value, one_step.head.state_dict()[name])
    assert last.history[-1]["val_loss"] != pytest.approx(averaged.history[-1]["val_loss"])


def test_same_seed_gives_identical_predictions_and_another_seed_does_not():
    test = linear_features(32, seed=3, prefix="test")
    settings = TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cpu")
    first = fit(seed=7, settings=settings).predict(test, samples=8, seed=1)
    second = fit(seed=7, settings=settings).predict(test, samples=8, seed=1)
    other = fit(seed=8, settings=settings).predict(test, samples=8, seed=1)

    np.testing.assert_array_equal(first.samples, second.samples)
    np.testing.assert_array_equal(first.point, second.point)
    assert not np.array_equal(first.point, other.point)


class NaNHead(GaussianTestHead):
    def loss(self, condition, target):
        return super().loss(condition, target) * float("nan")


def test_nan_loss_raises_naming_the_head():
    with pytest.raises(HeadError, match=r"head 'broken'.*NaN|head 'broken'.*nan"):
        fit(NaNHead, settings=TrainConfig(epochs=2, device="cpu"), name="broken")


class RawHead(GaussianTestHead):
    target_scale = "raw"


def test_targets_are_standardised_with_training_statistics_unless_the_head_wants_raw_ef():
    train = linear_features(64, seed=1)
    settings = TrainConfig(epochs=1, device="cpu")
    standard = fit(settings=settings, train=train)
    assert standard.scaler == TargetScaler(float(np.mean(train.ef)), float(np.std(train.ef)))
    assert fit(RawHead, settings=settings, train=train).scaler == TargetScaler(0.0, 1.0)


def rescaled(data: FeatureSet, scale: np.ndarray, shift: np.ndarray) -> FeatureSet:
    return FeatureSet(data.ids, data.features * scale + shift, data.ef, clip_item=data.clip_item)


def test_features_are_standardised_with_training_statistics():
    train, val = linear_features(64, seed=1), linear_features(32, seed=2, prefix="val")
    model = fit(settings=TrainConfig(epochs=1, device="cpu"), train=train,
                val=rescaled(val, np.float32(10.0), np.float32(3.0)))  # validation statistics must not matter
    np.testing.assert_allclose(model.feature_scaler.mean, train.features.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(model.feature_scaler.std, train.features.std(axis=0), rtol=1e-6)


def test_training_does_not_depend_on_the_units_of_a_feature():
    # One feature in hundredths (like a share of a few percent), one in hundreds, one shifted far from 0:
    # standardised, they train exactly the model that unit-scale features train.
    scale = np.array([0.01, 100.0, 1.0, 1.0], dtype=np.float32)
    shift = np.array([0.0, 0.0, 50.0, 0.0], dtype=np.float32)
    train, val = linear_features(128, seed=1), linear_features(64, seed=2, prefix="val")
    settings = TrainConfig(epochs=5, batch_size=32, lr=1e-2, device="cpu")
    plain = fit(settings=settings, train=train, val=val).predict(val, samples=4, seed=0)
    moved = fit(settings=settings, train=rescaled(train, scale, shift), val=rescaled(val, scale, shift))
    np.testing.assert_allclose(moved.predict(rescaled(val, scale, shift), samples=4, seed=0).samples,
                               plain.samples, atol=1e-3)


def test_a_constant_feature_is_centred_not_divided_by_zero_and_widths_must_match():
    scaler = FeatureScaler.fit(np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32))
    assert scaler.std == (1.0, 1.0)
    np.testing.assert_array_equal(scaler(torch.tensor([[2.0, 5.0]])).numpy(), [[0.0, 0.0]])
    assert FeatureScaler()(torch.ones(1, 3)).tolist() == [[1.0, 1.0, 1.0]]  # unfitted: the identity
    with pytest.raises(ValueError, match="fitted on 2 features, got 3"):
        scaler(torch.ones(1, 3))


class PruneAtOnce:
    def __init__(self):
        self.reports = []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return True


def test_an_optuna_trial_is_told_the_validation_value_and_can_prune():
    optuna = pytest.importorskip("optuna")
    trial = PruneAtOnce()
    with pytest.raises(optuna.TrialPruned):
        fit(settings=TrainConfig(epochs=5, device="cpu"), trial=trial)
    assert [step for step, _ in trial.reports] == [1]
