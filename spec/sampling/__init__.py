"""Sampling family: logits processors, penalties, the processor pipeline, samplers, and metrics."""

from . import processors, penalties, pipeline, samplers, metrics  # noqa: F401  (they declare the components)
