"""The pre-flights' budget (benchmark.encoding.budget): a build on the meta device allocates nothing and stops at
the budget, constructors that read small tensors still build there, and the real pre-flight's address-space limit
refuses the allocation that would pass the budget, then lifts."""
from __future__ import annotations

import resource
import time

import pytest
import torch
from torch import nn

from benchmark.encoding.budget import Budget, OverBudget, estimate, limited, refused
from registry import load_registry

MB = 10**6


def budget(memory: int) -> Budget:
    return Budget(memory=memory, flops=1e11, memory_source="a test's", hint="Lower it.")


class Seeded(nn.Module):
    """Reads small tensors it makes, as the ensemble (member seeds) and UniFormer (drop-path rates) do."""

    def __init__(self):
        super().__init__()
        seeds = torch.randint(0, 2**31 - 1, (3,)).tolist()
        rates = torch.linspace(0, 0.1, 4).tolist()
        self.layers = nn.ModuleList(nn.Linear(1000, 1000) for _ in seeds + rates)


class Reading(nn.Module):
    """Reads the value of a large tensor, which the meta device does not have."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1000, 1000))
        self.scale = self.weight.detach().sum().item()


def test_a_build_on_meta_counts_the_training_state_and_allocates_nothing():
    built = estimate(Seeded, budget(10**9))
    assert all(layer.weight.is_meta for layer in built.layers)  # a bias, small, is made for real
    with pytest.raises(OverBudget, match=r"112\.1 MB|0\.1 GB \(its parameters with their gradients and AdamW's two"):
        estimate(Seeded, budget(100 * MB))  # 7 layers of 1001000 numbers, 4 bytes, 4 copies: 112 MB
    assert estimate(Seeded, budget(100 * MB), trained=False) is not None  # 28 MB


def test_a_constructor_that_reads_a_large_tensor_is_left_to_the_real_preflight():
    assert estimate(Reading, budget(10**9)) is None


def test_a_build_past_its_budget_stops_there():
    started = time.perf_counter()
    with pytest.raises(OverBudget, match="its parameters alone, when its build was stopped"):
        estimate(lambda: nn.Sequential(*(nn.Linear(1000, 1000) for _ in range(10**9))), budget(100 * MB))
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("params, steps", [({}, 10), ({"steps": 20}, 20), ({"sampler": "ddpm"}, 1000),
                                           ({"sampler": "ddpm", "timesteps": 50}, 50)])
def test_mcsdr_declares_the_network_evaluations_of_its_sampler(params, steps):
    assert load_registry().build("head", "mcsdr", condition_dim=4, **params).sampling_steps == steps


def test_card_declares_every_timestep_of_its_ddpm_sampler():
    assert load_registry().build("head", "card", condition_dim=4, timesteps=100).sampling_steps == 100


def test_the_real_preflight_is_refused_the_allocation_past_its_budget_and_the_limit_lifts_after():
    before = resource.getrlimit(resource.RLIMIT_AS)
    with limited(budget(256 * MB)):
        with pytest.raises(RuntimeError) as error:
            torch.empty(2**31)  # 8.6 GB
        message = refused(error.value)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert message.startswith("an allocation of 8.6 GB would take it past the 0.3 GB a pre-flight may take here")
    assert torch.empty(2**27).numel() == 2**27  # 0.5 GB again
    assert refused(error.value) is None  # outside the limit, an allocation error is the component's own
