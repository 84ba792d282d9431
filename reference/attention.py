"""Scaled dot-product attention and its variants: masks, GQA/MQA, multi-head, sliding window, KV cache, MLA.

Read top to bottom: the masks, scaled dot-product attention built on them, then the variants built on it.
Shapes: B batch, Hq query heads, Hkv key/value heads, Lq query length, Lk key length, E query/key head dim,
Ev value head dim, D model dim.

Sources:
- Vaswani et al. 2017, "Attention Is All You Need", eq. 1 (scaled dot-product) and sec. 3.2.2 (multi-head).
- torch.nn.functional.scaled_dot_product_attention (torch 2.13 docs): signature, boolean mask True = attend,
  `is_causal` aligned top-left (`ones(L, S).tril(0)`), `enable_gqa` uses repeat_interleave (query head h uses
  KV head h // (Hq / Hkv)), fully masked rows give zeros on the math path (torch >= 2.5 `_safe_softmax`).
- FlashAttention >= 2.1 and `torch.nn.attention.bias.causal_lower_right`: causal mask aligned bottom-right.
- Ainslie et al. 2023 (GQA), Shazeer 2019 (MQA), Beltagy et al. 2020 / Mistral 7B (sliding window),
  DeepSeek-AI 2024, DeepSeek-V2, sec. 2.1.2-2.1.3, eqs. 9-19 (multi-head latent attention).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ._typing import Bool, Float, Tensor, typechecked
from .accounting.memory import kv_cache_bytes  # noqa: F401  (the KVCache's size, defined with the accounting family)
from .positions import rope

Alignment = Literal["top_left", "bottom_right"]


# --- masks: which keys each query may see -------------------------------------------------------------------


@typechecked
def causal_mask(
    lq: int, lk: int, alignment: Alignment = "top_left", device: str | torch.device = "cpu"
) -> Bool[Tensor, "lq lk"]:
    """True where query i may attend key j.

    top_left (torch `is_causal`): j <= i. bottom_right (FlashAttention >= 2.1): j <= i + (lk - lq), i.e. the
    last query sees every key, as when the queries are the newest tokens after a cache of lk - lq.
    """
    offset = 0 if alignment == "top_left" else lk - lq
    i = torch.arange(lq, device=device)[:, None]  # [Lq, 1]
    j = torch.arange(lk, device=device)[None, :]  # [1, Lk]
    return j <= i + offset  # [Lq, Lk]


@typechecked
def sliding_window_mask(lq: int, lk: int, window: int, device: str | torch.device = "cpu") -> Bool[Tensor, "lq lk"]:
    """Causal sliding window: query i (at absolute position p = i + lk - lq) sees keys p - window < j <= p.

    `window` counts the visible keys including the query's own position: Hugging Face's `sliding_window`
    for Mistral and Qwen2 (masking_utils.sliding_window_overlay: kv_idx > q_idx - sliding_window) and
    FlashAttention's `window_size=(window - 1, 0)` with `causal=True`.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    p = torch.arange(lq, device=device)[:, None] + (lk - lq)  # [Lq, 1] absolute positions of the queries
    j = torch.arange(lk, device=device)[None, :]  # [1, Lk]
    return (j <= p) & (j > p - window)  # [Lq, Lk]


# --- heads ----------------------------------------------------------------------------------------------------


@typechecked
def repeat_kv(x: Float[Tensor, "b hkv l e"], n_rep: int) -> Float[Tensor, "b hq l e"]:
    """Each KV head repeated for its group of n_rep consecutive query heads (HF `repeat_kv`, torch `enable_gqa`)."""
    return x.repeat_interleave(n_rep, dim=1)  # [B, Hkv * n_rep, L, E]


def _repeat_heads(x: Tensor, n_rep: int) -> Tensor:
    """`repeat_kv` for any number of leading batch dims: [*b, Hkv, L, E] -> [*b, Hkv * n_rep, L, E]."""
    return x.repeat_interleave(n_rep, dim=-3)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """[B, L, heads * E] -> [B, heads, L, E]: head h owns features h*E:(h+1)*E."""
    b, l, _ = x.shape
    return x.reshape(b, l, heads, -1).transpose(1, 2)


