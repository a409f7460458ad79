"""``list``: every registered component by kind, with its origin and one-line description."""
from __future__ import annotations

import sys
from pathlib import Path

from registry import KINDS, load_registry

HELP = "list every registered component (datasets, encoders, fusions, heads, metrics)"


def add_arguments(parser) -> None:
    parser.add_argument("--kind", choices=KINDS, help="only this kind")
    parser.add_argument("--plugins", nargs="*", default=[], metavar="MODULE_OR_FILE",
                        help="extra plugin modules or .py files to load first")


def run(args) -> int:
    from tabulate import tabulate

    registry = load_registry(args.plugins, strict_extra=False)
    rows = [(record.kind, record.name, record.origin, _tags(record.metadata), record.summary)
            for record in registry.records(args.kind)]
    print(tabulate(rows, headers=["kind", "name", "origin", "tags", "description"], tablefmt="simple"))
    for warning in [*map(str, registry.failures), *registry.warnings]:
        print(f"warning: {warning}", file=sys.stderr)
    return 1 if any(failure.plugin in _names(args.plugins) for failure in registry.failures) else 0


def _tags(metadata) -> str:
    return ", ".join(key for key, value in sorted(metadata.items()) if value is True)


def _names(specs: list[str]) -> set[str]:
    return {Path(spec).stem if spec.endswith(".py") else spec for spec in specs}
