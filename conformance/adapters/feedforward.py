"""Adapters for the feed-forward family: Hugging Face LlamaMLP (SwiGLU, no biases) and GPT2MLP (Conv1D, biases).

Modules are built from tiny configs in the input's dtype, the canonical nn.Linear-layout weights copied in, in eval
mode.

- `hf_llama_mlp` (swiglu): LlamaMLP(config with hidden_act='silu', mlp_bias=False): down_proj(act(gate_proj(x)) *
  up_proj(x)); gate_proj / up_proj / down_proj take w_gate / w_up / w_down as they are.
- `hf_gpt2_mlp` (feed_forward): GPT2MLP(intermediate_size, config): Conv1D stores weights as [in, out] (x @ W + b),
  so c_fc.weight = w_in^T and c_proj.weight = w_out^T; missing biases are zeros (Conv1D always adds one; + 0 is
  exact). Conv1D flattens its input with .view, which fails on non-contiguous tensors, so x is made contiguous
  (GPT2Block always passes contiguous hidden states; same values). activation: relu -> 'relu', gelu -> 'gelu' (erf), gelu_tanh -> 'gelu_new' (GPT-2's), silu -> 'silu'.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from .hf import call_with, frozen, tiny_config
from .registry import AdapterSpec, expect_class, register


@functools.lru_cache(maxsize=64)
def _llama_mlp(cls: type, d: int, f: int, dtype: torch.dtype, device: str):
    from transformers import LlamaConfig

    config = tiny_config(LlamaConfig, hidden_size=d, intermediate_size=f, num_attention_heads=1, head_dim=2, hidden_act="silu",
                         mlp_bias=False)
    return frozen(cls(config), dtype, device)


def _wrap_hf_llama_mlp(cls: object, component: str) -> Callable:
    expect_class(cls, "a LlamaMLP-like module class", base="torch.nn.Module")

    def swiglu(x, w_gate, w_up, w_down):
        f, d = w_gate.shape
        module = _llama_mlp(cls, d, f, x.dtype, str(x.device))
        return call_with(module, {"gate_proj.weight": w_gate, "up_proj.weight": w_up, "down_proj.weight": w_down}, x)

    return swiglu


register(AdapterSpec(
    name="hf_llama_mlp",
    components=("swiglu",),
    wrap=_wrap_hf_llama_mlp,
    doc="Hugging Face LlamaMLP (hidden_act='silu', mlp_bias=False) with gate_proj / up_proj / down_proj = w_gate / w_up / w_down, "
    "in the input's dtype.",
))

GPT2_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new", "silu": "silu"}


@functools.lru_cache(maxsize=64)
def _gpt2_mlp(cls: type, d: int, f: int, activation: str, dtype: torch.dtype, device: str):
    from transformers import GPT2Config

    config = GPT2Config(vocab_size=8, n_embd=d, n_layer=1, n_head=1, n_inner=f, activation_function=GPT2_ACTIVATIONS[activation],
                        resid_pdrop=0.0, bos_token_id=None, eos_token_id=None)  # GPT-2's own names for the sizes
    return frozen(cls(f, config), dtype, device)


def _wrap_hf_gpt2_mlp(cls: object, component: str) -> Callable:
    expect_class(cls, "a GPT2MLP-like module class", base="torch.nn.Module")

    def feed_forward(x, w_in, w_out, b_in=None, b_out=None, activation="gelu"):
        f, d = w_in.shape
        module = _gpt2_mlp(cls, d, f, activation, x.dtype, str(x.device))
        weights = {"c_fc.weight": w_in.T, "c_proj.weight": w_out.T,  # Conv1D stores [in, out]
                   "c_fc.bias": b_in if b_in is not None else torch.zeros_like(module.c_fc.bias),
                   "c_proj.bias": b_out if b_out is not None else torch.zeros_like(module.c_proj.bias)}
        # Conv1D reshapes with .view: GPT-2 always feeds it contiguous hidden states
        return call_with(module, weights, x.contiguous())

    return feed_forward


register(AdapterSpec(
    name="hf_gpt2_mlp",
    components=("feed_forward",),
    wrap=_wrap_hf_gpt2_mlp,
    doc="Hugging Face GPT2MLP(intermediate_size, config): Conv1D layers with weight = the transposed nn.Linear weight ([in, out]), "
    "bias = b or zeros; activation_function relu / gelu / gelu_new / silu for relu / gelu / gelu_tanh / silu; dropout off (eval); "
    "x made contiguous (Conv1D uses .view).",
))
