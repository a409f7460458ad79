"""The feature cache: features of a frozen encoder, computed once and shared by every head.

Comparing heads on identical features is what makes the comparison fair and cheap: the encoder pass is
the expensive part, so it runs once per (data, split role, encoder, weights, clip settings, views).
The key hashes all of them, including a hash of the encoder's weights themselves, so any change
lands in a new entry instead of silently reusing stale features.

Each entry is ``<key>.npz`` (item index, clip index, view, target, features) plus ``<key>.json``
(the key parts, array shapes and the SHA-256 of the npz). The JSON is written last and is the commit
mark; both writes are atomic. An entry whose checksum, shapes or files do not agree is rebuilt.

Training augmentation: features of an augmented clip are only as varied as the passes cached. With
``views = 1`` (default) the cache stores one pass and training sees no augmentation, which the metadata
states; with ``views = V`` it stores V passes, each built by ``loader_factory(view)`` (augmented when
the loader augments), and a head can draw a different view every epoch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from benchmark.device import encoder_precision
from benchmark.errors import StoreError
from benchmark.identity import made_here_file, stable_hash, vouch_file, weights_hash
from benchmark.progress import progress_bar
from benchmark.store import atomic_write_bytes, atomic_write_json, open_arrays, read_regular

FORMAT_VERSION = 1
ARRAYS = ("item_index", "clip_index", "view", "target", "features")


@dataclass(frozen=True)
class FeatureKey:
    """Everything the cached features depend on, except the weights (hashed from the encoder itself).

    ``dataset``: content fingerprint of the dataset (see ``dataset_fingerprint``); ``split``: the split
    manifest hash; ``role``: train/val/test; ``encoder``: name and config; ``clips``: clip settings,
    including the number of test clips; ``augment``: whether the loaders augment; ``views``: passes cached;
    ``precision``: the arithmetic of the encoder's pass (``[encoder] precision``).
    """

    dataset: str
    split: str
    role: str
    encoder: Mapping[str, Any]
    clips: Mapping[str, Any]
    views: int = 1
    augment: bool = False
    precision: str = "float32"

    def __post_init__(self):
        if self.views < 1:
            raise ValueError(f"feature cache views must be at least 1, got {self.views}")
        if self.views > 1 and not self.augment:
            raise ValueError("several feature cache views of a loader that does not augment are identical: "
                             "use views = 1, or cache views of an augmenting loader")

    @property
    def augmentation(self) -> str:
        """How training augmentation survives caching, in words for the metadata and the report."""
        if not self.augment:
            return "off: one unaugmented pass, training sees no augmentation"
        if self.views == 1:
            return "one augmented pass, the same for every epoch"
        return f"{self.views} augmented views cached"

    def parts(self, weights: str) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "weights": weights, **dataclasses.asdict(self)}


@dataclass
class CachedFeatures:
    """Features of one split role: row r is clip ``clip_index[r]`` of item ``item_index[r]`` in ``view[r]``.

    ``status`` is ``"hit"``, ``"miss"`` or ``"rebuilt: <reason>"`` (a corrupt entry was replaced).
    """

    item_index: np.ndarray
    clip_index: np.ndarray
    view: np.ndarray
    target: np.ndarray
    features: np.ndarray
    key: str
    status: str
    metadata: dict[str, Any] = field(default_factory=dict)


LoaderFactory = Callable[[int], Iterable]


class FeatureCache:
    """Cache of encoder features under ``root`` (the run directory's ``cache/`` by default)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(self, key: FeatureKey, encoder: nn.Module) -> str:
        return stable_hash(key.parts(weights_hash(encoder)))

    def features(self, key: FeatureKey, loader_factory: LoaderFactory, encoder: nn.Module,
                 device: str | torch.device = "cpu", progress: bool = False) -> CachedFeatures:
        """The cached features for ``key``, computed with ``encoder`` when absent or corrupt.

        ``loader_factory(view)`` returns an iterable of batches ``(clip, target, item_index,
        clip_index, ...)``; it is called once per view, and only on a miss.
        """
        parts = key.parts(weights_hash(encoder))
        digest = stable_hash(parts)
        cached, problem = self._read(digest, parts)
        if cached is not None:
            return cached
        arrays = _encode(loader_factory, encoder, torch.device(device), key.views, key.precision, progress)
        metadata = {
            **parts,
            "augmentation": key.augmentation,
            "shapes": {name: list(array.shape) for name, array in arrays.items()},
        }
        self._write(digest, arrays, metadata)
        status = f"rebuilt: {problem}" if problem != "absent" else "miss"
        return CachedFeatures(**arrays, key=digest, status=status, metadata=metadata)

    def paths(self, digest: str) -> tuple[Path, Path]:
        return self.root / f"{digest}.npz", self.root / f"{digest}.json"

    def _read(self, digest: str, parts: dict[str, Any]) -> tuple[CachedFeatures | None, str]:
        data_path, meta_path = self.paths(digest)
        if not meta_path.exists():
            return None, "absent"
        try:
            metadata = json.loads(read_regular(meta_path))
            blob = read_regular(data_path)
        except (OSError, json.JSONDecodeError, StoreError) as error:
            return None, f"unreadable entry ({error})"
        if not isinstance(metadata, dict):
            return None, "unreadable entry (metadata is not a JSON object)"
        if hashlib.sha256(blob).hexdigest() != metadata.get("sha256"):
            return None, "checksum mismatch"
        try:
            with open_arrays(blob) as stored:  # never unpickled, nor unpacked past MAX_ARRAY_BYTES
                arrays = {name: stored[name] for name in ARRAYS}
        except (OSError, KeyError, ValueError) as error:
            return None, f"unreadable arrays ({error})"
        shapes = {name: list(array.shape) for name, array in arrays.items()}
        if shapes != metadata.get("shapes") or len({len(array) for array in arrays.values()}) != 1:
            return None, "shape mismatch"
        if stable_hash({name: metadata.get(name) for name in parts}) != digest:
            return None, "its metadata is that of another entry"
        if not made_here_file(meta_path):  # received or copied: its checksum sits beside the arrays it vouches for
            return None, "not made on this machine"
        return CachedFeatures(**arrays, key=digest, status="hit", metadata=metadata), ""

    def _write(self, digest: str, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        blob = buffer.getvalue()
        data_path, meta_path = self.paths(digest)
        atomic_write_bytes(data_path, blob)
        metadata["sha256"] = hashlib.sha256(blob).hexdigest()
        vouch_file(atomic_write_json(meta_path, metadata))


class _Rows:
    """Rows appended batch by batch into one array that doubles when full. Keeping each batch's small
    arrays until the end pinned the C heap between the batches' large temporary blocks, which it then never
    handed back: a stage process grew by 1.6 GB over 950 clips; with a few doubling blocks it stays flat."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None
        self.size = 0

    def add(self, rows: np.ndarray) -> None:
        end = self.size + len(rows)
        if self.array is None or end > len(self.array):
            grown = np.empty((max(64, end, 2 * self.size), *rows.shape[1:]), dtype=rows.dtype)
            if self.array is not None:
                grown[:self.size] = self.array[:self.size]
            self.array = grown
        self.array[self.size:end] = rows
        self.size = end

    def result(self) -> np.ndarray:
        return self.array[:self.size].copy()


@torch.no_grad()
def _encode(loader_factory: LoaderFactory, encoder: nn.Module, device: torch.device, views: int, precision: str,
            progress: bool) -> dict[str, np.ndarray]:
    was_training = encoder.training
    encoder.eval()
    columns = {name: _Rows() for name in ARRAYS}
    try:
        for view in range(views):
            batches = progress_bar(loader_factory(view), quiet=not progress, desc=f"features view {view + 1}/{views}",
                                   unit="batch", leave=False)
            for batch in batches:
                clip, target, item_index, clip_index = batch[:4]
                with encoder_precision(device, precision):
                    features = encoder(clip.to(device))
                features = features.float().cpu().numpy()
                columns["features"].add(features)
                columns["target"].add(np.asarray(target, dtype=np.float32).reshape(-1))
                columns["item_index"].add(np.asarray(item_index, dtype=np.int64).reshape(-1))
                columns["clip_index"].add(np.asarray(clip_index, dtype=np.int64).reshape(-1))
                columns["view"].add(np.full(len(features), view, dtype=np.int64))
    finally:
        encoder.train(was_training)
    if not columns["features"].size:
        raise ValueError("the clip loader yielded no batches: nothing to encode")
    return {name: rows.result() for name, rows in columns.items()}


