"""Point metrics and AUROC, through the registry, against formulas written out here."""
import numpy as np
import pytest

import registry
from benchmark.contracts import Predictive


def metric(name):
    return registry.default().describe("metric", name).factory


def point_predictive(point, k=5):
    return Predictive(np.repeat(point[:, None], k, axis=1), point)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.uniform(20, 75, 60)
    return y, y + rng.normal(1.5, 5, 60)


def test_point_metrics_match_their_textbook_definitions(data):
    y, pred = data
    predictive = point_predictive(pred)
    assert metric("mae")(y, predictive) == pytest.approx(np.mean(np.abs(pred - y)))
    assert metric("rmse")(y, predictive) == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)))
    ss_res, ss_tot = np.sum((y - pred) ** 2), np.sum((y - y.mean()) ** 2)
    assert metric("r2")(y, predictive) == pytest.approx(1 - ss_res / ss_tot)
    assert metric("pearson")(y, predictive) == pytest.approx(np.corrcoef(y, pred)[0, 1])


def test_r2_is_negative_for_predictions_worse_than_the_mean(data):
    y, _ = data
    assert metric("r2")(y, point_predictive(y[::-1].copy())) < 0


def test_metadata_gives_labels_and_directions():
    described = {name: registry.default().describe("metric", name).metadata for name in
                 ("mae", "rmse", "r2", "pearson", "crps", "nll", "nll_kde", "picp90", "picp95", "width90",
                  "width95", "calibration", "auroc50", "auroc40")}
    assert {name: meta["label"] for name, meta in described.items() if name in ("mae", "r2", "pearson", "crps")} \
        == {"mae": "MAE", "r2": "R2", "pearson": "r", "crps": "CRPS"}
    assert described["mae"]["direction"] == "min" and described["r2"]["direction"] == "max"
    assert described["picp90"]["direction"] == "target" and described["picp90"]["target"] == 0.9
    assert not described["mae"]["probabilistic"] and described["crps"]["probabilistic"]


def pairwise_auroc(labels, scores, tie_break):
    """Pairs counted one by one: a positive wins on a higher score, on an equal score by a higher
    ``tie_break``, and counts half when both are equal."""
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    total = 0.0
    for p in positives:
        for n in negatives:
            key_p, key_n = (scores[p], tie_break[p]), (scores[n], tie_break[n])
            total += 1.0 if key_p > key_n else 0.5 if key_p == key_n else 0.0
    return total / (len(positives) * len(negatives))


def test_auroc_counts_pairs_scored_by_the_sample_probability_ties_broken_by_the_mean():
    rng = np.random.default_rng(1)
    y = rng.uniform(25, 70, 80)
    samples = y[:, None] + rng.normal(0, 8, (80, 10))  # K = 10: many tied probabilities
    predictive = Predictive(samples, samples.mean(axis=1))
    tie_break_mattered = []
    for threshold in (50, 40):
        probability = (samples < threshold).mean(axis=1)
        expected = pairwise_auroc(y < threshold, probability, -samples.mean(axis=1))
        assert metric(f"auroc{threshold}")(y, predictive) == pytest.approx(expected)
        tie_break_mattered.append(expected != pytest.approx(pairwise_auroc(y < threshold, probability, 0 * y)))
    assert any(tie_break_mattered)


def test_a_point_heads_auroc_is_that_of_the_negated_prediction(data):
    from scipy.stats import mannwhitneyu

    y, pred = data
    for threshold in (50, 40):
        positive = y < threshold
        # Mann-Whitney U of the positives' scores over the negatives' counts the pairs they win
        u = mannwhitneyu(-pred[positive], -pred[~positive]).statistic
        expected = u / (positive.sum() * (~positive).sum())
        assert metric(f"auroc{threshold}")(y, point_predictive(pred)) == pytest.approx(expected)


def test_auroc_prefers_the_closed_form_cdf():
    from scipy.stats import norm

    rng = np.random.default_rng(2)
    y, mean = rng.uniform(25, 70, 50), rng.uniform(25, 70, 50)
    samples = np.repeat(mean[:, None], 4, axis=1)  # would give only 0/1 scores
    predictive = Predictive(samples, mean, cdf=lambda t: norm.cdf(t, mean, 5.0))
    expected = pairwise_auroc(y < 50, norm.cdf(50, mean, 5.0), -mean)
    assert metric("auroc50")(y, predictive) == pytest.approx(expected)


def test_auroc_is_nan_without_both_classes():
    y = np.array([60.0, 65.0, 70.0])
    assert np.isnan(metric("auroc50")(y, point_predictive(y)))
