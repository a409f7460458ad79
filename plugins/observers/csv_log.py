"""Training curves of every job in ``<run>/training_log.csv``: an observer written as a plugin, the way
a TensorBoard or MLflow logger would be."""
from __future__ import annotations

import csv

from benchmark.api import csv_cell
from registry import hookimpl

FIELDS = ("job", "epoch", "train_loss", "val_loss", "val_mae", "lr")


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
