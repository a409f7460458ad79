"""heads plugins."""
