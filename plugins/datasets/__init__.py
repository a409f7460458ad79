"""datasets plugins."""
