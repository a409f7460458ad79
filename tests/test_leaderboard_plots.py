"""Every figure of a run is written as a PNG."""
import numpy as np
import pytest

from benchmark.contracts import Predictive
from benchmark.evaluation.leaderboard import JobResult, item_frame
from benchmark.evaluation.plots import (
    PosteriorExamples,
    Trajectories,
    confident_and_ambiguous,
    mixture_density,
    write_all,
)
from benchmark.evaluation.scoring import item_scores

PNG = b"\x89PNG\r\n\x1a\n"


def test_write_all_draws_agreement_calibration_posteriors_and_trajectories(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.uniform(25, 75, 40)
    samples = y[:, None] + rng.normal(0, 4, (40, 16))
    scores = item_scores(y, Predictive(samples, samples.mean(axis=1)))
    items = item_frame([f"v{i}" for i in range(40)], [f"p{i}" for i in range(40)], scores)
    results = [JobResult("synthetic", "tiny3d", "concat", "mcsdr", "mcsdr+concat", 0, items=items),
               JobResult("synthetic", "tiny3d", "concat", "mse", "mse", 0, status="failed", error="boom")]
    examples = PosteriorExamples(["v0", "v1"], y[:2], samples[:2], np.array([[0.3, 0.7]] * 2),
                                 np.stack([y[:2] - 6, y[:2] + 3], axis=1), np.full((2, 2), 2.5))
    confident, ambiguous = confident_and_ambiguous(scores.columns["sd"])
    paths = [np.linspace(rng.normal(0, 20, 16), samples[i], 11) for i in (confident, ambiguous)]
    trajectories = Trajectories(["confident", "ambiguous"], ["v%d" % confident, "v%d" % ambiguous],
                                y[[confident, ambiguous]], paths)
    written = write_all(tmp_path, results, {"mcsdr+concat": examples}, {"mcsdr+concat": trajectories})
    names = sorted(path.name for path in written)
    assert names == ["bland_altman_mcsdr_concat.png", "posterior_mcsdr_concat.png", "pred_vs_true_mcsdr_concat.png",
                     "reliability.png", "trajectories_mcsdr_concat.png"]
    for path in written:
        assert path.read_bytes().startswith(PNG)


def test_confident_and_ambiguous_pick_extremes_of_spread():
    assert confident_and_ambiguous(np.array([3.0, 0.5, np.nan, 9.0])) == (1, 3)


def test_mixture_density_integrates_to_one():
    grid = np.linspace(0, 100, 20001)
    density = mixture_density(grid, np.array([0.2, 0.8]), np.array([40.0, 60.0]), np.array([3.0, 5.0]))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-6)
