"""Broken activations and dropouts, one plausible bug each."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _up(x):
    return x.double() if x.dtype == torch.float64 else x.float()


def gelu_sigmoid_approximation(input, approximate="none"):
    """approximate='tanh' served by the cheaper sigmoid approximation x sigma(1.702 x)."""
    if approximate == "tanh":
        x = _up(input)
        return (x * torch.sigmoid(1.702 * x)).to(input.dtype)
    return F.gelu(input)


def gelu_tanh_cubic_sign(input, approximate="none"):
    """A sign typo in the tanh form: x - 0.044715 x^3."""
    x = _up(input)
    if approximate == "tanh":
        y = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x - 0.044715 * x.pow(3))))
    else:
        y = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    return y.to(input.dtype)


def gelu_returns_cdf(input, approximate="none"):
    """Phi(x) without the factor x."""
    x = _up(input)
    return (0.5 * (1 + torch.erf(x / math.sqrt(2)))).to(input.dtype)


def silu_naive_exp(input):
    """x e^x / (1 + e^x): inf / inf = NaN once e^x overflows."""
    e = input.exp()
    return input * e / (1 + e)


def silu_sigmoid_only(input):
    return torch.sigmoid(input)


def silu_of_minus_x(input):
    return input * torch.sigmoid(-input)


def swish_ignores_beta(input, beta=1.0):
    return F.silu(input)


def relu_leaky(input):
    return F.leaky_relu(input, 0.01)


def relu_abs(input):
    return input.abs()


def relu_zeroes_large(input):
    """A mask-based cap (x * (x < 6)) where a clamp was meant."""
    return torch.where(input > 6, torch.zeros_like(input), F.relu(input))


def dropout_not_rescaled(input, p=0.5, training=True, inplace=False):
    if not training or p == 0:
        return input.clone()
    return input * (torch.rand(input.shape, device=input.device) >= p)


def dropout_keeps_with_probability_p(input, p=0.5, training=True, inplace=False):
    """Keeps each element with probability p (the mask threshold inverted)."""
    if not training or p == 0:
        return input.clone()
    if p == 1:
        return torch.zeros_like(input)
    keep = torch.rand(input.shape, device=input.device) < p
    return torch.where(keep, input / (1 - p), torch.zeros_like(input))


def dropout_in_eval(input, p=0.5, training=True, inplace=False):
    return F.dropout(input, p, True)


def dropout_fixed_mask(input, p=0.5, training=True, inplace=False):
    """Draws its mask from a generator seeded once per call: the same elements are dropped every time."""
    if not training or p == 0:
        return input.clone()
    if p == 1:
        return torch.zeros_like(input)
    keep = torch.rand(input.shape, generator=torch.Generator().manual_seed(1234)) >= p
    return torch.where(keep.to(input.device), input / (1 - p), torch.zeros_like(input))


def dropout_p_zero_is_default(input, p=0.5, training=True, inplace=False):
    """`p = p or 0.5`: a falsy 0 becomes the default."""
    return F.dropout(input, p or 0.5, training)


def dropout_p_one_nan(input, p=0.5, training=True, inplace=False):
    """x * mask / (1 - p): 0 / 0 at p = 1."""
    if not training:
        return input.clone()
    keep = torch.rand(input.shape, device=input.device) >= p
    return input * keep / (1 - p) if p < 1 else input * keep * float("inf")


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("gelu", "gelu_sigmoid_approximation", {"gelu.tanh_approximation.bound"}),
    ("gelu", "gelu_tanh_cubic_sign", {"gelu.monotone.nonnegative"}),
    ("gelu", "gelu_returns_cdf", {"gelu.odd_part.identity", "gelu.reference.matches"}),
    ("silu", "silu_naive_exp", {"silu.reference.matches"}),
    ("silu", "silu_sigmoid_only", {"silu.odd_part.identity"}),
    ("silu", "silu_of_minus_x", {"silu.monotone.nonnegative"}),
    ("swish", "swish_ignores_beta", {"swish.limit.relu", "swish.reference.matches"}),
    ("relu", "relu_leaky", {"relu.definition.exact"}),
    ("relu", "relu_abs", {"relu.odd_part.identity"}),
    ("relu", "relu_zeroes_large", {"relu.monotone.nonnegative"}),
    ("dropout", "dropout_not_rescaled", {"dropout.training.kept_scaled"}),
    ("dropout", "dropout_keeps_with_probability_p", {"dropout.training.kept_fraction"}),
    ("dropout", "dropout_in_eval", {"dropout.identity.eval"}),
    ("dropout", "dropout_fixed_mask", {"dropout.training.fresh_masks"}),
    ("dropout", "dropout_p_zero_is_default", {"dropout.identity.p_zero"}),
    ("dropout", "dropout_p_one_nan", {"dropout.training.p_one_is_zero"}),
]
