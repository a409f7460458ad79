"""End-to-end fine-tuning: the encoder learns at lr x lr_mult together with fusion and head, then freezes."""
import numpy as np
import torch
from torch import nn

import registry
from benchmark.config import TrainConfig
from benchmark.training.finetune import finetune
from benchmark.training.scaling import TargetScaler


class ClipBatches:
    """A loader stand-in: batches (clip, target, item index, clip index) whose target is the clip's mean."""

    def __init__(self, n: int = 24, batch: int = 8):
        generator = torch.Generator().manual_seed(0)
        self.clips = torch.randn(n, 1, 2, 4, 4, generator=generator)
        self.targets = 50 + 10 * self.clips.mean(dim=(1, 2, 3, 4))
        self.dataset = list(range(n))
        self.batch = batch

    def __iter__(self):
        for start in range(0, len(self.dataset), self.batch):
            index = torch.arange(start, min(start + self.batch, len(self.dataset)))
            yield self.clips[index], self.targets[index], index, torch.zeros_like(index)


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.feature_dim = 3
        self.project = nn.Linear(32, 3)

    def forward(self, clip):
        return self.project(clip.flatten(1))


def test_finetune_trains_all_three_and_freezes_the_encoder(monkeypatch):
    encoder = TinyEncoder()
    fusion = registry.build("fusion", "concat", feature_dim=3, tabular_dim=2)
    head = registry.build("head", "mse", condition_dim=fusion.out_dim, width=8, depth=1)
    before = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    seen_lrs = []
    original = torch.optim.AdamW

    def recording(groups, **kwargs):
        seen_lrs.extend(group["lr"] for group in groups)
        return original(groups, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", recording)
    loader = ClipBatches()
    tabular = np.random.default_rng(0).normal(size=(24, 2)).astype(np.float32)
    settings = TrainConfig(lr=1e-2, batch_size=8, epochs=1)
    losses = finetune(encoder, fusion, head, loader, tabular, TargetScaler.fit(loader.targets.numpy()),
                      settings, lr_mult=0.1, epochs=30, seed=0, device=torch.device("cpu"), name="mse")

    assert seen_lrs == [1e-3, 1e-2]  # the encoder learns ten times slower
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]
    assert any(not torch.equal(before[name], p) for name, p in encoder.named_parameters())
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training


def test_finetune_is_part_of_the_job_identity(tmp_path):
    from benchmark.config import from_dict
    from benchmark.orchestration.provenance import experiment_settings

    base = {"name": "x", "models": [{"head": "mse"}]}
    plain = from_dict(base)
    tuned = from_dict({**base, "encoder": {"finetune": True}})
    assert experiment_settings(plain) != experiment_settings(tuned)
