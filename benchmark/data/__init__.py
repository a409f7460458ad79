"""Stage 1 of the pipeline: from files on disk to checked items, splits, clips and tabular rows."""
