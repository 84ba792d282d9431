"""Activations (GELU, SiLU / Swish, ReLU) and dropout.

Each function's source is in the comment above it. Activations are computed in the input's dtype, op by op, as a
plain implementation does (GPT-2's `gelu_new`, for one); torch upcasts half inputs to float32 inside its kernels
and is more accurate. Run in float16 or bfloat16, the reference is therefore the error witness of a
straightforward implementation, which is the tolerance the spec grants (spec/tolerance.py).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ._typing import Float, Tensor, typechecked
from .norms import opmath_dtype

Approximate = Literal["none", "tanh"]

#: sup over the reals of |GELU_tanh(x) - GELU_erf(x)| (4.7324e-4, attained at |x| = 2.699), rounded up; computed in
#: float64 on a grid of step 1e-4 over [-10, 10] (beyond, both forms agree to within exp(-x^2/2)).
GELU_TANH_MAX_ABS_DIFFERENCE = 4.74e-4

#: sup over x of |Swish_beta(x) - ReLU(x)| * beta = max_t t sigma(-t) (attained at t = 1.2785).
SWISH_RELU_GAP_TIMES_BETA = 0.2785


# Source: Hendrycks & Gimpel 2016, "Gaussian Error Linear Units", sec. 2: GELU(x) = x Phi(x) =
# x/2 (1 + erf(x / sqrt 2)), and its tanh approximation x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
# (torch.nn.functional.gelu approximate='tanh'; GPT-2's `gelu_new`).
@typechecked
def gelu(input: Float[Tensor, "*shape"], approximate: Approximate = "none") -> Float[Tensor, "*shape"]:
    """x Phi(x) with the exact erf form, or the tanh approximation (`approximate='tanh'`)."""
    x = input
    if approximate == "none":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))
    if approximate == "tanh":
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


# Source: Elfwing et al. 2017, "Sigmoid-Weighted Linear Units", eq. 1: SiLU(x) = x sigma(x)
# (torch.nn.functional.silu).
@typechecked
def silu(input: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """x sigma(x); sigma via torch.sigmoid, which does not overflow for large |x|."""
    return input * torch.sigmoid(input)


# Source: Ramachandran et al. 2017, "Searching for Activation Functions", sec. 4: Swish_beta(x) = x sigma(beta x),
# which tends to ReLU as beta -> infinity.
@typechecked
def swish(input: Float[Tensor, "*shape"], beta: float = 1.0) -> Float[Tensor, "*shape"]:
    """x sigma(beta x): SiLU at beta = 1, ReLU in the limit beta -> infinity, x / 2 at beta = 0."""
    return input * torch.sigmoid(beta * input)


# Source: Nair & Hinton 2010, "Rectified Linear Units Improve Restricted Boltzmann Machines"; torch.nn.functional.relu
# (NaN propagates).
@typechecked
def relu(input: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """max(x, 0), exactly (NaN stays NaN)."""
    return torch.where(input > 0, input, torch.where(input.isnan(), input, torch.zeros_like(input)))


# Source: Srivastava et al. 2014, "Dropout", with torch's inverted scaling: in training each element is zeroed with
# probability p and kept elements are scaled by 1 / (1 - p); eval mode is the identity (torch.nn.functional.dropout).
@typechecked
def dropout(
    input: Float[Tensor, "*shape"], p: float = 0.5, training: bool = True, generator: torch.Generator | None = None
) -> Float[Tensor, "*shape"]:
    """Inverted dropout: keep each element with probability 1 - p and scale it by 1 / (1 - p); identity
    when not training or p = 0; all zeros at p = 1 (torch's convention)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input.clone()
    if p == 1.0:
        return torch.zeros_like(input)
    keep = torch.rand(input.shape, generator=generator, device=input.device) >= p
    x = input.to(opmath_dtype(input.dtype))
    return torch.where(keep, x * (1.0 / (1.0 - p)), torch.zeros_like(x)).to(input.dtype)
