"""The features of one split: what the encoder stage hands to training, one row per clip."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FeatureSet:
    """Cached encoder features of one split.

    ``ids``, ``ef`` and ``tabular`` have one entry per item (video). ``features`` has one row per clip;
    ``clip_item[c]`` is the item index of clip row ``c`` (None: one clip per item, in order).
    """

    ids: list[str]
    features: np.ndarray
    ef: np.ndarray
    tabular: np.ndarray | None = None
    clip_item: np.ndarray | None = None

    def __post_init__(self):
        self.ids = list(self.ids)
        self.features = np.ascontiguousarray(self.features, dtype=np.float32)
        self.ef = np.asarray(self.ef, dtype=np.float64)
        n = len(self.ids)
        if self.features.ndim != 2:
            raise ValueError(f"features must be (clips, feature_dim), got shape {self.features.shape}")
        if self.ef.shape != (n,):
            raise ValueError(f"ef must have one value per id ({n}), got shape {self.ef.shape}")
        if self.tabular is not None:
            self.tabular = np.ascontiguousarray(self.tabular, dtype=np.float32)
            if self.tabular.ndim != 2 or len(self.tabular) != n:
                raise ValueError(f"tabular must be (items={n}, columns), got shape {self.tabular.shape}")
        if self.clip_item is None:
            if len(self.features) != n:
                raise ValueError(f"{len(self.features)} feature rows for {n} ids: give clip_item to say "
                                 "which item each clip belongs to")
            self.clip_item = np.arange(n)
        self.clip_item = np.asarray(self.clip_item, dtype=np.int64)
        if self.clip_item.shape != (len(self.features),):
            raise ValueError(f"clip_item needs one entry per feature row ({len(self.features)}), "
                             f"got shape {self.clip_item.shape}")
        if n and (self.clip_item.min() < 0 or self.clip_item.max() >= n):
            raise ValueError(f"clip_item values must index the {n} ids")
        missing = np.flatnonzero(self.clips_per_item == 0)
        if missing.size:
            raise ValueError(f"{missing.size} item(s) have no clip, e.g. {self.ids[missing[0]]!r}")

    @property
    def n_items(self) -> int:
        return len(self.ids)

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    @property
    def tabular_dim(self) -> int:
        return 0 if self.tabular is None else self.tabular.shape[1]

    @property
    def clips_per_item(self) -> np.ndarray:
        return np.bincount(self.clip_item, minlength=self.n_items)

    @property
    def single_clip(self) -> bool:
        return len(self.features) == self.n_items and bool(np.all(self.clips_per_item == 1))

    def clip_tabular(self) -> np.ndarray | None:
        return None if self.tabular is None else self.tabular[self.clip_item]

    def clip_ef(self) -> np.ndarray:
        return self.ef[self.clip_item]