# --- scaled dot-product attention -----------------------------------------------------------------------------


def _softmax_or_zeros(scores: Tensor) -> Tensor:
    """Softmax over keys (the last dim) where a row of -inf scores (a query that sees no key) gives all-zero
    weights, as torch's math path does (`_safe_softmax`, torch >= 2.5), not NaN."""
    sees_a_key = scores.amax(dim=-1, keepdim=True) > float("-inf")  # [..., Lq, 1]; False on a fully masked row
    # a fully masked row is softmaxed as zeros (finite) and then zeroed, so no NaN reaches the backward pass; not
    # in place: softmax's backward reads its output
    weights = torch.softmax(scores.masked_fill(~sees_a_key, 0.0), dim=-1)  # [..., Lq, Lk]
    return weights.masked_fill(~sees_a_key, 0.0)


def _masked_softmax(scores: Tensor, allowed: Tensor) -> Tensor:
    """Softmax over the keys each query is `allowed` to see; a row that sees none gives zeros."""
    return _softmax_or_zeros(scores.masked_fill(~allowed, float("-inf")))  # [..., Lq, Lk]


#: at most this many attention scores ([*b, Hq, queries, keys]) are held at once: queries are processed in chunks
#: (of at most QUERY_CHUNK, fewer when B * Hq * Lk is large), so memory stays O(L) per query row, not O(L^2).
SCORES_PER_CHUNK = 2**21
QUERY_CHUNK = 128


@typechecked
def scaled_dot_product_attention(
    query: Float[Tensor, "*b hq lq e"],
    key: Float[Tensor, "*b hkv lk e"],
    value: Float[Tensor, "*b hkv lk ev"],
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    causal_alignment: Alignment = "top_left",
    generator: torch.Generator | None = None,
) -> Float[Tensor, "*b hq lq ev"]:
    """softmax(q k^T * scale + mask) v, with torch's signature and semantics (Vaswani et al. 2017, eq. 1).

    `attn_mask` is boolean (True = attend) or additive (added to the scores), broadcastable to
    [*b, hq, lq, lk]. `causal_alignment` is the one extension: "bottom_right" gives FlashAttention's mask.
    Queries are independent, so they are processed in chunks and memory stays O(Lk) per query; under `is_causal`
    (without dropout) a chunk reads only the keys up to its last visible one, as a causal kernel does. With the
    causal mask passed as `attn_mask` instead, every query-key pair is computed, as a dense kernel does.
    """
    hq, hkv, e = query.shape[-3], key.shape[-3], query.shape[-1]
    if hq != hkv:
        if not enable_gqa or hq % hkv:
            raise ValueError(f"{hq} query heads and {hkv} KV heads need enable_gqa=True and hq % hkv == 0")
        key, value = _repeat_heads(key, hq // hkv), _repeat_heads(value, hq // hkv)  # [*b, Hq, Lk, E], [.., Ev]
    scale = 1.0 / math.sqrt(e) if scale is None else scale
    lq, lk = query.shape[-2], key.shape[-2]
    hidden = ~causal_mask(lq, lk, causal_alignment, query.device) if is_causal else None  # [Lq, Lk]
    offset = 0 if causal_alignment == "top_left" else lk - lq  # query i sees keys j <= i + offset
    skip_hidden_keys = is_causal and dropout_p == 0.0
    rows_per_chunk = max(1, min(QUERY_CHUNK, SCORES_PER_CHUNK // max(1, query[..., 0, 0].numel() * lk)))
    out = []
    for start in range(0, max(lq, 1), rows_per_chunk):  # (one empty chunk when Lq = 0)
        rows = slice(start, min(start + rows_per_chunk, lq))
        # the keys this chunk reads: all, or (causal) up to the last one its last query sees (at least one, masked
        # when no query of the chunk sees any key: the row then gives zeros)
        seen = slice(0, min(lk, max(1, rows.stop + offset)) if skip_hidden_keys else lk)
        scores = query[..., rows, :] @ key[..., seen, :].transpose(-2, -1)  # [*b, Hq, rows, keys]
        scores *= scale
        if attn_mask is not None:
            # this chunk's rows and keys of a mask broadcastable to [*b, Hq, Lq, Lk] (dims of size 1 broadcast)
            mask = attn_mask[..., rows, :] if attn_mask.dim() >= 2 and attn_mask.shape[-2] > 1 else attn_mask
            mask = mask[..., seen] if mask.dim() >= 1 and mask.shape[-1] > 1 else mask
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))  # True = attend
            else:
                scores = scores + mask.to(scores.dtype)  # additive
        if hidden is not None:
            scores.masked_fill_(hidden[rows, seen], float("-inf"))  # [*b, Hq, rows, keys]
        weights = _softmax_or_zeros(scores)  # [*b, Hq, rows, keys]; each row sums to 1 (0 if it sees no key)
        if dropout_p > 0.0:
            keep = torch.rand(weights.shape, generator=generator, dtype=torch.float32, device=weights.device)
            weights = weights * (keep >= dropout_p).to(weights.dtype) / (1.0 - dropout_p)  # [*b, Hq, rows, Lk]
        out.append(weights @ value[..., seen, :])  # [*b, Hq, rows, Ev]
    return torch.cat(out, dim=-2)  # [*b, Hq, Lq, Ev]


@typechecked
def sliding_window_attention(
    query: Float[Tensor, "b hq lq e"],
    key: Float[Tensor, "b hkv lk e"],
    value: Float[Tensor, "b hkv lk ev"],
    window: int,
    scale: float | None = None,
) -> Float[Tensor, "b hq lq ev"]:
    """Causal attention restricted to the last `window` keys (see `sliding_window_mask`); GQA allowed."""
    mask = sliding_window_mask(query.shape[-2], key.shape[-2], window, query.device)  # [Lq, Lk]
    # [B, Hq, Lq, Ev]
    return scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale, enable_gqa=True)


