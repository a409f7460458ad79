"""Helpers of the fault-injection suite: the tiny experiment file, CLI outcomes, and runs killed with
SIGKILL at a chosen point (in a child process, through killpoint.py).

Everything is sized for seconds: 20 synthetic videos of 32 px, 4-frame clips, an encoder of a few
hundred weights, two epochs. The suite checks outcomes (exit codes, messages, stored files), not skill.
"""
from __future__ import annotations

import inspect
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


# Children of the CLI (one under a memory limit, one killed at a chosen point) are forked from a server: a child
# of this process that imports what the children import, once (3 s of every Python start here, most of it torch),
# then forks a fresh process for each request. Such a process is a copy of one that has only imported modules and
# never run anything, so it starts from the state a new ``python`` process has, with nothing left behind by an
# earlier request; its output goes to files of its own. The server answers each request with the exit status of
# its process; a request unanswered after its timeout ends the server and its process (one process group), and the
# next request starts a new server.
SERVER_LOOP = """
replies = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        child(*request)  # never returns
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\\n")
    replies.flush()
"""


def redirect(stdout: str, stderr: str) -> None:
    """In a forked child: stdin from /dev/null, stdout and stderr into files."""
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        os.dup2(os.open(path, flags), fd)


class ForkServer:
    """A server process running ``script`` (which ends in ``SERVER_LOOP``) in ``cwd``."""

    script = ""
    cwd = HERE

    def __init__(self, folder: Path):
        self.folder, self.requests, self.server = folder, 0, None

    def request(self, request: list, timeout: float) -> int:
        """The exit status of the process that ran ``request``."""
        if self.server is None or self.server.poll() is not None:
            self.server = subprocess.Popen([sys.executable, "-c", self.script], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, cwd=self.cwd, start_new_session=True)
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        ready, _, _ = select.select([self.server.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise subprocess.TimeoutExpired(request, timeout)
        reply = self.server.stdout.readline()
        assert reply.strip(), "the server ended without an answer"
        return json.loads(reply)

    def files(self, *suffixes: str) -> list[Path]:
        """Fresh paths for one request's files."""
        self.requests += 1
        return [self.folder / f"request{self.requests}.{suffix}" for suffix in suffixes]

    def close(self, kill: bool = True) -> None:
        """End the server: at once (``kill``: it and any process of it), or once it has read its last request."""
        if self.server is None:
            return
        if kill and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
        self.server.stdin.close()
        self.server.wait(timeout=SUBPROCESS_TIMEOUT)
        self.server.stdout.close()
        self.server = None


# What a child running the CLI may map: the tiny experiment's validate and run need under 4 GB of address space; a
# model built at a size validate should have refused fails at this limit in seconds, instead of filling the machine.
MEMORY_LIMIT = 6 * 2**30


class LimitedCli(ForkServer):
    """Calls of the CLI each in a fresh process under ``MEMORY_LIMIT`` and a timeout: for settings that, were they not
    refused, would build a model too big to build (or compute for minutes). The server imports the CLI, torch and
    what validate and run import when called; its processes run the CLI of this checkout (the server's ``cwd``)."""

    cwd = HERE.parents[1]
    script = """import contextlib, io, json, os, resource, sys, traceback
import pandas, torch  # what every call imports
from benchmark.cli import build_parser, main
build_parser()  # imports every command's module
import benchmark.data.prepare, benchmark.encoding.preflight, benchmark.orchestration.checkpoint_models  # what
import benchmark.orchestration.runner, benchmark.training.preflight  # validate and run import when called


def child(limit, commands, result, log):
    code = 1
    try:
        redirect(log, log)
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
""" + inspect.getsource(redirect) + SERVER_LOOP

    def __call__(self, *commands: list[str | Path], timeout: int = SUBPROCESS_TIMEOUT) -> list[Outcome]:
        """The outcome of each of ``commands`` (the arguments of one ``python -m benchmark``), run one after the
        other in one process; a process that fails, is killed or runs past ``timeout`` s fails the call."""
        result, log = self.files("json", "log")
        status = self.request([MEMORY_LIMIT, [[str(arg) for arg in command] for command in commands], str(result),
                               str(log)], timeout)
        assert status == 0, f"the child ended with {status}: " + (log.read_text()[-3000:] if log.is_file() else "")
        return [Outcome(*outcome) for outcome in json.loads(result.read_text())]


def run_args(experiment: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(experiment), "--out", str(out), "--quiet", *extra]


class KilledRuns(ForkServer):
    """``python killpoint.py KILL -- run EXPERIMENT --out OUT`` in a fresh process, which SIGKILLs itself at the point
    ``KILL`` names (see killpoint.py). The server imports torch and pandas, not the benchmark: killpoint arms its
    target before the benchmark's modules are imported, as in a new process. Each process runs as that script would,
    to the interpreter's own exit (``sys.exit``), in the folder given; it inherits the server's environment, this
    process's at the server's start (thread counts included), so the work it finishes before dying is bit-identical
    to what an in-process run computes."""

    script = f"""import json, os, sys
sys.path[0] = {str(HERE)!r}  # where `python killpoint.py` finds its modules
import pandas, torch
import killpoint


def child(argv, cwd, stdout, stderr):
    os.chdir(cwd)
    redirect(stdout, stderr)
    sys.argv = [killpoint.__file__, *argv]
    sys.exit(killpoint.main(argv))  # the interpreter's exit, in this process
""" + inspect.getsource(redirect) + SERVER_LOOP

    def __call__(self, tmp_path: Path, kill: list[str], experiment: Path, out: Path) -> subprocess.CompletedProcess:
        stdout, stderr = self.files("out", "err")
        argv = [*kill, "--", *run_args(experiment, out)]
        status = self.request([argv, str(tmp_path), str(stdout), str(stderr)], SUBPROCESS_TIMEOUT)
        return subprocess.CompletedProcess([sys.executable, str(KILLPOINT), *argv], status, stdout.read_text(),
                                           stderr.read_text())


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
