"""r2plus1d_18, timm per-frame and tiny3d encoders; registration without heavy imports."""
import subprocess
import sys

import pytest
import torch
from torch import nn

import registry
from plugins.encoders.r2plus1d_18 import R2Plus1D18
from plugins.encoders.timm_frames import TimmFrames


def test_every_encoder_is_registered_and_listing_imports_no_timm():
    code = ("import sys, registry; names = registry.names('encoder'); "
            "print(','.join(names), 'timm' in sys.modules, 'torchvision' in sys.modules)")
    names, timm_loaded, torchvision_loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert {"r2plus1d_18", "timm", "tiny3d", "uniformer_s"} <= set(names.split(","))
    assert (timm_loaded, torchvision_loaded) == ("False", "False")


@pytest.fixture(scope="module")
def r2plus1d():
    return R2Plus1D18()


def released_state(encoder, head_outputs):
    """The encoder's tensors (one changed, to see that loading copies) plus an ``fc`` head."""
    state = {key: value.clone() for key, value in encoder.net.state_dict().items()}
    state["stem.0.weight"] = torch.randn_like(state["stem.0.weight"])
    return {**state, "fc.weight": torch.randn(head_outputs, 512), "fc.bias": torch.randn(head_outputs)}


def test_r2plus1d_loads_echonet_release_format(tmp_path, r2plus1d):
    state = released_state(r2plus1d, head_outputs=1)  # EchoNet-Dynamic's regression layer
    torch.save({"epoch": 45, "state_dict": {f"module.{key}": value for key, value in state.items()},
                "opt_dict": {"state": {}, "param_groups": []}, "scheduler_dict": {}, "best_loss": 30.1,
                "loss": 29.9}, tmp_path / "r2plus1d_18_32_2_pretrained.pt")
    report = r2plus1d.load_weights(tmp_path / "r2plus1d_18_32_2_pretrained.pt")
    assert report.ok and report.dropped == ("fc.bias", "fc.weight")
    assert torch.equal(r2plus1d.net.stem[0].weight, state["stem.0.weight"])
    r2plus1d.eval()
    with torch.no_grad():
        assert r2plus1d(torch.randn(1, 3, 4, 32, 32)).shape == (1, 512)


def test_r2plus1d_loads_torchvision_format_and_declares_kinetics_normalisation(tmp_path, r2plus1d):
    torch.save(released_state(r2plus1d, head_outputs=400), tmp_path / "r2plus1d_18-91a641e6.pth")
    assert r2plus1d.load_weights(tmp_path / "r2plus1d_18-91a641e6.pth").dropped == ("fc.bias", "fc.weight")
    assert R2Plus1D18(normalisation="kinetics").input_spec.mean[0] == pytest.approx(0.43216 * 255)
    assert r2plus1d.input_spec.mean is None  # EchoNet: training-set statistics


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_timm_resnet18_per_frame(pooling):
    encoder = TimmFrames("resnet18", pooling=pooling).eval()
    clip = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = encoder(clip)
        first_frame = encoder.backbone(clip[:, :, 0])
    assert encoder.feature_dim == 512 and out.shape == (2, 512)
    if pooling == "mean":  # per-frame features averaged over time
        frames = torch.stack([encoder.backbone(clip[:, :, t]) for t in range(3)], 1).detach()
        assert torch.allclose(out, frames.mean(1), atol=1e-5)
    assert first_frame.shape == (2, 512)


def test_timm_weights_from_a_local_file_drop_the_classifier(tmp_path):
    import timm

    torch.save({"model": timm.create_model("resnet18", pretrained=False).state_dict()}, tmp_path / "resnet18.pth")
    encoder = TimmFrames("resnet18")
    report = encoder.load_weights(tmp_path / "resnet18.pth")
    assert report.ok and report.dropped == ("fc.bias", "fc.weight")
    assert encoder.input_spec.mean == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))


def test_timm_unknown_model_is_named():
    with pytest.raises(ValueError, match="resnet1000"):
        TimmFrames("resnet1000")


@pytest.mark.parametrize("width,depth,feature_dim", [(16, 4, 128), (4, 2, 8)])
def test_tiny3d_is_configurable(width, depth, feature_dim):
    encoder = registry.build("encoder", "tiny3d", width=width, depth=depth, feature_dim=feature_dim)
    assert encoder(torch.randn(2, 3, 8, 32, 32)).shape == (2, feature_dim)
    assert encoder.feature_dim == feature_dim and encoder.input_spec.mean is None
    assert sum(1 for m in encoder.modules() if isinstance(m, nn.Conv3d)) == depth


def test_the_key_to_blame_is_sought_only_among_encoders_within_their_ranges(monkeypatch):
    """When an encoder fails its pre-flight, removing one key at a time finds the one to blame; removing `depth`
    from {depth = 1, width = 2048} puts the default depth under width 2048 (16384 channels in the last stage,
    3.6 billion parameters), which the ranges forbid and which is not built to ask."""
    from benchmark.components import resolve
    from benchmark.config import load_experiment
    from benchmark.encoding import preflight

    experiment = resolve(load_experiment("experiments/quick.toml", [
        'encoder.name="tiny3d"', 'encoder.pretrain.objective="l1"', "encoder.params={depth = 1, width = 2048}"])).experiment
    built = []
    monkeypatch.setattr(preflight, "_problem", lambda experiment, registry: built.append(
        dict(experiment.encoder.params)) or None)
    assert preflight._culprit(experiment, registry.default(), budget_only=False, sized=False) == "encoder.params.width"
    assert built == [{"depth": 1}]
