"""Broken feed-forward blocks, widths and block layouts, one plausible bug each."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmspec.reference import feedforward as reference_ff

from .gradients import detached_argument, drifting_backward, zero_backward


def swiglu_gate_up_swapped(x, w_gate, w_up, w_down):
    """silu applied to the up projection: the checkpoint's gate and up weights loaded the wrong way round."""
    return (F.silu(x @ w_up.T) * (x @ w_gate.T)) @ w_down.T


def swiglu_sigmoid_gate(x, w_gate, w_up, w_down):
    """Plain GLU (sigmoid gate) instead of SwiGLU."""
    return (torch.sigmoid(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def geglu_gate_up_swapped(x, w_gate, w_up, w_down, approximate="none"):
    return (F.gelu(x @ w_up.T, approximate=approximate) * (x @ w_gate.T)) @ w_down.T


def geglu_sigmoid_gate(x, w_gate, w_up, w_down, approximate="none"):
    return (torch.sigmoid(1.702 * (x @ w_gate.T)) * (x @ w_up.T)) @ w_down.T


def geglu_always_tanh(x, w_gate, w_up, w_down, approximate="none"):
    """Ignores `approximate`: always the tanh GELU."""
    return (F.gelu(x @ w_gate.T, approximate="tanh") * (x @ w_up.T)) @ w_down.T


_ACT = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda h: F.gelu(h, approximate="tanh"), "silu": F.silu}


def ffn_ignores_output_bias(x, w_in, w_out, b_in=None, b_out=None, activation="gelu"):
    return F.linear(_ACT[activation](F.linear(x, w_in, b_in)), w_out)


def ffn_no_bias_means_llama(x, w_in, w_out, b_in=None, b_out=None, activation="gelu"):
    """Treats 'no biases' as 'Llama' and switches to SiLU whatever `activation` says."""
    act = F.silu if b_in is None and b_out is None else _ACT[activation]
    return F.linear(act(F.linear(x, w_in, b_in)), w_out, b_out)


def ffn_width_rounds_down(dim, gated=False, multiple_of=1, ffn_dim_multiplier=None):
    if not gated:
        return 4 * dim
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * (hidden // multiple_of)


def ffn_width_multiplier_after_rounding(dim, gated=False, multiple_of=1, ffn_dim_multiplier=None):
    if not gated:
        return 4 * dim
    hidden = int(2 * 4 * dim / 3)
    hidden = multiple_of * ((hidden + multiple_of - 1) // multiple_of)
    return int(ffn_dim_multiplier * hidden) if ffn_dim_multiplier is not None else hidden


def ffn_width_plain_uses_glu_rule(dim, gated=False, multiple_of=1, ffn_dim_multiplier=None):
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def block_always_serial(x, attention, mlp, attention_norm, mlp_norm, parallel=False):
    h = x + attention(attention_norm(x))
    return h + mlp(mlp_norm(h))


def block_always_parallel(x, attention, mlp, attention_norm, mlp_norm, parallel=False):
    return x + attention(attention_norm(x)) + mlp(mlp_norm(x))


def block_mlp_uses_attention_norm(x, attention, mlp, attention_norm, mlp_norm, parallel=False):
    if parallel:
        return x + attention(attention_norm(x)) + mlp(attention_norm(x))
    h = x + attention(attention_norm(x))
    return h + mlp(attention_norm(h))


def block_no_residual(x, attention, mlp, attention_norm, mlp_norm, parallel=False):
    """Forgets the residual of the MLP sub-block."""
    if parallel:
        return attention(attention_norm(x)) + mlp(mlp_norm(x))
    h = x + attention(attention_norm(x))
    return mlp(mlp_norm(h))


# --- a tiled matmul: exact within one K tile, wrong past it -------------------------------------------------------

BLOCK_K = 32


def _linear_full_k_tiles(x, w, b=None):
    """x @ w.T over K in BLOCK_K tiles, looping over the full tiles only once there is more than one (a single partial
    tile is masked correctly): the last K % 32 products are dropped. Exact for K <= 32 and every multiple of 32
    (all real d_model and intermediate sizes); wrong at K = 33, 63, 65, ... (triton-lang/triton#630: GEMM wrong when
    K is not a multiple of 32)."""
    k = x.shape[-1]
    kept = k if k <= BLOCK_K else k // BLOCK_K * BLOCK_K
    return F.linear(x[..., :kept], w[:, :kept], b)


def swiglu_drops_partial_k_tile(x, w_gate, w_up, w_down):
    h = F.silu(_linear_full_k_tiles(x, w_gate)) * _linear_full_k_tiles(x, w_up)
    return _linear_full_k_tiles(h, w_down)


def ffn_drops_partial_k_tile(x, w_in, w_out, b_in=None, b_out=None, activation="gelu"):
    return _linear_full_k_tiles(_ACT[activation](_linear_full_k_tiles(x, w_in, b_in)), w_out, b_out)


# --- broken backward passes (issue 15): each forward is correct -------------------------------------------------


def _swiglu(x, w_gate, w_up, w_down):
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)


def _geglu(x, w_gate, w_up, w_down, approximate="none"):
    return F.linear(F.gelu(F.linear(x, w_gate), approximate=approximate) * F.linear(x, w_up), w_down)


def _ffn(x, w_in, w_out, b_in=None, b_out=None, activation="gelu"):
    return F.linear(_ACT[activation](F.linear(x, w_in, b_in)), w_out, b_out)


class _SiluGateSigmoidGrad(torch.autograd.Function):
    """silu(a) * b with silu'(a) taken as sigmoid(a): drops the a sigmoid(a) (1 - sigmoid(a)) term of the product
    rule (a hand-fused SwiGLU kernel's classic slip)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return F.silu(a) * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b * torch.sigmoid(a), g * F.silu(a)


def swiglu_silu_grad_is_sigmoid(x, w_gate, w_up, w_down):
    return F.linear(_SiluGateSigmoidGrad.apply(F.linear(x, w_gate), F.linear(x, w_up)), w_down)


swiglu_zero_backward = zero_backward(_swiglu)
swiglu_drifting_backward = drifting_backward(_swiglu)
swiglu_no_down_gradient = detached_argument(_swiglu, 3)
geglu_zero_backward = zero_backward(_geglu)
geglu_drifting_backward = drifting_backward(_geglu)
geglu_no_up_gradient = detached_argument(_geglu, 2)
ffn_zero_backward = zero_backward(_ffn)
ffn_drifting_backward = drifting_backward(_ffn)
ffn_no_output_bias_gradient = detached_argument(_ffn, 4)
block_zero_backward = zero_backward(reference_ff.transformer_block)
block_drifting_backward = drifting_backward(reference_ff.transformer_block)
block_detached_input = detached_argument(reference_ff.transformer_block, 0)


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("swiglu", "swiglu_gate_up_swapped", {"swiglu.linear_in_up", "swiglu.reference.matches"}),
    ("swiglu", "swiglu_sigmoid_gate", {"swiglu.gate_zero_closes"}),
    ("geglu", "geglu_gate_up_swapped", {"geglu.linear_in_up"}),
    ("geglu", "geglu_sigmoid_gate", {"geglu.gate_zero_closes"}),
    ("geglu", "geglu_always_tanh", {"geglu.reference.matches"}),
    ("feed_forward", "ffn_ignores_output_bias", {"feed_forward.bias.output_added"}),
    ("feed_forward", "ffn_no_bias_means_llama", {"feed_forward.bias.none_is_zero", "feed_forward.reference.matches"}),
    ("ffn_hidden_dim", "ffn_width_rounds_down", {"ffn_hidden_dim.gated.rounding"}),
    ("ffn_hidden_dim", "ffn_width_multiplier_after_rounding", {"ffn_hidden_dim.llama.published_widths"}),
    ("ffn_hidden_dim", "ffn_width_plain_uses_glu_rule", {"ffn_hidden_dim.plain.four_d"}),
    ("transformer_block", "block_always_serial", {"transformer_block.parallel.additive"}),
    ("transformer_block", "block_always_parallel", {"transformer_block.serial.mlp_reads_attention_output"}),
    ("transformer_block", "block_mlp_uses_attention_norm", {"transformer_block.reference.matches"}),
    ("transformer_block", "block_no_residual", {"transformer_block.zero_sublayers_identity"}),
    # exact within one K tile, wrong past it: caught at kernel scale, conform at --scale small
    ("swiglu", "swiglu_drops_partial_k_tile", {"swiglu.reference.matches"}),
    ("feed_forward", "ffn_drops_partial_k_tile", {"feed_forward.reference.matches"}),
    # broken backward passes (issue 15): the finite-difference check runs in float64 only
    ("swiglu", "swiglu_silu_grad_is_sigmoid", {"swiglu.backward.matches_reference"}),
    ("swiglu", "swiglu_silu_grad_is_sigmoid", {"swiglu.backward.finite_differences"}, {}, ("float64",)),
    ("swiglu", "swiglu_zero_backward", {"swiglu.backward.matches_reference"}),
    ("swiglu", "swiglu_zero_backward", {"swiglu.backward.finite_differences"}, {}, ("float64",)),
    ("swiglu", "swiglu_drifting_backward", {"swiglu.backward.repeatable"}),
    ("swiglu", "swiglu_no_down_gradient", {"swiglu.backward.complete", "swiglu.backward.matches_reference"}),
    ("geglu", "geglu_zero_backward", {"geglu.backward.matches_reference"}),
    ("geglu", "geglu_zero_backward", {"geglu.backward.finite_differences"}, {}, ("float64",)),
    ("geglu", "geglu_drifting_backward", {"geglu.backward.repeatable"}),
    ("geglu", "geglu_no_up_gradient", {"geglu.backward.complete"}),
    ("feed_forward", "ffn_zero_backward", {"feed_forward.backward.matches_reference"}),
    ("feed_forward", "ffn_zero_backward", {"feed_forward.backward.finite_differences"}, {}, ("float64",)),
    ("feed_forward", "ffn_drifting_backward", {"feed_forward.backward.repeatable"}),
    ("feed_forward", "ffn_no_output_bias_gradient", {"feed_forward.backward.complete"}),
    ("transformer_block", "block_zero_backward", {"transformer_block.backward.matches_reference"}),
    ("transformer_block", "block_zero_backward", {"transformer_block.backward.finite_differences"}, {},
     ("float64",)),
    ("transformer_block", "block_drifting_backward", {"transformer_block.backward.repeatable"}),
    ("transformer_block", "block_detached_input", {"transformer_block.backward.complete"}),
]
