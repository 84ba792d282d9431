"""Adapters for the positions family: Hugging Face Llama RoPE (default and Llama 3 scaling) and GPT-J's interleaved
RoPE and sinusoidal table, all from tiny configs (no download).

- `hf_llama_rotary`: target a `<Model>RotaryEmbedding` class with LlamaRotaryEmbedding's constructor (config) and
  forward (x, position_ids) -> (cos, sin); the rotation is the same module's `apply_rotary_pos_emb`. For
  `rope_llama3` the config has rope_parameters {"rope_type": "llama3", ...}, so the class gets its frequencies from
  transformers' ROPE_INIT_FUNCTIONS["llama3"] = modeling_rope_utils._compute_llama3_parameters.
- `hf_gptj_rope`: target GPT-J's `apply_rotary_pos_emb(tensor, sin, cos)` ([B, L, H, D] layout, adjacent pairs); the
  sin/cos rows are gathered from the same module's `create_sinusoidal_positions`, as GPTJAttention does. That table
  fixes theta = 10000, so feature `theta` is declared unsupported.
- `hf_gptj_sinusoidal`: target `create_sinusoidal_positions(num_pos, dim)`, whose table is [sin | cos] in halves;
  the adapter interleaves the halves into Vaswani's (sin, cos) pairs (a layout translation).

Every HF path computes frequencies and angles in float32 (cos/sin then cast to the input dtype): float64 is declared
unsupported.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from .hf import tiny_config
from .registry import AdapterSpec, describe, expect_class, expect_function, module_of, register


def _llama_like_config(cls: type, head_dim: int, rope_parameters: dict):
    """The config class of `cls`'s model (LlamaConfig for LlamaRotaryEmbedding) with one head of head_dim."""
    config_cls = getattr(sys.modules[cls.__module__], f"{cls.__name__[: -len('RotaryEmbedding')]}Config")
    return tiny_config(config_cls, hidden_size=head_dim, intermediate_size=1, num_attention_heads=1, num_key_value_heads=1,
                       head_dim=head_dim, rope_parameters=rope_parameters,
                       max_position_embeddings=2 * rope_parameters.get("original_max_position_embeddings", 2048))


def _wrap_hf_llama_rotary(cls: object, component: str) -> Callable:
    what = "a <Model>RotaryEmbedding class (transformers.models.llama.modeling_llama:LlamaRotaryEmbedding)"
    expect_class(cls, what, base="torch.nn.Module")
    module = module_of(cls)
    config_name = f"{cls.__name__[: -len('RotaryEmbedding')]}Config"
    if not cls.__name__.endswith("RotaryEmbedding") or not hasattr(module, "apply_rotary_pos_emb") \
            or not hasattr(module, config_name):
        raise TypeError(f"it adapts {what}, whose module also defines apply_rotary_pos_emb and "
                        f"<Model>Config; not the class {cls.__module__}.{cls.__qualname__}")
    apply_rotary_pos_emb = module.apply_rotary_pos_emb

    def rotate(x, positions, rope_parameters):
        module = cls(_llama_like_config(cls, x.shape[-1], rope_parameters)).to(x.device)
        cos, sin = module(x, positions[None])  # [1, L, D] each, in x.dtype
        q, _ = apply_rotary_pos_emb(x, x.clone(), cos, sin)  # distinct q and k: an in-place kernel rotates each once
        return q

    def rope(x, positions, theta=10000.0):
        return rotate(x, positions, {"rope_type": "default", "rope_theta": theta})

    def rope_llama3(x, positions, theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192):
        return rotate(x, positions, {"rope_type": "llama3", "rope_theta": theta, "factor": factor, "low_freq_factor": low_freq_factor,
                                     "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_max_position_embeddings})

    return {"rope": rope, "rope_llama3": rope_llama3}[component]


register(AdapterSpec(
    name="hf_llama_rotary",
    components=("rope", "rope_llama3"),
    wrap=_wrap_hf_llama_rotary,
    doc="Hugging Face LlamaRotaryEmbedding (or another <Model>RotaryEmbedding with its interface) built from a one-head config "
    "with head_dim = D and rope_parameters (default: rope_theta; llama3: factor, low/high_freq_factor, "
    "original_max_position_embeddings, via ROPE_INIT_FUNCTIONS['llama3']), then the module's apply_rotary_pos_emb "
    "(x as q, a copy of x as k; the rotated q is the output). "
    "float64 unsupported: frequencies, angles, cos and sin are float32.",
    unsupported_dtypes=frozenset({"float64"}),
))


def _gptj_module(fn: object):
    return sys.modules[fn.__module__]


def _wrap_hf_gptj_rope(fn: object, component: str) -> Callable:
    what = "GPT-J's apply_rotary_pos_emb(tensor, sin, cos) (transformers.models.gptj.modeling_gptj)"
    expect_function(fn, what, positional=3)
    if not hasattr(module_of(fn), "create_sinusoidal_positions"):
        raise TypeError(f"it adapts {what}, whose module also defines create_sinusoidal_positions; not {describe(fn)}")
    create_sinusoidal_positions = _gptj_module(fn).create_sinusoidal_positions

    def rope_interleaved(x, positions, theta=10000.0):
        if theta != 10000.0:
            raise NotImplementedError(f"GPT-J's create_sinusoidal_positions fixes theta = 10000; got theta={theta:g}")
        b, h, l, d = x.shape
        table = create_sinusoidal_positions(int(positions.max()) + 1, d).to(x.device)  # [P, D]: sin | cos
        sincos = table[positions].to(x.dtype)[None].expand(b, l, d)  # GPTJAttention: gather rows, .to(key.dtype)
        sin, cos = torch.split(sincos, d // 2, dim=-1)
        return fn(x.transpose(1, 2), sin, cos).transpose(1, 2)  # GPT-J works in [B, L, H, D]

    return rope_interleaved


register(AdapterSpec(
    name="hf_gptj_rope",
    components=("rope_interleaved",),
    wrap=_wrap_hf_gptj_rope,
    doc="GPT-J's apply_rotary_pos_emb(tensor [B, L, H, D], sin, cos) with sin/cos rows gathered at `positions` from the module's "
    "create_sinusoidal_positions (float32 angles, cast to the input dtype), as GPTJAttention does. theta is fixed at 10000 "
    "(feature theta unsupported); float64 unsupported (float32 table).",
    unsupported_dtypes=frozenset({"float64"}),
    unsupported_features=frozenset({"theta"}),
))


def _wrap_hf_gptj_sinusoidal(fn: object, component: str) -> Callable:
    expect_function(fn, "GPT-J's create_sinusoidal_positions(num_pos, dim)", positional=2)

    def sinusoidal_positions(num_positions, dim):
        table = fn(num_positions, dim)  # [sin(pos f_0..), cos(pos f_0..)]
        sin, cos = torch.split(table, dim // 2, dim=-1)
        return torch.stack([sin, cos], dim=-1).flatten(-2)

    return sinusoidal_positions


register(AdapterSpec(
    name="hf_gptj_sinusoidal",
    components=("sinusoidal_positions",),
    wrap=_wrap_hf_gptj_sinusoidal,
    doc="GPT-J's create_sinusoidal_positions(num_pos, dim): the same frequencies 10000^(-2i/dim) in float32, laid out "
    "[sin | cos] in halves; the adapter interleaves the halves into Vaswani's (sin, cos) pairs.",
))
