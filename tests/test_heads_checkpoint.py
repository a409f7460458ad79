"""Importing MCSDR's best.pth: exact reference key names and shapes, strict loading, and DDIM samples
checked against the sampler equations written out independently here."""
from __future__ import annotations

import math
import re

import pytest
import torch
from faults.faultkit import write_experiment  # the suite's tiny experiment: 20 videos of 32 px
from torch.nn import functional as F

import registry
from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.training.bundle import load_bundle
from benchmark.training.mcsdr_import import import_mcsdr

# The regressor of the published model with tabular data (mcsdr.md): width 256, time 64, tabular 4 -> 64.
SCHEDULE_BUFFERS = ("betas alphas_cumprod alphas_cumprod_prev sqrt_alphas_cumprod sqrt_one_minus_alphas_cumprod "
                    "posterior_variance sqrt_recip_alphas_cumprod sqrt_recipm1_alphas_cumprod").split()
REGRESSOR_SHAPES = {
    "time_mlp.1.weight": (64, 64), "time_mlp.1.bias": (64,),
    "tabular_encoder.0.weight": (64, 4), "tabular_encoder.0.bias": (64,),
    "tabular_encoder.2.weight": (64, 64), "tabular_encoder.2.bias": (64,),
    "noise_predictor.map_y_t.weight": (256, 65), "noise_predictor.map_y_t.bias": (256,),
    "noise_predictor.map_cond.weight": (256, 576), "noise_predictor.map_cond.bias": (256,),
    "noise_predictor.cross_attention.in_proj_weight": (768, 256),
    "noise_predictor.cross_attention.in_proj_bias": (768,),
    "noise_predictor.cross_attention.out_proj.weight": (256, 256),
    "noise_predictor.cross_attention.out_proj.bias": (256,),
    "noise_predictor.norm1.weight": (256,), "noise_predictor.norm1.bias": (256,),
    "noise_predictor.norm2.weight": (256,), "noise_predictor.norm2.bias": (256,),
    "noise_predictor.ffn.0.weight": (1024, 256), "noise_predictor.ffn.0.bias": (1024,),
    "noise_predictor.ffn.2.weight": (256, 1024), "noise_predictor.ffn.2.bias": (256,),
    "noise_predictor.final_layer.weight": (1, 256), "noise_predictor.final_layer.bias": (1,),
}


def reference_schedule() -> dict[str, torch.Tensor]:
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphabar = torch.cumprod(1 - betas, 0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphabar[:-1]])
    values = (betas, alphabar, previous, alphabar.sqrt(), (1 - alphabar).sqrt(),
              betas * (1 - previous) / (1 - alphabar), (1 / alphabar).sqrt(), (1 / alphabar - 1).sqrt())
    return {name: value.float() for name, value in zip(SCHEDULE_BUFFERS, values)}


def encoder_state(shapes, generator) -> dict[str, torch.Tensor]:
    return {key: torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(dims, generator=generator) * 0.02
            for key, dims in shapes.items()}


def regressor_state(generator) -> dict[str, torch.Tensor]:
    state = dict(reference_schedule())
    for key, shape in REGRESSOR_SHAPES.items():
        fan_in = shape[1] if len(shape) == 2 else 1
        scale = 1 / math.sqrt(fan_in) if len(shape) == 2 else 0.1
        state[key] = torch.randn(shape, generator=generator) * scale
        if key.endswith(("norm1.weight", "norm2.weight")):
            state[key] += 1
    return state


@pytest.fixture(scope="module")
def best_pth(tmp_path_factory, uniformer_reference_shapes):
    generator = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("mcsdr") / "best.pth"
    checkpoint = {"epoch": 37, "model_state_dict": encoder_state(uniformer_reference_shapes, generator),
                  "regressor_state_dict": regressor_state(generator), "optimizer_state_dict": {},
                  "current_metric_val": 4.22, "config": {"num_samples": 40}}
    torch.save(checkpoint, path)
    return path, checkpoint


@pytest.fixture(scope="module")
def imported(best_pth):
    return import_mcsdr(best_pth[0])


