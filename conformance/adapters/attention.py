"""Attention adapters (Hugging Face eager attention and LlamaAttention, FlashAttention).

Registered here:

- `hf_eager`, `hf_eager_sliding_window`: a Hugging Face `eager_attention_forward(module, query, key, value,
  attention_mask, scaling, dropout=0.0, **kwargs)` (e.g. transformers.models.llama.modeling_llama).
- `hf_llama_attention`: the `LlamaAttention` module class, as the `multi_head_attention` component.
- `flash_attn`, `flash_attn_sliding_window`: FlashAttention 2's `flash_attn_func(q, k, v, dropout_p,
  softmax_scale, causal, window_size, ...)`, [B, L, H, E] layout.

The `attention` and `sliding_window_attention` adapters of one library are registered under separate names:
the runner resolves an adapter's implied options against the component's options, where an unknown option
raises, and `sliding_window_attention` has no options.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from .hf import call_with, frozen, tiny_config
from .registry import AdapterSpec, expect_class, expect_function, register


def _check_heads(hq: int, hkv: int, enable_gqa: bool) -> None:
    """torch SDPA's rule, kept by every adapter of the canonical signature: fewer KV heads need enable_gqa."""
    if hq != hkv and (not enable_gqa or hq % hkv):
        raise ValueError(f"{hq} query heads and {hkv} KV heads need enable_gqa=True and Hq % Hkv == 0 (torch SDPA's rule)")


# --- Hugging Face transformers --------------------------------------------------------------------------


def _llama_config(hidden_size: int, heads: int, kv_heads: int, head_dim: int):
    """A tiny LlamaConfig with exactly these sizes and eager attention.

    LlamaConfig validates at construction that hidden_size % num_attention_heads == 0 and that head_dim is even
    (for RoPE), even when head_dim is given explicitly. LlamaAttention itself needs neither (its projections
    are nn.Linear(hidden_size, heads * head_dim), and RoPE is disabled by the callers below), so the config is
    built with valid placeholder sizes and the real ones are assigned after validation (assignment is not
    re-validated). This changes no computation of the module; docs/conventions.md records it."""
    from transformers import LlamaConfig

    config = tiny_config(LlamaConfig, hidden_size=2 * heads, intermediate_size=1, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, head_dim=2, attention_bias=False, attention_dropout=0.0,
                         attn_implementation="eager")
    config.hidden_size = hidden_size
    config.head_dim = head_dim
    return config


@functools.lru_cache(maxsize=64)
def _llama_attention_stub(heads: int, kv_heads: int, head_dim: int):
    """A real LlamaAttention, used by `hf_eager` only for what eager_attention_forward reads off `module`:
    `num_key_value_groups` (= heads // kv_heads) and `training` (dropout is applied only in training mode)."""
    from transformers.models.llama.modeling_llama import LlamaAttention

    return LlamaAttention(_llama_config(heads * head_dim, heads, kv_heads, head_dim), layer_idx=0).requires_grad_(False).eval()


def _hf_bool_to_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """transformers.masking_utils.eager_mask: 0 where True, torch.finfo(dtype).min (not -inf) where False."""
    return torch.where(mask, torch.zeros((), device=mask.device, dtype=dtype), torch.finfo(dtype).min)


