"""Broken attention implementations: a plain SDPA, and multi-head, sliding-window, KV-cache and MLA
implementations, with exactly one plausible bug each.

`sdpa` is a straightforward implementation whose knobs each reproduce one bug seen in the wild; the mutants
below turn one knob. (Its default settings are correct and conform: tests/test_mutants.py checks that too.)
"""

from __future__ import annotations

import math
import time

import torch

from lmspec.reference import attention as ref
from lmspec.reference.positions import rope


def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, *,
         default_scale=lambda e: 1 / math.sqrt(e), diagonal=0, alignment="top_left", softmax_dim=-1, subtract_max=True,
         interleave_groups=True, invert_bool_mask=False, ignore_additive_mask=False, dropout_rescale=True,
         nan_for_empty_rows=False, drop_last_key=False, eval_dropout=0.0):
    if drop_last_key and key.shape[-2] > 1:  # an off-by-one slice of the key axis
        key, value = key[..., :-1, :], value[..., :-1, :]
        if attn_mask is not None:
            attn_mask = attn_mask[..., :-1]
    hq, hkv = query.shape[-3], key.shape[-3]
    if hq != hkv:
        n = hq // hkv
        if interleave_groups:
            key, value = key.repeat_interleave(n, dim=-3), value.repeat_interleave(n, dim=-3)
        else:  # query head h uses KV head h % hkv
            key, value = key.repeat(1, n, 1, 1), value.repeat(1, n, 1, 1)
    s = default_scale(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * s
    lq, lk = scores.shape[-2], scores.shape[-1]
    allowed = torch.ones(lq, lk, dtype=torch.bool, device=query.device)
    if is_causal:
        offset = 0 if alignment == "top_left" else lk - lq
        allowed = torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril(offset + diagonal)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & (~attn_mask if invert_bool_mask else attn_mask)
        elif not ignore_additive_mask:
            scores = scores + attn_mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    if subtract_max:
        scores = scores - scores.amax(dim=softmax_dim, keepdim=True).nan_to_num(0.0, 0.0, 0.0)
    weights = scores.exp()
    weights = weights / weights.sum(dim=softmax_dim, keepdim=True)
    if not nan_for_empty_rows:
        weights = weights.nan_to_num(0.0)
    dropout_p = max(dropout_p, eval_dropout)
    if dropout_p > 0:
        keep = torch.rand_like(weights, dtype=torch.float32) >= dropout_p
        weights = weights * keep / ((1 - dropout_p) if dropout_rescale else 1.0)
    return weights @ value


def _mutant(**knobs):
    def fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        return sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, **knobs)

    return fn


correct = _mutant()
missing_scale = _mutant(default_scale=lambda e: 1.0)
scale_one_over_e = _mutant(default_scale=lambda e: 1.0 / e)
causal_diagonal_excluded = _mutant(diagonal=-1)
causal_sees_next_token = _mutant(diagonal=1)
softmax_over_queries = _mutant(softmax_dim=-2)
no_max_subtraction = _mutant(subtract_max=False)
gqa_groups_modulo = _mutant(interleave_groups=False)
causal_bottom_right = _mutant(alignment="bottom_right")
bool_mask_inverted = _mutant(invert_bool_mask=True)
additive_mask_ignored = _mutant(ignore_additive_mask=True)
dropout_not_rescaled = _mutant(dropout_rescale=False)
nan_for_fully_masked_rows = _mutant(nan_for_empty_rows=True)
drops_last_key = _mutant(drop_last_key=True)
dropout_in_eval = _mutant(eval_dropout=0.1)


def causal_top_left(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """A torch-style (top-left) target: correct for torch, wrong when bottom_right is asked for."""
    return sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)


# --- tiled (FlashAttention-style) kernels: exact within one tile, wrong past it ------------------------------

BLOCK = 64  # query rows and keys per tile (FlashAttention 2's BLOCK_M / BLOCK_N for head dims <= 128)


