"""Importing MCSDR's best.pth: exact reference key names and shapes, strict loading, DDIM samples checked
against the reference's sampler written out independently (tests/mcsdr_reference.py), how the reference
evaluated it (K, sampler, tabular columns) and the refusal of tabular inputs it was not trained with."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from faults.faultkit import cli, write_experiment  # the suite's tiny experiment: 20 videos of 32 px
from mcsdr_reference import reference_ddim

import registry
from benchmark.cli import main
from benchmark.errors import BenchmarkError, ConfigError
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


# The parts of the reference's configs/pediatric/train_uniformer_diffusion.yaml that evaluation reads.
REFERENCE_CONFIG = {
    "data": {"use_tabular_data": True, "tabular_cols": ["Age", "Sex", "Weight", "Height"],
             "tabular_config": {"dim": 4, "hidden_dim": 64}, "frames": 16, "frequency": 1,
             "p_interval_test": [0.95]},
    "model": {"regressor_head": {"name": "diffusion", "diffusion": {
        "n_diffusion_steps": 1000, "time_emb_dim": 64,
        "predictor_config": {"name": "LegacyAttention", "params": {"hidden_dim": 256, "n_head": 8}}}}},
    "evaluation": {"inference_samples": 40, "sampler": "ddim", "ddim_steps": 10, "ddim_eta": 0.0},
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
                  "current_metric_val": 4.22, "config": REFERENCE_CONFIG}
    torch.save(checkpoint, path)
    return path, checkpoint


@pytest.fixture(scope="module")
def imported(best_pth):
    return import_mcsdr(best_pth[0])


def test_import_loads_strictly_and_samples_like_the_reference_equations(best_pth, imported):
    path, checkpoint = best_pth
    bundle = imported
    assert all(report.ok and not report.dropped for report in bundle.reports), bundle.report()
    assert sum(report.loaded for report in bundle.reports) == 329 + 8 + 24
    assert bundle.fusion.params == {"feature_dim": 512, "tabular_dim": 4, "embed_dim": 64}
    assert bundle.head.module.target_scale == bundle.target_scale == "raw"
    assert bundle.source == {"path": str(path), "epoch": 37, "metric": 4.22, "samples": 40,
                             "tabular_columns": ["Age", "Sex", "Weight", "Height"],
                             "clips": {"frames": 16, "frequency": 1, "test_window": 0.95}}
    assert {key: bundle.head.params[key] for key in ("sampler", "steps", "eta", "heads")} == \
        {"sampler": "ddim", "steps": 10, "eta": 0.0, "heads": 8}
    encoder_weight = checkpoint["model_state_dict"]["blocks3.2.attn.qkv.weight"]
    assert torch.equal(bundle.encoder.module.state_dict()["blocks3.2.attn.qkv.weight"], encoder_weight)

    generator = torch.Generator().manual_seed(1)
    feature, tabular = torch.randn(3, 512, generator=generator), torch.rand(3, 4, generator=generator)
    noise = torch.randn(3, 40, generator=generator)
    with torch.no_grad():
        samples = bundle.head.module.sample(bundle.fusion.module(feature, tabular), 40, noise=noise)
    expected = reference_ddim(checkpoint["regressor_state_dict"], feature, tabular, noise)
    assert samples.shape == (3, 40)
    assert samples.std() > 0.1, "random weights should still spread the samples"
    torch.testing.assert_close(samples.double(), expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())


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


def test_command_never_overwrites_an_earlier_import(best_pth, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["import-mcsdr", str(best_pth[0]), "--out", str(out)]) == 0
    stored = (out / "model.pt").read_bytes()
    assert main(["import-mcsdr", str(best_pth[0]), "--out", str(out), "--steps", "50"]) == 2
    assert "model.pt already exists" in " ".join(capsys.readouterr().err.split())  # wrapped at the path's length
    assert (out / "model.pt").read_bytes() == stored
    assert not [path.name for path in out.iterdir() if path.name not in ("model.pt", "import_report.txt")]


def test_the_reference_config_decides_how_the_import_samples(best_pth, tmp_path):
    """K, sampler, steps, eta, heads and columns come from the checkpoint's config: a key its `evaluation`
    table lacks takes the reference code's default, no table the published setting; arguments win."""
    from benchmark.training.mcsdr_import import recorded_settings

    assert recorded_settings(None) == {"heads": 8, "sampler": "ddim", "steps": 10, "eta": 0.0, "samples": None,
                                       "tabular_columns": None, "clips": None}
    partial = recorded_settings({"evaluation": {"inference_samples": 10}, "data": {"use_tabular_data": False,
                                                                                 "tabular_cols": ["Age"]}})
    # The reference's dataset reads data.frames, data.frequency and data.p_interval_test with the defaults 32, 1
    # and [0.95] (src/data/dataset.py).
    assert partial == {"heads": 8, "sampler": "ddpm", "steps": 1000, "eta": 0.0, "samples": 10,
                       "tabular_columns": None, "clips": {"frames": 32, "frequency": 1, "test_window": 0.95}}
    assert recorded_settings({"data": {"frames": 32, "frequency": 4}})["clips"] == \
        {"frames": 32, "frequency": 4, "test_window": 0.95}
    camus = {"frames": 16, "frequency": 1, "p_interval_train": [1.0], "p_interval_test": [1.0]}
    assert recorded_settings({"data": camus})["clips"] == {"frames": 16, "frequency": 1, "test_window": 1.0}
    _, checkpoint = best_pth
    config = {**REFERENCE_CONFIG, "evaluation": {"inference_samples": 10, "sampler": "ddim", "ddim_steps": 20,
                                                 "ddim_eta": 0.5}}
    torch.save({**checkpoint, "config": config}, tmp_path / "camus_like.pth")
    head = import_mcsdr(tmp_path / "camus_like.pth", steps=5).head
    assert (head.module.steps, head.module.eta, head.module.sampler) == (5, 0.5, "ddim")


