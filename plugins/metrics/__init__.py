"""metrics plugins."""