# --- multi-head (MHA, GQA, MQA) self-attention ----------------------------------------------------------------


@typechecked
def multi_head_attention(
    x: Float[Tensor, "b l d"],
    w_q: Float[Tensor, "hqe d"],
    w_k: Float[Tensor, "hkve d"],
    w_v: Float[Tensor, "hkvev d"],
    w_o: Float[Tensor, "d hqev"],
    num_heads: int,
    num_kv_heads: int,
    is_causal: bool = True,
) -> Float[Tensor, "b l d"]:
    """Fused multi-head (GQA / MQA) self-attention: one matmul per projection, heads split by reshape.

    Weights are in nn.Linear layout ([out, in]); head h owns rows h*E:(h+1)*E of w_q, and query head h
    uses KV head h // (num_heads / num_kv_heads) (Vaswani et al. 2017, sec. 3.2.2; Ainslie et al. 2023).
    No RoPE: positions are the positions family's concern.
    """
    q = _split_heads(x @ w_q.T, num_heads)  # [B, Hq, L, E]
    k = _split_heads(x @ w_k.T, num_kv_heads)  # [B, Hkv, L, E]
    v = _split_heads(x @ w_v.T, num_kv_heads)  # [B, Hkv, L, Ev]
    out = scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)  # [B, Hq, L, Ev]
    b, _, l, _ = out.shape
    return out.transpose(1, 2).reshape(b, l, -1) @ w_o.T  # [B, L, Hq * Ev] -> [B, L, D]


