"""Device resolution, the heads' mixed precision only on CUDA, the encoder's precision, and seeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.device import autocast, grad_scaler, resolve_device, resolve_precision, seed_everything
from benchmark.errors import ConfigError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" AUTO ").type == ("cuda" if torch.cuda.is_available() else "cpu")


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_asking_for_cuda_without_it_is_a_config_error(spec):
    with pytest.raises(ConfigError, match=rf"train.device = '{spec}'.*no usable CUDA"):
        resolve_device(spec)


def test_unknown_device_names_the_choices():
    with pytest.raises(ConfigError, match="not a device.*cuda:N"):
        resolve_device("tpu")


def test_mixed_precision_stays_off_on_cpu():
    cpu = torch.device("cpu")
    with autocast(cpu, enabled=True):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert not grad_scaler(cpu, enabled=True).is_enabled()


def test_seeding_repeats_python_numpy_and_torch_draws():
    def draws():
        seed_everything(11)
        import random
        return random.random(), np.random.rand(), torch.rand(1).item()

    assert draws() == draws()


@pytest.mark.parametrize("capabilities,resolved", [({"avx512_bf16": True}, "bfloat16"),
                                                   ({"amx_bf16": True}, "bfloat16"),
                                                   ({"avx512_bf16": False, "avx2": True}, "float32")])
def test_auto_precision_takes_bfloat16_only_where_the_cpu_computes_it_natively(monkeypatch, capabilities, resolved):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert resolve_precision("auto", torch.device("cpu")) == resolved
    assert resolve_precision("float32", torch.device("cpu")) == "float32"  # an explicit choice is kept
    assert resolve_precision("bfloat16", torch.device("cpu")) == "bfloat16"
