"""Decoding family: greedy/sampling/beam search, their variants, speculative decoding (models.py holds the toy
model and the model-only expectations the three modules share)."""

from . import search, variants, speculative  # noqa: F401  (they declare the components)