@typechecked
def multi_head_attention_per_head(
    x: Float[Tensor, "b l d"],
    w_q: Float[Tensor, "hqe d"],
    w_k: Float[Tensor, "hkve d"],
    w_v: Float[Tensor, "hkvev d"],
    w_o: Float[Tensor, "d hqev"],
    num_heads: int,
    num_kv_heads: int,
    is_causal: bool = True,
) -> Float[Tensor, "b l d"]:
    """The "wrapper" form: one single-head attention per head with its own weight slices, concatenated,
    then projected. Equal to `multi_head_attention` given the same split weights."""
    e = w_q.shape[0] // num_heads
    ev = w_v.shape[0] // num_kv_heads
    group = num_heads // num_kv_heads
    heads = []
    for h in range(num_heads):
        kv = h // group
        q = x @ w_q[h * e : (h + 1) * e].T  # [B, L, E]
        k = x @ w_k[kv * e : (kv + 1) * e].T  # [B, L, E]
        v = x @ w_v[kv * ev : (kv + 1) * ev].T  # [B, L, Ev]
        out = scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], is_causal=is_causal)  # [B, 1, L, Ev]
        heads.append(out[:, 0])  # [B, L, Ev]
    return torch.cat(heads, dim=-1) @ w_o.T  # [B, L, Hq * Ev] -> [B, L, D]


# --- KV cache -------------------------------------------------------------------------------------------------


class KVCache:
    """Per-layer key/value cache for incremental decoding: keys and values [B, Hkv, T, E] appended in order."""

    def __init__(self, num_layers: int):
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    def update(self, layer: int, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Append this step's keys and values for `layer`; return everything cached for it so far."""
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = key, value
        else:
            self.keys[layer] = torch.cat([self.keys[layer], key], dim=-2)  # [B, Hkv, T + Lnew, E]
            self.values[layer] = torch.cat([self.values[layer], value], dim=-2)  # [B, Hkv, T + Lnew, Ev]
        return self.keys[layer], self.values[layer]

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


@typechecked
def cached_attention(
    query: Float[Tensor, "b hq lnew e"],
    key: Float[Tensor, "b hkv lnew e"],
    value: Float[Tensor, "b hkv lnew ev"],
    cache_key: Float[Tensor, "b hkv lpast e"],
    cache_value: Float[Tensor, "b hkv lpast ev"],
    scale: float | None = None,
) -> tuple[Float[Tensor, "b hq lnew ev"], Float[Tensor, "b hkv lall e"], Float[Tensor, "b hkv lall ev"]]:
    """One decoding step with a KV cache: append the new keys/values, attend causally.

    New query t sits at absolute position lpast + t and sees keys 0..lpast + t (bottom-right alignment).
    Returns (output, cache_key', cache_value') with the new entries appended after the old ones.
    """
    keys = torch.cat([cache_key, key], dim=-2)  # [B, Hkv, Lpast + Lnew, E]
    values = torch.cat([cache_value, value], dim=-2)  # [B, Hkv, Lpast + Lnew, Ev]
    out = scaled_dot_product_attention(
        query, keys, values, is_causal=True, scale=scale, enable_gqa=True, causal_alignment="bottom_right"
    )  # [B, Hq, Lnew, Ev]
    return out, keys, values


# --- multi-head latent attention (DeepSeek-V2, sec. 2.1.2-2.1.3) -------------------------------------------------


def _mla_parts(x, w_dkv, w_q, w_qr, w_kr, num_heads, rope_theta):
    """Shared pieces of both MLA forms: the latent c_KV (eq. 9), queries (eqs. 12-13 without query
    compression), and the decoupled RoPE key k_R (eq. 17), one per token, shared by all heads."""
    b, l, _ = x.shape
    positions = torch.arange(l, device=x.device)  # [L]
    latent = x @ w_dkv.T  # [B, L, Dc]
    q_c = _split_heads(x @ w_q.T, num_heads)  # [B, H, L, E]
    q_r = rope(_split_heads(x @ w_qr.T, num_heads), positions, rope_theta)  # [B, H, L, Er]
    k_r = rope(x @ w_kr.T, positions, rope_theta)  # [B, L, Er], shared across heads
    return latent, q_c, q_r, k_r


@typechecked
def multi_head_latent_attention(
    x: Float[Tensor, "b l d"],
    w_dkv: Float[Tensor, "dc d"],
    w_uk: Float[Tensor, "he dc"],
    w_uv: Float[Tensor, "hev dc"],
    w_q: Float[Tensor, "he d"],
    w_qr: Float[Tensor, "her d"],
    w_kr: Float[Tensor, "er d"],
    w_o: Float[Tensor, "d hev"],
    num_heads: int,
    rope_theta: float = 10000.0,
) -> Float[Tensor, "b l d"]:
    """Causal MLA, explicit form: keys and values up-projected from the latent, then ordinary attention.

    k_h = [W_UK_h c_KV ; k_R], q_h = [W_Q_h x ; RoPE(W_QR_h x)], scale 1/sqrt(e + e_r) (eqs. 14-19).
    """
    latent, q_c, q_r, k_r = _mla_parts(x, w_dkv, w_q, w_qr, w_kr, num_heads, rope_theta)
    k_c = _split_heads(latent @ w_uk.T, num_heads)  # [B, H, L, E]
    v = _split_heads(latent @ w_uv.T, num_heads)  # [B, H, L, Ev]
    k = torch.cat([k_c, k_r[:, None].expand(-1, num_heads, -1, -1)], dim=-1)  # [B, H, L, E + Er]
    q = torch.cat([q_c, q_r], dim=-1)  # [B, H, L, E + Er]
    out = scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, L, Ev]; scale 1/sqrt(E + Er)
    b, _, l, _ = out.shape
    return out.transpose(1, 2).reshape(b, l, -1) @ w_o.T  # [B, L, H * Ev] -> [B, L, D]


