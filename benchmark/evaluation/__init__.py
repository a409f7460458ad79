"""Stage 4: per-item scores, pooling, statistics, the leaderboard, plots and the report."""
