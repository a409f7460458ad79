"""Stage 1: the Rank-N-Contrast loss against a literal implementation, training and freezing."""
import math

import pytest
import torch

from benchmark.config import PretrainConfig
from benchmark.encoding.stage1 import RegressionHead, _losses, pretrain_encoder, rnc_loss
from plugins.encoders.tiny3d import Tiny3D


def naive_rnc(features, targets, temperature):
    n = len(targets)
    total, pairs = 0.0, 0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            similarity = lambda k: -float(torch.dist(features[i], features[k])) / temperature
            threshold = abs(float(targets[i] - targets[j]))
            denominator = sum(math.exp(similarity(k)) for k in range(n)
                              if k != i and abs(float(targets[i] - targets[k])) >= threshold)
            total += -math.log(math.exp(similarity(j)) / denominator)
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_rnc_matches_the_definition_including_tied_labels(temperature):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(7, 5, generator=generator)
    targets = torch.tensor([50.0, 60.0, 50.0, 35.0, 70.0, 60.0, 41.0])
    assert float(rnc_loss(features, targets, temperature)) == pytest.approx(naive_rnc(features, targets, temperature),
                                                                            rel=1e-5)


def test_rnc_of_a_single_sample_is_zero():
    assert float(rnc_loss(torch.randn(1, 3), torch.tensor([50.0]))) == 0.0


def test_rnc_rewards_features_ordered_like_labels():
    targets = torch.linspace(0, 1, 8)
    ordered = targets[:, None] * torch.tensor([[4.0, 0.0]])
    shuffled = ordered[torch.randperm(8, generator=torch.Generator().manual_seed(0))]
    assert rnc_loss(ordered, targets) < rnc_loss(shuffled, targets)


def batches(count=3, size=4):
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 4, 16, 16, generator=generator), torch.rand(size, generator=generator) * 60 + 20,
             torch.arange(size), torch.zeros(size, dtype=torch.long)) for _ in range(count)]


@pytest.mark.parametrize("objective,parts", [("l1", {"loss", "l1"}), ("mse", {"loss", "mse"}),
                                             ("rnc", {"loss", "rnc", "l1"})])
def test_training_updates_then_freezes_the_encoder(objective, parts):
    encoder = Tiny3D(width=4, depth=2, feature_dim=8)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    history = pretrain_encoder(encoder, batches(), PretrainConfig(objective=objective, epochs=2, lr=1e-2),
                               "cpu", seed=0, progress=False)
    assert set(history) == parts and all(len(values) == 2 for values in history.values())
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert not torch.equal(before["project.weight"], encoder.state_dict()["project.weight"])


def test_rnc_l1_head_reads_detached_features():
    encoder = Tiny3D(width=4, depth=2, feature_dim=8)
    head = RegressionHead(8)
    clip, target = batches(count=1)[0][:2]
    parts = _losses(encoder, head, clip, target, PretrainConfig(objective="rnc"))
    parts["l1"].backward()
    assert all(p.grad is None for p in encoder.parameters())  # only RnC reaches the encoder
    assert head.net[0].weight.grad is not None


def test_same_seed_same_encoder_and_none_only_freezes():
    trained = []
    for _ in range(2):
        torch.manual_seed(5)
        encoder = Tiny3D(width=4, depth=2, feature_dim=8)
        pretrain_encoder(encoder, batches(), PretrainConfig(objective="l1", epochs=1), "cpu", seed=3, progress=False)
        trained.append(encoder.state_dict())
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])
    encoder = Tiny3D(width=4, depth=2, feature_dim=8)
    assert pretrain_encoder(encoder, batches(), PretrainConfig(objective="none"), "cpu", seed=0) == {}
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


class _Probe(torch.nn.Module):
    """An encoder that records the dtype its linear layer computes in."""

    feature_dim = 4

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)
        self.seen = set()

    def forward(self, clip):
        out = self.linear(clip.mean((2, 3, 4)))
        self.seen.add(out.dtype)
        return out


@pytest.mark.parametrize("precision,computed", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_stage_one_computes_in_the_encoder_precision_and_keeps_float32_weights(precision, computed):
    encoder = _Probe()
    history = pretrain_encoder(encoder, batches(), PretrainConfig(objective="l1", epochs=1, lr=1e-2), "cpu", seed=0,
                               progress=False, precision=precision)
    assert encoder.seen == {computed}
    assert all(parameter.dtype == torch.float32 for parameter in encoder.parameters())
    assert math.isfinite(history["loss"][0])
