"""Tokenizers family: BPE training and encoding, GPT-2, WordPiece, Unigram."""

from . import components  # noqa: F401  (it declares the components)
