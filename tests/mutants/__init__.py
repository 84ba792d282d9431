"""Deliberately broken implementations, each one plausible bug, that the suite must catch (exit code 1)."""
