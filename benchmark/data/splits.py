"""The split manifest: one table of (id, patient, split, role), checked, hashed and written once per run.

Every model and seed reads the same manifest, so compared numbers always come from identical splits.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import pandas as pd

from benchmark.contracts import ROLES, DatasetIndex, Split
from benchmark.data.helpers import write_excluded
from benchmark.errors import DataError
from benchmark.store import atomic_write_text, csv_text, read_csv_table
from registry.errors import did_you_mean

COLUMNS = ["id", "patient", "split", "role"]


def build_manifest(index: DatasetIndex, splits: Sequence[Split], protocol: str) -> pd.DataFrame:
    """The checked manifest of ``splits``: no patient in two roles, no empty role."""
    if not splits:
        raise DataError(f"protocol {protocol!r} produced no split")
    patient_of = {item.id: item.patient for item in index.items}
    rows = []
    for split in splits:
        unknown = sorted(set(split.roles) - set(patient_of), key=repr)  # a plugin's splits() may give any key
        if unknown:
            raise DataError(f"protocol {protocol!r}, split {split.name!r} assigns id(s) load() did not give: "
                            f"{', '.join(map(repr, unknown[:5]))}{', ...' if len(unknown) > 5 else ''}")
        _check_role_names(split, protocol)
        rows += [(item_id, patient_of[item_id], split.name, role) for item_id, role in split.roles.items()]
    manifest = pd.DataFrame(rows, columns=COLUMNS).sort_values(["split", "id"], kind="stable", ignore_index=True)
    check_roles(manifest, protocol, [split.name for split in splits])
    check_patients_disjoint(manifest, protocol)
    return manifest


def _check_role_names(split: Split, protocol: str) -> None:
    """Every role one of ``ROLES``: an item given another ("validation", "TRAIN") would be in the manifest and in no
    role's data, left out of the benchmark without a word."""
    for role in sorted(set(split.roles.values()) - set(ROLES), key=str):
        ids = sorted(item_id for item_id, given in split.roles.items() if given == role)
        raise DataError(f"protocol {protocol!r}, split {split.name!r}: {len(ids)} item(s) ({', '.join(ids[:3])}"
                        f"{', ...' if len(ids) > 3 else ''}) have the role {role!r}, which is none of "
                        f"{', '.join(ROLES)}.{did_you_mean(str(role), ROLES)} The dataset's splits() gives the roles.")


def check_roles(manifest: pd.DataFrame, protocol: str, names: Sequence[str]) -> None:
    for name in names:
        present = set(manifest.loc[manifest["split"] == name, "role"])
        empty = [role for role in ROLES if role not in present]
        if empty:
            raise DataError(f"protocol {protocol!r}, split {name!r}: the {', '.join(empty)} role(s) are empty. "
                            "Check the fold labels on disk, dataset.view and dataset.fold.")


def check_patients_disjoint(manifest: pd.DataFrame, protocol: str) -> None:
    roles_per_patient = manifest.groupby(["split", "patient"])["role"].nunique()
    leaking = roles_per_patient[roles_per_patient > 1]
    if len(leaking):
        split, patient = leaking.index[0]
        roles = sorted(manifest.loc[(manifest["split"] == split) & (manifest["patient"] == patient), "role"].unique())
        raise DataError(f"protocol {protocol!r}, split {split!r}: patient {patient} is in {' and '.join(roles)} "
                        f"({len(leaking)} patient(s) span roles). All videos of a patient must share one fold.")


def manifest_hash(manifest: pd.DataFrame) -> str:
    """A stable hash of the manifest contents (independent of row order)."""
    ordered = manifest[COLUMNS].sort_values(COLUMNS, ignore_index=True)
    return hashlib.sha256(ordered.to_csv(index=False).encode()).hexdigest()[:16]


def write_split_files(run_dir: str | Path, manifest: pd.DataFrame, index: DatasetIndex) -> str:
    """Writes ``splits.csv`` and ``excluded.csv`` into ``run_dir``; returns the manifest hash."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "splits.csv", csv_text(manifest[COLUMNS]))
    write_excluded(run_dir / "excluded.csv", index.excluded)
    return manifest_hash(manifest)


def read_manifest(path: str | Path) -> pd.DataFrame:
    return read_csv_table(path, dtype=str)[COLUMNS]
