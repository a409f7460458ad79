"""Errors raised while discovering, validating or building components."""
from __future__ import annotations

import difflib
from typing import Iterable


class RegistryError(Exception):
    """A problem with plugins or component names; the CLI maps it to exit code 2."""

    exit_code = 2


class UnknownComponentError(RegistryError, KeyError):
    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        hint = did_you_mean(name, known)
        listing = ", ".join(known) if known else "none are registered"
        super().__init__(f"unknown {kind} {name!r}.{hint} Registered {kind}s: {listing}.")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateComponentError(RegistryError):
    def __init__(self, kind: str, name: str, first_origin: str, second_origin: str):
        super().__init__(
            f"{kind} {name!r} is provided twice: by {first_origin} and by {second_origin}. "
            "Rename one of them or leave one plugin out."
        )


class ContractError(RegistryError):
    """A component that lacks a member its kind requires (see ``benchmark.contracts``)."""

    def __init__(self, kind: str, name: str, origin: str, factory: object, missing: Iterable[str]):
        what = getattr(factory, "__qualname__", repr(factory))
        members = ", ".join(f"{member!r}" if not member.startswith("metadata") else member for member in missing)
        super().__init__(
            f"{kind} {name!r} from {origin} ({what}) lacks the required {members}. "
            f"See the {kind} contract in README's plugin guide; benchmark.api.check_{kind} tests a component."
        )


class PluginLoadError(RegistryError):
    """A plugin the experiment asked for could not be loaded."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest candidate, or '' when nothing is close. Case is ignored, so that
    'MAE' finds 'mae' and 'agee' finds 'Age'."""
    by_folded: dict[str, str] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), candidate)
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
    return f" Did you mean {by_folded[close[0]]!r}?" if close else ""
