"""`mcsdr` with `faithful = true` against the reference written from its equations (tests/mcsdr_reference.py):
each test here covers one "matches" row of README's table "faithful: what matches the reference".

The reference's head is the published one (LegacyAttention, width 256, 8 heads, time embedding 64,
tabular 4 -> 64) with random weights, loaded strictly into the project's `concat` fusion and `mcsdr` head.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mcsdr_reference import reference_ddim, reference_ddpm, reference_eps, reference_grid, reference_tabular

import registry
from benchmark.components import search_space
from benchmark.config import TrainConfig, load_experiment
from benchmark.contracts import Item
from benchmark.data.tabular import fit_tabular
from benchmark.encoding.feature_set import FeatureSet
from benchmark.training.loop import train_model

# The published head and sampler (mcsdr.md "Pipeline" 3-5; the reference's configs/dynamic/*.yaml): what a row
# labelled faithful must run whatever tuning does.
PUBLISHED_HEAD = {"predictor": "legacy_attention", "width": 256, "heads": 8, "time_dim": 64, "timesteps": 1000,
                  "sampler": "ddim", "steps": 10, "eta": 0.0}
EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
# The clips of the reference's configs/<dataset>/train_uniformer_diffusion.yaml: frames, frequency, p_interval_train
# ([1.0]: the whole video), p_interval_test and aug (translation), which the paper experiments state they reproduce.
REFERENCE_CLIPS = {
    "dynamic.toml": {"mode": "mcsdr", "frames": 32, "frequency": 4, "train_window": [0.9, 1.0], "test_window": 0.95,
                     "augment": True},
    "camus.toml": {"mode": "mcsdr", "frames": 16, "frequency": 1, "train_window": [1.0, 1.0], "test_window": 1.0,
                   "augment": False},
}

SHAPES = {  # the reference regressor's parameters (mcsdr.md), schedule buffers apart
    "time_mlp.1.weight": (64, 64), "time_mlp.1.bias": (64,),
    "tabular_encoder.0.weight": (64, 4), "tabular_encoder.0.bias": (64,),
    "tabular_encoder.2.weight": (64, 64), "tabular_encoder.2.bias": (64,),
    "noise_predictor.map_y_t.weight": (256, 65), "noise_predictor.map_y_t.bias": (256,),
    "noise_predictor.map_cond.weight": (256, 576), "noise_predictor.map_cond.bias": (256,),
    "noise_predictor.cross_attention.in_proj_weight": (768, 256), "noise_predictor.cross_attention.in_proj_bias": (768,),
    "noise_predictor.cross_attention.out_proj.weight": (256, 256), "noise_predictor.cross_attention.out_proj.bias": (256,),
    "noise_predictor.norm1.weight": (256,), "noise_predictor.norm1.bias": (256,),
    "noise_predictor.norm2.weight": (256,), "noise_predictor.norm2.bias": (256,),
    "noise_predictor.ffn.0.weight": (1024, 256), "noise_predictor.ffn.0.bias": (1024,),
    "noise_predictor.ffn.2.weight": (256, 1024), "noise_predictor.ffn.2.bias": (256,),
    "noise_predictor.final_layer.weight": (1, 256), "noise_predictor.final_layer.bias": (1,),
}


@pytest.fixture(scope="module")
def regressor() -> dict[str, torch.Tensor]:
    """A reference ``regressor_state_dict`` with random weights and the reference's float32 schedule."""
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) / math.sqrt(shape[-1] if len(shape) == 2 else 10)
             for key, shape in SHAPES.items()}
    betas = torch.linspace(1e-4, 0.02, 1000)
    alphabar = torch.cumprod(1 - betas, 0)
    previous = torch.cat([torch.ones(1), alphabar[:-1]])
    state.update(betas=betas, alphas_cumprod=alphabar, alphas_cumprod_prev=previous,
                 sqrt_alphas_cumprod=alphabar.sqrt(), sqrt_one_minus_alphas_cumprod=(1 - alphabar).sqrt(),
                 posterior_variance=betas * (1 - previous) / (1 - alphabar),
                 sqrt_recip_alphas_cumprod=(1 / alphabar).sqrt(), sqrt_recipm1_alphas_cumprod=(1 / alphabar - 1).sqrt())
    return state


