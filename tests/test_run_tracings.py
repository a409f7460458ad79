"""`run` with stage 1 trained by LV segmentation (objective "tracings") on a tiny synthetic Pediatric stand-in:
the traced frames of exactly the training videos are used, the trained encoder is stored and reused by a
rerun, and an encoder that cannot segment is a configuration error naming the fix."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import torch
from faults.faultkit import cli, copy_run, leaderboard, run_args, write_experiment

from plugins.encoders.area_length import AreaLength

N, SIZE, WIDTH = 24, 32, 4  # the faultkit experiment renders 32 px videos and cuts 32 px clips
TRACINGS = ("--set", f"synthetic.n={N}", "--set", "encoder.name=area_length",
            "--set", f"encoder.params={{ width = {WIDTH} }}", "--set", "encoder.pretrain.objective=tracings",
            "--set", "encoder.pretrain.epochs=1")
STAGE_ONE = re.compile(r"stage 1 tracings: (\d+) traced frames of (\d+) training videos")


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The experiment file, the run directory and the captured outcome of the first run."""
    folder = tmp_path_factory.mktemp("tracings")
    experiment = write_experiment(folder / "experiment.toml", synthetic_root=folder / "synthetic")
    outcome = cli(*run_args(experiment, folder / "run", *TRACINGS))
    return experiment, folder / "run", outcome


def traced_training_frames(experiment, run_dir) -> tuple[int, int]:
    """(traced frames, traced videos) of the run's training videos, counted from the CSVs on disk."""
    splits = pd.read_csv(run_dir / "splits.csv")
    train = set(splits.loc[splits["role"] == "train", "id"])
    (tracings,) = (experiment.parent / "synthetic").glob(f"echonet_pediatric-n{N}-*/A4C/VolumeTracings.csv")
    rows = pd.read_csv(tracings, dtype={"Frame": str})
    rows = rows[rows["Frame"].str.isdigit() & rows["FileName"].isin(train)]  # "No Systolic" rows trace nothing
    frames = rows[["FileName", "Frame"]].drop_duplicates()
    return len(frames), frames["FileName"].nunique()


def test_stage_one_segments_every_traced_frame_of_the_training_videos(first):
    experiment, run_dir, outcome = first
    assert outcome.code == 0, outcome.text
    (match,) = STAGE_ONE.findall(outcome.out)
    frames, videos = traced_training_frames(experiment, run_dir)
    assert (int(match[0]), int(match[1])) == (frames, videos) and videos >= N // 2
    assert "stage 1 fold0/seed 0 (tracings): loss" in outcome.out
    (stored,) = (run_dir / "encoders").glob("fold0-seed0-*.pt")
    AreaLength(width=WIDTH, size=SIZE).load_state_dict(torch.load(stored, map_location="cpu", weights_only=True))
    board = leaderboard(run_dir).set_index("model")
    assert sorted(board.index) == ["gaussian", "mse", "prior"]  # prior: the row every run adds
    assert (board["status"] == "ok").all() and board["mae"].notna().all()
    assert set(board["encoder"]) == {"area_length"}


def test_rerun_reuses_the_stored_encoder_without_training(first, tmp_path, monkeypatch):
    experiment, run_dir, _ = first
    board = leaderboard(run_dir)
    run_dir = copy_run(run_dir, tmp_path / "run")
    (stored,) = (run_dir / "encoders").glob("*.pt")
    weights = stored.read_bytes()
    (pending,) = (run_dir / "jobs").glob("gaussian__*/result.json")
    pending.unlink()  # one job left to do, so the rerun needs the stage-1 encoder again

    def no_training(*args, **kwargs):
        raise AssertionError("stage 1 trained again instead of reusing the stored encoder")

    monkeypatch.setattr("benchmark.encoding.encoder_stage.pretrain_encoder", no_training)
    outcome = cli(*run_args(experiment, run_dir, *TRACINGS))
    assert outcome.code == 0, outcome.text
    assert f"stage 1 fold0/seed 0: reused {stored.name}" in outcome.out
    assert not STAGE_ONE.search(outcome.out), "no traced frames should be loaded for a reused encoder"
    assert stored.read_bytes() == weights and len(list((run_dir / "encoders").iterdir())) == 1
    pd.testing.assert_frame_equal(leaderboard(run_dir), board)


