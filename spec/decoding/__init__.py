"""Decoding family: greedy/sampling/beam search, their variants, speculative decoding."""

from . import search, variants, speculative  # noqa: F401  (they declare the components)