def faithful_model(regressor, **head_params):
    """concat fusion + faithful mcsdr head holding the reference weights, loaded strictly."""
    fusion = registry.build("fusion", "concat", feature_dim=512, tabular_dim=4, embed_dim=64)
    head = registry.build("head", "mcsdr", condition_dim=576, faithful=True, **head_params)
    fusion.load_state_dict({k: v for k, v in regressor.items() if k.startswith("tabular_encoder.")}, strict=True)
    head.load_state_dict({k: v for k, v in regressor.items() if not k.startswith("tabular_encoder.")}, strict=True)
    return fusion.eval(), head.eval()


def inputs(seed: int, batch: int = 3, samples: int = 40):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 512, generator=generator), torch.rand(batch, 4, generator=generator),
            torch.randn(batch, samples, generator=generator))


def relative_error(samples: torch.Tensor, expected: torch.Tensor) -> float:
    return ((samples.double() - expected).abs().max() / expected.abs().max()).item()


def test_faithful_grid_is_the_references():
    head = registry.build("head", "mcsdr", condition_dim=4, faithful=True)
    for steps in (1, 3, 7, 10, 50, 1000):
        assert head.ddim_timesteps(steps, reference=True) == reference_grid(steps)[:-1]
    assert head.ddim_timesteps(10, reference=True) == list(range(999, 0, -100))
    assert head.ddim_timesteps(10) == list(range(900, -1, -100))  # the project's own, without faithful


def test_reference_weights_give_the_references_ddim_samples(regressor):
    """Done-when of issue 18: same weights and starting noise, the reference's 10-step DDIM samples."""
    fusion, head = faithful_model(regressor)
    feature, tabular, noise = inputs(1)
    with torch.no_grad():
        samples = head.sample(fusion(feature, tabular), 40, noise=noise)
    expected = reference_ddim(regressor, feature, tabular, noise, steps=10)
    assert expected.std() > 1.0, "random weights should spread the samples"
    assert relative_error(samples, expected) < 1e-3
    # The grid matters: the project's own grid is far from the reference's with the same weights and noise.
    head.faithful = False
    with torch.no_grad():
        own_grid = head.sample(fusion(feature, tabular), 40, noise=noise)
    assert relative_error(own_grid, expected) > 0.05


@pytest.mark.parametrize("steps", [3, 20])
def test_reference_sigma_with_eta_gives_the_references_samples(regressor, steps):
    """eta > 0: the reference's sigma (beta_t, not 1 - alphabar_t / alphabar_prev) and its fresh noise per step."""
    fusion, head = faithful_model(regressor, steps=steps, eta=0.7)
    feature, tabular, noise = inputs(2, samples=16)
    with torch.no_grad():
        samples = head.sample(fusion(feature, tabular), 16, noise=noise, generator=torch.Generator().manual_seed(5))
    expected = reference_ddim(regressor, feature, tabular, noise, steps=steps, eta=0.7,
                              generator=torch.Generator().manual_seed(5))
    assert relative_error(samples, expected) < 1e-3


def test_reference_ddpm_sampler_gives_the_references_samples(regressor):
    """sampler = "ddpm": all 1000 steps of the reference's p_sample with its network, here a small LegacyAttention
    so that the float64 reference runs quickly, on the reference's schedule."""
    torch.manual_seed(0)
    head = registry.build("head", "mcsdr", condition_dim=12, faithful=True, sampler="ddpm", width=32, heads=4,
                          time_dim=16).eval()
    with torch.no_grad():
        for name, buffer in head.named_buffers():
            buffer.copy_(regressor[name])  # the float32 schedule of the reference's state dict
    generator = torch.Generator().manual_seed(3)
    condition, noise = torch.randn(2, 12, generator=generator) * 3, torch.randn(2, 6, generator=generator)
    with torch.no_grad():
        samples = head.sample(condition, 6, noise=noise, generator=torch.Generator().manual_seed(4))
    w = {key: value.double() for key, value in head.state_dict().items()}
    rows = condition.double().repeat_interleave(6, 0)
    expected = reference_ddpm(lambda x, t: reference_eps(w, x, t, rows, heads=4), noise,
                              torch.Generator().manual_seed(4))
    assert expected.std() > 1.0, "random weights should spread the samples"
    assert relative_error(samples, expected) < 1e-3


