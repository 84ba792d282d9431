"""Adapters: wrap a known library's function so it takes a component's canonical signature.

An adapter also declares what the wrapped library cannot do (dtypes, features) and which convention options it
implies (FlashAttention's causal mask is aligned bottom-right, for instance). It only translates calling
conventions (layouts, argument names, mask encodings); it never changes what the library computes. Where a
library differs from the canonical spec the adapter declares it (an unsupported dtype or feature, an implied
option) or raises a clear error, and docs/conventions.md records the difference and how it was verified.
Libraries are imported lazily, inside `wrap`, so registering an adapter costs nothing and a missing library only
fails the check that uses it. One module per family; `lmspec list --adapters` prints each adapter's doc.
"""

from __future__ import annotations

from . import accounting, attention, decoding, feedforward, norms, positions, sampling, tokenizers  # noqa: F401  (they register)
from .registry import ADAPTERS, AdapterSpec, register

__all__ = ["ADAPTERS", "AdapterSpec", "register"]
