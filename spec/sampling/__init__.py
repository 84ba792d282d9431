"""Sampling family: logits processors, penalties, their neutral values, the processor pipeline, samplers, and
metrics (inputs.py holds what they draw and share)."""

from . import processors, penalties, neutral, pipeline, samplers, metrics  # noqa: F401  (they declare the invariants)
