"""Run ``python -m benchmark`` and kill -9 the process at an exact point: crash injection without races.

    python killpoint.py call MODULE:FUNCTION N -- run experiment.toml --out DIR
    python killpoint.py interrupt MODULE:FUNCTION N -- run experiment.toml --out DIR
    python killpoint.py replace GLOB N -- run experiment.toml --out DIR

``call``: the process SIGKILLs itself on entering the N-th call of ``MODULE.FUNCTION`` (the function is
looked up through its module at call time, so patching the module attribute reaches every caller).
``interrupt``: as ``call``, but the process sends itself SIGINT (what Ctrl-C sends), which Python raises as
KeyboardInterrupt in the middle of the work, so every ``finally`` and ``except`` of the benchmark runs.
``replace``: it SIGKILLs itself at the N-th atomic rename onto a path matching ``GLOB``, i.e. after the
temporary file is complete and before it takes the final name: the worst moment for a writer.

SIGKILL cannot be caught, so no ``finally`` or ``except BaseException`` of the benchmark runs: the
process dies exactly as it would under the OOM killer or a power cut.
"""
from __future__ import annotations

import fnmatch
import importlib
import os
import signal
import sys
from typing import Callable


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def nth_time(n: int) -> Callable[[], bool]:
    calls = 0

    def due() -> bool:
        nonlocal calls
        calls += 1
        return calls == n

    return due


def interrupt() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def arm_call(target: str, n: int, action: Callable[[], None] = kill) -> None:
    module_name, name = target.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    due = nth_time(n)

    def wrapper(*args, **kwargs):
        if due():
            action()
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


def arm_replace(pattern: str, n: int) -> None:
    original = os.replace
    due = nth_time(n)

    def replace(source, destination, *args, **kwargs):
        if fnmatch.fnmatch(os.fspath(destination), pattern) and due():
            kill()
        return original(source, destination, *args, **kwargs)

    os.replace = replace


def main(argv: list[str]) -> int:
    separator = argv.index("--")
    (mode, target, n), cli_args = argv[:separator], argv[separator + 1:]
    modes = {"call": arm_call, "replace": arm_replace,
             "interrupt": lambda target, n: arm_call(target, n, action=interrupt)}
    modes[mode](target, int(n))
    from benchmark.cli import main as benchmark_main

    return benchmark_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
