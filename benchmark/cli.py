"""``python -m benchmark``: one subcommand per module in ``benchmark/commands``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Errors the user can act on are printed as one paragraph and mapped to exit codes: 0 ok, 2 usage or
configuration, 1 runtime failure. ``--debug`` shows the traceback as well.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
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


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return modules[args.command].run(args)
    except KeyboardInterrupt:
        print("interrupted; finished jobs are kept and a rerun resumes", file=sys.stderr)
        return 130
    except Exception as error:  # every error ends as one paragraph and an exit code
        code = getattr(error, "exit_code", 1)
        if args.debug:
            traceback.print_exc()
        label = "error" if code == 2 else "failed"
        message = str(error) or type(error).__name__
        if not hasattr(error, "exit_code"):
            message = f"{type(error).__name__}: {message} (rerun with --debug for the traceback)"
        # Paths and keys stay whole (no breaks inside words or at hyphens) so they can be copied.
        print(textwrap.fill(f"{label}: {message}", width=100, break_long_words=False, break_on_hyphens=False,
                            replace_whitespace=False), file=sys.stderr)
        return code
