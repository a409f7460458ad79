"""``python -m benchmark``: one subcommand per module in ``benchmark/commands``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Errors the user can act on are printed as one paragraph and mapped to exit codes: 0 ok, 2 usage or
configuration, 1 runtime failure. ``--debug`` shows the traceback as well.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import select
import signal
import sys
import textwrap
import traceback

from benchmark import commands


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="LVEF regression benchmark: compare regression heads under identical splits.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda info: info.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        name = info.name.replace("_", "-")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        module.add_arguments(sub)
        modules[name] = module
    return parser, modules


# The terminal's control characters but line feed and tab: C0 (carriage return too), DEL and C1, each written as
# its escape (ESC as the four characters \x1b). Progress bars redraw with carriage returns: they draw on
# ``unescaped`` (``progress.progress_bar``), as their text is the run's own.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if chr(code) not in "\n\t"}


class _Printable:
    """A text stream that writes control characters as visible escapes. Messages name things taken from received
    files (a manifest's plugins, a leaderboard's columns, a storage's workers and errors): printed raw, an ESC
    sequence in one could erase or rewrite what is on the screen, hide the rest of a warning or set the
    clipboard (OSC 52), and a carriage return could write over the start of a line."""

    def __init__(self, stream):
        self._stream = stream
        self.unescaped = stream  # for the progress bars alone

    def write(self, text: str) -> int:
        self._stream.write(text.translate(_CONTROLS))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Printable(sys.stdout), _Printable(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv: list[str] | None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        code = modules[args.command].run(args)
        sys.stdout.flush()  # here, not at exit: a reader that has gone is then seen below
        return code
    except KeyboardInterrupt:
        print("interrupted; finished jobs are kept and a rerun resumes", file=sys.stderr)
        return 130
    except BrokenPipeError as error:
        return _reader_gone() if _stdout_unread() else _failed(error, args.debug)
    except Exception as error:  # every error ends as one paragraph and an exit code
        return _failed(error, args.debug)


def _failed(error: Exception, debug: bool) -> int:
    """The error as one paragraph on stderr; its exit code."""
    code = getattr(error, "exit_code", 1)
    if debug:
        traceback.print_exc()
    label = "error" if code == 2 else "failed"
    message = str(error) or type(error).__name__
    if not hasattr(error, "exit_code"):
        message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
    # Paths and keys stay whole (no breaks inside words or at hyphens) so they can be copied.
    print(textwrap.fill(f"{label}: {message}", width=100, break_long_words=False, break_on_hyphens=False,
                        replace_whitespace=False), file=sys.stderr)
    return code


def _stdout_unread() -> bool:
    """Whether stdout is a pipe whose reader has gone: then a BrokenPipeError is that reader's doing (``list | head
    -1``); another (a worker's pipe) is a failure like any other."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured output), no poll (Windows)
        return False


def _reader_gone() -> int:
    """stdout's reader closed the pipe: nothing went wrong in the command and nothing more can be shown, so no error
    paragraph; the exit code is a command's that SIGPIPE stopped, as ``git log | head`` gives."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is left in stdout's buffer would fail again as the interpreter exits
    return 128 + signal.SIGPIPE
