"""Feed-forward blocks: plain two-layer FFN (with or without biases), GLU variants, widths, block layouts.

Sources:
- Plain FFN: Vaswani et al. 2017, eq. 2, FFN(x) = act(x W1 + b1) W2 + b2 with d_ff = 4 d (sec. 3.3);
  GPT-2 (transformers GPT2MLP: Conv1D c_fc -> gelu_new -> Conv1D c_proj, biases, n_inner = 4 * n_embd).
- GLU variants: Shazeer 2020, "GLU Variants Improve Transformer", eqs. 5-6 (without biases):
  FFN_SwiGLU(x) = (Swish(x W) * x V) W2, FFN_GEGLU(x) = (GELU(x W) * x V) W2; Llama (Touvron et al. 2023,
  sec. 2.2; transformers LlamaMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)), no biases).
- GLU width: Meta's llama/model.py FeedForward: hidden = int(2 * 4d / 3); hidden = int(ffn_dim_multiplier *
  hidden) if given; rounded up to a multiple of `multiple_of`.
- Parallel block: GPT-J (transformers GPTJBlock: attn and mlp both read ln_1(x), summed with the residual)
  and PaLM (Chowdhery et al. 2022, sec. 2 "Parallel Layers"); serial (GPT-2, Llama): the MLP reads the
  attention's residual output.

Weights are in nn.Linear layout ([out, in]).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ._typing import Float, Tensor, typechecked
from .activations import gelu, relu, silu

Activation = Literal["relu", "gelu", "gelu_tanh", "silu"]


def activation_fn(name: Activation) -> Callable[[Tensor], Tensor]:
    """The FFN activation by name; gelu_tanh is GPT-2's gelu_new (reference/activations.py)."""
    fns = {"relu": relu, "gelu": gelu, "gelu_tanh": lambda x: gelu(x, approximate="tanh"), "silu": silu}
    if name not in fns:
        raise ValueError(f"activation must be one of {sorted(fns)}, got {name!r}")
    return fns[name]


@typechecked
def feed_forward(
    x: Float[Tensor, "*batch d"],
    w_in: Float[Tensor, "f d"],
    w_out: Float[Tensor, "d f"],
    b_in: Float[Tensor, " f"] | None = None,
    b_out: Float[Tensor, " d"] | None = None,
    activation: Activation = "gelu",
) -> Float[Tensor, "*batch d"]:
    """act(x W_in^T + b_in) W_out^T + b_out (Vaswani et al. eq. 2); biases None = no bias (Llama-style), given =
    GPT-2-style (GPT2MLP, with activation gelu_tanh = gelu_new)."""
    h = x @ w_in.T
    if b_in is not None:
        h = h + b_in
    y = activation_fn(activation)(h) @ w_out.T
    if b_out is not None:
        y = y + b_out
    return y


def _glu(x: Tensor, w_gate: Tensor, w_up: Tensor, w_down: Tensor, act: Callable[[Tensor], Tensor]) -> Tensor:
    """Shazeer 2020, eqs. 5-6 without biases: the activation goes on the gate projection only."""
    return (act(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


@typechecked
def swiglu(
    x: Float[Tensor, "*batch d"], w_gate: Float[Tensor, "f d"], w_up: Float[Tensor, "f d"], w_down: Float[Tensor, "d f"]
) -> Float[Tensor, "*batch d"]:
    """down(silu(gate x) * up x): Shazeer's FFN_SwiGLU, the Llama MLP (LlamaMLP)."""
    return _glu(x, w_gate, w_up, w_down, silu)


@typechecked
def geglu(
    x: Float[Tensor, "*batch d"],
    w_gate: Float[Tensor, "f d"],
    w_up: Float[Tensor, "f d"],
    w_down: Float[Tensor, "d f"],
    approximate: Literal["none", "tanh"] = "none",
) -> Float[Tensor, "*batch d"]:
    """down(gelu(gate x) * up x): Shazeer's FFN_GEGLU, with the exact GELU; Gemma's gelu_pytorch_tanh is
    approximate='tanh'."""
    return _glu(x, w_gate, w_up, w_down, lambda h: gelu(h, approximate=approximate))


def ffn_hidden_dim(dim: int, gated: bool = False, multiple_of: int = 1, ffn_dim_multiplier: float | None = None) -> int:
    """Hidden width of the feed-forward block.

    Plain FFN: 4 * dim (Vaswani et al.; GPT-2 n_inner). Gated (GLU, three matrices instead of two): Meta's
    Llama rule, which keeps the parameter count near that of the 4d plain FFN: int(2 * 4 * dim / 3), times
    ffn_dim_multiplier (int() again) if given, rounded up to a multiple of multiple_of."""
    if dim < 1 or multiple_of < 1:
        raise ValueError(f"dim and multiple_of must be positive, got {dim}, {multiple_of}")
    hidden = 4 * dim
    if not gated:
        return hidden
    hidden = int(2 * hidden / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


Sublayer = Callable[[Tensor], Tensor]


@typechecked
def transformer_block(
    x: Float[Tensor, "*batch d"],
    attention: Sublayer,
    mlp: Sublayer,
    attention_norm: Sublayer,
    mlp_norm: Sublayer,
    parallel: bool = False,
) -> Float[Tensor, "*batch d"]:
    """Pre-norm block. Serial (GPT-2, Llama): h = x + attn(n1(x)); h + mlp(n2(h)).
    Parallel (GPT-J, PaLM, GPT-NeoX use_parallel_residual): x + attn(n1(x)) + mlp(n2(x)); GPT-J passes
    the same norm twice (ln_1)."""
    if parallel:
        return x + attention(attention_norm(x)) + mlp(mlp_norm(x))
    h = x + attention(attention_norm(x))
    return h + mlp(mlp_norm(h))
