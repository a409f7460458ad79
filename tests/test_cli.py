import subprocess
import sys
import textwrap

from benchmark.cli import main

PLUGIN = textwrap.dedent('''
    from registry import hookimpl

    def build(condition_dim):
        """A head from a user's file."""

    @hookimpl
    def register_heads(registry):
        registry.add("from_user_file", build)
''')


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, timeout=120)


def test_list_shows_plugins_from_files_with_origin(tmp_path, capsys):
    plugin = tmp_path / "user_heads.py"
    plugin.write_text(PLUGIN)
    assert main(["list", "--kind", "head", "--plugins", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "from_user_file" in out and f"file {plugin}" in out and "A head from a user's file." in out


def test_list_reports_a_broken_plugin_and_still_lists(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half-installed')\n")
    good = tmp_path / "good.py"
    good.write_text(PLUGIN)
    assert main(["list", "--plugins", str(broken), str(good)]) == 1
    captured = capsys.readouterr()
    assert "from_user_file" in captured.out
    assert "plugin 'broken'" in captured.err and "half-installed" in captured.err


def test_validate_broken_toml_exits_2_with_one_paragraph(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[[models]]\nhead = "mse"\n[tune]\ntrails = 3\n')
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "`tune.trails` is not a known key. Did you mean 'trials'?" in " ".join(result.stderr.split())


def test_validate_unknown_component_suggests(tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text('name = "x"\n[[models]]\nhead = "mse"\nfusion = "concta"\n')
    assert main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "`models[0].fusion`" in err and "Did you mean 'concat'?" in err


def test_debug_shows_traceback(tmp_path, capsys):
    assert main(["--debug", "validate", str(tmp_path / "absent.toml")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_list_does_not_import_heavy_optional_libraries():
    code = textwrap.dedent('''
        import sys, io, contextlib
        from benchmark.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["list"]) == 0
        heavy = [m for m in ("timm", "optuna", "cv2", "decord", "matplotlib", "nibabel", "SimpleITK",
                             "scipy", "sklearn") if m in sys.modules]
        print(",".join(heavy))
    ''')
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_import_mcsdr_of_a_missing_file_is_a_usage_error_naming_the_argument(tmp_path, capsys):
    missing = tmp_path / "best.pth"
    assert main(["import-mcsdr", str(missing), "--out", str(tmp_path / "imported")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "import-mcsdr" in err and "encoder.weights" not in err
    assert not (tmp_path / "imported").exists()


def test_a_reader_that_stops_reading_gets_no_error_paragraph():
    # `list | head -1`: the reader leaves before the table is written; the command itself did nothing wrong
    process = subprocess.Popen([sys.executable, "-m", "benchmark", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141  # 128 + SIGPIPE, as a command the pipe stopped
    assert err == ""


def test_a_broken_pipe_other_than_the_readers_is_a_failure_like_any_other():
    # A worker's or a child's pipe breaking is no reader leaving: stdout here is read to the end
    script = ("import sys, benchmark.commands.list as listing\n"
              "from benchmark.cli import main\n"
              "def broken(args):\n"
              "    raise BrokenPipeError(32, 'a child process went away')\n"
              "listing.run = broken\n"
              "sys.exit(main(['list']))\n")
    outcome = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert outcome.returncode == 1, outcome
    assert "failed: BrokenPipeError: [Errno 32] a child process went away" in outcome.stderr, outcome.stderr
