"""The plugin options of the commands that rebuild tables from a run directory (``report``, ``score``).

A run directory may come from someone else; the plugins its manifest names are code, so they are loaded
only when the user says so."""
from __future__ import annotations


def add_plugin_arguments(parser) -> None:
    parser.add_argument("--plugins", action="append", default=[], metavar="PLUGIN",
                        help="a plugin module or .py file you trust whose metrics the tables should include "
                        "(repeatable; relative to the current directory)")
    parser.add_argument("--trust-plugins", action="store_true",
                        help="import the plugins the run directory's manifest names (their code runs)")


def registry_for(run, args):
    from benchmark.evaluation.report import trusted_registry

    return trusted_registry(run, args.plugins, trust_manifest=args.trust_plugins)
