"""Plugin discovery and the component registry.

Discovery order: the built-in modules under ``plugins/``, then installed entry points of the group
``lvefbench``, then the modules or ``.py`` files an experiment names. Built-ins take exactly the same
path as third-party plugins: each is a pluggy plugin whose hooks add components.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pluggy

from benchmark.contracts import missing_members

from . import hookspecs
from .errors import ContractError, DuplicateComponentError, PluginLoadError, UnknownComponentError, did_you_mean
from .records import KINDS, ComponentRecord, PluginFailure

BUILTIN_PACKAGE = "plugins"
BUILTIN_ORIGIN = "builtin"


class Registrar:
    """What a component hook receives as ``registry``: adds components of one kind for one plugin.

    A component is checked against its kind's contract as it is added, so a class without a required
    method fails its plugin's registration, naming the plugin and the member, before any run starts.
    """

    def __init__(self, kind: str, origin: str):
        self.kind = kind
        self.origin = origin
        self.records: list[ComponentRecord] = []

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        search_space: Mapping[str, Any] | None = None,
    ) -> None:
        if not description and factory.__doc__:
            description = factory.__doc__
        missing = missing_members(self.kind, factory, metadata or {})
        if missing:
            raise ContractError(self.kind, name, self.origin, factory, missing)
        self.records.append(
            ComponentRecord(
                kind=self.kind,
                name=name,
                factory=factory,
                description=description,
                origin=self.origin,
                metadata=metadata or {},
                search_space=search_space or {},
            )
        )


class Registry:
    """Every component known to one session, by kind, plus the plugins that failed to load."""

    def __init__(self):
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.warnings: list[str] = []  # plugins that loaded but look unfinished, e.g. a hook left undecorated
        self._records: dict[str, dict[str, ComponentRecord]] = {kind: {} for kind in KINDS}
        self._origins: dict[str, str] = {}

    # ----------------------------------------------------------------- public API
    @property
    def hook(self):
        """Lifecycle hooks for observers, e.g. ``registry.hook.on_run_start(run=...)``."""
        return self.plugin_manager.hook

    def names(self, kind: str) -> list[str]:
        return sorted(self._kind(kind))

    def records(self, kind: str | None = None) -> list[ComponentRecord]:
        kinds = [kind] if kind else list(KINDS)
        return [self._kind(k)[name] for k in kinds for name in sorted(self._kind(k))]

    def describe(self, kind: str, name: str) -> ComponentRecord:
        records = self._kind(kind)
        if name not in records:
            raise UnknownComponentError(kind, name, records)
        return records[name]

    def build(self, kind: str, name: str, **params: Any) -> Any:
        return self.describe(kind, name).factory(**params)

    # ----------------------------------------------------------------- discovery
    def load_builtins(self) -> None:
        package = importlib.import_module(BUILTIN_PACKAGE)
        for info in pkgutil.walk_packages(package.__path__, BUILTIN_PACKAGE + "."):
            if info.ispkg or info.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            self._load(info.name, BUILTIN_ORIGIN, lambda name=info.name: importlib.import_module(name))

    def load_entry_points(self) -> None:
        for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            distribution = getattr(entry_point.dist, "name", None) or "unknown distribution"
            origin = f"entry point {entry_point.value} ({distribution})"
            self._load(entry_point.name, origin, entry_point.load)

    def load_extra(self, specs: Iterable[str], base_dir: Path | None = None, strict: bool = True) -> None:
        """Load the experiment's ``plugins``: module names or ``.py`` paths (relative to ``base_dir``).

        With ``strict`` a plugin the experiment explicitly asked for that fails is an error.
        """
        for spec in specs:
            path = plugin_file(spec, base_dir)
            if path is not None:
                name, origin = path.stem, f"file {path}"
                loader = lambda path=path: _import_file(path)
            else:
                name, origin = spec, f"module {spec}"
                loader = lambda spec=spec: importlib.import_module(spec)
            failures_before = len(self.failures)
            self._load(name, origin, loader)
            if strict and len(self.failures) > failures_before:
                raise PluginLoadError(str(self.failures[-1]))

    # ----------------------------------------------------------------- internals
    def _kind(self, kind: str) -> dict[str, ComponentRecord]:
        if kind not in self._records:
            raise UnknownComponentError("component kind", kind, KINDS)
        return self._records[kind]

    def _load(self, name: str, origin: str, load: Callable[[], Any]) -> None:
        if name in self._origins:
            name = f"{name}@{origin}"
        try:
            plugin = load()
        except Exception as error:  # a broken plugin is reported, the others still load
            self._fail(name, origin, f"import failed: {_one_line(error)}")
            return
        try:
            self.plugin_manager.register(plugin, name=name)
        except pluggy.PluginValidationError as error:
            self._fail(name, origin, f"invalid hook implementation: {_one_line(error)}")
            return
        except ValueError as error:  # the same object registered twice under another name
            self._fail(name, origin, _one_line(error))
            return
        callers = self.plugin_manager.get_hookcallers(plugin) or []
        self._warn_uncollected(plugin, name, origin, {caller.name for caller in callers})
        unknown = [caller.name for caller in callers if not caller.has_spec()]
        if unknown:
            self.plugin_manager.unregister(plugin)
            hooks = sorted(hookspecs.COMPONENT_HOOKS.values()) + _lifecycle_hooks()
            hints = "".join(f" {hook!r}:{did_you_mean(hook, hooks) or ' no such hook.'}" for hook in unknown)
            self._fail(name, origin, f"implements unknown hook(s){hints}")
            return
        self._origins[name] = origin
        self._collect(plugin, name, origin)

    def _collect(self, plugin: Any, name: str, origin: str) -> None:
        # Each implementation is called on its own so that components carry their plugin as origin and
        # one plugin raising in its hook does not stop the others.
        for kind, hook_name in hookspecs.COMPONENT_HOOKS.items():
            for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                registrar = Registrar(kind, origin)
                try:
                    impl.function(*[registrar for _ in impl.argnames])
                except Exception as error:
                    where = impl.function.__code__.co_filename
                    self._fail(name, origin, f"{hook_name} raised {_one_line(error, where)}")
                    continue
                for record in registrar.records:
                    existing = self._records[kind].get(record.name)
                    if existing is not None:
                        raise DuplicateComponentError(kind, record.name, existing.origin, record.origin)
                    self._records[kind][record.name] = record

    def _warn_uncollected(self, plugin: Any, name: str, origin: str, collected: set[str]) -> None:
        # pluggy calls only functions marked with @hookimpl and skips anything else without a word: a plugin whose
        # register_heads lacks the marker, or is wrapped by a decorator written in C (functools.lru_cache, whose
        # wrapper is no Python function), loads without error and registers nothing, which is hard to see.
        # ``collected``: the hooks pluggy did take from the plugin.
        marker = f"{hookspecs.PROJECT}_impl"
        for hook in sorted(hookspecs.COMPONENT_HOOKS.values()) + _lifecycle_hooks():
            function = getattr(plugin, hook, None)
            if not callable(function) or hook in collected:
                continue
            if hasattr(function, marker):
                why = (f"as a {type(function).__name__}, not a function, so pluggy never calls it: define it with "
                       "def (a decorator written in C, such as functools.lru_cache, hides it)")
            else:
                why = "without @hookimpl, so it is never called: decorate it (from registry import hookimpl)"
            self.warnings.append(f"plugin {name!r} ({origin}) defines {hook}() {why}")

    def _fail(self, name: str, origin: str, error: str) -> None:
        self.failures.append(PluginFailure(plugin=name, origin=origin, error=error))


def plugin_file(spec: str, base_dir: Path | None = None) -> Path | None:
    """The file a ``plugins`` entry names (a relative path taken from ``base_dir``), or None for a module name."""
    if not (spec.endswith(".py") or "/" in spec or "\\" in spec):
        return None
    path = Path(spec)
    return base_dir / path if not path.is_absolute() and base_dir is not None else path


def load_registry(extra: Iterable[str] = (), base_dir: Path | None = None, strict_extra: bool = True) -> Registry:
    """A registry with built-ins, entry points and the given extra plugins, in that order."""
    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()
    registry.load_extra(list(extra), base_dir=base_dir, strict=strict_extra)
    return registry


def _import_file(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"no plugin file at {path}")
    module_name = f"lvefbench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _lifecycle_hooks() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("on_")]


def _one_line(error: BaseException, plugin_file: str | None = None) -> str:
    """The error in one line, with where it was raised: the innermost line of ``plugin_file`` when the traceback
    passes through it (a registry.add that refuses a component raises in this module, but the line to fix is the
    plugin's call), else the innermost line; none for a syntax error, whose message names the plugin's file and line
    (its traceback holds only the import machinery's)."""
    located = error.__traceback__ is not None and not isinstance(error, SyntaxError)
    # Lines of this module and of Python's import machinery locate nothing a plugin's author could fix (a missing
    # plugin file is raised here, a missing module inside importlib): the message names the file or module.
    frames = [frame for frame in (traceback.extract_tb(error.__traceback__) if located else [])
              if frame.filename != __file__ and not frame.filename.startswith("<frozen ")]
    where = ([frame for frame in frames if frame.filename == plugin_file] or frames)[-1:]
    location = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}{location}"