def test_ddpm_steps_are_the_references_with_an_exact_noise_predictor():
    """The DDPM update alone, where a network's rounding at EF scale does not hide it: with the exact eps of a
    N(0.7, 0.25^2) target (a closed form), on float32 samples as the reference's, the samples are its p_sample loop to
    1e-4, its posterior variance included (beta_t instead, the other usual choice, moves them by about 1e-3)."""
    mu, spread = 0.7, 0.25
    head = registry.build("head", "mcsdr", condition_dim=1, faithful=True, sampler="ddpm")
    alphabar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)

    def exact_eps(x, t):  # in the samples' precision, as a network's output
        eps = (1 - alphabar[t]).sqrt() * (x - alphabar[t].sqrt() * mu) / (alphabar[t] * spread**2 + 1 - alphabar[t])
        return eps.to(x.dtype)

    noise = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    samples = head.reverse(exact_eps, noise, sampler="ddpm", faithful=True, generator=torch.Generator().manual_seed(1))
    expected = reference_ddpm(exact_eps, noise, torch.Generator().manual_seed(1))
    assert samples.dtype == torch.float32 and abs(expected.std().item() - spread) < 0.05
    torch.testing.assert_close(samples.double(), expected, rtol=0, atol=1e-4)


def test_training_feeds_raw_targets_and_raw_features_and_the_point_is_the_sample_mean(regressor):
    """The reference trains on EF in percent and the encoder's features as they are; its point estimate
    is the mean of the K samples."""
    fusion, head = faithful_model(regressor)
    seen = []
    original = head.loss

    def spy(condition, target):
        seen.append((condition.detach().clone(), target.detach().clone()))
        return original(condition, target)

    head.loss = spy
    rng = np.random.default_rng(0)
    features = lambda n: rng.normal(50.0, 20.0, size=(n, 512)).astype(np.float32)  # far from standardised
    train = FeatureSet([f"t{i}" for i in range(6)], features(6), rng.uniform(20, 80, 6), rng.random((6, 4)))
    val = FeatureSet(["v0", "v1"], features(2), np.array([40.0, 60.0]), rng.random((2, 4)))
    trained = train_model(fusion, head, train, val, TrainConfig(epochs=1, batch_size=6, lr=1e-12), seed=0,
                          quiet=True)
    condition, target = seen[0]
    order = [int(i) for i in np.argsort(target.numpy())]
    torch.testing.assert_close(target.sort().values.double(), torch.as_tensor(np.sort(train.ef)))
    rows = torch.from_numpy(train.features), torch.from_numpy(train.tabular)
    with torch.no_grad():
        expected = fusion(*rows)[np.argsort(train.ef)]
    torch.testing.assert_close(condition[order], expected)
    head.loss = original
    predictive = trained.predict(val, samples=12)
    np.testing.assert_allclose(predictive.point, predictive.samples.mean(axis=1), rtol=1e-6)


def items(rows: list[dict]) -> list[Item]:
    return [Item(id=f"i{n}", patient=f"p{n}", ef=50.0, video=None, fold="0", tabular=row) for n, row in enumerate(rows)]