def test_tabular_inputs_the_checkpoint_was_not_trained_with_are_refused_before_the_run(best_pth, tmp_path):
    path, _ = best_pth
    models = f'[[models]]\nhead = "mcsdr"\nfusion = "concat"\nlabel = "published"\ncheckpoint = "{path}"\n'
    for tabular, given in (('["Age", "Sex"]', "gives 2 (Age, Sex)"),
                           ('["Sex", "Age", "Weight", "Height"]', "gives 4 (Sex, Age, Weight, Height)")):
        experiment = write_experiment(tmp_path / "e.toml", synthetic_root=tmp_path / "data",
                                      dataset_extra=f"tabular = {tabular}", models=models)
        for command in (["validate", experiment], ["run", experiment, "--out", tmp_path / "run", "--quiet"]):
            outcome = cli(*command)
            text = " ".join(outcome.text.split())  # the CLI wraps its paragraph
            assert outcome.code == 2, text
            assert "tabular encoder of width 4" in text and given in text
            assert "Age, Sex, Weight, Height, in this order" in text
            assert 'dataset.tabular = ["Age", "Sex", "Weight", "Height"]' in text
            if not (tmp_path / "run").exists():
                break  # `run` is checked once: loading the checkpoint is what takes the time
        assert not (tmp_path / "run").exists(), "nothing may start before the inputs are checked"


def test_clips_unlike_those_the_checkpoint_was_trained_on_are_refused_before_the_run(best_pth, tmp_path):
    """The checkpoint's config records its clips (16 frames, every frame, the central 95% at test); the suite's
    experiment makes 4-frame clips. Its encoder would take them without a sound and give other features: refused
    (exit 2), with the fix; so is a test window other than the recorded one (CAMUS's whole video)."""
    path, checkpoint = best_pth
    camus_like = {**REFERENCE_CONFIG, "data": {**REFERENCE_CONFIG["data"], "frames": 4, "p_interval_test": [1.0]}}
    torch.save({**checkpoint, "config": camus_like}, tmp_path / "camus_like.pth")
    cases = ((path, "16 frames at frequency 1, tested on the central 0.95 of the kept frames",
              'clips.mode = "mcsdr", clips.frames = 16, clips.frequency = 1, clips.test_window = 0.95'),
             (tmp_path / "camus_like.pth", "4 frames at frequency 1, tested on the central 1 of the kept frames",
              "clips.test_window = 1.0"))
    for checkpoint_path, recorded, wanted in cases:
        models = (f'[[models]]\nhead = "mcsdr"\nfusion = "concat"\nlabel = "published"\n'
                  f'checkpoint = "{checkpoint_path}"\n')
        experiment = write_experiment(tmp_path / "e.toml", synthetic_root=tmp_path / "data",
                                      dataset_extra='tabular = ["Age", "Sex", "Weight", "Height"]', models=models)
        for command in (["validate", experiment], ["run", experiment, "--out", tmp_path / "run", "--quiet"]):
            outcome = cli(*command)
            text = " ".join(outcome.text.split())
            assert outcome.code == 2, text
            assert f"trained on clips of {recorded}" in text, text
            assert "makes mcsdr clips of 4 frames at frequency 1, tested on 0.95" in text and wanted in text, text
        assert not (tmp_path / "run").exists(), "nothing may start before the inputs are checked"


