"""A run whose output goes to a file gets lines, not progress bars: no carriage returns, no bar glyphs or
rates, and one line per stage and job (start, done with its time)."""
import io
import re
import subprocess
import sys

from faults.faultkit import SUBPROCESS_TIMEOUT, write_experiment

BAR_FRAGMENTS = ("\r", "█", "▏", "▎", "▍", "▌", "▋", "▊", "▉", "it/s", "epoch/s", "trial/s", "batch/s", "s/it")


def test_a_redirected_run_logs_lines_without_progress_bar_fragments(tmp_path, synthetic_root):
    # tune.trials = 2 so the log also covers tuning (a bar of its own on a terminal); not --quiet
    experiment = write_experiment(tmp_path / "experiment.toml", synthetic_root=synthetic_root, trials=2)
    log = tmp_path / "run.log"
    with log.open("w") as handle:
        finished = subprocess.run([sys.executable, "-m", "benchmark", "run", str(experiment), "--out",
                                   str(tmp_path / "run")], stdout=handle, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=SUBPROCESS_TIMEOUT, check=False)
    text = log.read_text()
    assert finished.returncode == 0, text
    assert [fragment for fragment in BAR_FRAGMENTS if fragment in text] == [], text
    assert re.search(r"^stage 1 fold0/seed 0 \(l1\): training 1 epochs in float32$", text, re.MULTILINE), text
    assert re.search(r"^stage 1 fold0/seed 0 \(l1\): loss .* in \d+\.\d s$", text, re.MULTILINE), text
    assert re.search(r"^tuned mse on fold0: .* after 2 trials in \d+\.\d s", text, re.MULTILINE), text
    for model in ("mse", "gaussian", "prior"):
        assert re.search(rf"^start {model}__seed0__fold0__\w+$", text, re.MULTILINE), text
        assert re.search(rf"^done {model}__seed0__fold0__\w+ in \d+\.\d s$", text, re.MULTILINE), text


def test_bars_are_drawn_on_a_terminal_unless_quiet(monkeypatch):
    from benchmark.progress import bars_wanted

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert bars_wanted() and not bars_wanted(quiet=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not bars_wanted()


def test_bars_redraw_with_carriage_returns_while_printed_text_has_them_escaped(monkeypatch):
    """The CLI escapes control characters in what it prints, carriage returns too (a received name could write
    over the start of a line); the bars, the run's own text, still redraw themselves with them."""
    from benchmark.cli import _Printable
    from benchmark.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", _Printable(terminal))
    print("not loaded: plugin x\rall plugins loaded", file=sys.stderr)
    for _ in progress_bar(range(2), desc="train mse"):
        pass
    text = terminal.getvalue()
    assert text.startswith("not loaded: plugin x\\x0dall plugins loaded\n"), text
    assert "\rtrain mse: 100%" in text, text
