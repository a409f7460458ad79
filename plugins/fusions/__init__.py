"""fusions plugins."""