def test_checkpoint_models_are_evaluated_inside_a_run_with_their_inputs_and_k(best_pth, tmp_path):
    """`checkpoint = ...` in [[models]]: the imported encoder, fusion and head are evaluated on the run's
    TEST items like any other model. A vision-only checkpoint takes no tabular inputs; the tabular one,
    without dataset.tabular, the columns its config records through the reference transform (4 columns;
    the standard one would give 9), and K = 40 from its config; one with `samples` and sampler `params`
    is evaluated that way instead."""
    _, checkpoint = best_pth
    # trained, as its config records, on the suite's clips (4 frames), so that they are the clips it is given
    checkpoint = {**checkpoint, "config": {**REFERENCE_CONFIG, "data": {**REFERENCE_CONFIG["data"], "frames": 4}}}
    encoder = {key: value.abs() + 0.5 if key.endswith("running_var") else value  # random variances must be > 0
               for key, value in checkpoint["model_state_dict"].items()}
    torch.save({**checkpoint, "model_state_dict": encoder}, tmp_path / "best.pth")
    regressor = {key: value for key, value in checkpoint["regressor_state_dict"].items()
                 if not key.startswith("tabular_encoder.")}
    regressor["noise_predictor.map_cond.weight"] = regressor["noise_predictor.map_cond.weight"][:, :512].clone()
    torch.save({**checkpoint, "model_state_dict": encoder, "regressor_state_dict": regressor},
               tmp_path / "vision_best.pth")
    models = "".join(f'[[models]]\nhead = "mcsdr"\nfusion = "{fusion}"\nlabel = "{label}"\n'
                     f'checkpoint = "{tmp_path / name}"\n{extra}\n'
                     for label, fusion, name, extra in (
                         ("vision only", "none", "vision_best.pth", ""), ("as published", "concat", "best.pth", ""),
                         ("told otherwise", "concat", "best.pth", "samples = 6\nparams = {steps = 3}")))
    experiment = write_experiment(tmp_path / "e.toml", synthetic_root=tmp_path / "data", models=models)
    assert main(["run", str(experiment), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    results = {r["model"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "run" / "jobs").glob("*/result.json"))}
    assert results.pop("prior")["status"] == "ok"  # the row every run adds beside the imported models
    assert {model: (r["status"], r["samples"]) for model, r in results.items()} == \
        {"vision only": ("ok", 40), "as published": ("ok", 40), "told otherwise": ("ok", 6)}, results
    assert results["vision only"]["checkpoint"]["epoch"] == 37
    for model, k in (("as published", 40), ("told otherwise", 6)):
        (job,) = (tmp_path / "run" / "jobs").glob(f"{model.replace(' ', '_')}*")
        assert np.load(job / "samples.npz")["samples"].shape[1] == k
    leaderboard = (tmp_path / "run" / "leaderboard.csv").read_text()
    assert all(model in leaderboard for model in results)


def test_a_bundle_whose_sizes_leave_their_ranges_is_refused_before_it_is_built(best_pth, tmp_path):
    """A bundle names the sizes its parts are built from: a received one saying `timesteps = 1e9` would build
    schedules of a billion steps; it is held to the head's ranges first, as an experiment's params are."""
    assert main(["import-mcsdr", str(best_pth[0]), "--out", str(tmp_path / "out")]) == 0
    content = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    content["head"]["params"]["timesteps"] = 20000
    torch.save(content, tmp_path / "big.pt")
    with pytest.raises(ConfigError, match=r"big\.pt: its head 'mcsdr' has `timesteps`: must be between 1 and 10000"):
        load_bundle(tmp_path / "big.pt")


@pytest.mark.parametrize("source, field, problem", [
    (["a"], "`source`", "must be a table"),
    ({"clips": [16, 1]}, "`clips`", "must be none or a table"),
    ({"clips": {"frames": 16}}, "`clips.frequency`", "must be a whole number from 1 to 256, got None"),
    ({"clips": {"frames": 16, "frequency": 1, "mode": "echonet"}}, "`clips.mode`", "is not a recorded clip setting"),
    ({"clips": {"frames": "16", "frequency": 1}}, "`clips.frames`", "got '16'"),
    ({"clips": {"frames": 10**12, "frequency": 1}}, "`clips.frames`", "from 1 to 256, got 1000000000000"),
    ({"clips": {"frames": 16, "frequency": 1, "test_window": "x"}}, "`clips.test_window`", "a share above 0"),
    ({"samples": "40"}, "`samples`", "a positive whole number, got '40'"),
    ({"tabular_columns": "Age"}, "`tabular_columns`", "a list of column names"),
])
def test_a_bundle_whose_source_is_forged_is_refused_naming_the_field(best_pth, tmp_path, source, field, problem):
    """A received bundle's `source` says which clips, K and columns the experiment is held to: a list there, a clips
    table without `frequency`, with a key that is no clip setting or with a string stopped validate with an
    AttributeError, KeyError or ValueError, and a billion frames asked for a setting validate refuses."""
    assert main(["import-mcsdr", str(best_pth[0]), "--out", str(tmp_path / "out")]) == 0
    content = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    content["source"] = {**content["source"], **source} if isinstance(source, dict) else source
    torch.save(content, tmp_path / "forged.pt")
    where = rf"forged\.pt: its (source has )?{re.escape(field)}: "
    with pytest.raises(ConfigError, match=where + rf".*{re.escape(problem)}"):
        load_bundle(tmp_path / "forged.pt")


@pytest.mark.parametrize("table, key, value", [("data", "frames", 0), ("data", "frames", 10**12),
                                                ("data", "frequency", -2)])
def test_a_checkpoint_config_out_of_range_is_refused_naming_its_key(best_pth, tmp_path, table, key, value):
    """A best.pth's config says which clips the experiment is held to: data.frames = 10**12 was recorded and
    the experiment told to set clips.frames = 1000000000000, which validate refuses; now the file's key is named."""
    _, checkpoint = best_pth
    config = {**REFERENCE_CONFIG, table: {**REFERENCE_CONFIG[table], key: value}}
    torch.save({**checkpoint, "config": config}, tmp_path / "odd.pth")
    with pytest.raises(BenchmarkError, match=rf"odd\.pth: its config's `{table}\.{key}`: must be .*got {value}"):
        import_mcsdr(tmp_path / "odd.pth")


def test_a_checkpoint_k_outside_the_bounds_is_refused_unless_the_model_sets_its_own(best_pth, tmp_path):
    """A best.pth's config (or a bundle) records the K it is evaluated with: inference_samples = 10**9 was taken as it
    is, past evaluate.samples' bound, and would exhaust memory in the job; K = 1 scores no fair CRPS. The model's own
    `samples` overrides it."""
    _, checkpoint = best_pth
    for k in (10**9, 1):  # K = 1: no fair CRPS, which compares two samples
        config = {**REFERENCE_CONFIG, "evaluation": {**REFERENCE_CONFIG["evaluation"], "inference_samples": k},
                  "data": {**REFERENCE_CONFIG["data"], "frames": 4}}  # the suite's clips
        torch.save({**checkpoint, "config": config}, tmp_path / "odd_k.pth")
        for extra, refused in (("", True), ("samples = 40\n", False)):
            models = (f'[[models]]\nhead = "mcsdr"\nfusion = "concat"\nlabel = "p"\n'
                      f'checkpoint = "{tmp_path / "odd_k.pth"}"\n{extra}')
            experiment = write_experiment(tmp_path / "e.toml", synthetic_root=tmp_path / "data",
                                          dataset_extra='tabular = ["Age", "Sex", "Weight", "Height"]', models=models)
            outcome = cli("validate", experiment)
            text = " ".join(outcome.text.split())
            assert ("`models[0].samples`: model 'p'" in text and f"records K = {k} samples" in text) == refused, text
            assert outcome.code == (2 if refused else 0), text


@pytest.mark.parametrize("table, key, value, problem", [
    ("evaluation", "inference_samples", "ten", "must be a whole number, got 'ten'"),
    ("evaluation", "inference_samples", 2.7, "must be a whole number, got 2.7"),
    ("evaluation", "ddim_eta", "x", "must be a number, got 'x'"),
    ("evaluation", "sampler", 3, "must be a sampler's name, got 3"),
    ("data", "frames", "16", "must be a whole number, got '16'"),
    ("data", "tabular_cols", "Age", "must be a list of column names, got 'Age'"),
])
def test_a_checkpoint_config_of_the_wrong_type_is_refused_naming_its_key(best_pth, tmp_path, table, key, value,
                                                                          problem):
    """The reference's config is read from a received file: a string where a number belongs stopped the import with
    Python's ValueError, 2.7 samples became 2, a string of column names one column per letter and frames = "16" left
    the clips unchecked; each is now an error naming the file and the key."""
    _, checkpoint = best_pth
    config = {**REFERENCE_CONFIG, table: {**REFERENCE_CONFIG[table], key: value}}
    torch.save({**checkpoint, "config": config}, tmp_path / "odd.pth")
    with pytest.raises(BenchmarkError, match=rf"odd\.pth: its config's `{table}\.{key}`: {re.escape(problem)}"):
        import_mcsdr(tmp_path / "odd.pth")


@pytest.mark.parametrize("evaluation, params, problem", [
    ({"sampler": "foo"}, {}, "unknown sampler 'foo'"),
    ({"ddim_eta": -5.0}, {}, "eta must be between 0 and 1"),
    ({}, {"n_head": 7}, "divisible by heads 7"),
    ({"inference_samples": -3}, {}, "`evaluation.inference_samples`: must be at least 1, got -3"),
    ({"ddim_steps": 5000}, {}, ("steps = 5000 (from its config or the sampler settings given): must be between 1 and "
                                "timesteps (1000) for DDIM")),
])
def test_a_checkpoint_config_the_head_refuses_is_an_error_naming_the_file(best_pth, tmp_path, evaluation, params,
                                                                          problem):
    """Sampling settings read from a received config that the mcsdr head refuses stopped validate with the head's
    ValueError, naming no file (exit 1); K = -3 reached the job as it was."""
    _, checkpoint = best_pth
    predictor = REFERENCE_CONFIG["model"]["regressor_head"]["diffusion"]["predictor_config"]
    config = {**REFERENCE_CONFIG, "evaluation": {**REFERENCE_CONFIG["evaluation"], **evaluation},
              "model": {"regressor_head": {"diffusion": {"predictor_config": {
                  **predictor, "params": {**predictor["params"], **params}}}}}}
    torch.save({**checkpoint, "config": config}, tmp_path / "odd.pth")
    with pytest.raises(BenchmarkError, match=rf"odd\.pth: .*{re.escape(problem)}"):
        import_mcsdr(tmp_path / "odd.pth")


def test_ddim_steps_past_a_checkpoints_timesteps_are_refused_at_validate(best_pth, tmp_path):
    """A checkpoint model has no pre-flight: `params = {steps = 5000}` on its 1000 timesteps passed validate and
    failed in its job, at sampling, once the run's other work was done."""
    _, checkpoint = best_pth
    checkpoint = {**checkpoint, "config": {**REFERENCE_CONFIG, "data": {**REFERENCE_CONFIG["data"], "frames": 4}}}
    torch.save(checkpoint, tmp_path / "best.pth")
    assert main(["import-mcsdr", str(tmp_path / "best.pth"), "--out", str(tmp_path / "out")]) == 0
    for checkpoint_path in (tmp_path / "best.pth", tmp_path / "out" / "model.pt"):
        models = (f'[[models]]\nhead = "mcsdr"\nfusion = "concat"\nlabel = "p"\ncheckpoint = "{checkpoint_path}"\n'
                  "params = {steps = 5000}\n")
        experiment = write_experiment(tmp_path / "e.toml", synthetic_root=tmp_path / "data",
                                      dataset_extra='tabular = ["Age", "Sex", "Weight", "Height"]', models=models)
        outcome = cli("validate", experiment)
        text = " ".join(outcome.text.split())
        assert outcome.code == 2, text
        assert "`models[0].params.steps`: must be between 1 and timesteps (1000) for DDIM, got 5000" in text, text


def test_a_sampler_a_bundles_head_refuses_is_an_error_naming_the_file(best_pth, tmp_path):
    """`[[models]] params` (or the bundle itself) may set a sampling value the head refuses when built: it stopped
    validate with the head's ValueError (exit 1), naming neither the file nor the setting."""
    assert main(["import-mcsdr", str(best_pth[0]), "--out", str(tmp_path / "out")]) == 0
    with pytest.raises(ConfigError, match=r"model\.pt: its head 'mcsdr' cannot be built with .*sampler = 'foo'.*"
                                          r"unknown sampler 'foo'"):
        load_bundle(tmp_path / "out" / "model.pt", head_params={"sampler": "foo"})


@pytest.mark.parametrize("field, value, problem", [
    ("head", None, "must be a table of name, params and state_dict, got None"),
    ("head", "x", "must be a table of name, params and state_dict, got 'x'"),
    ("head.params", [1], "must be a table, got [1]"),
    ("head.name", 5, "must be a component's name, got 5"),
    ("head.state_dict", "x", "must be a table of tensors, got 'x'"),
    ("input_spec", {"bogus": 1}, "must be a table of frames, size, channels, mean, std"),
    ("input_spec.size", 10**9, "must be what an encoder's InputSpec holds, got 1000000000"),
    ("input_spec.mean", [0.0], "must be what an encoder's InputSpec holds, got [0.0]"),
    ("input_spec.std", [255.0, 0.0, 255.0], "must be what an encoder's InputSpec holds, got [255.0, 0.0, 255.0]"),
    ("input_spec.mean", [0.0, float("nan"), 0.0], "must be what an encoder's InputSpec holds, got [0.0, nan, 0.0]"),
    ("head.name", "mcsdrr", "unknown head 'mcsdrr'"),
    ("target_scale", "weird", "must be \"raw\" or \"standardised\", got 'weird'"),
])
def test_a_bundle_whose_parts_are_forged_is_refused_naming_the_field(best_pth, tmp_path, field, value, problem):
    """A received bundle's parts, input spec and target scale: a part that is no table, params or an input spec of
    another shape stopped validate with a KeyError, TypeError or AttributeError, and target_scale = "weird" loaded."""
    assert main(["import-mcsdr", str(best_pth[0]), "--out", str(tmp_path / "out")]) == 0
    content = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    *tables, key = field.split(".")
    target = content[tables[0]] if tables else content
    if value is None:
        del target[key]
    else:
        target[key] = value
    torch.save(content, tmp_path / "forged.pt")
    with pytest.raises(ConfigError, match=rf"forged\.pt: its `{re.escape(field)}`: {re.escape(problem)}"):
        load_bundle(tmp_path / "forged.pt")


def test_a_checkpoint_model_is_named_by_the_code_it_builds_not_the_experiments_names(best_pth, tmp_path,
                                                                                       monkeypatch, capsys):
    """An import is evaluated with uniformer_s + concat + mcsdr whatever the experiment's encoder (tiny3d here) and
    the model's head say: its job was named by those names' sources, so an edit to uniformer_s (which featurizes
    its TEST clips) reused the results of the old code."""
    from benchmark.identity import source_digest
    from benchmark.orchestration import provenance

    _, checkpoint = best_pth
    # trained, as its config records, on the suite's clips (4 frames), so that they are the clips it is given
    checkpoint = {**checkpoint, "config": {**REFERENCE_CONFIG, "data": {**REFERENCE_CONFIG["data"], "frames": 4}}}
    encoder = {key: value.abs() + 0.5 if key.endswith("running_var") else value  # random variances must be > 0
               for key, value in checkpoint["model_state_dict"].items()}
    torch.save({**checkpoint, "model_state_dict": encoder}, tmp_path / "best.pth")
    models = f'[[models]]\nhead = "mse"\nfusion = "concat"\nlabel = "imported"\ncheckpoint = "{tmp_path / "best.pth"}"\n'
    experiment = write_experiment(tmp_path / "e.toml", synthetic_root=tmp_path / "data", models=models)
    arguments = ["run", str(experiment), "--out", str(tmp_path / "run")]
    assert main(arguments) == 0
    result = json.loads(next((tmp_path / "run" / "jobs").glob("imported*/result.json")).read_text())
    assert set(result["identity"]["sources"]) == {"encoder uniformer_s", "fusion concat", "head mcsdr"}
    capsys.readouterr()

    def edited(record):
        return "edited" if record.name == "uniformer_s" else source_digest(record)

    monkeypatch.setattr(provenance, "source_digest", edited)
    assert main(arguments) == 0
    said = capsys.readouterr().out
    assert "imported (seed 0, fold0) runs again: encoder uniformer_s source changed" in said, said