def independent_ddim(regressor, feature, tabular, noise, steps=10):
    """DDIM (eta 0) of the reference, written from the equations, one condition row per sample."""
    w = {key: value.double() for key, value in regressor.items()}
    linear = lambda x, name: x @ w[name + ".weight"].T + w[name + ".bias"]
    norm = lambda x, name: F.layer_norm(x, (x.shape[-1],), w[name + ".weight"], w[name + ".bias"], 1e-5)
    batch, samples = noise.shape
    tab = linear(torch.relu(linear(tabular.double(), "tabular_encoder.0")), "tabular_encoder.2")
    condition = torch.cat([feature.double(), tab], 1).repeat_interleave(samples, 0)
    x = noise.double().reshape(-1)
    alphabar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    times = [900, 800, 700, 600, 500, 400, 300, 200, 100, 0][: steps]
    w_q, w_k, w_v = w["noise_predictor.cross_attention.in_proj_weight"].chunk(3)
    b_q, b_k, b_v = w["noise_predictor.cross_attention.in_proj_bias"].chunk(3)
    for i, t in enumerate(times):
        frequencies = torch.exp(-math.log(10000) * torch.arange(32, dtype=torch.float64) / 31)
        embedding = torch.cat([torch.sin(t * frequencies), torch.cos(t * frequencies)])
        time = F.gelu(linear(embedding, "time_mlp.1")).expand(x.shape[0], -1)
        q = linear(torch.cat([x[:, None], time], 1), "noise_predictor.map_y_t")
        kv = linear(condition, "noise_predictor.map_cond")
        # Eight heads over one key: each head's softmax weight is exactly 1, whatever q @ k.
        scores = ((q @ w_q.T + b_q).view(-1, 8, 32) * (kv @ w_k.T + b_k).view(-1, 8, 32)).sum(-1, keepdim=True)
        attended = (scores[..., None].softmax(-2)[..., 0] * (kv @ w_v.T + b_v).view(-1, 8, 32)).reshape(-1, 256)
        h = norm(q + linear(attended, "noise_predictor.cross_attention.out_proj"), "noise_predictor.norm1")
        ffn = linear(F.gelu(linear(h, "noise_predictor.ffn.0")), "noise_predictor.ffn.2")
        eps = linear(norm(h + ffn, "noise_predictor.norm2"), "noise_predictor.final_layer")[:, 0]
        a, a_prev = alphabar[t], alphabar[times[i + 1]] if i + 1 < len(times) else torch.tensor(1.0)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x.reshape(batch, samples)