def test_reference_tabular_transform_is_the_references_fitted_on_train():
    """Sex factorised (codes by first appearance, missing -1), numeric means imputed, every column
    min-max scaled; all statistics from TRAIN, so TEST values may leave [0, 1]."""
    columns = ["Age", "Sex", "Weight", "Height"]
    train = [{"Age": 4.0, "Sex": "M", "Weight": 18.0, "Height": 105.0},
             {"Age": 12.0, "Sex": "F", "Weight": None, "Height": 150.0},
             {"Age": None, "Sex": "unknown", "Weight": 40.0, "Height": float("nan")},
             {"Age": 8.0, "Sex": "F", "Weight": 25.0, "Height": 128.0}]
    test = [{"Age": 16.0, "Sex": "M", "Weight": None, "Height": 170.0},
            {"Age": 1.0, "Sex": "unknown", "Weight": 10.0, "Height": None}]
    kinds = {"Sex": "categorical", "Age": "numeric", "Weight": "numeric", "Height": "numeric"}
    transform = fit_tabular(columns, kinds, items(train), transform="reference")
    frame = lambda rows: pd.DataFrame([{k: (np.nan if v in (None, "unknown") else v) for k, v in row.items()}
                                       for row in rows])[columns]
    assert transform.feature_names == columns and transform.width == 4
    for rows in (train, test):
        np.testing.assert_allclose(transform.transform(items(rows)), reference_tabular(frame(train), frame(rows)),
                                   rtol=1e-6, atol=1e-6)
    assert transform.transform(items(test))[0, 0] > 1  # scaled with TRAIN's range, not TEST's own


def test_reference_tabular_transform_refuses_a_column_without_training_values():
    rows = items([{"Age": None}, {"Age": None}])
    with pytest.raises(Exception, match="'Age' has no value in the training split"):
        fit_tabular(["Age"], {"Age": "numeric"}, rows, transform="reference")


def test_training_loss_is_the_references_epsilon_mse(regressor):
    """p_losses: t ~ U{0..999} and eps ~ N(0, 1) drawn in that order, y_t = sqrt(abar_t) y0 + sqrt(1 - abar_t)
    eps, loss = mean (eps_theta(y_t, t, condition) - eps)^2, on the raw EF."""
    fusion, head = faithful_model(regressor)
    feature, tabular, _ = inputs(3, batch=8)
    target = torch.rand(8, generator=torch.Generator().manual_seed(4)) * 60 + 20
    with torch.no_grad():
        condition = fusion(feature, tabular)
        torch.manual_seed(7)
        loss = head.loss(condition, target)
        torch.manual_seed(7)
        t, noise = torch.randint(0, 1000, (8,)), torch.randn(8, 1)[:, 0].double()
    alphabar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    y_t = alphabar[t].sqrt() * target.double() + (1 - alphabar[t]).sqrt() * noise
    w = {key: value.double() for key, value in regressor.items()}
    eps = torch.cat([reference_eps(w, y_t[i:i + 1], int(t[i]), condition[i:i + 1].double()) for i in range(8)])
    assert loss.item() == pytest.approx(((eps - noise) ** 2).mean().item(), rel=1e-4)


def test_the_paper_experiments_faithful_row_runs_the_published_head_whatever_tuning_does():
    """dynamic.toml's "mcsdr (faithful)" is tuned like every row: tuning may change its learning rate, never the
    published predictor, its sizes or the sampler (a tuned predictor = "mlp" or steps = 37 is not MCSDR)."""
    experiment = load_experiment(EXPERIMENTS / "dynamic.toml")
    model = next(model for model in experiment.models if model.params.get("faithful"))
    assert experiment.tune.trials > 0
    assert not set(search_space(registry.default(), model)) & set(PUBLISHED_HEAD)
    head = registry.build("head", "mcsdr", condition_dim=512, **model.params)
    built = {"predictor": type(head.noise_predictor).__name__, "width": head.noise_predictor.map_y_t.out_features,
             "heads": head.noise_predictor.heads, "time_dim": head.time_mlp[1].in_features,
             "timesteps": head.timesteps, "sampler": head.sampler, "steps": head.steps, "eta": head.eta}
    assert built == {**PUBLISHED_HEAD, "predictor": "LegacyAttention"}


@pytest.mark.parametrize("name", list(REFERENCE_CLIPS))
def test_the_paper_experiments_clips_are_the_references(name):
    clips = load_experiment(EXPERIMENTS / name).clips
    assert {key: getattr(clips, key) for key in REFERENCE_CLIPS[name]} == REFERENCE_CLIPS[name]
