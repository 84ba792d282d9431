"""Softmax and temperature-scaled softmax.

Source: Bridle (1990) for softmax; the max subtraction is the standard overflow guard used by
`torch.softmax` (aten/src/ATen/native/SoftMax.cpp) and every fused kernel since. Temperature scaling
p_i = exp(z_i / T) / sum_j exp(z_j / T) is Hinton et al. (2015), "Distilling the Knowledge in a Neural
Network", eq. 1; the T -> 0 limit (uniform over the tied maxima) is how vLLM treats temperature 0 (greedy).
"""

from __future__ import annotations

import torch

from ._typing import Float, Tensor, typechecked


@typechecked
def softmax(input: Float[Tensor, "*shape"], dim: int) -> Float[Tensor, "*shape"]:
    """`torch.softmax(input, dim)` computed in the input's dtype, with the max subtracted first."""
    shifted = input - input.amax(dim=dim, keepdim=True)
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)


@typechecked
def temperature_softmax(logits: Float[Tensor, "*batch vocab"], temperature: float) -> Float[Tensor, "*batch vocab"]:
    """softmax(logits / temperature) over the last axis; temperature 0 is the limit: uniform over the argmax ties."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        is_max = logits == logits.amax(dim=-1, keepdim=True)
        return is_max.to(logits.dtype) / is_max.sum(dim=-1, keepdim=True).to(logits.dtype)
    return softmax(logits / temperature, dim=-1)


@typechecked
def entropy(probs: Float[Tensor, "*batch vocab"]) -> Float[Tensor, "*batch"]:
    """Shannon entropy in nats, with 0 log 0 = 0."""
    logs = torch.where(probs > 0, probs.log(), torch.zeros_like(probs))
    return -(probs * logs).sum(dim=-1)
