"""observers plugins."""
