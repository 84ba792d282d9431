"""Activations (GELU, SiLU / Swish, ReLU) and dropout.

Each function's source is in the comment above it. Activations are computed in the opmath type (float32 for
float16/bfloat16 inputs) and rounded once to the input's dtype, as torch's kernels do: run in a low-precision dtype,
the reference is a good implementation's error witness, element by element (spec/tolerance.py, bound "elementwise").
Computed op by op in bfloat16 instead, its error in the tails would be large enough to hide a wrong formula.

GELU's Phi is evaluated as erfc(-x / sqrt 2) / 2 and the tanh form as x sigma(2u) (= x/2 (1 + tanh u)): neither
cancels in the left tail, where 1 + erf(.) and 1 + tanh(.) lose every digit (in float64 too, below x = -8), so the
float64 reference is accurate there. The error such cancellation costs an implementation is granted by the spec
(spec/activations.py: GATE_ULPS).
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
    x = input.to(opmath_dtype(input.dtype))
    if approximate == "none":
        return (0.5 * x * torch.erfc(-x * math.sqrt(0.5))).to(input.dtype)  # erfc(-z) = 1 + erf(z), without cancelling
    if approximate == "tanh":
        u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))
        return (x * torch.sigmoid(2 * u)).to(input.dtype)  # (1 + tanh u) / 2 = sigma(2u)
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


# Source: Elfwing et al. 2017, "Sigmoid-Weighted Linear Units", eq. 1: SiLU(x) = x sigma(x)
# (torch.nn.functional.silu).
@typechecked
def silu(input: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """x sigma(x); sigma via torch.sigmoid, which does not overflow for large |x|."""
    x = input.to(opmath_dtype(input.dtype))
    return (x * torch.sigmoid(x)).to(input.dtype)


# Source: Ramachandran et al. 2017, "Searching for Activation Functions", sec. 4: Swish_beta(x) = x sigma(beta x),
# which tends to ReLU as beta -> infinity.
@typechecked
def swish(input: Float[Tensor, "*shape"], beta: float = 1.0) -> Float[Tensor, "*shape"]:
    """x sigma(beta x): SiLU at beta = 1, ReLU in the limit beta -> infinity, x / 2 at beta = 0."""
    x = input.to(opmath_dtype(input.dtype))
    return (x * torch.sigmoid(beta * x)).to(input.dtype)


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
