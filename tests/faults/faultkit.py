"""Helpers of the fault-injection suite: the tiny experiment file, CLI outcomes, and runs killed with
SIGKILL at a chosen point (in a child process, through killpoint.py).

Everything is sized for seconds: 20 synthetic videos of 32 px, 4-frame clips, an encoder of a few
hundred weights, two epochs. The suite checks outcomes (exit codes, messages, stored files), not skill.
"""
from __future__ import annotations

import io
import json
import os
import select
import shutil
import signal
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
# A server that imports the CLI, torch and what validate and run import, once (3 s of every Python start here),
# then forks a fresh child for each call: the child sets the address-space limit, runs the call's commands and
# reports their outcomes in a file. The child is a copy of a process that has only imported modules and never run a
# command, so each call starts from the state a new ``python -c`` process has, with nothing left behind by an
# earlier call; its own output (a traceback, a warning printed outside the CLI) goes to a file of its own, returned
# with a failed call.
LIMITED_SERVER = """import contextlib, io, json, os, resource, sys, traceback
import pandas, torch  # what every call imports: here once, before any fork
from benchmark.cli import build_parser, main
build_parser()  # imports every command's module
import benchmark.data.prepare, benchmark.encoding.preflight, benchmark.orchestration.checkpoint_models  # what
import benchmark.orchestration.runner, benchmark.training.preflight  # validate and run import when called
replies = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    limit, commands, result, log = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            quiet = os.open(os.devnull, os.O_RDONLY)
            logged = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(quiet, 0), os.dup2(logged, 1), os.dup2(logged, 2)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            outcomes = []
            for args in commands:
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    outcomes.append((main(args), out.getvalue(), err.getvalue()))
            with open(result, "w") as stream:
                json.dump(outcomes, stream)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\\n")
    replies.flush()
"""


class LimitedCli:
    """Calls of the CLI each in a fresh child process under ``MEMORY_LIMIT`` and a timeout (see ``LIMITED_SERVER``):
    for settings that, were they not refused, would build a model too big to build (or compute for minutes)."""

    def __init__(self, folder: Path):
        self.folder, self.calls, self.server = folder, 0, None

    def __call__(self, *commands: list[str | Path], timeout: int = SUBPROCESS_TIMEOUT) -> list[Outcome]:
        """The outcome of each of ``commands`` (the arguments of one ``python -m benchmark``), run one after the
        other in one child; a child that fails, is killed or runs past ``timeout`` s fails the call."""
        if self.server is None or self.server.poll() is not None:
            self.server = subprocess.Popen([sys.executable, "-c", LIMITED_SERVER], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, cwd=HERE.parents[1],  # this checkout's
                                           start_new_session=True)
        self.calls += 1
        result, log = self.folder / f"call{self.calls}.json", self.folder / f"call{self.calls}.log"
        request = [MEMORY_LIMIT, [[str(arg) for arg in command] for command in commands], str(result), str(log)]
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        ready, _, _ = select.select([self.server.stdout], [], [], timeout)
        if not ready:  # the server and its child (one process group): the next call starts a new server
            self.close()
            raise subprocess.TimeoutExpired(request[1], timeout)
        reply = self.server.stdout.readline()
        assert reply.strip() == "0", f"the child ended with {reply.strip() or 'its server'}: " + (
            log.read_text()[-3000:] if log.is_file() else "")
        return [Outcome(*outcome) for outcome in json.loads(result.read_text())]

    def close(self, kill: bool = True) -> None:
        """End the server: at once (``kill``: it and any child of it), or once it has read its last request."""
        if self.server is None:
            return
        if kill and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
        self.server.stdin.close()
        self.server.wait(timeout=SUBPROCESS_TIMEOUT)
        self.server.stdout.close()
        self.server = None


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
