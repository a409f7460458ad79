"""A received manifest.json or result.json that a run would not have written is an error naming the file and
the field, for `report` and `status` alike, never a KeyError or TypeError from deep inside, nor a value read
as something else (a string of job ids read letter by letter, a bootstrap of 10**12 resamples); `run` into
such a directory stops with the same error, which says to delete the file to recompute that step."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from faults.faultkit import cli, run_args

from benchmark.store import file_records


def _edit(path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _a_result(run_copy):
    return next(run_copy.glob("jobs/*/result.json"))


def _without(key):
    return lambda record: {name: value for name, value in record.items() if name != key}


RESULTS = {
    "status missing": (_without("status"), "`status` is missing"),
    "files a list": (lambda record: {**record, "files": ["predictions.csv"]}, "`files` is not a table"),
    "a file without its SHA-256": (lambda record: {**record, "files": {"predictions.csv": {}}}, "`files` is not a table"),
    "seed a list": (lambda record: {**record, "seed": [1]}, "`seed` is [1], not a whole number"),
    "seed true": (lambda record: {**record, "seed": True}, "`seed` is True, not a whole number"),
    "an unknown status": (lambda record: {**record, "status": "great"}, "`status` is 'great', not one of ok, failed"),
    "not an object": (lambda record: [record], "is not a JSON object"),
    "notes a string": (lambda record: {**record, "notes": "abc"}, "`notes` is not a table of score -> text"),
    "a note a number": (lambda record: {**record, "notes": {"crps": 5}}, "`notes` is not a table of score -> text"),
}
MANIFESTS = {
    "jobs a string": (lambda manifest: {**manifest, "jobs": "abc"}, "`jobs` is not a list of job ids"),
    "jobs numbers": (lambda manifest: {**manifest, "jobs": [1, 2]}, "`jobs` is not a list of job ids"),
    "no protocol": (_without("protocol"), "`protocol` is not a JSON object"),
    "a bootstrap past its bound": (
        lambda manifest: {**manifest, "config": {**manifest["config"], "evaluate": {
            **manifest["config"]["evaluate"], "bootstrap": 10**12}}}, "config: `evaluate.bootstrap`"),
    "tune not a table": (lambda manifest: {**manifest, "config": {**manifest["config"], "tune": 5}}, "config: `tune`"),
}


@pytest.mark.parametrize("case", RESULTS)
def test_a_malformed_result_is_named_with_its_field(run_copy, case):
    change, expected = RESULTS[case]
    path = _a_result(run_copy)
    _edit(path, change)
    for command in ("report", "status"):
        outcome = cli(command, run_copy)
        said = " ".join(outcome.err.split())
        assert outcome.code == 1 and f"{path}: {expected}" in said, (command, outcome.text)
        assert "Error:" not in said.split(str(path))[0]  # one paragraph, not a Python exception's name


@pytest.mark.parametrize("case", MANIFESTS)
def test_a_malformed_manifest_is_named_with_its_field(run_copy, case):
    change, expected = MANIFESTS[case]
    _edit(run_copy / "manifest.json", change)
    for command in ("report", "status"):
        outcome = cli(command, run_copy)
        said = " ".join(outcome.err.split())
        assert outcome.code == 1 and f"{run_copy / 'manifest.json'}: {expected}" in said, (command, outcome.text)


def test_run_into_a_directory_with_a_malformed_result_stops_naming_it(run_copy):
    path = _a_result(run_copy)
    _edit(path, _without("status"))
    outcome = cli(*run_args(run_copy.parent / "experiment.toml", run_copy))
    said = " ".join(outcome.err.split())
    assert outcome.code == 1 and f"{path}: `status` is missing" in said and "delete it to recompute" in said


def _a_job(run_copy):
    """The folder of a job that stored samples (and so a samples.npz)."""
    return next(path.parent for path in sorted(run_copy.glob("jobs/*/samples.npz")))


def _forge(job, name: str, data: bytes) -> None:
    """Replace a job's stored file and its record in result.json, as a sender can: the SHA-256 vouches for it."""
    (job / name).write_bytes(data)
    _edit(job / "result.json", lambda record: {**record, "files": {**record["files"], **file_records(job, (name,))}})


