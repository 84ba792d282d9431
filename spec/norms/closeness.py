"""The conditioning of a normalized row, which sets LayerNorm's per-element allowance (spec/checks.py:
assert_each_within applies it)."""

from __future__ import annotations

import torch



def layer_norm_condition(x64: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    """max|x| / sqrt(var + eps) per row (at least 1): computing the mean rounds at the scale of |x|, so a normalized
    output carries a few eps times this much error (two close values normalize to +-1 from their tiny difference)."""
    var = (x64 - x64.mean(dims, keepdim=True)).pow(2).mean(dims)
    return (x64.abs().amax(dims) / (var + eps).sqrt()).clamp_min(1.0)
