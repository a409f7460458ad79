"""README's promises that code can check: the example plugin works, every experiment key is documented."""
import dataclasses
import importlib
import re
import tomllib
import typing
from pathlib import Path
from typing import Literal

import torch

from benchmark import config
from registry import load_registry

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_head_is_a_working_plugin(tmp_path):
    text = README.read_text()
    (source,) = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "register_heads" in block]
    path = tmp_path / "my_heads.py"
    path.write_text(source)
    registry = load_registry([str(path)])
    head = registry.build("head", "laplace", condition_dim=6)
    condition = torch.randn(5, 6)
    loss = head.loss(condition, torch.randn(5))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert head.sample(condition, 7).shape == (5, 7)
    assert registry.describe("head", "laplace").origin == f"file {path}"


def _keys(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.metadata.get("internal"):
            continue
        inner = hints[field.name]
        if typing.get_origin(inner) is list and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            inner = typing.get_args(inner)[0]
        if dataclasses.is_dataclass(inner) and field.name != "models":
            yield from _keys(inner, f"{prefix}{field.name}.")
        elif dataclasses.is_dataclass(inner):
            yield from _keys(inner, "")
        else:
            yield prefix + field.name


def test_every_experiment_key_is_documented():
    text = README.read_text()
    def documented(key: str) -> bool:  # under its table, e.g. `pretrain.epochs` in the [encoder] table
        parts = key.split(".")
        return any(f"`{'.'.join(parts[start:])}`" in text for start in range(len(parts)))

    undocumented = [key for key in _keys(config.Experiment) if not documented(key)]
    assert not undocumented


def test_the_plugin_guide_documents_every_name_of_the_plugin_api():
    import benchmark.api

    text = README.read_text()
    guide = text[text.index("### The plugin API"):text.index("### Head contract")]
    undocumented = [name for name in benchmark.api.__all__ if f"`{name}`" not in guide]
    assert not undocumented


def test_the_testing_your_plugin_example_passes_on_the_example_head(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (plugin,) = [block for block in blocks if "register_heads" in block]
    (test,) = [block for block in blocks if "check_head(" in block]
    (tmp_path / "my_heads.py").write_text(plugin)
    (tmp_path / "readme_plugin_test.py").write_text(test)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("readme_plugin_test")
    tests = [function for name, function in vars(module).items() if name.startswith("test_")]
    assert tests
    for function in tests:
        function()


def test_the_encoder_table_states_each_encoders_feature_width():
    text = README.read_text()
    table = text[text.index("### Encoders"):].split("\n\n")[0]
    stated = {name: int(width) for name, width in re.findall(r"^\| `(\w+)` \|.*\| (\d+) \| [^|]* \|$", table, re.M)}
    registry = load_registry()
    built = {name: registry.build("encoder", name).feature_dim for name in stated}
    assert "area_length" in stated and stated == built


# --------------------------------------------------------------------------- the key tables, literally
# Each table of "Experiment file reference", by the bold label above it, and the dataclass whose keys it lists.
KEY_TABLES = {"Top level": config.Experiment, "`[dataset]`": config.DatasetConfig,
              "`[synthetic]`": config.SyntheticConfig, "`[clips]`": config.ClipsConfig,
              "`[encoder]`": config.EncoderConfig, "`[[models]]`": config.ModelConfig,
              "`[train]`": config.TrainConfig, "`[tune]`": config.TuneConfig, "`[evaluate]`": config.EvaluateConfig}
# Defaults README states in words, and the value each stands for in the code.
WORDED_DEFAULTS = {
    ("Experiment", "name"): ("required", ""),
    ("ModelConfig", "head"): ("required", ""),
    ("ModelConfig", "label"): ('"<head>+<fusion>"', ""),
    ("DatasetConfig", "protocol"): ("the dataset's first", ""),
    ("DatasetConfig", "tabular"): ("all of the dataset's", None),
    ("EvaluateConfig", "metrics"): ("all registered", []),
}
# Keys a table documents that are no field of its dataclass: `include` is read before the schema.
NOT_FIELDS = {("Experiment", "include")}


def _key_tables(whole_rows: bool = False):
    """{dataclass: {key: default text}} from README's key tables (an [encoder] row `pretrain.x` is PretrainConfig's)."""
    text = README.read_text()
    section = text[text.index("### Experiment file reference"):text.index("### Checked before any work")]
    tables: dict = {}
    for label, body in re.findall(r"^\*\*(.+?)\*\*.*\n\| key \| default \| meaning \|\n\|[-|]+\|\n((?:\|.*\n)+)",
                                  section, re.MULTILINE):
        cls = KEY_TABLES[label]
        for row in body.splitlines():
            cells = [cell.strip() for cell in row.strip("|").split(" | ")]
            key, default = cells[0].strip("`"), cells[1]
            owner = cls
            if key.startswith("pretrain."):
                owner, key = config.PretrainConfig, key.removeprefix("pretrain.")
            tables.setdefault(owner, {})[key] = default if not whole_rows else row
    return tables


def _code_fields(cls):
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")
            and not dataclasses.is_dataclass(typing.get_type_hints(cls)[f.name])
            and not (cls is config.Experiment and f.name == "models")}


def _code_default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def test_every_key_table_lists_exactly_the_keys_of_its_section():
    tables = _key_tables()
    assert set(tables) == {*KEY_TABLES.values(), config.PretrainConfig}
    problems = []
    for cls, rows in tables.items():
        fields = _code_fields(cls)
        problems += [f"{cls.__name__}.{key} is in the code but not in its README table" for key in fields
                     if key not in rows]
        problems += [f"README documents {cls.__name__}.{key}, which the code has not" for key in rows
                     if key not in fields and (cls.__name__, key) not in NOT_FIELDS]
    assert not problems, "\n".join(problems)


def test_every_documented_default_is_the_codes():
    problems = []
    for cls, rows in _key_tables().items():
        fields = _code_fields(cls)
        for key, text in rows.items():
            if key not in fields:
                continue
            code = _code_default(fields[key])
            worded = WORDED_DEFAULTS.get((cls.__name__, key))
            if worded:
                if (text.strip("`"), code) != (worded[0], worded[1]):
                    problems.append(f"{cls.__name__}.{key}: README says {text}, the code {code!r}")
                continue
            try:
                stated = tomllib.loads(f"v = {text.strip('`')}")["v"]
            except tomllib.TOMLDecodeError:
                problems.append(f"{cls.__name__}.{key}: README's default {text} is not a TOML value")
                continue
            if stated != code or type(stated) is bool is not type(code) is bool:
                problems.append(f"{cls.__name__}.{key}: README says {text}, the code {code!r}")
    assert not problems, "\n".join(problems)


def _choices(annotation) -> tuple:
    """The values a Literal allows, also inside a union (dataset.tabular: "all" or a list)."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(choice for option in typing.get_args(annotation) for choice in _choices(option))


def test_every_keys_allowed_choices_are_in_its_row():
    problems = []
    for cls, rows in _key_tables(whole_rows=True).items():
        hints = typing.get_type_hints(cls)
        problems += [f"{cls.__name__}.{key}: its README row does not name the choice {choice!r}"
                     for key, row in rows.items() if key in hints
                     for choice in _choices(hints[key]) if f"{choice}" not in row]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the CLI's flags
# Flags README names for scripts other than the CLI (perf/*.py, pytest).
OTHER_FLAGS = {"--experiment", "--threads", "--steps", "--help"}


def _cli_flags():
    from benchmark.cli import build_parser

    parser, _ = build_parser()
    flags = {option for action in parser._actions for option in action.option_strings}
    for sub in parser._subparsers._group_actions[0].choices.values():
        flags |= {option for action in sub._actions for option in action.option_strings}
    return {flag for flag in flags if flag.startswith("--")}


def test_readme_names_every_flag_of_every_command():
    text = README.read_text()
    missing = sorted(flag for flag in _cli_flags() if not re.search(re.escape(flag) + r"(?![\w-])", text))
    assert not missing, f"flags of `python -m benchmark` that README never names: {missing}"


def test_every_flag_readme_names_exists():
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", README.read_text()))
    unknown = sorted(named - _cli_flags() - OTHER_FLAGS)
    assert not unknown, f"README names flags no command has: {unknown}"


# --------------------------------------------------------------------------- docs/ARCHITECTURE.md
ARCHITECTURE = README.parent / "docs" / "ARCHITECTURE.md"


def test_the_architecture_map_names_every_package_and_module_of_benchmark():
    """Every package folder, and every module by its name (a command by its CLI spelling); the simulator's own
    modules are docs/synthetic.md's to describe."""
    text = ARCHITECTURE.read_text()
    root = README.parent / "benchmark"
    names = {path.name + "/" for path in root.rglob("*") if path.is_dir() and any(path.glob("*.py"))}
    for path in root.rglob("*.py"):
        if path.stem.startswith("_") or path.parent.name == "synth":
            continue
        names.add(path.stem.replace("_", "-") if path.parent.name == "commands" else path.stem)
    missing = sorted(name for name in names
                     if not re.search(r"(?<![\w.-])" + re.escape(name.rstrip("/")) + r"(?![\w-])", text))
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"


def test_every_module_the_architecture_map_names_exists():
    text = ARCHITECTURE.read_text()
    tree = text[text.index("```") + 3:text.index("```", text.index("```") + 3)]
    root = README.parent
    missing = [name for name in re.findall(r"(?<![\w/])([a-z_]+\.py)\b", tree)
               if not list(root.glob(f"benchmark/**/{name}")) and not list(root.glob(f"plugins/**/{name}"))]
    missing += [f"{folder}/" for folder in re.findall(r"^  ([a-z_]+)/", tree, re.MULTILINE)
                if not (root / "benchmark" / folder).is_dir()]
    missing += [f"{folder}/" for folder in re.findall(r"^([a-z_]+)/", tree, re.MULTILINE)
                if not (root / folder).is_dir()]
    assert not missing, f"docs/ARCHITECTURE.md names what does not exist: {missing}"


def test_readme_documents_every_built_in_component():
    """Each registered dataset, encoder, fusion, head and metric is named in README: in backticks, or in the
    first cell of a table row (the metrics table's `| picp90, picp95 |`)."""
    text = README.read_text()
    named = set(re.findall(r"`([\w-]+)`", text))
    for cell in re.findall(r"^\| ([^|]+) \|", text, re.MULTILINE):
        named |= {part.strip(" `") for part in cell.split(",")}
    registry = load_registry()
    missing = [f"{kind} {name}" for kind in ("dataset", "encoder", "fusion", "head", "metric")
               for name in registry.names(kind) if name not in named]
    assert not missing, f"components README never names: {missing}"