def _hf_eager_mask(mask_function, lq: int, lk: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The [1, 1, lq, lk] additive mask Hugging Face builds for eager attention without a cache (q_offset = 0)."""
    from transformers import masking_utils

    return masking_utils.eager_mask(batch_size=1, q_length=lq, kv_length=lk, mask_function=mask_function, dtype=dtype, device=device)


def _wrap_hf_eager(fn: object, component: str) -> Callable:
    expect_function(fn, "a Hugging Face eager_attention_forward(module, query, key, value, attention_mask, "
                    "scaling, dropout) function", positional=5, keywords=("scaling", "dropout"))
    from transformers import masking_utils

    def call(query, key, value, mask, scale, dropout_p):
        module = _llama_attention_stub(query.shape[-3], key.shape[-3], query.shape[-1])
        module.train(dropout_p > 0)  # eager_attention_forward drops out only when module.training
        scaling = module.scaling if scale is None else scale  # module.scaling = head_dim ** -0.5
        out, _ = fn(module, query, key, value, mask, scaling=scaling, dropout=dropout_p)
        return out.transpose(1, 2)  # HF returns [B, L, H, Ev]

    def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        _check_heads(query.shape[-3], key.shape[-3], enable_gqa)
        lq, lk = query.shape[-2], key.shape[-2]
        mask = None
        if is_causal:
            if attn_mask is not None:
                raise ValueError("attn_mask and is_causal=True together (torch SDPA rejects this too)")
            # causal_mask_function (kv_idx <= q_idx) with q_offset = 0: top-left, as torch's is_causal.
            mask = _hf_eager_mask(masking_utils.causal_mask_function, lq, lk, query.dtype, query.device)
        elif attn_mask is not None:
            mask = _hf_bool_to_additive(attn_mask, query.dtype) if attn_mask.dtype == torch.bool else attn_mask
        return call(query, key, value, mask, scale, dropout_p)

    def sliding_window_attention(query, key, value, window, scale=None):
        _check_heads(query.shape[-3], key.shape[-3], True)
        lq, lk = query.shape[-2], key.shape[-2]
        function = masking_utils.sliding_window_causal_mask_function(window)  # kv_idx > q_idx - window, kv_idx <= q_idx
        mask = _hf_eager_mask(function, lq, lk, query.dtype, query.device)
        return call(query, key, value, mask, scale, 0.0)

    return {"attention": attention, "sliding_window_attention": sliding_window_attention}[component]


_HF_EAGER_DOC = (
    "Hugging Face eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout). Boolean "
    "masks and is_causal become HF's additive eager mask (0 / torch.finfo(dtype).min, top-left causal via "
    "masking_utils.eager_mask); scale None -> LlamaAttention.scaling = E ** -0.5; the module is a real LlamaAttention "
    "supplying num_key_value_groups, put in training mode only when dropout_p > 0. float64 unsupported: HF computes "
    "the softmax in float32 (softmax(..., dtype=torch.float32).to(query.dtype)), so float64 outputs carry float32 error."
)

register(
    AdapterSpec(
        name="hf_eager",
        components=("attention",),
        wrap=_wrap_hf_eager,
        doc=_HF_EAGER_DOC + " A fully masked query row gets uniform weights over all keys (finfo.min, not -inf), "
        "hence fully_masked_rows=unspecified.",
        unsupported_dtypes=frozenset({"float64"}),
        implied_options={"fully_masked_rows": "unspecified"},
    )
)

register(
    AdapterSpec(
        name="hf_eager_sliding_window",
        components=("sliding_window_attention",),
        wrap=_wrap_hf_eager,
        doc=_HF_EAGER_DOC + " The window mask is masking_utils.sliding_window_causal_mask_function(window), i.e. "
        "HF / Mistral `sliding_window` = the spec's `window`.",
        unsupported_dtypes=frozenset({"float64"}),
    )
)


@functools.lru_cache(maxsize=32)
def _llama_attention_module(cls: type, hidden: int, heads: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: str):
    return frozen(cls(_llama_config(hidden, heads, kv_heads, head_dim), layer_idx=0), dtype, device)


def _wrap_hf_llama_attention(cls: object, component: str) -> Callable:
    expect_class(cls, "a LlamaAttention-like class", base="torch.nn.Module")
    from transformers import masking_utils

    def multi_head_attention(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal=True):
        b, l, d = x.shape
        if w_q.shape[0] % num_heads or w_k.shape[0] % num_kv_heads or w_v.shape[0] % num_kv_heads:
            raise ValueError(f"weight rows {w_q.shape[0]}, {w_k.shape[0]}, {w_v.shape[0]} do not split into {num_heads} / {num_kv_heads} heads")
        e, e_k, ev = w_q.shape[0] // num_heads, w_k.shape[0] // num_kv_heads, w_v.shape[0] // num_kv_heads
        if e_k != e:
            raise ValueError(f"query head dim {e} != key head dim {e_k}")
        if ev != e:
            raise NotImplementedError(
                f"LlamaAttention has one head_dim for queries, keys and values (v_proj: hidden -> num_key_value_heads * "
                f"head_dim, o_proj: num_heads * head_dim -> hidden); it cannot compute value head dim Ev={ev} != E={e}"
            )
        module = _llama_attention_module(cls, d, num_heads, num_kv_heads, e, x.dtype, str(x.device))
        with torch.no_grad():
            # RoPE off: cos = 1, sin = 0 makes apply_rotary_pos_emb the identity (q * 1 + rotate_half(q) * 0).
            cos = torch.ones(1, l, e, dtype=x.dtype, device=x.device)
            sin = torch.zeros(1, l, e, dtype=x.dtype, device=x.device)
            # what LlamaModel passes each layer: create_causal_mask -> eager_mask (0 / finfo(dtype).min); None if not causal.
            mask = (
                # the 4th parameter is `past_key_values` before transformers 5.25 and `cache` from 5.25: passed by position
                masking_utils.create_causal_mask(module.config, x, None, None)
                if is_causal
                else None
            )
        weights = {"q_proj.weight": w_q, "k_proj.weight": w_k, "v_proj.weight": w_v, "o_proj.weight": w_o}
        out, _ = call_with(module, weights, x, position_embeddings=(cos, sin), attention_mask=mask)
        return out

    return multi_head_attention


register(
    AdapterSpec(
        name="hf_llama_attention",
        components=("multi_head_attention",),
        wrap=_wrap_hf_llama_attention,
        doc="The Hugging Face LlamaAttention class (or one with its constructor and forward): a module built from a "
        "LlamaConfig with the canonical sizes (hidden_size=D, heads, kv heads, head_dim=E, no bias, eager attention), "
        "the canonical weights copied into q/k/v/o_proj, RoPE disabled (cos=1, sin=0), the causal mask from "
        "masking_utils.create_causal_mask, eval mode, in the input's dtype. float64 unsupported (softmax in "
        "float32). Ev != E (feature ev_ne_e) is unsupported: the module has a single head_dim.",
        unsupported_dtypes=frozenset({"float64"}),
        unsupported_features=frozenset({"ev_ne_e"}),
    )
)


# --- FlashAttention 2 -----------------------------------------------------------------------------------


def _pad_last(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else torch.nn.functional.pad(x, (0, size - x.shape[-1]))


def _flash_call(fn, query, key, value, dropout_p=0.0, scale=None, causal=False, window_size=(-1, -1)):
    """[B, H, L, E] in and out; flash_attn_func works in [B, L, H, E].

    FlashAttention 2 needs the value head dim equal to the query/key head dim (its flash_api.cpp checks v's
    shape against q's head_size). For Ev != E all three are zero-padded to max(E, Ev) and the output sliced
    back to Ev: zero columns add exact zeros to q.k and produce output columns that are dropped, and the scale
    is passed explicitly as E ** -0.5 (flash_attn_func's own default on the unpadded q), so the padding is
    exact. FlashAttention's Python wrapper pads head dims to a multiple of 8 the same way."""
    e, ev = query.shape[-1], value.shape[-1]
    width = max(e, ev)
    if width != e or width != ev:
        scale = e**-0.5 if scale is None else scale
    q, k, v = (_pad_last(t, width).transpose(1, 2) for t in (query, key, value))
    out = fn(q, k, v, dropout_p=dropout_p, softmax_scale=scale, causal=causal, window_size=window_size)
    return out.transpose(1, 2)[..., :ev]


def _wrap_flash_attn(fn: object, component: str) -> Callable:
    expect_function(fn, "FlashAttention's flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, "
                    "window_size)", positional=3, keywords=("dropout_p", "softmax_scale", "causal", "window_size"))

    def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if attn_mask is not None:
            raise NotImplementedError("flash_attn_func takes no attn_mask")
        _check_heads(query.shape[-3], key.shape[-3], enable_gqa)  # FlashAttention does GQA natively (head h -> h // G)
        return _flash_call(fn, query, key, value, dropout_p=dropout_p, scale=scale, causal=is_causal)

    def sliding_window_attention(query, key, value, window, scale=None):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        # the spec's window counts the query's own key: FlashAttention window_size=(window - 1, 0) with causal=True.
        return _flash_call(fn, query, key, value, scale=scale, causal=True, window_size=(window - 1, 0))

    return {"attention": attention, "sliding_window_attention": sliding_window_attention}[component]


_FLASH_DOC = (
    "FlashAttention 2 flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, ...) in [B, L, H, E] "
    "layout; GQA native (query head h uses KV head h // G); fp16/bf16 only; Ev != E by exact zero-padding of the "
    "head dims to max(E, Ev)."
)

register(
    AdapterSpec(
        name="flash_attn",
        components=("attention",),
        wrap=_wrap_flash_attn,
        doc=_FLASH_DOC + " causal=True is aligned bottom-right (FlashAttention >= 2.1), hence causal_alignment=bottom_right; "
        "no attn_mask; dropout_p is passed through (same meaning: drop probability, kept weights scaled by 1/(1-p)).",
        unsupported_dtypes=frozenset({"float64", "float32"}),
        unsupported_features=frozenset({"attn_mask"}),
        implied_options={"causal_alignment": "bottom_right"},
    )
)

register(
    AdapterSpec(
        name="flash_attn_sliding_window",
        components=("sliding_window_attention",),
        wrap=_wrap_flash_attn,
        doc=_FLASH_DOC + " window -> window_size=(window - 1, 0) with causal=True.",
        unsupported_dtypes=frozenset({"float64", "float32"}),
    )
)
