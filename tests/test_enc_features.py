"""Feature cache: hits, misses, invalidation by every key part, corruption and forgery detection, views."""
import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from benchmark.encoding.cache import FeatureCache, FeatureKey
from benchmark.identity import dataset_fingerprint, item_digest, weights_hash
from plugins.encoders.tiny3d import Tiny3D

ITEMS, CLIPS = 5, 2


class CountingLoaders:
    """A loader factory over tiny clips, batches ``(clip, target, item index, clip index)``; counts calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, view):
        self.calls.append(view)
        generator = torch.Generator().manual_seed(view)
        for start in range(0, ITEMS, 2):
            items = torch.arange(start, min(start + 2, ITEMS)).repeat_interleave(CLIPS)
            clips = torch.arange(CLIPS).repeat(len(items) // CLIPS)
            yield (torch.randn(len(items), 3, 4, 16, 16, generator=generator), items.float() * 10 + 20, items, clips)


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return Tiny3D(width=2, depth=1, feature_dim=3)


KEY = FeatureKey(dataset="d" * 8, split="s" * 8, role="test", encoder={"name": "tiny3d", "width": 2},
                 clips={"frames": 4, "size": 16, "test_clips": CLIPS})


def test_miss_then_hit_returns_identical_arrays(tmp_path, encoder):
    cache, loaders = FeatureCache(tmp_path), CountingLoaders()
    first = cache.features(KEY, loaders, encoder)
    second = cache.features(KEY, loaders, encoder)
    assert (first.status, second.status, loaders.calls) == ("miss", "hit", [0])
    assert first.features.shape == (ITEMS * CLIPS, 3)
    assert list(second.item_index) == [i for i in range(ITEMS) for _ in range(CLIPS)]
    assert list(second.clip_index) == list(range(CLIPS)) * ITEMS
    for name in ("item_index", "clip_index", "view", "target", "features"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert second.metadata["augmentation"].startswith("off")
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npz"]  # no temporary files left


@pytest.mark.parametrize("change", [
    {"dataset": "e" * 8}, {"split": "t" * 8}, {"role": "train"},
    {"encoder": {"name": "tiny3d", "width": 4}}, {"clips": {"frames": 4, "size": 16, "test_clips": 3}},
    {"augment": True}, {"views": 2, "augment": True}, {"precision": "bfloat16"},
], ids=lambda change: "+".join(change))
def test_every_key_part_invalidates(tmp_path, encoder, change):
    cache, loaders = FeatureCache(tmp_path), CountingLoaders()
    cache.features(KEY, loaders, encoder)
    changed = dataclasses.replace(KEY, **change)
    assert cache.key(changed, encoder) != cache.key(KEY, encoder)
    assert cache.features(changed, loaders, encoder).status == "miss"
    assert cache.features(KEY, loaders, encoder).status == "hit"  # the old entry is still valid


def test_changed_weights_invalidate(tmp_path, encoder):
    cache, loaders = FeatureCache(tmp_path), CountingLoaders()
    cache.features(KEY, loaders, encoder)
    before = weights_hash(encoder)
    with torch.no_grad():
        encoder.project.bias[0] += 1e-3
    assert weights_hash(encoder) != before
    assert cache.features(KEY, loaders, encoder).status == "miss"


def truncate(npz, meta):
    npz.write_bytes(npz.read_bytes()[:100])


def garble_json(npz, meta):
    meta.write_text(meta.read_text()[:-20])


def delete_arrays(npz, meta):
    npz.unlink()


def reshape_consistently(npz, meta):
    """Valid file and checksum, but not the shapes the entry claims."""
    with np.load(npz) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["features"] = arrays["features"][:, :2]
    np.savez(npz, **arrays)
    metadata = json.loads(meta.read_text())
    metadata["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    meta.write_text(json.dumps(metadata))


def forge_consistently(npz, meta):
    """Other features, with the checksum and shapes made to match: only the ledger of what this machine wrote
    (``identity.made_here``) tells them from the real ones."""
    with np.load(npz) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["features"] = arrays["features"] + 1.0
    np.savez(npz, **arrays)
    metadata = json.loads(meta.read_text())
    metadata["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    meta.write_text(json.dumps(metadata))


@pytest.mark.parametrize("damage,reason", [(truncate, "checksum"), (garble_json, "unreadable"),
                                           (delete_arrays, "unreadable"), (reshape_consistently, "shape"),
                                           (forge_consistently, "not made on this machine")])
def test_corrupt_entries_are_detected_and_rebuilt(tmp_path, encoder, damage, reason):
    cache, loaders = FeatureCache(tmp_path), CountingLoaders()
    good = cache.features(KEY, loaders, encoder)
    damage(*cache.paths(good.key))
    rebuilt = cache.features(KEY, loaders, encoder)
    assert rebuilt.status.startswith("rebuilt") and reason in rebuilt.status
    assert np.array_equal(rebuilt.features, good.features)
    assert cache.features(KEY, loaders, encoder).status == "hit"


def test_augmented_views_are_cached_side_by_side(tmp_path, encoder):
    loaders = CountingLoaders()
    key = dataclasses.replace(KEY, role="train", views=3, augment=True)
    cached = FeatureCache(tmp_path).features(key, loaders, encoder)
    assert loaders.calls == [0, 1, 2] and cached.features.shape == (3 * ITEMS * CLIPS, 3)
    assert np.bincount(cached.view).tolist() == [ITEMS * CLIPS] * 3
    assert not np.allclose(cached.features[cached.view == 0], cached.features[cached.view == 1])
    assert cached.metadata["augmentation"] == "3 augmented views cached"
    assert encoder.training  # the encoder's mode is restored after encoding


def test_identical_views_are_refused():
    with pytest.raises(ValueError, match="identical"):
        dataclasses.replace(KEY, views=2)


def test_dataset_fingerprint_sees_labels_and_files():
    base = dataset_fingerprint([item_digest(("a", 55.0), {"a.avi": "1234"})])
    assert dataset_fingerprint([item_digest(("a", 56.0), {"a.avi": "1234"})]) != base
    assert dataset_fingerprint([item_digest(("a", 55.0), {"a.avi": "12345"})]) != base


def test_bfloat16_features_are_computed_in_bfloat16_and_stored_as_float32(tmp_path, encoder):
    cache = FeatureCache(tmp_path)
    exact = cache.features(KEY, CountingLoaders(), encoder).features
    rounded = cache.features(dataclasses.replace(KEY, precision="bfloat16"), CountingLoaders(), encoder).features
    assert rounded.dtype == exact.dtype == np.float32
    assert not np.array_equal(exact, rounded)
    np.testing.assert_allclose(rounded, exact, rtol=0.05, atol=0.05)


def test_many_batches_are_gathered_row_for_row(tmp_path, encoder):
    # 70 batches of 2 clips: the gathering arrays grow past 64 and 128 rows on the way.
    generator = torch.Generator().manual_seed(5)
    batches = [(torch.randn(2, 3, 4, 16, 16, generator=generator), torch.tensor([30.0 + b, 31.0 + b]),
                torch.tensor([b, b]), torch.tensor([0, 1])) for b in range(70)]
    cached = FeatureCache(tmp_path).features(KEY, lambda view: batches, encoder)
    with torch.no_grad():
        expected = torch.cat([encoder.eval()(clip) for clip, *_ in batches]).numpy()
    np.testing.assert_array_equal(cached.features, expected)
    np.testing.assert_array_equal(cached.item_index, np.repeat(np.arange(70), 2))
    np.testing.assert_array_equal(cached.clip_index, np.tile([0, 1], 70))
    np.testing.assert_array_equal(cached.target, np.stack([30.0 + np.arange(70), 31.0 + np.arange(70)], 1).ravel())
    assert cached.features.dtype == np.float32 and cached.item_index.dtype == np.int64
