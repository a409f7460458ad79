"""README's promises that code can check: the example plugin works, every experiment key is documented."""
import dataclasses
import importlib
import re
import typing
from pathlib import Path

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
