"""encoders plugins."""
