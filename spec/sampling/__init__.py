"""Sampling family: logits processors, penalties, their neutral values, the processor pipeline, samplers, and
metrics (inputs.py holds what they draw and share)."""

# they declare the invariants
from . import processors, penalties, neutral, pipeline, samplers, metrics, backward  # noqa: F401