def test_import_loads_strictly_and_samples_like_the_reference_equations(best_pth, imported):
    path, checkpoint = best_pth
    bundle = imported
    assert all(report.ok and not report.dropped for report in bundle.reports), bundle.report()
    assert sum(report.loaded for report in bundle.reports) == 329 + 8 + 24
    assert bundle.fusion.params == {"feature_dim": 512, "tabular_dim": 4, "embed_dim": 64}
    assert bundle.head.module.target_scale == bundle.target_scale == "raw"
    assert bundle.source == {"path": str(path), "epoch": 37, "metric": 4.22}
    encoder_weight = checkpoint["model_state_dict"]["blocks3.2.attn.qkv.weight"]
    assert torch.equal(bundle.encoder.module.state_dict()["blocks3.2.attn.qkv.weight"], encoder_weight)

    generator = torch.Generator().manual_seed(1)
    feature, tabular = torch.randn(3, 512, generator=generator), torch.rand(3, 4, generator=generator)
    noise = torch.randn(3, 40, generator=generator)
    with torch.no_grad():
        samples = bundle.head.module.sample(bundle.fusion.module(feature, tabular), 40, noise=noise)
    expected = independent_ddim(checkpoint["regressor_state_dict"], feature, tabular, noise)
    assert samples.shape == (3, 40)
    assert samples.std() > 0.1, "random weights should still spread the samples"
    torch.testing.assert_close(samples.double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("key", ["noise_predictor.ffn.0.weight", "tabular_encoder.2.weight"])
def test_a_wrong_shape_is_an_error_naming_the_key(best_pth, tmp_path, key):
    _, checkpoint = best_pth
    broken = {**checkpoint, "regressor_state_dict": {**checkpoint["regressor_state_dict"]}}
    broken["regressor_state_dict"][key] = torch.zeros(3, 3)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(BenchmarkError, match=re.escape(f"{key}: checkpoint (3, 3) vs model")):
        import_mcsdr(tmp_path / "broken.pth")


def test_missing_and_unexpected_keys_are_all_reported(best_pth, tmp_path):
    _, checkpoint = best_pth
    regressor = {**checkpoint["regressor_state_dict"], "noise_predictor.extra.weight": torch.zeros(2)}
    del regressor["noise_predictor.norm2.bias"]
    encoder = {**checkpoint["model_state_dict"]}
    del encoder["norm.running_var"]
    torch.save({**checkpoint, "model_state_dict": encoder, "regressor_state_dict": regressor}, tmp_path / "b.pth")
    with pytest.raises(BenchmarkError) as error:
        import_mcsdr(tmp_path / "b.pth")
    message = str(error.value)
    for expected in ("missing (1): norm.running_var", "missing (1): noise_predictor.norm2.bias",
                     "unexpected (1): noise_predictor.extra.weight"):
        assert expected in message


def test_command_writes_a_bundle_that_rebuilds_the_same_model(best_pth, imported, tmp_path, capsys):
    path, checkpoint = best_pth
    assert main(["import-mcsdr", str(path), "--out", str(tmp_path / "out")]) == 0
    assert "regressor_state_dict -> head mcsdr: loaded 28 tensors" in capsys.readouterr().out
    assert (tmp_path / "out" / "import_report.txt").read_text().count("loaded") == 3
    bundle = load_bundle(tmp_path / "out" / "model.pt")
    assert bundle.target_scale == "raw" and bundle.encoder.module.input_spec.std == (255.0, 255.0, 255.0)
    condition = torch.randn(2, 576)
    noise = torch.randn(2, 5)
    original = imported.head.module
    with torch.no_grad():
        torch.testing.assert_close(bundle.head.module.sample(condition, 5, noise=noise),
                                   original.sample(condition, 5, noise=noise))
    assert registry.describe("head", bundle.head.name).metadata["probabilistic"]


def test_a_checkpoint_model_is_evaluated_inside_a_run(best_pth, tmp_path):
    """`checkpoint = "best.pth"` in [[models]]: the imported encoder, fusion and head are evaluated on the
    run's TEST items like any other model (here a vision-only checkpoint on a tiny synthetic stand-in)."""
    _, checkpoint = best_pth
    regressor = {key: value for key, value in checkpoint["regressor_state_dict"].items()
                 if not key.startswith("tabular_encoder.")}
    regressor["noise_predictor.map_cond.weight"] = regressor["noise_predictor.map_cond.weight"][:, :512].clone()
    vision_only = tmp_path / "vision_best.pth"
    encoder = {key: value.abs() + 0.5 if key.endswith("running_var") else value  # random variances must be > 0
               for key, value in checkpoint["model_state_dict"].items()}
    torch.save({**checkpoint, "model_state_dict": encoder, "regressor_state_dict": regressor}, vision_only)
    experiment = write_experiment(tmp_path / "imported.toml", synthetic_root=tmp_path / "data",
                                  dataset_extra="tabular = []", models=f'''
[[models]]
head = "mcsdr"
fusion = "none"
label = "mcsdr (imported)"
checkpoint = "{vision_only}"
''')
    assert main(["run", str(experiment), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    import json
    results = [json.loads(path.read_text()) for path in (tmp_path / "run" / "jobs").glob("*/result.json")]
    (result,) = [result for result in results if result["model"] == "mcsdr (imported)"]  # beside the prior row
    assert result["status"] == "ok", result.get("error")
    assert result["checkpoint"]["epoch"] == 37
    leaderboard = (tmp_path / "run" / "leaderboard.csv").read_text()
    assert "mcsdr (imported)" in leaderboard
