"""Figures of a run: every one is written as a PNG, items are chosen by the oracle's spread, each model keeps
its colour, closed-form densities are drawn as stored, and trajectories are labelled by the oracle."""
import numpy as np
import pandas as pd
import pytest

from benchmark.contracts import Predictive
from benchmark.evaluation.figures import FigureInputs, write_all
from benchmark.evaluation.figures.posterior import ModelSamples, choose_items, mixture_density, mixture_sd
from benchmark.evaluation.figures.posterior import predictive_density as posterior_density
from benchmark.evaluation.figures.style import model_colours, outside_range, short_label
from benchmark.evaluation.figures.trajectories import Trajectories, oracle_labels
from benchmark.evaluation.leaderboard import JobResult, build_leaderboard, metric_specs
from benchmark.evaluation.predictions_file import item_frame
from benchmark.evaluation.scoring import DENSITY_GRID, item_scores

PNG = b"\x89PNG\r\n\x1a\n"
N, K = 40, 16
IDS = [f"video{i:02d}" for i in range(N)]
# items 0-3 are ambiguous by the oracle (two modes), the rest confident (one narrow component)
ORACLE = {item: ([(0.5, 35.0, 3.0), (0.5, 60.0, 3.0)] if index < 4 else [(1.0, 50.0, 2.0 + index / 100)])
          for index, item in enumerate(IDS)}


def job(model, seed, spread):
    rng = np.random.default_rng(seed)
    y = np.random.default_rng(1).uniform(25, 75, N)
    samples = y[:, None] + rng.normal(0, 4, N)[:, None] + spread * rng.standard_normal((N, K))
    scores = item_scores(y, Predictive(samples, samples.mean(axis=1)))
    return JobResult("synthetic", "tiny3d", "concat", model, model, seed,
                     items=item_frame(IDS, [f"p{i}" for i in range(N)], scores)), samples


def test_write_all_draws_every_figure(tmp_path):
    specs = metric_specs()
    (mcsdr0, samples), (mcsdr1, _), (mse, point) = job("mcsdr", 0, 4), job("mcsdr", 1, 4), job("mse", 0, 0)
    samples[0, :3] = [-800.0, 1000.0, 150.0]  # stray samples: counted, not drawn
    failed = JobResult("synthetic", "tiny3d", "concat", "mdn", "mdn", 0, status="failed", error="boom")
    results = [mcsdr0, mcsdr1, mse, failed]
    board = build_leaderboard(results, specs, n_boot=20)
    y = mcsdr0.items["EF"].to_numpy()
    stored = {"mcsdr": ModelSamples(IDS, y, samples), "mse": ModelSamples(IDS, y, point)}
    paths = [np.linspace(np.random.default_rng(i).normal(0, 20, K), samples[i], 11) for i in (0, 9)]
    trajectories = {"mcsdr": Trajectories(["confident", "ambiguous"], [IDS[0], IDS[9]], y[[0, 9]], paths)}
    written = write_all(tmp_path, FigureInputs(results, board, specs, stored, ORACLE, trajectories, {"mse"}))
    assert [path.name for path in written] == ["posterior.png", "pred_vs_true.png", "bland_altman.png", "pit.png",
                                               "reliability.png", "forest.png", "trajectories_mcsdr.png"]
    for path in written:
        assert path.read_bytes().startswith(PNG)


def test_items_are_the_oracles_widest_and_narrowest():
    rng = np.random.default_rng(0)
    # the model is most uncertain about items the oracle is sure of: the choice must follow the oracle
    spread = np.where(np.arange(N) < 4, 1.0, 10.0)
    stored = {"m": ModelSamples(IDS, np.full(N, 50.0), 50 + spread[:, None] * rng.standard_normal((N, K)))}
    items, rule = choose_items(stored, ORACLE)
    assert [item.tag for item in items] == ["ambiguous", "ambiguous", "confident", "confident"]
    assert {item.id for item in items[:2]} <= set(IDS[:4])
    assert [item.id for item in items[2:]] == [IDS[4], IDS[5]]  # the two narrowest oracle posteriors
    assert "oracle posterior sd" in rule
    without, rule = choose_items(stored, {})
    assert [item.tag for item in without] == ["wide", "wide", "narrow", "narrow"] and "no oracle" in rule
    assert {item.id for item in without[2:]} <= set(IDS[:4])


def test_a_stored_closed_form_density_is_drawn_as_is_and_a_kde_keeps_outliers_mass_out():
    density = np.tile(np.exp(-0.5 * ((DENSITY_GRID - 40) / 5) ** 2) / (5 * np.sqrt(2 * np.pi)), (2, 1))
    exact = ModelSamples(["a", "b"], np.array([40.0, 41.0]), np.zeros((2, 4)), density, DENSITY_GRID)
    drawn = posterior_density(exact, 0)
    assert drawn[np.argmin(np.abs(np.linspace(0, 100, 401) - 40))] == pytest.approx(density[0, 80], rel=1e-6)
    samples = np.concatenate([np.random.default_rng(0).normal(50, 4, 15), [-800, 900, 1000, -500, 2000]])
    kde = posterior_density(ModelSamples(["a"], np.array([50.0]), samples[None, :]), 0)
    grid = np.linspace(0, 100, 401)
    assert np.trapezoid(kde, grid) == pytest.approx(0.75, abs=0.03)  # 15 of 20 samples lie in 0-100
    assert posterior_density(ModelSamples(["a"], np.array([50.0]), np.full((1, 8), 47.0)), 0) is None


def test_trajectories_are_labelled_by_the_oracle_not_the_model():
    labels = oracle_labels([IDS[9], IDS[0]], ORACLE, IDS)  # the job called IDS[9] ambiguous by its own spread
    assert labels[0].startswith("confident by the oracle") and labels[1].startswith("ambiguous by the oracle")
    assert oracle_labels([IDS[0]], {}, IDS) is None


def test_each_model_keeps_its_colour_and_labels_stay_short():
    colours = model_colours(["a", "b", "c"])
    assert len(set(colours.values())) == 3 and model_colours(["a", "b", "c", "d"])["b"] == colours["b"]
    assert len(model_colours([str(i) for i in range(12)]).values()) == 12
    long = "CR86a00000-CR18a863178-000144.avi"
    label = short_label(long)
    assert len(label) == 16 and label.startswith("…") and long.endswith(label[1:]) and short_label("v1") == "v1"
    assert outside_range([-1, 0, 50, 100, 100.5]) == 2


def test_mixture_density_integrates_to_one_and_its_sd_is_exact():
    grid = np.linspace(0, 100, 20001)
    density = mixture_density(grid, np.array([0.2, 0.8]), np.array([40.0, 60.0]), np.array([3.0, 5.0]))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-6)
    mean = np.trapezoid(grid * density, grid)
    assert mixture_sd([(0.2, 40.0, 3.0), (0.8, 60.0, 5.0)]) == pytest.approx(
        np.sqrt(np.trapezoid((grid - mean) ** 2 * density, grid)), rel=1e-5)


def test_pooled_agreement_figures_use_every_seed(tmp_path):
    from benchmark.evaluation.figures import _pooled_items

    (first, _), (second, _) = job("m", 0, 3), job("m", 1, 3)
    pooled = _pooled_items([second, first])
    assert len(pooled["m"]) == 2 * N and sorted(pooled["m"]["seed"].unique()) == [0, 1]
    assert isinstance(pooled["m"], pd.DataFrame)
