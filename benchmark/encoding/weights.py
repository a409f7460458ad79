"""Reading checkpoints users already hold and loading them into a model with a precise report.

Checkpoints in the wild wrap the tensors in different ways: ``{'model': ...}`` (CoReEcho, timm
training scripts), ``{'state_dict': ...}`` (EchoNet-Dynamic, Lightning), ``{'model_state_dict': ...}``
(MCSDR ``best.pth``), or a bare state dict; DataParallel adds ``module.`` to every key. All of that
is undone here, classification heads are dropped on purpose, and whatever else does not match is
reported key by key instead of being silently skipped (the reference loads with strict=False and
swallows failures).

Checkpoints are shared between people, and unpickling runs whatever code a file names. Every file is
therefore read with ``weights_only=True``: tensors, plain containers and numbers, plus the few data-only
classes real training checkpoints carry (``CHECKPOINT_GLOBALS``). Anything else is refused, naming the
file and the class it asks for; only inside ``trusting_checkpoints()`` (``--trust-checkpoint``) is such a
file unpickled in full.
"""
from __future__ import annotations

import argparse
import contextlib
import pickle
import pickletools
import re
import warnings
import zipfile
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy
import torch
from torch import nn

from benchmark.contracts import LoadReport
from benchmark.errors import BenchmarkError, ConfigError

WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
PARALLEL_PREFIX = "module."
HEAD_PREFIXES = ("head.", "fc.")

_multiarray = getattr(numpy, "_core", None) or numpy.core  # numpy 2 moved it; pickles name either
# Data-only classes that training checkpoints such as MCSDR's best.pth hold beside their tensors (a
# metric or epoch as a numpy scalar, numpy arrays, an argparse config); rebuilding them runs no code.
CHECKPOINT_GLOBALS = (numpy.ndarray, numpy.dtype, _multiarray.multiarray.scalar,
                      _multiarray.multiarray._reconstruct, argparse.Namespace,
                      *(type(numpy.dtype(code)) for code in "?bhilqBHILQefdgFDGUS"))
_TRUSTED: ContextVar[bool] = ContextVar("trusted_checkpoints", default=False)