def test_tracings_objective_with_an_encoder_that_cannot_segment(first, tmp_path):
    experiment, _, _ = first
    outcome = cli(*run_args(experiment, tmp_path / "run", *TRACINGS, "--set", "encoder.name=tiny3d",
                            "--set", "encoder.params={ width = 4, depth = 2, feature_dim = 8 }"))
    assert outcome.code == 2, outcome.text
    message = " ".join(outcome.err.split())
    assert re.search(r"tiny3d.* no segment\(\)", message, re.IGNORECASE), message
    assert "area_length" in message and "tracings" in message
    assert not [*(tmp_path / "run").glob("encoders/*.pt"), *(tmp_path / "run").glob("jobs/*/result.json")]
    # `validate` says so too, before any data is generated or loaded.
    checked = cli("validate", experiment, *TRACINGS, "--set", "encoder.name=tiny3d")
    assert checked.code == 2 and "no segment()" in checked.err, checked.text


def test_a_shared_encoder_is_trained_once_and_every_seed_trains_on_its_features(tmp_path):
    # encoder.shared: stage 1 and the features of one (split, seed 0) serve the heads of seeds 0 and 1.
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "synthetic")
    run_dir = tmp_path / "run"
    outcome = cli(*run_args(experiment, run_dir, *TRACINGS, "--set", "seeds=[0, 1]", "--set", "encoder.shared=true"))
    assert outcome.code == 0, outcome.text
    assert re.findall(r"stage 1 fold0/seed (\d+) \(tracings\): training", outcome.out) == ["0"]
    assert [path.name.split("-")[1] for path in (run_dir / "encoders").glob("*.pt")] == ["seed0"]
    board = leaderboard(run_dir).set_index("model")
    assert (board["status"] == "ok").all() and set(board["n_seeds"]) == {2}
    assert "one per split (seed 0), shared by every seed" in (run_dir / "leaderboard.md").read_text()
    # Without it each seed has its own encoder: seed 0's is the very same computation and is reused, seed 1's
    # is trained, and every job runs again (its features, or its settings, changed).
    again = cli(*run_args(experiment, run_dir, *TRACINGS, "--set", "seeds=[0, 1]", "--set", "encoder.shared=false"))
    assert again.code == 0, again.text
    assert re.findall(r"stage 1 fold0/seed (\d+) \(tracings\): training", again.out) == ["1"]
    assert "0 already done" in again.out


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_resolved_for_the_cpu_before_any_identity(tmp_path, monkeypatch, native):
    # "auto": bfloat16 only where the CPU computes it natively. The resolved precision, not "auto", names the
    # stage and the jobs, so a machine that resolves it otherwise never takes the other's results for its own.
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": native, "amx_bf16": False})
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=tmp_path / "synthetic")
    precision = "bfloat16" if native else "float32"
    runs = {}
    for setting in ("auto", precision):
        run_dir = tmp_path / setting
        outcome = cli(*run_args(experiment, run_dir, *TRACINGS, "--set", f"encoder.precision={setting}"))
        assert outcome.code == 0, outcome.text
        assert f"(tracings): training 1 epochs in {precision}" in outcome.out
        assert f"one per seed, {precision}" in (run_dir / "leaderboard.md").read_text()
        runs[setting] = run_dir
    assert f"encoder precision auto: {precision} on this cpu" in cli(
        *run_args(experiment, tmp_path / "again", *TRACINGS, "--set", "encoder.precision=auto")).out
    names = {setting: sorted(path.name for path in (run_dir / "jobs").iterdir()) for setting, run_dir in runs.items()}
    assert names["auto"] == names[precision]
    assert [p.name for p in (runs["auto"] / "encoders").glob("*.pt")] == \
        [p.name for p in (runs[precision] / "encoders").glob("*.pt")]


def test_a_bfloat16_encoder_is_another_stage_and_another_job_than_a_float32_one(first, tmp_path):
    experiment, run_dir, outcome = first
    assert "training 1 epochs in float32" in outcome.out
    copied = copy_run(run_dir, tmp_path / "run")
    again = cli(*run_args(experiment, copied, *TRACINGS, "--set", "encoder.precision=bfloat16"))
    assert again.code == 0, again.text
    assert "training 1 epochs in bfloat16" in again.out
    assert len(list((copied / "encoders").glob("*.pt"))) == 2  # the float32 encoder is kept, not replaced
    assert "0 already done" in again.out
