"""A component's source digest covers the code it runs: its module and the modules of its own plugin it uses."""
from __future__ import annotations

import sys
from pathlib import Path

from benchmark.identity import _source_files, source_digest
from registry import load_registry

PLUGIN = '''
from benchmark.api import PointHead
from registry import hookimpl
import {helper}


class Plug(PointHead):
    criterion = staticmethod({helper}.loss)


@hookimpl
def register_heads(registry):
    registry.add("plug", Plug)
'''


def test_a_plugin_files_sibling_helper_module_is_part_of_its_source(tmp_path, monkeypatch):
    """``plugins = ["plug.py"]`` run from its folder (which ``python -m`` puts on sys.path) may import a module
    beside it: an edit to that module changes what the head computes, so it must change the head's digest, as
    ``plugins/heads/_diffusion.py`` does for ``mcsdr``. The engine and installed libraries it uses are not part
    of it (the engine is hashed per stage, a library is no plugin code)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "plug_loss_helper.py").write_text("from torch.nn import functional as F\nloss = F.mse_loss\n")
    (tmp_path / "plug.py").write_text(PLUGIN.format(helper="plug_loss_helper"))
    registry = load_registry([str(tmp_path / "plug.py")])
    record = registry.describe("head", "plug")
    before = source_digest(record)
    assert {Path(path).name for path in _source_files(sys.modules[record.factory.__module__])} == \
        {"plug.py", "plug_loss_helper.py"}  # not benchmark/api, registry or torch

    (tmp_path / "plug_loss_helper.py").write_text("from torch.nn import functional as F\nloss = F.l1_loss\n")
    assert source_digest(record) != before


def test_a_built_in_heads_source_is_its_package_modules_only():
    registry = load_registry()
    files = {Path(path).name for path in _source_files(sys.modules[registry.describe("head", "mcsdr").factory.__module__])}
    assert files == {"mcsdr.py", "_diffusion.py"}


LAZY_PLUGIN = '''
from benchmark.api import PointHead
from registry import hookimpl


class Lazy(PointHead):
    def criterion(self, prediction, target):
        from {helper} import loss  # imported where it is used: not among the module's names until it runs

        return loss(prediction, target)


@hookimpl
def register_heads(registry):
    registry.add("lazy", Lazy)
'''


def test_a_helper_imported_inside_a_function_is_part_of_the_source(tmp_path, monkeypatch):
    """The module's names hold only what it imported at its top: a helper imported inside a method, as plugins do to
    import lazily, is found in the source's import statements, of a helper beside a plugin file as of a module of a
    plugin package, without importing it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "lazy_loss_helper.py").write_text("from torch.nn import functional as F\nloss = F.mse_loss\n")
    (tmp_path / "lazy.py").write_text(LAZY_PLUGIN.format(helper="lazy_loss_helper"))
    package = tmp_path / "lazy_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_loss.py").write_text("from torch.nn import functional as F\nloss = F.mse_loss\n")
    (package / "heads.py").write_text(LAZY_PLUGIN.format(helper="._loss").replace('"lazy"', '"lazy_packaged"'))
    registry = load_registry([str(tmp_path / "lazy.py"), "lazy_package.heads"])
    for head, helper in (("lazy", tmp_path / "lazy_loss_helper.py"), ("lazy_packaged", package / "_loss.py")):
        record = registry.describe("head", head)
        assert helper.stem not in {name.rpartition(".")[2] for name in sys.modules}, "found without importing it"
        before = source_digest(record)
        assert str(helper) in _source_files(sys.modules[record.factory.__module__])
        helper.write_text("from torch.nn import functional as F\nloss = F.l1_loss\n")
        assert source_digest(record) != before, head


METRIC_PLUGIN = '''
from benchmark.api import add_metric, weighted_mean
from registry import hookimpl


def scaled_error(items, weights):
    return weighted_mean(items["abs_error"], weights) * {scale}


@hookimpl
def register_metrics(registry):
    add_metric(registry, "scaled", scaled_error, label="Scaled", direction="min", probabilistic=False, order=999,
               description="MAE, scaled.")
'''


def test_a_metric_added_with_add_metric_is_hashed_by_its_plugins_source(tmp_path):
    """add_metric wraps the aggregate in a function of benchmark/evaluation/scoring.py, which was what the digest
    read: an edited metric left the report's inputs unchanged ('report unchanged, not rebuilt') and its old values
    in the tables."""
    plugin = tmp_path / "scaled_metric.py"
    plugin.write_text(METRIC_PLUGIN.format(scale=1))
    record = load_registry([str(plugin)]).describe("metric", "scaled")
    assert {Path(path).name for path in _source_files(sys.modules[record.factory.__module__])} == {"scaled_metric.py"}
    before = source_digest(record)
    plugin.write_text(METRIC_PLUGIN.format(scale=100))
    assert source_digest(record) != before
