"""Broken activations and dropouts, one plausible bug each."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .gradients import detached_output, drifting_backward, zero_backward


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


def gelu_zero_tail(input, approximate="none"):
    """Returns 0 for every x < -4.5 (a kernel that skips the tail, where |gelu| < 1.5e-5, as negligible)."""
    return torch.where(input < -4.5, torch.zeros_like(input), F.gelu(input, approximate=approximate))


def gelu_quick(input, approximate="none"):
    """x sigma(1.702 x) (the 'quick GELU' of CLIP) claimed as the erf GELU: off by up to 0.02, 3.6x torch's error
    in bfloat16, far more than GELU itself in the left tail."""
    x = _up(input)
    return (x * torch.sigmoid(1.702 * x)).to(input.dtype)


#: elements one program of the tile kernels below handles, and their vector width (16 bytes of float16).
BLOCK, VEC = 1024, 8


def _blockwise(input, f, tail):
    """An elementwise kernel over the flattened input in programs of BLOCK elements, each done in vectors of VEC
    with a scalar epilogue for its last n % VEC elements: `tail(x, out, start, end)` fills out[start:end]."""
    x = input.reshape(-1)
    out = f(x)
    n = x.numel()
    end = n - n % VEC
    if end < n:
        tail(x, out, end, n)
    return out.reshape(input.shape)


def silu_tail_without_program_offset(input):
    """The scalar epilogue indexes from its program's start without adding program_id * BLOCK: the last n % 8
    elements get silu of the same positions in the first block. Exact while everything fits in one program (n <=
    1024); past it, wrong wherever n % 8 != 0. Modelled on flashinfer's act_and_mul tail loop
    (flashinfer-ai/flashinfer#5013, vector width vs d % 8)."""
    def tail(x, out, start, end):
        local = start - (start // BLOCK) * BLOCK  # offset within the last program, the program's base forgotten
        out[start:end] = F.silu(x[local:local + end - start])
    return _blockwise(input, F.silu, tail)


def gelu_grid_floor(input, approximate="none"):
    """Launches max(1, n // BLOCK) programs instead of cdiv(n, BLOCK): in place (the output starts as a copy of the
    input), the last partial block keeps x. Exact for n <= 1024 (one program, masked); past it, wrong unless
    1024 divides n."""
    x = input.reshape(-1)
    out = x.clone()
    n = x.numel()
    done = n if n <= BLOCK else (n // BLOCK) * BLOCK
    out[:done] = F.gelu(x[:done], approximate=approximate)
    return out.reshape(input.shape)


def relu_int16_offsets(input):
    """Offsets program_id * BLOCK + lane computed in int16: from element 32768 on they wrap to i - 65536, before the
    tensor's start (Python indexing from the end stands in for that out-of-bounds read). Exact below 32769
    elements."""
    x = input.reshape(-1)
    n = x.numel()
    offsets = torch.arange(n, device=x.device).to(torch.int16).long() % n
    return F.relu(x[offsets]).reshape(input.shape)


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


# --- broken backward passes (issue 15) -------------------------------------------------------------------


class _GeluTanhDerivative(torch.autograd.Function):
    """torch's GELU forward (either form); the backward always takes the tanh approximation's derivative, so the erf
    form's gradient is off by up to ~2e-3 (a kernel sharing one backward between both forms)."""

    @staticmethod
    def forward(ctx, input, approximate):
        ctx.save_for_backward(input)
        return F.gelu(input, approximate=approximate)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.ops.aten.gelu_backward(grad, x, approximate="tanh"), None


def gelu_backward_tanh_derivative(input, approximate="none"):
    return _GeluTanhDerivative.apply(input, approximate)


class _ReluOneAtZero(torch.autograd.Function):
    """relu whose backward passes g where x >= 0: gradient 1 at x = 0, not torch's 0."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return F.relu(input)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x >= 0)


def relu_backward_one_at_zero(input):
    return _ReluOneAtZero.apply(input)


class _FreshMaskDropout(torch.autograd.Function):
    """Inverted dropout whose backward draws a new mask instead of the forward's (a kernel that regenerates the mask
    from its Philox offset, advanced since): gradients reach dropped elements and miss kept ones."""

    @staticmethod
    def forward(ctx, input, p):
        ctx.p, ctx.shape = p, input.shape
        keep = torch.rand(input.shape, device=input.device) >= p
        return torch.where(keep, input / (1 - p), torch.zeros_like(input))

    @staticmethod
    def backward(ctx, grad):
        keep = torch.rand(ctx.shape, device=grad.device) >= ctx.p
        return torch.where(keep, grad / (1 - ctx.p), torch.zeros_like(grad)), None


def dropout_backward_fresh_mask(input, p=0.5, training=True, inplace=False):
    if not training or p == 0:
        return input.clone()
    if p == 1:
        return torch.zeros_like(input)
    return _FreshMaskDropout.apply(input, p)


def _swish(input, beta=1.0):
    return input * torch.sigmoid(beta * input)


# the generic breakages around torch's forward (swish: x sigma(beta x))
gelu_zero_backward, silu_zero_backward, relu_zero_backward, dropout_zero_backward = (
    zero_backward(f) for f in (F.gelu, F.silu, F.relu, F.dropout))
swish_zero_backward = zero_backward(_swish)
gelu_drifting_backward, silu_drifting_backward, relu_drifting_backward, dropout_drifting_backward = (
    drifting_backward(f) for f in (F.gelu, F.silu, F.relu, F.dropout))
swish_drifting_backward = drifting_backward(_swish)
gelu_detached, silu_detached, relu_detached, dropout_detached = (
    detached_output(f) for f in (F.gelu, F.silu, F.relu, F.dropout))
swish_detached = detached_output(_swish)


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("gelu", "gelu_sigmoid_approximation", {"gelu.tanh_approximation.bound"}),
    ("gelu", "gelu_tanh_cubic_sign", {"gelu.monotone.nonnegative"}),
    ("gelu", "gelu_returns_cdf", {"gelu.odd_part.identity", "gelu.reference.matches"}),
    # the elementwise bound sees the tails: both were within the norm-wise bound in float32 and bfloat16
    ("gelu", "gelu_zero_tail", {"gelu.reference.matches"}, {}, ("float32", "bfloat16")),
    ("gelu", "gelu_quick", {"gelu.reference.matches"}, {}, ("float32", "bfloat16")),
    # exact within one program of 1024 elements, wrong past it (pass at --scale small)
    ("gelu", "gelu_grid_floor", {"gelu.reference.matches"}),
    ("silu", "silu_tail_without_program_offset", {"silu.reference.matches"}),
    ("relu", "relu_int16_offsets", {"relu.odd_part.identity"}),
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
    # backward (issue 15): the generic breakages for every component, then the specific ones
    ("gelu", "gelu_zero_backward", {"gelu.backward.matches_reference"}),
    ("gelu", "gelu_zero_backward", {"gelu.backward.finite_differences"}, {}, ("float64",)),
    ("gelu", "gelu_drifting_backward", {"gelu.backward.repeatable"}),
    ("gelu", "gelu_detached", {"gelu.backward.complete"}),
    ("silu", "silu_zero_backward", {"silu.backward.matches_reference"}),
    ("silu", "silu_zero_backward", {"silu.backward.finite_differences"}, {}, ("float64",)),
    ("silu", "silu_drifting_backward", {"silu.backward.repeatable"}),
    ("silu", "silu_detached", {"silu.backward.complete"}),
    ("swish", "swish_zero_backward", {"swish.backward.matches_reference"}),
    ("swish", "swish_zero_backward", {"swish.backward.finite_differences"}, {}, ("float64",)),
    ("swish", "swish_drifting_backward", {"swish.backward.repeatable"}),
    ("swish", "swish_detached", {"swish.backward.complete"}),
    ("relu", "relu_zero_backward", {"relu.backward.matches_reference"}),
    ("relu", "relu_zero_backward", {"relu.backward.finite_differences"}, {}, ("float64",)),
    ("relu", "relu_drifting_backward", {"relu.backward.repeatable"}),
    ("relu", "relu_detached", {"relu.backward.complete"}),
    ("dropout", "dropout_zero_backward", {"dropout.backward.matches_reference"}),
    ("dropout", "dropout_zero_backward", {"dropout.backward.finite_differences"}, {}, ("float64",)),
    ("dropout", "dropout_drifting_backward", {"dropout.backward.repeatable"}),
    ("dropout", "dropout_detached", {"dropout.backward.complete"}),
    ("gelu", "gelu_backward_tanh_derivative", {"gelu.backward.matches_reference"}),
    ("gelu", "gelu_backward_tanh_derivative", {"gelu.backward.finite_differences"}, {}, ("float64",)),
    ("relu", "relu_backward_one_at_zero", {"relu.backward.exact"}),
    ("dropout", "dropout_backward_fresh_mask", {"dropout.backward.matches_reference", "dropout.backward.repeatable"}),
]
