"""Progress display: bars on a terminal only.

tqdm redraws a bar with carriage returns; a redirected log (CI, nohup, a batch system) keeps every redraw,
so the log fills with bar fragments run together with the run's own lines. Off a terminal the run's
one-line messages (each stage and job: start, done with its time, failed with its reason) are the progress.
"""
from __future__ import annotations

import sys


def bars_wanted(quiet: bool = False) -> bool:
    """Whether to draw progress bars: not asked to be quiet, and stderr (where tqdm draws) is a terminal."""
    return not quiet and sys.stderr.isatty()


def progress_bar(iterable=None, *, quiet: bool = False, **options):
    """A tqdm bar that draws only where ``bars_wanted``; otherwise a plain pass-through of ``iterable``. It draws on
    stderr as the terminal takes it: the CLI writes control characters in printed text as visible escapes (a name
    from a received file could otherwise rewrite the screen), carriage returns too, and a bar redraws itself with
    them (its text is the run's own: a stage, a model key, numbers)."""
    from tqdm.auto import tqdm

    terminal = getattr(sys.stderr, "unescaped", sys.stderr)
    return tqdm(iterable, disable=not bars_wanted(quiet), file=terminal, **options)
