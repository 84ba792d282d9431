"""Accounting family: parameter counts, FLOPs, memory, number formats."""

from . import params, flops, memory, formats  # noqa: F401  (they declare the components)
