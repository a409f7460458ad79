"""The code's structure: plugins see one API module, stages never import later stages, and no module
imports itself back through others (function-level imports included, since a lazy import hides a cycle
but does not remove it)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "registry", "plugins")

# Pipeline order: a module may import modules of its own rank or lower, never higher.
RANKS = {
    "base": 0,          # benchmark/<module>.py: errors, contracts, config, store, identity, device, predictive...
    "data": 1, "synth": 1,
    "encoding": 2,
    "training": 3,
    "evaluation": 4,
    "orchestration": 5,
    "front": 6,         # the CLI, its commands and the plugin API: they may use everything
}
FRONT = {"benchmark.cli", "benchmark.__main__"}
FRONT_PACKAGES = ("benchmark.commands", "benchmark.api")  # every module in them is front rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


MODULES = project_modules()


def imports_of(name: str) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (top level or inside functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            # the longest project module that the imported name lies in
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and candidate.split(".")[0] in PACKAGES:
                found.add(candidate)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def rank(name: str) -> int | None:
    if name in FRONT or name.startswith(FRONT_PACKAGES):
        return RANKS["front"]
    parts = name.split(".")
    if parts[0] != "benchmark" or len(parts) == 1:
        return None
    if len(parts) == 2 and parts[1] not in RANKS:
        return RANKS["base"]
    return RANKS[parts[1]]


def test_plugins_import_only_the_api_and_registry():
    offenders = []
    for name, imported in GRAPH.items():
        if not name.startswith("plugins."):
            continue
        kind = name.split(".")[1] if name.count(".") >= 1 else ""
        for target in imported:
            family_private = target.startswith(f"plugins.{kind}._") or target in ("plugins", f"plugins.{kind}")
            if target == "benchmark.api" or target.startswith("registry") or family_private:
                continue
            offenders.append(f"{name} imports {target}")
    assert not offenders, "plugins may import only benchmark.api and registry:\n" + "\n".join(sorted(offenders))


def test_no_stage_imports_a_later_stage():
    offenders = [f"{name} (rank {rank(name)}) imports {target} (rank {rank(target)})"
                 for name, imported in GRAPH.items() if rank(name) is not None
                 for target in imported if rank(target) is not None and rank(target) > rank(name)]
    assert not offenders, "upward imports:\n" + "\n".join(sorted(offenders))


def test_internal_modules_do_not_import_the_plugin_api_or_plugins():
    offenders = [f"{name} imports {target}" for name, imported in GRAPH.items()
                 if name.startswith(("benchmark", "registry")) and not name.startswith("benchmark.api")
                 for target in imported if target.startswith(("benchmark.api", "plugins"))]
    assert not offenders, "\n".join(offenders)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (package __init__ edges to their own submodules excluded), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target.startswith(node + "."):  # a package importing its own submodule is not a cycle
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_sees_a_cycle_through_a_function_level_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", ["benchmark"])
def test_top_level_stays_small(package):
    top = sorted(path.name for path in (ROOT / package).glob("*.py"))
    assert len(top) <= 12, f"{package}/ has {len(top)} top-level modules: {top}; put stage code in a stage package"