@contextlib.contextmanager
def trusting_checkpoints(trust: bool = True) -> Iterator[None]:
    """Within this block (``--trust-checkpoint``), a checkpoint that needs full unpickling is read anyway."""
    token = _TRUSTED.set(trust)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load`` on CPU with ``weights_only=True``; full unpickling only when trusted."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"weight file {path} does not exist: check encoder.weights in the experiment")
    with open(path, "rb") as stream:
        opening = stream.read(2)
    # torch.save writes a zip archive (PK), older versions a pickle of protocol 2 or more (0x80): anything else is no
    # checkpoint, and unpickling it in full (--trust-checkpoint, suggested below) would not make it one.
    if opening != b"PK" and opening[:1] != b"\x80":
        raise BenchmarkError(f"cannot read weight file {path}: it is not a PyTorch checkpoint (torch.save writes a zip "
                             "archive, older versions a pickle)")
    try:
        with torch.serialization.safe_globals(list(CHECKPOINT_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = error
    except (RuntimeError, EOFError, OSError) as error:
        raise BenchmarkError(f"cannot read weight file {path}: {error}. Is it a complete PyTorch "
                             "checkpoint (torch.save)?") from None
    if not _TRUSTED.get():
        raise ConfigError(f"refused to load {path}: besides tensors it holds {_offending(path, refused)}, and "
                          "unpickling that would run code from the file. If you trust the file and whoever made "
                          "it, rerun with --trust-checkpoint.")
    warnings.warn(f"{path}: unpickling in full (--trust-checkpoint); this runs code from the file.", stacklevel=2)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise BenchmarkError(f"cannot read weight file {path}: {error}") from None


def _offending(path: Path, error: Exception) -> str:
    """What the safe reader refused, named from the file's pickle opcodes (nothing is executed)."""
    allowed = {f"{cls.__module__}.{cls.__qualname__}" for cls in CHECKPOINT_GLOBALS}
    try:
        if zipfile.is_zipfile(path):
            named = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        else:
            named = _pickle_globals(path.read_bytes())
    except Exception:  # a file too damaged to scan: torch's own reason is all there is
        named = []
    named = [name for name in dict.fromkeys(named) if name not in allowed]
    if named:
        return "the Python global(s) " + ", ".join(named)
    reason = re.search(r"Unsupported[^\n]*", str(error))
    return f"content the weights-only reader does not accept ({reason.group(0) if reason else error})"


def _pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of every GLOBAL / STACK_GLOBAL of a plain pickle, read with pickletools."""
    names, strings = [], []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            names.append(str(argument).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
        elif isinstance(argument, str):
            strings.append(argument)
    return names


def extract_state_dict(checkpoint: Any, source: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped from known containers and without ``module.``."""
    state = checkpoint
    while isinstance(state, Mapping):
        wrapper = next((key for key in WRAPPER_KEYS if isinstance(state.get(key), Mapping)), None)
        if wrapper is None:
            break
        state = state[wrapper]
    if not isinstance(state, Mapping):
        raise BenchmarkError(f"{source} holds a {type(state).__name__}, not a state dict")
    not_tensors = sorted(str(key) for key, value in state.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise BenchmarkError(f"{source}: no state dict found; top-level keys {', '.join(not_tensors[:8])} are "
                             f"not tensors and none of {', '.join(WRAPPER_KEYS)} wraps one")
    return {_strip_parallel_prefix(str(key)): value for key, value in state.items()}


def load_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    strict: bool = True,
    drop_prefixes: Iterable[str] = HEAD_PREFIXES,
) -> LoadReport:
    """Copy the matching tensors of ``state`` into ``model`` and say exactly what did not match.

    Keys under ``drop_prefixes`` that the model does not have (classification heads) are dropped and
    listed. A shape mismatch is always an error; missing or unexpected keys are an error when
    ``strict``, otherwise the matching tensors are loaded and the report returned.
    """
    expected = model.state_dict()
    drop_prefixes = tuple(drop_prefixes)
    dropped = sorted(k for k in state if k not in expected and k.startswith(drop_prefixes))
    given = {k: v for k, v in state.items() if k not in dropped}
    mismatched = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in given.items() if k in expected and v.shape != expected[k].shape
    )
    matching = {k: v for k, v in given.items() if k in expected and v.shape == expected[k].shape}
    report = LoadReport(
        source=source,
        loaded=len(matching),
        missing=tuple(sorted(k for k in expected if k not in given)),
        unexpected=tuple(sorted(k for k in given if k not in expected)),
        mismatched=tuple(mismatched),
        dropped=tuple(dropped),
    )
    if report.mismatched or (strict and not report.ok):
        hint = ("shapes differ: the file is for another architecture or configuration" if report.mismatched
                else "set encoder.strict_weights = false to load the matching tensors anyway")
        raise BenchmarkError(f"weights do not fit {type(model).__name__} ({hint}).\n{report}")
    if not report.ok:  # a partial load must never be silent
        warnings.warn(f"loaded weights partially (strict=False).\n{report}", stacklevel=2)
    model.load_state_dict(matching, strict=False)
    return report


def load_weights_file(model: nn.Module, path: str | Path, strict: bool = True,
                      drop_prefixes: Iterable[str] = HEAD_PREFIXES) -> LoadReport:
    """Read ``path`` in any supported format and load it into ``model`` (see ``load_state``)."""
    state = extract_state_dict(read_checkpoint(path), source=str(path))
    return load_state(model, state, source=str(path), strict=strict, drop_prefixes=drop_prefixes)


def _strip_parallel_prefix(key: str) -> str:
    while key.startswith(PARALLEL_PREFIX):
        key = key[len(PARALLEL_PREFIX):]
    return key
