"""The split manifest: checks, stable hash, and the files a run writes."""
from pathlib import Path

import pandas as pd
import pytest

from benchmark.contracts import DatasetIndex, Exclusion, Item, Split
from benchmark.data.splits import build_manifest, manifest_hash, read_manifest, write_split_files
from benchmark.errors import DataError


def index_of(patients: dict[str, str]) -> DatasetIndex:
    items = tuple(Item(id=i, patient=p, ef=50.0, video=Path(f"{i}.avi"), fold="") for i, p in patients.items())
    return DatasetIndex(items=items, excluded=(Exclusion("x1", "Videos/x1.avi", "missing video"),))


INDEX = index_of({"a1": "A", "a2": "A", "b": "B", "c": "C", "d": "D"})
SPLIT = Split("official", {"a1": "train", "a2": "train", "b": "train", "c": "val", "d": "test"})


def test_manifest_lists_id_patient_split_and_role():
    manifest = build_manifest(INDEX, [SPLIT], "official")
    assert list(manifest.columns) == ["id", "patient", "split", "role"]
    assert manifest.set_index("id").loc["a2"].tolist() == ["A", "official", "train"]


def test_patient_in_two_roles_is_an_error_naming_the_patient():
    leaking = Split("official", {**SPLIT.roles, "a2": "test"})
    with pytest.raises(DataError, match="patient A is in test and train"):
        build_manifest(INDEX, [leaking], "official")


def test_empty_role_is_an_error_naming_the_protocol_and_split():
    no_val = Split("fold3", {**SPLIT.roles, "c": "train"})
    with pytest.raises(DataError, match="protocol 'fold', split 'fold3': the val role"):
        build_manifest(INDEX, [no_val], "fold")
    with pytest.raises(DataError, match="protocol 'cv10' produced no split"):
        build_manifest(INDEX, [], "cv10")


def test_a_role_that_is_none_of_train_val_test_is_an_error_naming_it():
    """A plugin's splits() that says "validation" (or "TRAIN") used to leave those items in no role's data: only
    an emptied role was named, and a role emptied only in part not at all."""
    mislabelled = Split("hashed", {**SPLIT.roles, "a1": "validation", "a2": "validation"})
    with pytest.raises(DataError, match=r"protocol 'hashed', split 'hashed': 2 item\(s\) \(a1, a2\) have the role "
                                        r"'validation', which is none of train, val, test"):
        build_manifest(INDEX, [mislabelled], "hashed")
    upper_case = Split("official", {**SPLIT.roles, "b": "TRAIN"})
    with pytest.raises(DataError, match=r"\(b\) have the role 'TRAIN', .* Did you mean 'train'\?"):
        build_manifest(INDEX, [upper_case], "official")


def test_hash_is_stable_under_row_order_and_changes_with_content():
    manifest = build_manifest(INDEX, [SPLIT], "official")
    shuffled = manifest.sample(frac=1, random_state=1)
    assert manifest_hash(manifest) == manifest_hash(shuffled)
    moved = build_manifest(INDEX, [Split("official", {**SPLIT.roles, "b": "val"})], "official")
    assert manifest_hash(moved) != manifest_hash(manifest)


def test_written_files_round_trip(tmp_path):
    manifest = build_manifest(INDEX, [SPLIT], "official")
    digest = write_split_files(tmp_path / "run", manifest, INDEX)
    assert manifest_hash(read_manifest(tmp_path / "run" / "splits.csv")) == digest
    excluded = pd.read_csv(tmp_path / "run" / "excluded.csv", dtype=str, keep_default_na=False)
    assert excluded.to_dict("records") == [{"id": "x1", "file": "Videos/x1.avi", "dropped": "item", "frame": "",
                                            "reason": "missing video"}]
    assert not list((tmp_path / "run").glob(".*tmp"))  # atomic writes leave no temporaries
