"""Softmax and temperature-scaled softmax.

Source: Bridle (1990) for softmax; the max subtraction is the standard overflow guard used by
`torch.softmax` (aten/src/ATen/native/SoftMax.cpp) and every fused kernel since. Temperature scaling
p_i = exp(z_i / T) / sum_j exp(z_j / T) is Hinton et al. (2015), "Distilling the Knowledge in a Neural
Network", eq. 1; the T -> 0 limit (uniform over the tied maxima) is how vLLM treats temperature 0 (greedy).

The gradient is autograd's through these formulas (dx = p * (g - <p, g>), the float64 backward the spec compares
targets with); both compute in the opmath type (float32 for float16/bfloat16 inputs) and round once, as torch's kernels do, so
that run in a low-precision dtype the reference is a good implementation's error witness for every probability,
the smallest included (spec/tolerance.py, bound "elementwise").
"""

from __future__ import annotations

import torch

from ._typing import Float, Tensor, typechecked
from .norms import opmath_dtype


@typechecked
def softmax(input: Float[Tensor, "*shape"], dim: int) -> Float[Tensor, "*shape"]:
    """`torch.softmax(input, dim)`: the max subtracted first, computed in opmath and rounded once."""
    x = input.to(opmath_dtype(input.dtype))
    # the max is a constant shift (softmax is invariant to it): detached, no gradient flows through amax's tie rule
    shifted = x - x.amax(dim=dim, keepdim=True).detach()
    if shifted.requires_grad:  # autograd: out of place, so the backward has its saved exp
        exp = shifted.exp()
        return (exp / exp.sum(dim=dim, keepdim=True)).to(input.dtype)
    exp = shifted.exp_()  # in place: one temporary the size of the input
    return exp.div_(exp.sum(dim=dim, keepdim=True)).to(input.dtype)


@typechecked
def temperature_softmax(logits: Float[Tensor, "*batch vocab"], temperature: float) -> Float[Tensor, "*batch vocab"]:
    """softmax(logits / temperature) over the last axis; temperature 0 is the limit: uniform over the argmax ties."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        is_max = logits == logits.amax(dim=-1, keepdim=True)
        return is_max.to(logits.dtype) / is_max.sum(dim=-1, keepdim=True).to(logits.dtype)
    return softmax(logits.to(opmath_dtype(logits.dtype)) / temperature, dim=-1).to(logits.dtype)


@typechecked
def entropy(probs: Float[Tensor, "*batch vocab"]) -> Float[Tensor, "*batch"]:
    """Shannon entropy in nats, with 0 log 0 = 0."""
    logs = torch.where(probs > 0, probs.log(), torch.zeros_like(probs))
    return -(probs * logs).sum(dim=-1)