def _cdiv(n: int, block: int) -> int:
    return -(-n // block)


def flash(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, *,
          rescale=True, tiles=_cdiv, query_tiles=_cdiv, local_rows=False):
    """Online softmax over key tiles (Dao et al. 2022, FlashAttention 2 alg. 1), one query tile at a time: a
    running row max m, sum l and output acc, rescaled by exp(m_old - m_new) when a later tile raises the max.
    Correct with the default knobs; each knob is one tiling bug. (Dropout is not tiled: it is `sdpa`'s.)"""
    if dropout_p > 0.0:
        return sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    hq, hkv = query.shape[-3], key.shape[-3]
    key, value = key.repeat_interleave(hq // hkv, dim=-3), value.repeat_interleave(hq // hkv, dim=-3)
    s = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    lq, lk = query.shape[-2], key.shape[-2]
    shape = (*query.shape[:-2], lq, lk)
    bias = torch.zeros(shape, dtype=torch.float32, device=query.device)
    if attn_mask is not None:
        bias = bias.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else bias + attn_mask
    out = torch.zeros(*query.shape[:-1], value.shape[-1], dtype=torch.float32, device=query.device)
    for qs in range(0, query_tiles(lq, BLOCK) * BLOCK, BLOCK):
        q = query[..., qs : qs + BLOCK, :].float()
        rows = q.shape[-2]
        m = torch.full((*q.shape[:-1], 1), float("-inf"), device=q.device)
        l = torch.zeros_like(m)
        acc = torch.zeros(*q.shape[:-1], value.shape[-1], device=q.device)
        for ks in range(0, tiles(lk, BLOCK) * BLOCK, BLOCK):
            k, v = key[..., ks : ks + BLOCK, :].float(), value[..., ks : ks + BLOCK, :].float()
            scores = (q @ k.transpose(-2, -1)) * s + bias[..., qs : qs + rows, ks : ks + k.shape[-2]]
            if is_causal:
                i = torch.arange(rows, device=q.device)[:, None] + (0 if local_rows else qs)  # query positions
                j = torch.arange(ks, ks + k.shape[-2], device=q.device)[None, :]
                scores = scores.masked_fill(j > i, float("-inf"))
            m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
            m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))  # a row that saw no key yet
            p = (scores - m_safe).exp()
            alpha = (m - m_safe).exp() if rescale else torch.ones_like(m)
            l, acc, m = l * alpha + p.sum(-1, keepdim=True), acc * alpha + p @ v, m_new
        out[..., qs : qs + rows, :] = torch.where(l > 0, acc / l.clamp_min(1e-30), torch.zeros_like(acc))
    return out.to(query.dtype)


def _flash(**knobs):
    def fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        return flash(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, **knobs)

    return fn


