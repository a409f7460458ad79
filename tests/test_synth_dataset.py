"""Determinism, the `synthetic` dataset plugin (idempotent, atomic generation) and the `synth` command."""
import os

import pytest

import registry
from benchmark.cli import main
from benchmark.errors import ConfigError, DataError
from benchmark.synth.generate import MARKER, ORACLE, generate, read_marker


def _tables(root):
    return (root / "A4C" / "FileList.csv").read_bytes(), (root / ORACLE).read_bytes()


def test_same_seed_same_bytes_and_labels_different_seed_differs(tmp_path):
    first = generate("echonet_pediatric", 4, tmp_path / "a", seed=5, workers=2)
    second = generate("echonet_pediatric", 4, tmp_path / "b", seed=5, workers=1)  # worker count is irrelevant
    other = generate("echonet_pediatric", 4, tmp_path / "c", seed=6)
    assert _tables(first) == _tables(second)
    assert (first / "A4C" / "VolumeTracings.csv").read_bytes() == (second / "A4C" / "VolumeTracings.csv").read_bytes()
    videos = sorted((first / "A4C" / "Videos").iterdir())
    assert [v.read_bytes() for v in videos] == [(second / "A4C" / "Videos" / v.name).read_bytes() for v in videos]
    assert _tables(first)[0] != _tables(other)[0]


def test_dataset_generates_once_then_reuses_and_marks_items(tmp_path):
    root = tmp_path / "synthetic"
    dataset = registry.build("dataset", "synthetic", root=root, format="echonet_pediatric", n=6, seed=1,
                             ambiguous_fraction=0.5)
    index = dataset.load()
    assert index.synthetic and index.oracle_path == root / ORACLE and len(index.items) == 6
    assert {item.subgroups["ambiguous"] for item in index.items} <= {"yes", "no"}
    assert any(item.subgroups["ambiguous"] == "yes" for item in index.items)
    assert read_marker(root)["n"] == 6 and "not real patient data" in (root / MARKER).read_text().lower()
    stamp = (root / ORACLE).stat().st_mtime_ns
    again = registry.build("dataset", "synthetic", root=root, format="echonet_pediatric", n=6, seed=1,
                           ambiguous_fraction=0.5).load()
    assert (root / ORACLE).stat().st_mtime_ns == stamp  # reused, not regenerated
    assert [i.id for i in again.items] == [i.id for i in index.items]
    splits = dataset.splits(index, "fold", fold=0)
    assert set(splits[0].roles) == {item.id for item in index.items}
    changed = registry.build("dataset", "synthetic", root=root, format="echonet_pediatric", n=7, seed=1).load()
    assert len(changed.items) == 7  # other parameters: the old generation is replaced


def test_a_camus_stand_in_is_built_only_for_the_release_it_writes(tmp_path):
    """Built directly (not through `validate`), the stand-in refuses a loader setting its generation cannot meet
    before it generates anything."""
    with pytest.raises(ConfigError, match="release: the synthetic stand-in writes camus as release '2023' only"):
        registry.build("dataset", "synthetic", root=tmp_path / "camus", format="camus", release="2019")
    assert not (tmp_path / "camus").exists()
    for release in ("auto", "2023"):
        registry.build("dataset", "synthetic", root=tmp_path / "camus", format="camus", release=release)


def test_killed_generation_never_looks_complete(tmp_path):
    root = tmp_path / "synthetic"
    stale = tmp_path / ".synthetic.partial-999999999"  # a staging folder whose process is gone
    (stale / "A4C").mkdir(parents=True)
    dataset = registry.build("dataset", "synthetic", root=root, format="camus", n=2, seed=0, view="both")
    index = dataset.load()
    assert not stale.exists() and len(index.items) == 4
    assert {item.id.split("_")[0] for item in index.items} == {"patient0001", "patient0002"}


def test_foreign_folder_is_left_alone(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "FileList.csv").write_text("FileName\n")
    with pytest.raises(DataError, match="not a synthetic generation"):
        generate("echonet_dynamic", 2, tmp_path / "real", seed=0)


def test_synth_command_and_preview(tmp_path, capsys):
    out = tmp_path / "dynamic"
    assert main(["synth", "--format", "echonet_dynamic", "--n", "4", "--out", str(out), "--seed", "0",
                 "--ambiguous-fraction", "0.5", "--workers", "1"]) == 0
    assert (out / "FileList.csv").is_file() and read_marker(out)["ambiguous_fraction"] == 0.5
    png = tmp_path / "sheet.png"
    assert main(["synth", "--preview", str(out), "--output", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 10_000
    assert main(["synth", "--format", "camus"]) == 2
    assert "--n" in capsys.readouterr().err


@pytest.mark.parametrize("workers, problem", [
    ("0", "must be at least 1 (1 = rendered in the calling process), got 0"),
    ("-2", "must be at least 1 (1 = rendered in the calling process), got -2"),
    ("100000", "must be at most 1024: each is a process, all started at once; got 100000"),
])
def test_synth_refuses_a_worker_count_that_starts_no_process_or_too_many(tmp_path, capsys, workers, problem):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit:
        main(["synth", "--format", "echonet_dynamic", "--n", "2", "--out", str(out), "--seed", "0", "--workers", workers])
    assert exit.value.code == 2
    assert f"argument --workers: {problem}" in capsys.readouterr().err
    assert not out.exists()
