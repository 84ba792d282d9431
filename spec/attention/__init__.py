"""Attention family: scaled dot-product attention, and its variants (MHA/GQA/MQA, sliding window, KV cache, MLA)."""

from . import gradients, scaled_dot_product, variants  # noqa: F401  (they declare the components)
