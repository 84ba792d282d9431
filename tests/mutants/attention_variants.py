"""Broken multi-head, sliding-window, KV-cache and MLA implementations, one plausible bug each."""

from __future__ import annotations

import math

import torch

from lmspec.reference import attention as ref
from lmspec.reference.positions import rope

from .attention import sdpa


def _mha(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal=True, *, split="heads_first", interleave=True, causal=True):
    b, l, _ = x.shape

    def heads(t, n):
        if split == "heads_first":
            return t.reshape(b, l, n, -1).transpose(1, 2)
        return t.reshape(b, l, -1, n).permute(0, 3, 1, 2)  # splits the feature axis the wrong way round

    q, k, v = heads(x @ w_q.T, num_heads), heads(x @ w_k.T, num_kv_heads), heads(x @ w_v.T, num_kv_heads)
    out = sdpa(q, k, v, is_causal=is_causal and causal, enable_gqa=True, interleave_groups=interleave)
    return out.transpose(1, 2).reshape(b, l, -1) @ w_o.T


def mha_heads_split_transposed(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal=True):
    return _mha(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal, split="features_first")


def mha_gqa_modulo(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal=True):
    return _mha(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal, interleave=False)


def mha_assumes_ev_equals_e(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal=True):
    """Splits the value projection with the query/key head dim E."""
    e = w_q.shape[0] // num_heads
    w_v = w_v[: num_kv_heads * e] if w_v.shape[0] >= num_kv_heads * e else torch.cat([w_v, w_v])[: num_kv_heads * e]
    return _mha(x, w_q, w_k, w_v, w_o[:, : num_heads * e] if w_o.shape[1] >= num_heads * e else w_o, num_heads, num_kv_heads, is_causal)


def mha_ignores_causal(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal=True):
    return _mha(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal, causal=False)


def _window(query, key, value, window, scale=None, *, extra=0):
    lq, lk = query.shape[-2], key.shape[-2]
    mask = ref.sliding_window_mask(lq, lk, max(1, window + extra), query.device)
    return sdpa(query, key, value, attn_mask=mask, scale=scale, enable_gqa=True)


def window_bidirectional(query, key, value, window, scale=None):
    """Uses |i - j| < window: sees future keys inside the window."""
    i = torch.arange(query.shape[-2], device=query.device)[:, None]
    j = torch.arange(key.shape[-2], device=query.device)[None, :]
    return sdpa(query, key, value, attn_mask=(i - j).abs() < window, scale=scale, enable_gqa=True)


def window_one_too_wide(query, key, value, window, scale=None):
    """Sees window + 1 keys (i - window <= j <= i)."""
    return _window(query, key, value, window, scale, extra=1)


def window_one_too_narrow(query, key, value, window, scale=None):
    """Sees window - 1 keys (does not count the query's own position)."""
    return _window(query, key, value, window, scale, extra=-1)


def _cached(query, key, value, cache_key, cache_value, scale=None, *, shift=0, alignment="bottom_right", prepend=False):
    keys = torch.cat([key, cache_key] if prepend else [cache_key, key], dim=-2)
    values = torch.cat([value, cache_value] if prepend else [cache_value, value], dim=-2)
    out = sdpa(query, keys, values, is_causal=True, scale=scale, enable_gqa=True, alignment=alignment, diagonal=shift)
    return out, keys, values


def cache_position_off_by_one(query, key, value, cache_key, cache_value, scale=None):
    """New token t is placed at Lpast + t - 1: it does not see its own key."""
    return _cached(query, key, value, cache_key, cache_value, scale, shift=-1)


def cache_top_left(query, key, value, cache_key, cache_value, scale=None):
    """Forgets the cache offset: new token t sees only keys 0..t."""
    return _cached(query, key, value, cache_key, cache_value, scale, alignment="top_left")


def cache_prepends(query, key, value, cache_key, cache_value, scale=None):
    """Puts new entries before the old ones."""
    return _cached(query, key, value, cache_key, cache_value, scale, prepend=True)


def _mla(x, w_dkv, w_uk, w_uv, w_q, w_qr, w_kr, w_o, num_heads, rope_theta=10000.0, *, rotate_key=True, with_rope_dim=True,
         causal=True, split_heads_first=True):
    b, l, _ = x.shape
    pos = torch.arange(l, device=x.device)

    def split(t):
        if split_heads_first:
            return t.reshape(b, l, num_heads, -1).transpose(1, 2)
        return t.reshape(b, l, -1, num_heads).permute(0, 3, 1, 2)

    latent = x @ w_dkv.T
    k_r = x @ w_kr.T
    k_r = rope(k_r, pos, rope_theta) if rotate_key else k_r
    q = torch.cat([split(x @ w_q.T), rope(split(x @ w_qr.T), pos, rope_theta)], dim=-1)
    k = torch.cat([split(latent @ w_uk.T), k_r[:, None].expand(-1, num_heads, -1, -1)], dim=-1)
    e = w_q.shape[0] // num_heads
    scale = 1 / math.sqrt(q.shape[-1] if with_rope_dim else e)
    out = sdpa(q, k, split(latent @ w_uv.T), is_causal=causal, scale=scale)
    return out.transpose(1, 2).reshape(b, l, -1) @ w_o.T


def mla_scale_ignores_rope_dim(*args, **kwargs):
    """Scales by 1/sqrt(E) instead of 1/sqrt(E + Er)."""
    return _mla(*args, with_rope_dim=False, **kwargs)


def mla_rope_key_not_rotated(*args, **kwargs):
    """Forgets to rotate the shared decoupled key."""
    return _mla(*args, rotate_key=False, **kwargs)


def mla_not_causal(*args, **kwargs):
    return _mla(*args, causal=False, **kwargs)


def mla_heads_split_transposed(*args, **kwargs):
    """Splits the projected features into heads the wrong way round."""
    return _mla(*args, split_heads_first=False, **kwargs)


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("multi_head_attention", "mha_heads_split_transposed",
     {"mha.heads.fused_equals_per_head", "mha.reference.matches"}),
    ("multi_head_attention", "mha_gqa_modulo", {"mha.gqa.equals_repeated_kv", "mha.heads.fused_equals_per_head"}),
    ("multi_head_attention", "mha_assumes_ev_equals_e", {"mha.reference.value_dim_differs"}),
    ("multi_head_attention", "mha_ignores_causal",
     {"mha.causal.future_independence", "mha.heads.one_head_is_single_head_attention"}),
    ("sliding_window_attention", "window_one_too_wide",
     {"sliding_window.reference.matches", "sliding_window.visible_keys"}),
    ("sliding_window_attention", "window_one_too_narrow", {"sliding_window.visible_keys"}),
    ("sliding_window_attention", "window_bidirectional", {"sliding_window.large_window_is_causal"}),
    ("cached_attention", "cache_position_off_by_one",
     {"kv_cache.decode_equals_full_forward", "kv_cache.reference.matches"}),
    ("cached_attention", "cache_top_left", {"kv_cache.decode_equals_full_forward", "kv_cache.reference.matches"}),
    ("cached_attention", "cache_prepends", {"kv_cache.appends_in_order"}),
    ("multi_head_latent_attention", "mla_scale_ignores_rope_dim", {"mla.reference.matches"}),
    ("multi_head_latent_attention", "mla_rope_key_not_rotated", {"mla.reference.matches"}),
    ("multi_head_latent_attention", "mla_not_causal", {"mla.causal.future_independence"}),
    ("multi_head_latent_attention", "mla_heads_split_transposed", {"mla.heads.shared_rope_key"}),
]
