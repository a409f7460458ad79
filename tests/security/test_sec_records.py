"""A received manifest.json or result.json that a run would not have written is an error naming the file and
the field, for `report` and `status` alike, never a KeyError or TypeError from deep inside, nor a value read
as something else (a string of job ids read letter by letter, a bootstrap of 10**12 resamples); `run` into
such a directory stops with the same error, which says to delete the file to recompute that step."""
from __future__ import annotations

import json

import pytest
from faults.faultkit import cli, run_args


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