def _table(change):
    return lambda job: change(pd.read_csv(job / "predictions.csv", dtype=str)).to_csv(index=False).encode()


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _archive(change):
    def forged(job):
        with np.load(job / "samples.npz") as stored:
            return _npz(**change(dict(stored)))
    return forged


# A received job's predictions.csv or samples.npz, recorded in its result.json, that no job writes: report stopped
# with a KeyError ('patient'), an EmptyDataError or numpy's "pickled (object) data" instead of naming the file.
SCORED_FILES = {
    "a column missing": ("predictions.csv", _table(lambda table: table.drop(columns="patient")), "`patient` is missing"),
    "text for a score": ("predictions.csv", _table(lambda table: table.assign(crps=["x"] * len(table))),
                         "`crps` is 'x' in row 2, not a number"),
    "an item twice": ("predictions.csv", _table(lambda table: pd.concat([table, table.iloc[:1]])),
                      f"`FileName` is empty or repeated in row {2 + 2}"),  # the tiny run tests two items
    "no item": ("predictions.csv", _table(lambda table: table.iloc[:0]), "holds no test item"),
    "no CSV": ("predictions.csv", lambda job: b"", "is not a readable CSV"),
    "samples missing": ("samples.npz", _archive(lambda arrays: {"ids": arrays["ids"]}), "`samples` is missing"),
    "ids of objects": ("samples.npz", _archive(lambda arrays: {**arrays, "ids": arrays["ids"].astype(object)}),
                       "is not an archive of arrays"),
    "no archive": ("samples.npz", lambda job: b"PK garbage", "is not an archive of arrays"),
    "ids of other items": ("samples.npz", _archive(lambda arrays: {**arrays, "ids": np.array(["a", "b"])}),
                           "`ids` names 'a', which its predictions.csv does not hold"),
    "samples of another shape": ("samples.npz", _archive(lambda arrays: {**arrays, "samples": arrays["samples"][0]}),
                                 "`samples` is not one row of numbers per id"),
    "paths of text": ("trajectories.npz", lambda job: _npz(labels=np.array(["confident", "ambiguous"]),
                                                           ids=np.array(["a", "b"]), y=np.zeros(2),
                                                           paths=np.full((2, 3, 4), "x")),
                      "`paths` is not a (steps, K) table of numbers for each case of y"),
}


@pytest.mark.parametrize("case", SCORED_FILES)
def test_a_malformed_scored_file_is_named_with_its_field(run_copy, case):
    name, forged, expected = SCORED_FILES[case]
    job = _a_job(run_copy)
    _forge(job, name, forged(job))
    outcome = cli("report", run_copy)
    said = " ".join(outcome.err.split())
    assert outcome.code == 1 and f"{job / name}: {expected}" in said, outcome.text
    assert "Error:" not in said.split(str(job))[0]


def test_a_stored_array_that_unpacks_past_the_bound_is_refused_unread(run_copy, monkeypatch):
    """A zip bomb: a few kB of compressed zeros that unpack to gigabytes. The bound is lowered to 1 MB here so that
    the test needs no gigabytes; the archive's declared size is checked before a byte is unpacked."""
    from benchmark import store

    monkeypatch.setattr(store, "MAX_ARRAY_BYTES", 1 << 20)
    job = _a_job(run_copy)
    with np.load(job / "samples.npz") as stored:
        ids = stored["ids"]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=ids, samples=np.zeros((len(ids), 100_000)))
    assert len(buffer.getvalue()) < 10_000
    _forge(job, "samples.npz", buffer.getvalue())
    outcome = cli("report", run_copy)
    said = " ".join(outcome.err.split())
    assert outcome.code == 1 and f"{job / 'samples.npz'}: is not an archive of arrays (samples.npy unpacks to 1,600," \
        in said, outcome.text
