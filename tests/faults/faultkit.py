"""Helpers of the fault-injection suite: the tiny experiment file, CLI outcomes, and runs killed with
SIGKILL at a chosen point (in a child process, through killpoint.py).

Everything is sized for seconds: 20 synthetic videos of 32 px, 4-frame clips, an encoder of a few
hundred weights, two epochs. The suite checks outcomes (exit codes, messages, stored files), not skill.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmark.cli import main

HERE = Path(__file__).parent
KILLPOINT = HERE / "killpoint.py"
SUBPROCESS_TIMEOUT = 120  # a hung child must fail the test, never the whole CI job

# The synthetic stand-in every pipeline test shares: the first run generates it, later runs reuse it.
SYNTHETIC = {"n": 20, "seed": 0}
SYNTHETIC_PARAMS = "{ size = 32, workers = 1 }"

EXPERIMENT = """\
name = "faults"
seeds = [0]
plugins = {plugins}

[dataset]
name = "{dataset}"
root = "{root}"
{dataset_extra}

[synthetic]
n = {n}
seed = {seed}
root = "{synthetic_root}"
params = {synthetic_params}

[clips]
frames = 4
size = 32

[encoder]
name = "tiny3d"
params = {{ width = 4, depth = 2, feature_dim = 8 }}

[encoder.pretrain]
objective = "l1"
epochs = 1
batch_size = 16

{models}

[train]
epochs = 2
batch_size = 16
lr = 1e-3

[tune]
trials = {trials}

[evaluate]
samples = 4
bootstrap = 20
"""

MODELS = """\
[[models]]
head = "mse"
label = "mse"

[[models]]
head = "gaussian"
label = "gaussian"
"""


def write_experiment(path: Path, *, synthetic_root: Path, root: Path | str | None = None,
                     dataset: str = "echonet_pediatric", dataset_extra: str = "", models: str = MODELS,
                     plugins: list[str] | tuple[str, ...] = (), trials: int = 0) -> Path:
    """The tiny experiment as a TOML file. Without ``root`` the dataset is absent, so the run uses the
    synthetic stand-in under ``synthetic_root`` (generated there unless already present)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXPERIMENT.format(
        plugins="[" + ", ".join(f'"{p}"' for p in plugins) + "]", dataset=dataset,
        root=root if root is not None else path.parent / "no-such-dataset", dataset_extra=dataset_extra,
        synthetic_root=synthetic_root, synthetic_params=SYNTHETIC_PARAMS, models=models, trials=trials, **SYNTHETIC))
    return path


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(*args: str | Path) -> Outcome:
    """``python -m benchmark ARGS`` in this process (imports stay warm), with its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return Outcome(code, out.getvalue(), err.getvalue())


# What a child running the CLI may map: the tiny experiment's validate and run need under 4 GB of address space; a
# model built at a size validate should have refused fails at this limit in seconds, instead of filling the machine.
MEMORY_LIMIT = 6 * 2**30
LIMITED_CLI = """import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from benchmark.cli import main
outcomes = []
for args in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        outcomes.append((main(args), out.getvalue(), err.getvalue()))
print(json.dumps(outcomes))
"""


def cli_limited(*commands: list[str | Path], timeout: int = SUBPROCESS_TIMEOUT) -> list[Outcome]:
    """Each of ``commands`` (the arguments of one ``python -m benchmark``) in one child under ``MEMORY_LIMIT`` and
    ``timeout``: for settings that, were they not refused, would build a model too big to build (or compute for
    minutes)."""
    args = json.dumps([[str(arg) for arg in command] for command in commands])
    child = subprocess.run([sys.executable, "-c", LIMITED_CLI, str(MEMORY_LIMIT), args], capture_output=True,
                           text=True, timeout=timeout, cwd=HERE.parents[1], check=False)  # this checkout's
    assert child.returncode == 0, child.stderr[-3000:]
    return [Outcome(*outcome) for outcome in json.loads(child.stdout)]


def run_args(experiment: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(experiment), "--out", str(out), "--quiet", *extra]


def run_killed(tmp_path: Path, kill: list[str], experiment: Path, out: Path) -> subprocess.CompletedProcess:
    """Run the CLI in a child that SIGKILLs itself at the point ``kill`` names (see killpoint.py).

    The child inherits this process's environment (thread counts included), so the work it finishes
    before dying is bit-identical to what an in-process run computes."""
    return subprocess.run([sys.executable, str(KILLPOINT), *kill, "--", *run_args(experiment, out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)


def leaderboard(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "leaderboard.csv")


def copy_run(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to


def temporaries(folder: Path) -> list[Path]:
    """Files an atomic write left under a temporary name (``.<final name>.<pid>.<random>.tmp``)."""
    return sorted(folder.rglob(".*.tmp"))


def assert_complete_files(run_dir: Path) -> None:
    """Every file under its final name is whole: JSON parses, arrays load, tables read, models load."""
    temporary = set(temporaries(run_dir))
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and p not in temporary):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".npz":
            with np.load(path) as arrays:
                [arrays[name] for name in arrays.files]
        elif path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=True)
