"""Where training runs, mixed precision, and reproducible seeding.

``resolve_device`` turns the experiment's ``train.device`` into a ``torch.device``; ``autocast`` gives
the heads' mixed-precision context (``train.amp``, CUDA only: the heads' small matrix products gain nothing
from it on a CPU); ``encoder_precision`` the encoder's (``[encoder] precision``, any device: convolutions
do gain on a CPU with native bfloat16); ``seed_everything`` makes a job repeatable.
"""
from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch

from benchmark.errors import ConfigError


def resolve_device(spec: str = "auto", where: str = "train.device") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; an error starts with ``where``."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{where} = {spec!r} but this machine has no usable CUDA device. "
                              "Use device = \"auto\" or \"cpu\".")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{where} = {spec!r} but only {torch.cuda.device_count()} CUDA "
                              f"device(s) exist (cuda:0 .. cuda:{torch.cuda.device_count() - 1}).")
        return device
    raise ConfigError(f"{where} = {spec!r} is not a device; use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\".")


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype, or None when mixed precision is off (always off on CPU).

    bfloat16 where the GPU supports it, since it needs no loss scaling; float16 otherwise.
    """
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    dtype = amp_dtype(device, enabled)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``[encoder] precision`` for ``device``: "auto" is bfloat16 where the device computes it natively (a GPU
    that supports it, a CPU with AVX512-BF16 or AMX-BF16) and float32 elsewhere, where emulated bfloat16
    convolutions are slower than float32 ones. The result, not "auto", is what a stage's identity holds."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        capabilities = torch.cpu.get_capabilities()
        native = bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return "bfloat16" if native else "float32"


def encoder_precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The arithmetic of a resolved ``[encoder] precision`` for stage 1 and feature extraction: float32 as
    is, or bfloat16 autocast on the CPU as on a GPU (its float32 range needs no loss scaling)."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A loss scaler that is active only for float16 autocast (bfloat16 has float32's range)."""
    return torch.amp.GradScaler("cuda", enabled=amp_dtype(device, enabled) == torch.float16)


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed Python, NumPy and torch. On CPU also ask torch for deterministic kernels.

    Deterministic CUDA kernels need ``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts and slow
    training down, so on GPU only the seeds are fixed (results agree to rounding, not bitwise).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device is None or device.type == "cpu":
        _deterministic_kernels()


def _deterministic_kernels() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of torch._inductor
    (which imports torch._dynamo: over a second, most of a rerun with nothing to do) just to set the
    compiler's flag: nothing here compiles. Once the compiler is loaded anyway, the public call sets both."""
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Building a model or an encoder seeds every generator: the run after a pre-flight must draw what it would
    without it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)
