"""Training curves of every job in ``<run>/training_log.csv``: an observer written as a plugin, the way
a TensorBoard or MLflow logger would be."""
from __future__ import annotations

import csv
import fcntl
import os
from contextlib import contextmanager

from benchmark.api import csv_cell, inside
from registry import hookimpl

FIELDS = ("job", "epoch", "train_loss", "val_loss", "val_mae", "lr")


@hookimpl
def on_job_start(run, job):
    # A job that starts again (after a crash, Ctrl-C or as a retry of a failure) logs its epochs anew:
    # the rows of its earlier attempt go, so the log holds each epoch of each job once.
    path = _log(run)
    with _one_writer(run.directory):
        if path.exists():
            _drop_rows_of(job.id, path)


@hookimpl
def on_epoch_end(run, job, epoch, logs):
    path = _log(run)
    with _one_writer(run.directory):
        new = not path.exists()
        # Appending a line is the right tool for a log: it is never read back as a result.
        with path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({"job": csv_cell(job.id), "epoch": epoch, **logs})


def _log(run):
    # Appended to, so a link planted in a received run directory would be written through: refused.
    return inside(run.directory, run.directory / "training_log.csv")


@contextmanager
def _one_writer(directory):
    """Jobs may run side by side in processes (``train.workers``), each calling these hooks: an exclusive
    lock on the run directory lets one of them at a time read or write the log."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _drop_rows_of(job_id: str, path) -> None:
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    kept = [row for row in rows if row.get("job") != job_id]
    if len(kept) == len(rows):
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.0.tmp")  # renamed into place: never half written
    with temporary.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
    os.replace(temporary, path)