flash_correct = _flash()
# The running max and sum are not rescaled when a later key tile raises the row max: each tile's exp() is taken
# against a different max, so tiles are mixed with the wrong weights (exact for Lk <= 64, one tile).
flash_no_rescale = _flash(rescale=False)
# floor(Lk / BLOCK) key tiles instead of cdiv (at least one): the last partial key tile is never loaded, as in
# kernels that were only ever run at multiples of the block (jax-ml/jax#27224, Pallas FlashAttention forward correct
# only for sequence lengths that are multiples of the block size; lucidrains/flash-attention-jax#14, 1025 fails).
flash_drops_partial_key_tile = _flash(tiles=lambda n, b: max(1, n // b))
# floor(Lq / BLOCK) query tiles: the rows of the last partial query tile are never computed and stay zero (a grid
# of seqlen // BLOCK_M programs; 66RING/tiny-flash-attention#12, wrong results for sequence lengths that are not
# powers of two).
flash_assumes_lq_multiple_of_block = _flash(query_tiles=lambda n, b: max(1, n // b))
# The causal mask compares key positions with the query's row index inside its tile, not its position in the
# sequence: a per-tile offset left out (exact while Lq <= 64; cf. Dao-AILab/flash-attention#436, causal masks that
# must be applied on more than one block).
flash_causal_tile_offset = _flash(local_rows=True)


# --- cheats a harness must fail --------------------------------------------------------------------------


def zeros(query, key, value, *args, **kwargs):
    return torch.zeros(*query.shape[:-1], value.shape[-1], dtype=query.dtype, device=query.device)


def mean_of_values(query, key, value, *args, **kwargs):
    """A constant output per head: the mean value row, ignoring the queries."""
    hq = query.shape[-3]
    v = value.repeat_interleave(hq // value.shape[-3], dim=-3)
    return v.mean(dim=-2, keepdim=True).expand(*query.shape[:-1], value.shape[-1]).contiguous()


def copy_of_query(query, key, value, *args, **kwargs):
    return query.clone()


def nan_output(query, key, value, *args, **kwargs):
    out = correct(query, key, value, *args, **kwargs)
    out[..., 0, 0] = float("nan")
    return out


def mutates_inputs(query, key, value, *args, **kwargs):
    out = correct(query, key, value, *args, **kwargs)
    key.zero_()
    return out


def always_float32(query, key, value, *args, **kwargs):
    return correct(query.float(), key.float(), value.float(), *args, **kwargs)


def raises(query, key, value, *args, **kwargs):
    raise RuntimeError("kernel launch failed")


def hangs(query, key, value, *args, **kwargs):
    time.sleep(3600)


def wrong_signature(query, key):
    return query


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("attention", "missing_scale", {"attention.reference.matches", "attention.scale.default_inv_sqrt_e"}),
    ("attention", "scale_one_over_e", {"attention.reference.matches", "attention.scale.default_inv_sqrt_e"}),
    ("attention", "causal_diagonal_excluded", {"attention.causal.visible_keys", "attention.convex_combination"}),
    ("attention", "causal_sees_next_token", {"attention.causal.future_independence", "attention.causal.visible_keys"}),
    ("attention", "softmax_over_queries", {"attention.convex_combination", "attention.reference.matches"}),
    ("attention", "no_max_subtraction", {"attention.gqa.matches_reference", "attention.mask.additive"}, {},
     ("float16",)),  # exp overflows at 11.1 in float16, at 88.7 in float32
    ("attention", "gqa_groups_modulo", {"attention.gqa.equals_repeated_kv", "attention.gqa.matches_reference"}),
    ("attention", "causal_bottom_right", {"attention.causal.future_independence", "attention.causal.visible_keys"}),
    ("attention", "causal_top_left",
     {"attention.causal.visible_keys", "attention.reference.matches"}, {"causal_alignment": "bottom_right"}),
    ("attention", "bool_mask_inverted", {"attention.mask.boolean", "attention.mask.boolean_equals_additive"}),
    ("attention", "additive_mask_ignored", {"attention.mask.additive", "attention.mask.boolean_equals_additive"}),
    ("attention", "nan_for_fully_masked_rows", {"attention.mask.fully_masked_rows"}),
    ("attention", "drops_last_key", {"attention.permutation_invariance", "attention.reference.matches"}),
    ("attention", "dropout_not_rescaled", {"attention.dropout.unbiased"}),
    ("attention", "dropout_in_eval", {"attention.dropout.zero_is_identity", "attention.reference.matches"}),
    # tiled kernels, exact within one 64 x 64 tile (they pass at --scale small): caught at the kernel scale
    ("attention", "flash_no_rescale", {"attention.reference.matches", "attention.mask.additive"}),
    ("attention", "flash_drops_partial_key_tile", {"attention.mask.boolean", "attention.permutation_invariance"}),
    ("attention", "flash_assumes_lq_multiple_of_block",
     {"attention.reference.matches", "attention.convex_combination"}),
    ("attention", "flash_causal_tile_offset", {"attention.reference.matches"}),
]


# --- multi-head, sliding-window, KV-cache and MLA ---------------------------------------------------------


def _mha(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal=True, *, split="heads_first", interleave=True,
         causal=True):
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
    w_o = w_o[:, : num_heads * e] if w_o.shape[1] >= num_heads * e else w_o
    return _mha(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads, is_causal)


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


def _mla(x, w_dkv, w_uk, w_uv, w_q, w_qr, w_kr, w_o, num_heads, rope_theta=10000.0, *, rotate_key=True,
         with_rope_dim=True, causal=True, split_heads_first=True):
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
CAUGHT += [
    ("multi_head_attention", "mha_heads_split_transposed",
     {"multi_head_attention.heads.fused_equals_per_head", "multi_head_attention.reference.matches"}),
    ("multi_head_attention", "mha_gqa_modulo", {"multi_head_attention.gqa.equals_repeated_kv", "multi_head_attention.heads.fused_equals_per_head"}),
    ("multi_head_attention", "mha_assumes_ev_equals_e", {"multi_head_attention.reference.value_dim_differs"}),
    ("multi_head_attention", "mha_ignores_causal",
     {"multi_head_attention.causal.future_independence", "multi_head_attention.heads.one_head_is_single_head_attention"}),
    ("sliding_window_attention", "window_one_too_wide",
     {"sliding_window_attention.reference.matches", "sliding_window_attention.visible_keys"}),
    ("sliding_window_attention", "window_one_too_narrow", {"sliding_window_attention.visible_keys"}),
    ("sliding_window_attention", "window_bidirectional", {"sliding_window_attention.large_window_is_causal"}),
    ("cached_attention", "cache_position_off_by_one",
     {"cached_attention.decode_equals_full_forward", "cached_attention.reference.matches"}),
    ("cached_attention", "cache_top_left", {"cached_attention.decode_equals_full_forward", "cached_attention.reference.matches"}),
    ("cached_attention", "cache_prepends", {"cached_attention.appends_in_order"}),
    ("multi_head_latent_attention", "mla_scale_ignores_rope_dim", {"multi_head_latent_attention.reference.matches"}),
    ("multi_head_latent_attention", "mla_rope_key_not_rotated", {"multi_head_latent_attention.reference.matches"}),
    ("multi_head_latent_attention", "mla_not_causal", {"multi_head_latent_attention.causal.future_independence"}),
    ("multi_head_latent_attention", "mla_heads_split_transposed", {"multi_head_latent_attention.heads.shared_rope_key"}),
]

# mutants whose bug shows as an exception on a valid input (tests/test_mutants.py expects cause "raised")
RAISES = {"mha_assumes_ev_equals_e"}


# --- backward passes (issue 15): a correct forward, a broken backward ------------------------------------------

from .gradients import detached_argument, drifting_backward, zero_backward  # noqa: E402


class _BackwardOf(torch.autograd.Function):
    """Forward by `forward`; backward: the vector-Jacobian product of `backward` (another function) at the same
    q, k, v, as a hand-written kernel whose backward recomputes the scores without the mask. With `overwrite`,
    the backward then writes zeros into the saved query (an in-place reuse of an input's buffer)."""

    @staticmethod
    def forward(ctx, forward, backward, overwrite, q, k, v, *rest):
        ctx.backward, ctx.overwrite, ctx.rest = backward, overwrite, rest
        ctx.save_for_backward(q, k, v)
        return forward(q, k, v, *rest)

    @staticmethod
    def backward(ctx, grad):
        q, k, v = ctx.saved_tensors
        with torch.enable_grad():
            inputs = [t.detach().requires_grad_(True) for t in (q, k, v)]
            grads = torch.autograd.grad(ctx.backward(*inputs, *ctx.rest), inputs, grad)
        if ctx.overwrite:
            q.zero_()
        return (None, None, None, *grads, *(None for _ in ctx.rest))


def _sdpa_args(attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False) -> tuple:
    return attn_mask, dropout_p, is_causal, scale, enable_gqa


def backward_ignores_causal(query, key, value, *args, **kwargs):
    """The backward recomputes the scores without the causal mask: future keys get gradient."""
    rest = _sdpa_args(*args, **kwargs)

    def unmasked(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa):
        return ref.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, False, scale, enable_gqa)

    return _BackwardOf.apply(ref.scaled_dot_product_attention, unmasked, False, query, key, value, *rest)


def backward_ignores_mask(query, key, value, *args, **kwargs):
    """The backward recomputes the scores without attn_mask: padded keys get gradient."""
    rest = _sdpa_args(*args, **kwargs)

    def unmasked(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa):
        return ref.scaled_dot_product_attention(q, k, v, None, dropout_p, is_causal, scale, enable_gqa)

    return _BackwardOf.apply(ref.scaled_dot_product_attention, unmasked, False, query, key, value, *rest)


def backward_overwrites_query(query, key, value, *args, **kwargs):
    """Correct gradients, but the backward then zeroes the query it saved (the caller's tensor) in place."""
    rest = _sdpa_args(*args, **kwargs)
    fn = ref.scaled_dot_product_attention
    return _BackwardOf.apply(fn, fn, True, query, key, value, *rest)


def window_backward_ignores_window(query, key, value, window, scale=None):
    """The backward recomputes full causal attention: keys outside the window get gradient."""

    def causal(q, k, v, window, scale):
        return ref.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)

    return _BackwardOf.apply(ref.sliding_window_attention, causal, False, query, key, value, window, scale)


sdpa_zero_backward = zero_backward(ref.scaled_dot_product_attention)
sdpa_no_value_gradient = detached_argument(ref.scaled_dot_product_attention, 2)
sdpa_drifting_backward = drifting_backward(ref.scaled_dot_product_attention)
window_zero_backward = zero_backward(ref.sliding_window_attention)
window_no_key_gradient = detached_argument(ref.sliding_window_attention, 1)
window_drifting_backward = drifting_backward(ref.sliding_window_attention)
cache_zero_backward = zero_backward(ref.cached_attention)
cache_no_cache_value_gradient = detached_argument(ref.cached_attention, 4)
cache_drifting_backward = drifting_backward(ref.cached_attention)
mha_zero_backward = zero_backward(ref.multi_head_attention)
mha_no_w_o_gradient = detached_argument(ref.multi_head_attention, 4)
mha_drifting_backward = drifting_backward(ref.multi_head_attention)
mla_zero_backward = zero_backward(ref.multi_head_latent_attention)
mla_no_w_kr_gradient = detached_argument(ref.multi_head_latent_attention, 6)
mla_drifting_backward = drifting_backward(ref.multi_head_latent_attention)


def _backward_rows(component: str, prefixes: tuple[str, ...], short: str) -> list:
    """The generic backward mutants of one component and the invariants that catch each."""
    ids = lambda kind: {f"{p}.backward.{kind}" for p in prefixes}  # noqa: E731
    return [
        (component, f"{short}_zero_backward", ids("matches_reference") | ids("finite_differences"), {},
         ("float64",)),  # finite differences are a float64 check
        (component, f"{short}_drifting_backward", ids("repeatable")),
    ]


CAUGHT += [
    *_backward_rows("attention", ("attention", "attention.gqa", "attention.mask"), "sdpa"),
    ("attention", "sdpa_no_value_gradient",
     {"attention.backward.complete", "attention.gqa.backward.complete", "attention.mask.backward.complete"}),
    ("attention", "backward_ignores_causal", {"attention.backward.masked_keys_zero"}),
    ("attention", "backward_ignores_mask", {"attention.mask.backward.masked_keys_zero"}),
    ("attention", "backward_overwrites_query", {"attention.backward.matches_reference"}),
    *_backward_rows("sliding_window_attention", ("sliding_window_attention",), "window"),
    ("sliding_window_attention", "window_no_key_gradient", {"sliding_window_attention.backward.complete"}),
    ("sliding_window_attention", "window_backward_ignores_window",
     {"sliding_window_attention.backward.masked_keys_zero", "sliding_window_attention.backward.matches_reference"}),
    *_backward_rows("cached_attention", ("cached_attention",), "cache"),
    ("cached_attention", "cache_no_cache_value_gradient", {"cached_attention.backward.complete"}),
    *_backward_rows("multi_head_attention", ("multi_head_attention",), "mha"),
    ("multi_head_attention", "mha_no_w_o_gradient", {"multi_head_attention.backward.complete"}),
    *_backward_rows("multi_head_latent_attention", ("multi_head_latent_attention",), "mla"),
    ("multi_head_latent_attention", "mla_no_w_kr_gradient", {"multi_head_latent_attention.backward.complete"}),
]
