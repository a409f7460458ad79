"""Content hashes that identify what a stored result depends on: configs, datasets and weights."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn


def stable_hash(parts: Mapping[str, Any]) -> str:
    """A stable hash of JSON-able ``parts`` (keys sorted; other values by their text)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def weights_hash(module: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        shape = tensor.shape
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def dataset_fingerprint(records: Iterable[Iterable[Any]], files: Iterable[Path] = ()) -> str:
    """A hash of the dataset's content: label records (e.g. id, EF, tabular) and video files by
    name, size and modification time (reading every video's bytes would cost as much as decoding)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps([str(value) for value in record]).encode())
    for path in sorted(Path(p) for p in files):
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
