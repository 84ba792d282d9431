"""Attention variants: multi-head (GQA/MQA) self-attention, sliding window, KV-cache decoding, and MLA."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference import attention as ref
from .scaled_dot_product import (
    VASWANI,
    assert_visible_keys,
    attention_examples,
    output_shape,
    probe_weights,
    qkv,
)
from ..checks import assert_agree, assert_matches, differential, reference_pair, to64
from ..core import Component, Context, Invariant, Violation
from ..guard import expect_tensor
from ..strategies import layouts, materialize, seeds, sizes

GQA = "Ainslie et al. 2023, GQA; Shazeer 2019, MQA"

# --- multi-head attention -------------------------------------------------------------------------------


@st.composite
def _mha_examples(draw, gqa: bool = True, value_dim_differs: bool = False) -> dict:
    """Ev = E unless `value_dim_differs` (many libraries, HF Llama among them, have one head_dim for q, k and v)."""
    hkv = draw(sizes(1, 3))
    e = draw(sizes(1, 6))
    return {
        "B": draw(sizes(1, 2)),
        "L": draw(sizes(1, 8)),
        "D": draw(sizes(1, 12)),
        "Hkv": hkv,
        "H": hkv * (draw(sizes(1, 3)) if gqa else 1),
        "E": e,
        "Ev": draw(sizes(1, 6).filter(lambda ev: ev != e)) if value_dim_differs else e,
        "causal": draw(st.booleans()),
        "cut": draw(st.integers(0, 7)),
        "seed": draw(seeds()),
        "layout": draw(layouts()),
    }


def _mha_inputs(ctx: Context, p: dict) -> tuple:
    d, h, hkv, e, ev = p["D"], p["H"], p["Hkv"], p["E"], p["Ev"]
    mk = lambda shape, salt, m=1.0: materialize(shape, p["seed"], ctx.dtype, ctx.device, salt=salt, magnitude=m, layout=p["layout"])  # noqa: E731
    w = d**-0.5
    return (mk((p["B"], p["L"], d), 1), mk((h * e, d), 2, w), mk((hkv * e, d), 3, w), mk((hkv * ev, d), 4, w), mk((d, h * ev), 5, (h * ev) ** -0.5))


def _check_mha_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.multi_head_attention, *_mha_inputs(ctx, p), p["H"], p["Hkv"], p["causal"])


def _check_mha_single_head(ctx: Context, p: dict) -> None:
    x, w_q, w_k, w_v, w_o = _mha_inputs(ctx, {**p, "H": 1, "Hkv": 1})

    def single_head(x, w_q, w_k, w_v, w_o, causal):
        q, k, v = (x @ w.T for w in (w_q, w_k, w_v))
        out = ref.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], is_causal=causal)[:, 0]
        return out @ w_o.T

    ref64, ref_lowp = reference_pair(single_head, x, w_q, w_k, w_v, w_o, p["causal"])
    assert_matches(ctx, ctx.target(x, w_q, w_k, w_v, w_o, 1, 1, p["causal"]), ref64, ref_lowp, what="one-head output")


def _check_mha_decompose(ctx: Context, p: dict) -> None:
    # the fused form equals the per-head wrapper: sum over heads of one-head attention with that head's slices.
    x, w_q, w_k, w_v, w_o = _mha_inputs(ctx, p)
    h, e, ev, group = p["H"], p["E"], p["Ev"], p["H"] // p["Hkv"]
    shape = tuple(x.shape)
    full = expect_tensor(ctx.target(x, w_q, w_k, w_v, w_o, h, p["Hkv"], p["causal"]), shape, ctx.dtype, ctx.device)
    parts = []
    for i in range(h):
        kv = i // group
        head = ctx.target(x, w_q[i * e : (i + 1) * e], w_k[kv * e : (kv + 1) * e], w_v[kv * ev : (kv + 1) * ev],
                          w_o[:, i * ev : (i + 1) * ev], 1, 1, p["causal"])
        parts.append(to64(expect_tensor(head, shape, ctx.dtype, ctx.device)))
    assert_agree(ctx, full, torch.stack(parts).sum(0), "fused multi-head output vs the sum of per-head single-head outputs")


def _check_mha_repeat(ctx: Context, p: dict) -> None:
    x, w_q, w_k, w_v, w_o = _mha_inputs(ctx, p)
    g, e, ev = p["H"] // p["Hkv"], p["E"], p["Ev"]
    rep = lambda w, n: w.reshape(p["Hkv"], n, -1).repeat_interleave(g, dim=0).reshape(p["H"] * n, -1)  # noqa: E731
    shape = tuple(x.shape)
    grouped = expect_tensor(ctx.target(x, w_q, w_k, w_v, w_o, p["H"], p["Hkv"], p["causal"]), shape, ctx.dtype, ctx.device)
    repeated = expect_tensor(ctx.target(x, w_q, rep(w_k, e), rep(w_v, ev), w_o, p["H"], p["H"], p["causal"]), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, grouped, repeated, f"GQA with {p['Hkv']} KV heads vs MHA with KV weights repeated per group")


def _check_mha_future(ctx: Context, p: dict) -> None:
    x, w_q, w_k, w_v, w_o = _mha_inputs(ctx, p)
    cut = min(p["cut"], p["L"] - 1)
    x2 = x.clone()
    x2[:, cut + 1 :] = 5.0
    shape = tuple(x.shape)
    a = expect_tensor(ctx.target(x, w_q, w_k, w_v, w_o, p["H"], p["Hkv"], True), shape, ctx.dtype, ctx.device)
    b = expect_tensor(ctx.target(x2, w_q, w_k, w_v, w_o, p["H"], p["Hkv"], True), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, a[:, : cut + 1], b[:, : cut + 1], f"causal outputs up to position {cut} after changing later tokens")


MULTI_HEAD = Component(
    name="multi_head_attention",
    family="attention",
    signature=(
        "multi_head_attention(x: Float[B, L, D], w_q: Float[H*E, D], w_k: Float[Hkv*E, D], w_v: Float[Hkv*Ev, D], "
        "w_o: Float[D, H*Ev], num_heads: int, num_kv_heads: int, is_causal: bool = True) -> Float[B, L, D]"
    ),
    summary="Self-attention with nn.Linear-layout projections, H query heads sharing Hkv KV heads (MHA, GQA, MQA); no RoPE.",
    reference=ref.multi_head_attention,
    features={"ev_ne_e": "a value head dim Ev different from the query/key head dim E"},
    invariants=(
        Invariant("mha.reference.matches", "Output equals the float64 reference for MHA, GQA and MQA head layouts.",
                  f"{VASWANI}, sec. 3.2.2; {GQA}", "differential", _mha_examples(), _check_mha_reference),
        Invariant("mha.reference.value_dim_differs", "Output equals the float64 reference when the value head dim Ev differs from E.",
                  f"{VASWANI}, sec. 3.2.2 (d_v need not equal d_k)", "differential", _mha_examples(value_dim_differs=True),
                  _check_mha_reference, requires=frozenset({"ev_ne_e"})),
        Invariant("mha.heads.one_head_is_single_head_attention", "With one head the block is softmax(x W_q (x W_k)^T / sqrt(E)) x W_v W_o^T.",
                  f"{VASWANI}, eq. 1", "differential", _mha_examples(gqa=False), _check_mha_single_head),
        Invariant("mha.heads.fused_equals_per_head", "The fused block equals the sum over heads of one-head blocks built from that head's weight slices (query head h with KV head h // G).",
                  f"{VASWANI}, sec. 3.2.2 (Concat(head_1..head_h) W^O)", "property", _mha_examples(), _check_mha_decompose),
        Invariant("mha.gqa.equals_repeated_kv", "GQA equals MHA whose KV projection weights are repeated for each group of consecutive query heads.",
                  f"{GQA}; transformers repeat_kv", "property", _mha_examples(), _check_mha_repeat),
        Invariant("mha.causal.future_independence", "With is_causal, outputs at positions <= t do not depend on tokens after t.",
                  f"{VASWANI}, sec. 3.2.3", "property", _mha_examples(), _check_mha_future),
    ),
)

# --- sliding window -------------------------------------------------------------------------------------

MISTRAL = (
    "Jiang et al. 2023, Mistral 7B, sec. 2 (sliding window); Hugging Face `sliding_window` "
    "(transformers masking_utils.sliding_window_overlay)"
)


@st.composite
def _window_examples(draw) -> dict:
    p = draw(attention_examples(gqa=True, same_length=True))
    p["window"] = draw(st.integers(1, p["Lk"] + 2))
    return p


def _check_window_reference(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    differential(ctx, ref.sliding_window_attention, q, k, v, p["window"], scale=p["scale"])


def _check_window_keys(ctx: Context, p: dict) -> None:
    q, _, _ = qkv(ctx, p)
    # the drawn window, and (L >= 2) one with 2 <= window <= L, chosen by the drawn one: there the window, not the
    # causal mask, bounds what the last queries see, and it spans more than the query itself
    windows = [p["window"]] + ([2 + p["window"] % (p["Lk"] - 1)] if p["Lk"] >= 2 else [])
    for window in dict.fromkeys(windows):
        weights = probe_weights(ctx, lambda q, k, v: ctx.target(q, k, v, window), q, p["Lk"], p["Hkv"])
        allowed = ref.sliding_window_mask(p["Lq"], p["Lk"], window)
        assert_visible_keys(ctx, weights, allowed, f"window={window}, L={p['Lq']}")


def _check_window_large(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    ref64, ref_lowp = reference_pair(lambda q, k, v: ref.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), q, k, v)
    out = ctx.target(q, k, v, p["Lk"] + p["window"])
    assert_matches(ctx, out, ref64, ref_lowp, what=f"window {p['Lk'] + p['window']} >= L output vs full causal attention")


SLIDING_WINDOW = Component(
    name="sliding_window_attention",
    family="attention",
    signature=(
        "sliding_window_attention(query: Float[B, Hq, L, E], key: Float[B, Hkv, L, E], value: Float[B, Hkv, L, Ev], "
        "window: int >= 1, scale: float | None = None) -> Float[B, Hq, L, Ev]"
    ),
    summary="Causal attention where query i sees keys i - window < j <= i (window keys, itself included); "
    "Hugging Face (Mistral, Qwen2) sliding_window = window, FlashAttention window_size = (window - 1, 0). Mistral's "
    "original one_file_ref.py prefill mask admits window + 1 keys (docs/conventions.md).",
    reference=ref.sliding_window_attention,
    invariants=(
        Invariant("sliding_window.reference.matches", "Output equals the float64 reference.", MISTRAL, "differential",
                  _window_examples(), _check_window_reference),
        Invariant("sliding_window.visible_keys", "Query i sees exactly keys j with i - window < j <= i: `window` keys including itself.",
                  f"{MISTRAL}; FlashAttention window_size=(window - 1, 0)", "property", _window_examples(), _check_window_keys),
        Invariant("sliding_window.large_window_is_causal", "A window at least as long as the sequence gives full causal attention.",
                  MISTRAL, "differential", _window_examples(), _check_window_large),
    ),
)

# --- KV cache -------------------------------------------------------------------------------------------

KV_SOURCE = "Pope et al. 2022, Efficiently Scaling Transformer Inference, sec. 3.1; transformers DynamicCache"


@st.composite
def _cache_examples(draw) -> dict:
    p = draw(attention_examples(gqa=True))
    p["Lpast"] = draw(st.integers(0, 6))
    p["chunks"] = draw(st.lists(st.integers(1, 3), min_size=1, max_size=5))
    return p


def _cache_inputs(ctx: Context, p: dict) -> tuple:
    q, k, v = qkv(ctx, {**p, "Lk": p["Lq"]})
    mk = lambda shape, salt: materialize(shape, p["seed"], ctx.dtype, ctx.device, p["pattern"], salt=salt)  # noqa: E731
    ck, cv = mk((p["B"], p["Hkv"], p["Lpast"], p["E"]), 4), mk((p["B"], p["Hkv"], p["Lpast"], p["Ev"]), 5)
    return q, k, v, ck, cv


def _cache_outputs(ctx: Context, result, q, v, lall: int):
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise Violation(f"cached attention must return (output, cache_key, cache_value), got {type(result).__name__}")
    out, keys, values = result
    b, hkv = v.shape[0], v.shape[1]
    expect_tensor(out, output_shape(q, v), ctx.dtype, ctx.device)
    expect_tensor(keys, (b, hkv, lall, q.shape[-1]), ctx.dtype, ctx.device, what="returned cache_key")
    expect_tensor(values, (b, hkv, lall, v.shape[-1]), ctx.dtype, ctx.device, what="returned cache_value")
    return out, keys, values


def _check_cache_reference(ctx: Context, p: dict) -> None:
    q, k, v, ck, cv = _cache_inputs(ctx, p)
    ref64, ref_lowp = reference_pair(lambda *a: ref.cached_attention(*a)[0], q, k, v, ck, cv)
    out, _, _ = _cache_outputs(ctx, ctx.target(q, k, v, ck, cv), q, v, p["Lpast"] + p["Lq"])
    assert_matches(ctx, out, ref64, ref_lowp)


def _check_cache_appends(ctx: Context, p: dict) -> None:
    q, k, v, ck, cv = _cache_inputs(ctx, p)
    lall = p["Lpast"] + p["Lq"]
    _, keys, values = _cache_outputs(ctx, ctx.target(q, k, v, ck, cv), q, v, lall)
    if not (torch.equal(keys.cpu(), torch.cat([ck, k], -2).cpu()) and torch.equal(values.cpu(), torch.cat([cv, v], -2).cpu())):
        ctx.fail("the returned cache is not the old cache followed by the new keys and values, in order")
    size = keys.numel() * keys.element_size() + values.numel() * values.element_size()
    expected = ref.kv_cache_bytes(1, p["Hkv"], p["E"], lall, p["B"], keys.element_size()) if p["E"] == p["Ev"] else size
    if size != expected:
        ctx.fail(f"cache holds {size} bytes, formula 2 x kv_heads x head_dim x tokens x batch x bytes gives {expected}")


def _check_cache_decode(ctx: Context, p: dict) -> None:
    # decoding chunk by chunk from an empty cache must give the full causal forward over the whole sequence.
    q, k, v = qkv(ctx, {**p, "Lk": p["Lq"]})
    ref64, ref_lowp = reference_pair(lambda q, k, v: ref.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), q, k, v)
    ck, cv = k[..., :0, :], v[..., :0, :]
    outs, start, chunks = [], 0, list(p["chunks"])
    while start < p["Lq"]:
        stop = min(p["Lq"], start + (chunks.pop(0) if chunks else 1))
        part = (q[..., start:stop, :], k[..., start:stop, :], v[..., start:stop, :])
        out, ck, cv = _cache_outputs(ctx, ctx.target(*part, ck, cv), part[0], part[2], stop)
        outs.append(out)
        start = stop
    assert_matches(ctx, torch.cat(outs, dim=-2), ref64, ref_lowp, what="outputs decoded with the cache")


CACHED = Component(
    name="cached_attention",
    family="attention",
    signature=(
        "cached_attention(query: Float[B, Hq, Lnew, E], key: Float[B, Hkv, Lnew, E], value: Float[B, Hkv, Lnew, Ev], "
        "cache_key: Float[B, Hkv, Lpast, E], cache_value: Float[B, Hkv, Lpast, Ev], scale: float | None = None) "
        "-> (Float[B, Hq, Lnew, Ev], Float[B, Hkv, Lpast+Lnew, E], Float[B, Hkv, Lpast+Lnew, Ev])"
    ),
    summary="One decoding step with a KV cache: append the new keys/values and attend causally; new query t sits at position Lpast + t.",
    reference=ref.cached_attention,
    invariants=(
        Invariant("kv_cache.reference.matches", "A step with a cache of Lpast tokens equals the float64 reference (query t sees keys <= Lpast + t).",
                  KV_SOURCE, "differential", _cache_examples(), _check_cache_reference),
        Invariant("kv_cache.appends_in_order", "The returned cache is the old cache followed by the new keys and values; its size is 2 x kv_heads x head_dim x tokens x batch x bytes.",
                  KV_SOURCE, "property", _cache_examples(), _check_cache_appends),
        Invariant("kv_cache.decode_equals_full_forward", "Decoding token by token (or chunk by chunk) from an empty cache equals full causal attention over the sequence.",
                  KV_SOURCE, "differential", _cache_examples(), _check_cache_decode),
    ),
)

# --- multi-head latent attention ------------------------------------------------------------------------

DEEPSEEK = "DeepSeek-AI 2024, DeepSeek-V2, sec. 2.1.2-2.1.3, eqs. 9-19"


@st.composite
def _mla_examples(draw) -> dict:
    return {
        "B": draw(sizes(1, 2)),
        "L": draw(sizes(1, 7)),
        "D": draw(sizes(2, 12)),
        "H": draw(sizes(1, 3)),
        "E": draw(sizes(1, 5)),
        "Er": 2 * draw(sizes(1, 3)),
        "Ev": draw(sizes(1, 5)),
        "Dc": draw(sizes(1, 6)),
        "cut": draw(st.integers(0, 6)),
        "seed": draw(seeds()),
    }


def _mla_inputs(ctx: Context, p: dict, identical_heads: bool = False) -> tuple:
    d, h, e, er, ev, dc = p["D"], p["H"], p["E"], p["Er"], p["Ev"], p["Dc"]
    mk = lambda shape, salt, m: materialize(shape, p["seed"], ctx.dtype, ctx.device, salt=salt, magnitude=m)  # noqa: E731
    per_head = lambda shape, salt, m: (mk(shape, salt, m).repeat(h, 1) if identical_heads else mk((h * shape[0], shape[1]), salt, m))  # noqa: E731
    return (
        mk((p["B"], p["L"], d), 1, 1.0),
        mk((dc, d), 2, d**-0.5),
        per_head((e, dc), 3, dc**-0.5),
        per_head((ev, dc), 4, dc**-0.5),
        per_head((e, d), 5, d**-0.5),
        per_head((er, d), 6, d**-0.5),
        mk((er, d), 7, d**-0.5),
        mk((d, h * ev), 8, (h * ev) ** -0.5),
        h,
    )


def _check_mla_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.multi_head_latent_attention, *_mla_inputs(ctx, p))


def _check_mla_future(ctx: Context, p: dict) -> None:
    args = _mla_inputs(ctx, p)
    cut = min(p["cut"], p["L"] - 1)
    x2 = args[0].clone()
    x2[:, cut + 1 :] = 5.0
    shape = tuple(args[0].shape)
    a = expect_tensor(ctx.target(*args), shape, ctx.dtype, ctx.device)
    b = expect_tensor(ctx.target(x2, *args[1:]), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, a[:, : cut + 1], b[:, : cut + 1], f"MLA outputs up to position {cut} after changing later tokens")


def _check_mla_identical_heads(ctx: Context, p: dict) -> None:
    # identical per-head weights and one shared RoPE key: every head computes the same thing, so H heads
    # equal one head whose output projection is the sum of the H head blocks of w_o.
    x, w_dkv, w_uk, w_uv, w_q, w_qr, w_kr, w_o, h = _mla_inputs(ctx, p, identical_heads=True)
    e, ev, er = p["E"], p["Ev"], p["Er"]
    w_o_one = w_o.reshape(w_o.shape[0], h, ev).sum(1)
    shape = tuple(x.shape)
    many = expect_tensor(ctx.target(x, w_dkv, w_uk, w_uv, w_q, w_qr, w_kr, w_o, h), shape, ctx.dtype, ctx.device)
    one = expect_tensor(ctx.target(x, w_dkv, w_uk[:e], w_uv[:ev], w_q[:e], w_qr[:er], w_kr, w_o_one, 1), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, many, one, f"{h} identical heads vs one head with the summed output projection")


MLA = Component(
    name="multi_head_latent_attention",
    family="attention",
    signature=(
        "multi_head_latent_attention(x: Float[B, L, D], w_dkv: Float[Dc, D], w_uk: Float[H*E, Dc], w_uv: Float[H*Ev, Dc], "
        "w_q: Float[H*E, D], w_qr: Float[H*Er, D], w_kr: Float[Er, D], w_o: Float[D, H*Ev], num_heads: int, "
        "rope_theta: float = 10000.0) -> Float[B, L, D]"
    ),
    summary="Causal MLA: keys/values from a shared latent c_KV = W_DKV x, plus a decoupled RoPE key shared by all heads "
    "(rotate-half RoPE at positions 0..L-1); scale 1/sqrt(E + Er). No query compression.",
    reference=ref.multi_head_latent_attention,
    invariants=(
        Invariant("mla.reference.matches", "Output equals the float64 explicit-form reference (the absorbed form, W_UK folded into the query, is equal).",
                  DEEPSEEK, "differential", _mla_examples(), _check_mla_reference),
        Invariant("mla.causal.future_independence", "Outputs at positions <= t do not depend on tokens after t.",
                  DEEPSEEK, "property", _mla_examples(), _check_mla_future),
        Invariant("mla.heads.shared_rope_key", "With identical per-head weights, H heads sharing the one RoPE key equal one head whose output projection sums the H blocks.",
                  f"{DEEPSEEK} (eq. 17: k_R is shared by all heads)", "property", _mla_examples(), _check_mla_identical_heads),
    ),
)

COMPONENTS = (MULTI_HEAD, SLIDING_WINDOW, CACHED, MLA)
