"""Seed summaries, patient bootstrap weights and CIs, and the paired test."""
import numpy as np
import pytest
from scipy.stats import wilcoxon

import registry
from benchmark.contracts import Predictive
from benchmark.evaluation.scoring import item_scores
from benchmark.evaluation.stats import PatientBootstrap, holm, paired_test, patient_counts, seed_summary


def test_seed_summary_is_mean_and_sample_std():
    assert seed_summary([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
    mean, std = seed_summary([3.0])
    assert mean == 3.0 and np.isnan(std)


def test_patient_counts_draw_every_replicate_with_replacement():
    counts = patient_counts(7, 500, seed=1)
    assert counts.shape == (500, 7) and np.all(counts.sum(axis=1) == 7)
    assert counts.mean() == pytest.approx(1.0) and (counts == 0).mean() == pytest.approx((6 / 7) ** 7, abs=0.03)
    assert np.array_equal(counts, patient_counts(7, 500, seed=1))
    assert not np.array_equal(counts, patient_counts(7, 500, seed=2))


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    y = rng.uniform(25, 70, 30)
    samples = y[:, None] + rng.normal(2, 6, (30, 12))
    return y, item_scores(y, Predictive(samples, samples.mean(axis=1))).columns


def test_every_aggregate_with_integer_weights_equals_the_metric_on_repeated_items(scored):
    """Weights are how bootstrap replicates are evaluated: weight w must mean 'item repeated w times'."""
    _, columns = scored
    weights = np.random.default_rng(1).integers(0, 4, (3, len(columns["EF"]))).astype(float)
    weights[:, :2] = 1  # keep both AUROC classes present
    for record in registry.default().records("metric"):
        aggregate = record.metadata["aggregate"]
        batched = aggregate(columns, weights)
        for row, weight in zip(batched, weights):
            repeated = {name: np.repeat(values, weight.astype(int)) for name, values in columns.items()}
            expected = aggregate(repeated, np.ones((1, int(weight.sum()))))[0]
            assert row == pytest.approx(expected, nan_ok=True), record.name


def test_bootstrap_ci_resamples_patients_and_brackets_the_estimate(scored):
    _, columns = scored
    mae = registry.default().describe("metric", "mae").metadata["aggregate"]
    patients = np.repeat([f"p{i}" for i in range(10)], 3)
    low, high = PatientBootstrap([patients], n_boot=400, seed=0).interval([columns], mae)
    estimate = columns["abs_error"].mean()
    assert low < estimate < high
    assert (low, high) == PatientBootstrap([patients], n_boot=400, seed=0).interval([columns], mae)
    # one patient for all items: every replicate is the full set, the interval collapses
    low_one, high_one = PatientBootstrap([["p"] * 30], n_boot=50).interval([columns], mae)
    assert low_one == pytest.approx(estimate) and high_one == pytest.approx(estimate)


def test_bootstrap_keeps_a_patients_items_together(scored):
    _, columns = scored
    mae = registry.default().describe("metric", "mae").metadata["aggregate"]
    # three identical videos per patient carry one patient's information, not three
    tripled = {name: np.repeat(values[:10], 3) for name, values in columns.items()}
    by_patient = PatientBootstrap([np.repeat([f"p{i}" for i in range(10)], 3)], n_boot=2000).interval([tripled], mae)
    by_item = PatientBootstrap([[str(i) for i in range(30)]], n_boot=2000).interval([tripled], mae)
    assert by_patient[1] - by_patient[0] > 1.3 * (by_item[1] - by_item[0])


def test_paired_test_detects_a_better_model_and_uses_patient_means():
    rng = np.random.default_rng(2)
    patients = np.repeat([f"p{i}" for i in range(40)], 2)
    baseline = rng.exponential(4, 80)
    better = baseline - 1.0 + rng.normal(0, 0.5, 80)
    result = paired_test(better, baseline, patients, n_boot=1000, seed=0)
    assert result.mean_diff == pytest.approx(np.mean(better - baseline))
    assert result.n_items == 80 and result.n_patients == 40
    assert result.ci_high < 0 and result.wilcoxon_p < 1e-6 and result.bootstrap_p < 0.01
    per_patient = (better - baseline).reshape(40, 2).mean(axis=1)
    assert result.wilcoxon_p == pytest.approx(wilcoxon(per_patient).pvalue)


def test_paired_test_finds_nothing_between_identical_or_exchangeable_models():
    rng = np.random.default_rng(3)
    patients = [f"p{i}" for i in range(60)]
    loss = rng.exponential(4, 60)
    same = paired_test(loss, loss, patients, n_boot=200, seed=0)
    assert same.mean_diff == 0 and same.wilcoxon_p == 1.0 and same.bootstrap_p == 1.0
    noise = paired_test(loss + rng.normal(0, 1, 60), loss, patients, n_boot=1000, seed=0)
    assert noise.wilcoxon_p > 0.01 and noise.bootstrap_p > 0.01


def test_holm_adjustment_of_a_hand_computed_family():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> running max 0.06
    adjusted = holm([0.01, 0.04, 0.03, np.nan, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, np.nan, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    assert holm([]).shape == (0,)
