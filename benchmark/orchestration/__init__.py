"""Stage 5: the run as a whole: planning, tuning, jobs, shared-storage workers and the manifest."""
