import textwrap

import pytest

import registry
from registry import DuplicateComponentError, FloatParam, PluginLoadError, UnknownComponentError, load_registry
from registry.manager import Registry

HEAD_PLUGIN = textwrap.dedent('''
    from registry import hookimpl, FloatParam

    def build_linear(condition_dim, width=8):
        """A linear head for tests.

        More text that the listing does not show."""
        return ("linear", condition_dim, width)

    @hookimpl
    def register_heads(registry):
        registry.add("test_linear", build_linear, metadata={"probabilistic": False},
                     search_space={"lr": FloatParam(1e-4, 1e-2, log=True), "width": {"choices": [8, 16]}})
''')


def test_plugin_from_py_file_is_registered_with_origin_and_record(write_plugin):
    path = write_plugin("my_heads", HEAD_PLUGIN)
    reg = load_registry([str(path)])
    record = reg.describe("head", "test_linear")
    assert record.origin == f"file {path}"
    assert record.summary == "A linear head for tests."
    assert record.metadata["probabilistic"] is False
    assert isinstance(record.search_space["lr"], FloatParam)
    assert record.search_space["width"].choices == (8, 16)
    assert reg.build("head", "test_linear", condition_dim=4, width=16) == ("linear", 4, 16)
    assert "test_linear" in reg.names("head")


def test_relative_plugin_path_resolves_against_base_dir(write_plugin, tmp_path):
    write_plugin("rel_heads", HEAD_PLUGIN)
    reg = load_registry(["rel_heads.py"], base_dir=tmp_path)
    assert "test_linear" in reg.names("head")


def _fake_distribution(root, dist, module_name, module_source):
    (root / f"{module_name}.py").write_text(module_source)
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lvefbench]\n{module_name} = {module_name}\n")


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "fake_heads", "fake_heads_mod", HEAD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_registry()
    record = reg.describe("head", "test_linear")
    assert record.origin.startswith("entry point fake_heads_mod")
    assert "fake_heads" in record.origin


def test_broken_entry_point_is_reported_and_others_still_load(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "broken_dist", "broken_mod", "raise ImportError('needs libfoo')\n")
    _fake_distribution(tmp_path, "good_dist", "good_mod", HEAD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_registry()
    assert "test_linear" in reg.names("head")
    (failure,) = [f for f in reg.failures if f.plugin == "broken_mod"]
    assert "needs libfoo" in failure.error and "broken_dist" in failure.origin


def test_experiment_plugin_that_fails_is_an_error_naming_it(write_plugin):
    path = write_plugin("bad", "import not_a_module_anywhere\n")
    with pytest.raises(PluginLoadError, match="bad.*not_a_module_anywhere"):
        load_registry([str(path)])
    reg = load_registry([str(path)], strict_extra=False)
    assert [f.plugin for f in reg.failures] == ["bad"]


def test_plugin_raising_in_hook_is_contained(write_plugin):
    raising = write_plugin("raising", textwrap.dedent('''
        from registry import hookimpl
        @hookimpl
        def register_heads(registry):
            registry.add("half_added", lambda condition_dim: None)
            raise RuntimeError("boom")
    '''))
    good = write_plugin("good", HEAD_PLUGIN)
    reg = load_registry([str(raising), str(good)], strict_extra=False)
    assert "test_linear" in reg.names("head")
    assert "half_added" not in reg.names("head")  # a failing hook adds nothing
    assert "register_heads raised RuntimeError: boom" in reg.failures[0].error


def test_a_hook_pluggy_cannot_call_is_named_in_a_warning(write_plugin):
    """pluggy collects only functions: one wrapped by a decorator written in C (functools.lru_cache) keeps its
    @hookimpl mark, is skipped without a word, and its plugin registers nothing."""
    path = write_plugin("cached", textwrap.dedent('''
        import functools
        from registry import hookimpl

        @hookimpl
        @functools.lru_cache
        def register_heads(registry):
            registry.add("never_registered", lambda condition_dim: None)
    '''))
    reg = load_registry([str(path)])
    assert "never_registered" not in reg.names("head")
    expected = (f"plugin 'cached' (file {path}) defines register_heads() as a _lru_cache_wrapper, not a function, so "
                "pluggy never calls it: define it with def (a decorator written in C, such as functools.lru_cache, "
                "hides it)")
    assert reg.warnings == [expected]


def test_wrong_hook_signature_names_the_plugin(write_plugin):
    path = write_plugin("wrongsig", textwrap.dedent('''
        from registry import hookimpl
        @hookimpl
        def register_heads(registry, extra_argument):
            pass
    '''))
    with pytest.raises(PluginLoadError, match="wrongsig.*extra_argument"):
        load_registry([str(path)])


def test_misspelt_hook_gets_a_suggestion(write_plugin):
    path = write_plugin("typo", textwrap.dedent('''
        from registry import hookimpl
        @hookimpl
        def register_head(registry):
            pass
    '''))
    with pytest.raises(PluginLoadError, match="register_head.*Did you mean 'register_heads'"):
        load_registry([str(path)])


def test_duplicate_name_names_both_origins(write_plugin):
    first = write_plugin("first", HEAD_PLUGIN)
    second = write_plugin("second", HEAD_PLUGIN)
    with pytest.raises(DuplicateComponentError) as error:
        load_registry([str(first), str(second)])
    assert f"file {first}" in str(error.value) and f"file {second}" in str(error.value)


def test_unknown_name_suggests_the_closest(write_plugin):
    reg = load_registry([str(write_plugin("h", HEAD_PLUGIN))])
    with pytest.raises(UnknownComponentError, match="Did you mean 'test_linear'"):
        reg.build("head", "test_linaer")
    with pytest.raises(UnknownComponentError, match="Did you mean 'head'"):
        reg.names("haed")


def test_invalid_records_are_rejected():
    from registry.records import ComponentRecord, param_from_spec

    with pytest.raises(ValueError, match="kind"):
        ComponentRecord("model", "x", print, "", "test")
    with pytest.raises(ValueError, match="name"):
        ComponentRecord("head", "bad name!", print, "", "test")
    with pytest.raises(TypeError, match="not callable"):
        ComponentRecord("head", "x", 3, "", "test")
    with pytest.raises(ValueError, match="low < high"):
        param_from_spec({"float": [1.0, 0.5]})
    with pytest.raises(ValueError, match="unknown search-space field"):
        param_from_spec({"float": [0.1, 0.5], "step": 2})


def test_builtins_register_through_the_same_hooks():
    reg = Registry()
    reg.load_builtins()
    assert not reg.failures, reg.failures
    origins = {record.origin for record in reg.records()}
    assert origins <= {"builtin"}


def test_module_level_api_uses_the_default_registry():
    assert registry.names("head") == registry.default().names("head")
    for name in registry.names("metric"):
        assert registry.describe("metric", name).kind == "metric"
