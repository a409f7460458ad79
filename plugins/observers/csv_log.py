"""Training curves of every job in ``<run>/training_log.csv``: an observer written as a plugin, the way
a TensorBoard or MLflow logger would be."""
from __future__ import annotations

import csv
import os

from benchmark.api import csv_cell
from registry import hookimpl

FIELDS = ("job", "epoch", "train_loss", "val_loss", "val_mae", "lr")


@hookimpl
def on_job_start(run, job):
    # A job that starts again (after a crash, Ctrl-C or as a retry of a failure) logs its epochs anew:
    # the rows of its earlier attempt go, so the log holds each epoch of each job once.
    path = run.directory / "training_log.csv"
    if not path.exists():
        return
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    kept = [row for row in rows if row.get("job") != job.id]
    if len(kept) == len(rows):
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.0.tmp")  # renamed into place: never half written
    with temporary.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
    os.replace(temporary, path)


@hookimpl
def on_epoch_end(run, job, epoch, logs):
    path = run.directory / "training_log.csv"
    new = not path.exists()
    # Appending a line is the right tool for a log: it is never read back as a result.
    with path.open("a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({"job": csv_cell(job.id), "epoch": epoch, **logs})