@typechecked
def multi_head_latent_attention_absorbed(
    x: Float[Tensor, "b l d"],
    w_dkv: Float[Tensor, "dc d"],
    w_uk: Float[Tensor, "he dc"],
    w_uv: Float[Tensor, "hev dc"],
    w_q: Float[Tensor, "he d"],
    w_qr: Float[Tensor, "her d"],
    w_kr: Float[Tensor, "er d"],
    w_o: Float[Tensor, "d hev"],
    num_heads: int,
    rope_theta: float = 10000.0,
) -> Float[Tensor, "b l d"]:
    """Causal MLA with W_UK absorbed into the query and W_UV applied after attention (sec. 2.1.2):
    attention runs over the cached latent c_KV and k_R only, (d_c + e_r) numbers per token."""
    latent, q_c, q_r, k_r = _mla_parts(x, w_dkv, w_q, w_qr, w_kr, num_heads, rope_theta)
    dc = latent.shape[-1]
    e = q_c.shape[-1]
    w_uk_h = w_uk.reshape(num_heads, e, dc)  # [H, E, Dc]
    q_latent = q_c @ w_uk_h[None]  # [B, H, L, Dc]: q_C^T W_UK_h
    scale = 1.0 / math.sqrt(e + q_r.shape[-1])
    # [B, H, L, L]: the latent part q_C^T W_UK_h c_KV plus the RoPE part q_R^T k_R
    scores = (q_latent @ latent[:, None].transpose(-2, -1) + q_r @ k_r[:, None].transpose(-2, -1)) * scale
    l = x.shape[1]
    weights = _masked_softmax(scores, causal_mask(l, l, "top_left", x.device))  # [B, H, L, L]
    context = weights @ latent[:, None]  # [B, H, L, Dc]
    w_uv_h = w_uv.reshape(num_heads, -1, dc)  # [H, Ev, Dc]
    out = context @ w_uv_h.transpose(-2, -1)[None]  # [B, H, L, Ev]
    b = x.shape[0]
    return out.transpose(1, 2).reshape(b, l, -1) @ w_o.T  # [B, L, H * Ev] -> [B, L, D]


def mla_cache_elements_per_token(latent_dim: int, rope_dim: int) -> int:
    """MLA caches c_KV and k_R: (d_c + d_h^R) elements per token per layer (DeepSeek-V2, Table 1)."""
    return latent_dim + rope_dim
