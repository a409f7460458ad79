"""UniFormer-S: key-for-key compatibility with released checkpoints, every checkpoint flavour, shapes."""
import argparse
import warnings

import pytest
import torch

from benchmark.errors import BenchmarkError
from plugins.encoders.uniformer_s import UniFormerS


def random_state(shapes):
    """A checkpoint-like state dict: random floats, BatchNorm counters as int64 scalars."""
    generator = torch.Generator().manual_seed(0)
    return {key: torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(shape, generator=generator)
            for key, shape in shapes.items()}


@pytest.fixture(scope="module")
def model():
    return UniFormerS()


@pytest.fixture(scope="module")
def checkpoint_state(model):
    return random_state({key: tuple(value.shape) for key, value in model.state_dict().items()})


def test_fresh_model_has_exactly_the_reference_keys_and_shapes(model, uniformer_reference_shapes):
    expected = uniformer_reference_shapes
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert sorted(set(expected) - set(actual)) == [] and sorted(set(actual) - set(expected)) == []
    assert {key: shape for key, shape in actual.items() if expected[key] != shape} == {}
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(21.2e6, rel=0.01)


def test_strict_load_of_the_listed_keys(tmp_path, uniformer_reference_shapes):
    state = random_state(uniformer_reference_shapes)
    torch.save(state, tmp_path / "listed.pth")
    model = UniFormerS()
    report = model.load_weights(tmp_path / "listed.pth")
    assert report.ok and report.loaded == len(state) and not report.dropped
    assert torch.equal(model.state_dict()["blocks3.7.attn.qkv.weight"], state["blocks3.7.attn.qkv.weight"])


@pytest.mark.parametrize("frames", [16, 32])
def test_forward_gives_one_512_feature_per_clip(model, frames):
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, frames, 112, 112))
    assert out.shape == (1, 512) and torch.isfinite(out).all()


def test_kinetics_checkpoint_drops_the_400_way_head(tmp_path, checkpoint_state):
    torch.save({**checkpoint_state, "head.weight": torch.randn(400, 512), "head.bias": torch.randn(400)},
               tmp_path / "uniformer_small_k400_16x8.pth")
    report = UniFormerS().load_weights(tmp_path / "uniformer_small_k400_16x8.pth")
    assert report.ok and report.dropped == ("head.bias", "head.weight")
    assert "dropped (2): head.bias, head.weight" in str(report)


def test_coreecho_checkpoint_with_module_prefix(tmp_path, checkpoint_state):
    wrapped = {"model": {f"module.{key}": value for key, value in checkpoint_state.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "coreecho.pth")
    model = UniFormerS()
    report = model.load_weights(tmp_path / "coreecho.pth")
    assert report.ok and report.loaded == len(checkpoint_state)
    assert torch.equal(model.patch_embed1.proj.weight, checkpoint_state["patch_embed1.proj.weight"])


@pytest.mark.parametrize("config", [{"lr": 3e-4}, argparse.Namespace(lr=3e-4)], ids=["dict", "namespace"])
def test_mcsdr_best_pth(tmp_path, checkpoint_state, config):
    best = {"epoch": 49, "model_state_dict": checkpoint_state,
            "regressor_state_dict": {"time_mlp.1.weight": torch.randn(64, 64)},
            "optimizer_state_dict": {"state": {}, "param_groups": []}, "current_metric_val": 4.2, "config": config}
    torch.save(best, tmp_path / "best.pth")
    with warnings.catch_warnings():  # read with weights_only: a full unpickle would warn, and run code
        warnings.simplefilter("error", UserWarning)
        report = UniFormerS().load_weights(tmp_path / "best.pth")
    assert report.ok and report.loaded == len(checkpoint_state)


def test_mismatched_checkpoint_names_every_key(tmp_path, checkpoint_state):
    state = dict(checkpoint_state)
    state["blocks3.0.attn.qkv.weight"] = torch.randn(768, 256)
    del state["norm.running_var"]
    state["decoder.weight"] = torch.randn(2)
    torch.save(state, tmp_path / "other.pth")
    model = UniFormerS()
    for strict in (True, False):  # a shape mismatch is an error even when not strict
        with pytest.raises(BenchmarkError) as raised:
            model.load_weights(tmp_path / "other.pth", strict=strict)
        message = str(raised.value)
        assert "blocks3.0.attn.qkv.weight: checkpoint (768, 256) vs model (960, 320)" in message
        assert "missing (1): norm.running_var" in message and "unexpected (1): decoder.weight" in message


def test_normalisation_is_declared_and_selectable():
    assert UniFormerS().input_spec.mean == pytest.approx((0.1274 * 255, 0.1279 * 255, 0.1291 * 255))
    assert UniFormerS().input_spec.std == pytest.approx((0.1956 * 255, 0.1956 * 255, 0.1966 * 255))
    assert UniFormerS(normalisation="dataset").input_spec.mean is None
    with pytest.raises(ValueError, match="normalisation"):
        UniFormerS(normalisation="imagenet")
