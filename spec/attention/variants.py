"""Attention variants: multi-head (GQA/MQA) self-attention, sliding window, KV-cache decoding, and MLA."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference import attention as ref
from ..checks import assert_agree, assert_equal, assert_matches, call, differential, reference_pair, to64
from ..core import Component, Context, invariant, row
from ..gradients import BACKWARD
from ..guard import expect_tensor
from ..strategies import TILE_EDGES, layouts, materialize, scaled, seeds, sizes
from .inputs import attention_examples, output_shape, qkv
from .probes import assert_visible_keys, probe_weights
from .sources import VASWANI

# --- multi-head attention -------------------------------------------------------------------------------

GQA = "Ainslie et al. 2023, GQA; Shazeer 2019, MQA"

MULTI_HEAD = Component(
    name="multi_head_attention",
    signature=(
        "multi_head_attention(x: Float[B, L, D], w_q: Float[H*E, D], w_k: Float[Hkv*E, D], w_v: Float[Hkv*Ev, D], "
        "w_o: Float[D, H*Ev], num_heads: int, num_kv_heads: int, is_causal: bool = True) -> Float[B, L, D]"
    ),
    summary="Self-attention with nn.Linear-layout projections, H query heads sharing Hkv KV heads (MHA, GQA, MQA); "
    "no RoPE.",
    reference=ref.multi_head_attention,
    features={"ev_ne_e": "a value head dim Ev different from the query/key head dim E", **BACKWARD},
)


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
    """x [B, L, D] and the nn.Linear-layout weights w_q [H*E, D], w_k [Hkv*E, D], w_v [Hkv*Ev, D], w_o [D, H*Ev]."""
    d, h, hkv, e, ev = p["D"], p["H"], p["Hkv"], p["E"], p["Ev"]

    def mk(shape: tuple[int, ...], salt: int, magnitude: float = 1.0) -> torch.Tensor:
        return materialize(shape, p["seed"], ctx.dtype, ctx.device, salt=salt, magnitude=magnitude, layout=p["layout"])

    w = d**-0.5
    return (mk((p["B"], p["L"], d), 1), mk((h * e, d), 2, w), mk((hkv * e, d), 3, w), mk((hkv * ev, d), 4, w),
            mk((d, h * ev), 5, (h * ev) ** -0.5))


@invariant(row("multi_head_attention.reference.matches", examples=_mha_examples(),
               statement="Output equals the float64 reference for MHA, GQA and MQA head layouts.",
               source=f"{VASWANI}, sec. 3.2.2; {GQA}"),
           row("multi_head_attention.reference.value_dim_differs", examples=_mha_examples(value_dim_differs=True), requires=("ev_ne_e",),
               statement="Output equals the float64 reference when the value head dim Ev differs from E.",
               source=f"{VASWANI}, sec. 3.2.2 (d_v need not equal d_k)"),
           kind="differential")
def check_mha_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.multi_head_attention, *_mha_inputs(ctx, p), p["H"], p["Hkv"], p["causal"])


@invariant("multi_head_attention.heads.one_head_is_single_head_attention", kind="differential", examples=_mha_examples(gqa=False),
           statement="With one head the block is softmax(x W_q (x W_k)^T / sqrt(E)) x W_v W_o^T.",
           source=f"{VASWANI}, eq. 1")
def check_mha_single_head(ctx: Context, p: dict) -> None:
    x, w_q, w_k, w_v, w_o = _mha_inputs(ctx, {**p, "H": 1, "Hkv": 1})

    def single_head(x, w_q, w_k, w_v, w_o, causal):
        q, k, v = (x @ w.T for w in (w_q, w_k, w_v))  # [B, L, E], [B, L, E], [B, L, Ev]
        out = ref.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], is_causal=causal)[:, 0]
        return out @ w_o.T

    ref64, ref_lowp = reference_pair(single_head, x, w_q, w_k, w_v, w_o, p["causal"])
    assert_matches(ctx, ctx.target(x, w_q, w_k, w_v, w_o, 1, 1, p["causal"]), ref64, ref_lowp, what="one-head output")


@invariant("multi_head_attention.heads.fused_equals_per_head", kind="property", examples=_mha_examples(),
           statement="The fused block equals the sum over heads of one-head blocks built from that head's weight "
           "slices (query head h with KV head h // G).",
           source=f"{VASWANI}, sec. 3.2.2 (Concat(head_1..head_h) W^O)")
def check_mha_decompose(ctx: Context, p: dict) -> None:
    # the fused form equals the per-head wrapper: sum over heads of one-head attention with that head's slices.
    x, w_q, w_k, w_v, w_o = _mha_inputs(ctx, p)
    h, e, ev, group = p["H"], p["E"], p["Ev"], p["H"] // p["Hkv"]
    full = call(ctx, x.shape, x, w_q, w_k, w_v, w_o, h, p["Hkv"], p["causal"])
    parts = []
    for i in range(h):
        kv = i // group
        head = call(ctx, x.shape, x, w_q[i * e : (i + 1) * e], w_k[kv * e : (kv + 1) * e],
                    w_v[kv * ev : (kv + 1) * ev], w_o[:, i * ev : (i + 1) * ev], 1, 1, p["causal"])
        parts.append(to64(head))
    assert_agree(ctx, full, torch.stack(parts).sum(0),
                 "fused multi-head output vs the sum of per-head single-head outputs")


@invariant("multi_head_attention.gqa.equals_repeated_kv", kind="property", examples=_mha_examples(),
           statement="GQA equals MHA whose KV projection weights are repeated for each group of consecutive query "
           "heads.",
           source=f"{GQA}; transformers repeat_kv")
def check_mha_repeat(ctx: Context, p: dict) -> None:
    x, w_q, w_k, w_v, w_o = _mha_inputs(ctx, p)
    g, e, ev = p["H"] // p["Hkv"], p["E"], p["Ev"]

    def repeat(w: torch.Tensor, rows_per_head: int) -> torch.Tensor:  # [Hkv*n, D] -> [H*n, D], group-consecutive
        return w.reshape(p["Hkv"], rows_per_head, -1).repeat_interleave(g, dim=0).reshape(p["H"] * rows_per_head, -1)

    grouped = call(ctx, x.shape, x, w_q, w_k, w_v, w_o, p["H"], p["Hkv"], p["causal"])
    repeated = call(ctx, x.shape, x, w_q, repeat(w_k, e), repeat(w_v, ev), w_o, p["H"], p["H"], p["causal"])
    assert_agree(ctx, grouped, repeated, f"GQA with {p['Hkv']} KV heads vs MHA with KV weights repeated per group")


@invariant("multi_head_attention.causal.future_independence", kind="property", examples=_mha_examples(),
           statement="With is_causal, outputs at positions <= t do not depend on tokens after t.",
           source=f"{VASWANI}, sec. 3.2.3")
def check_mha_future(ctx: Context, p: dict) -> None:
    x, w_q, w_k, w_v, w_o = _mha_inputs(ctx, p)
    cut = min(p["cut"], p["L"] - 1)
    x2 = x.clone()
    x2[:, cut + 1 :] = 5.0
    a = call(ctx, x.shape, x, w_q, w_k, w_v, w_o, p["H"], p["Hkv"], True)
    b = call(ctx, x.shape, x2, w_q, w_k, w_v, w_o, p["H"], p["Hkv"], True)
    assert_agree(ctx, a[:, : cut + 1], b[:, : cut + 1],
                 f"causal outputs up to position {cut} after changing later tokens")


# --- sliding window -------------------------------------------------------------------------------------

MISTRAL = (
    "Jiang et al. 2023, Mistral 7B, sec. 2 (sliding window); Hugging Face `sliding_window` "
    "(transformers masking_utils.sliding_window_overlay)"
)

SLIDING_WINDOW = Component(
    name="sliding_window_attention",
    signature=(
        "sliding_window_attention(query: Float[B, Hq, L, E], key: Float[B, Hkv, L, E], value: Float[B, Hkv, L, Ev], "
        "window: int >= 1, scale: float | None = None) -> Float[B, Hq, L, Ev]"
    ),
    summary="Causal attention where query i sees keys i - window < j <= i (window keys, itself included); "
    "Hugging Face (Mistral, Qwen2) sliding_window = window, FlashAttention window_size = (window - 1, 0). Mistral's "
    "original one_file_ref.py prefill mask admits window + 1 keys (docs/conventions.md).",
    reference=ref.sliding_window_attention,
    features={**BACKWARD},
)


@st.composite
def _window_examples(draw) -> dict:
    p = draw(attention_examples(gqa=True, same_length=True))
    p["window"] = draw(st.integers(1, p["Lk"] + 2))
    return p


@invariant("sliding_window_attention.reference.matches", kind="differential", examples=_window_examples(),
           statement="Output equals the float64 reference.",
           source=MISTRAL)
def check_window_reference(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    differential(ctx, ref.sliding_window_attention, q, k, v, p["window"], scale=p["scale"])


@invariant("sliding_window_attention.visible_keys", kind="property", examples=_window_examples(),
           statement="Query i sees exactly keys j with i - window < j <= i: `window` keys including itself.",
           source=f"{MISTRAL}; FlashAttention window_size=(window - 1, 0)")
def check_window_keys(ctx: Context, p: dict) -> None:
    q, _, _ = qkv(ctx, p)
    # the drawn window, and (L >= 2) one with 2 <= window <= L, chosen by the drawn one: there the window, not the
    # causal mask, bounds what the last queries see, and it spans more than the query itself
    windows = [p["window"]] + ([2 + p["window"] % (p["Lk"] - 1)] if p["Lk"] >= 2 else [])
    for window in dict.fromkeys(windows):
        weights = probe_weights(ctx, lambda q, k, v: ctx.target(q, k, v, window), q, p["Lk"], p["Hkv"])
        allowed = ref.sliding_window_mask(p["Lq"], p["Lk"], window)
        assert_visible_keys(ctx, weights, allowed, f"window={window}, L={p['Lq']}")


@invariant("sliding_window_attention.large_window_is_causal", kind="differential", examples=_window_examples(),
           statement="A window at least as long as the sequence gives full causal attention.",
           source=MISTRAL)
def check_window_large(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    ref64, ref_lowp = reference_pair(lambda q, k, v: ref.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                                      enable_gqa=True), q, k, v)
    window = p["Lk"] + p["window"]
    out = ctx.target(q, k, v, window)
    assert_matches(ctx, out, ref64, ref_lowp, what=f"window {window} >= L output vs full causal attention")


# --- KV cache -------------------------------------------------------------------------------------------

KV_SOURCE = "Pope et al. 2022, Efficiently Scaling Transformer Inference, sec. 3.1; transformers DynamicCache"

CACHED = Component(
    name="cached_attention",
    signature=(
        "cached_attention(query: Float[B, Hq, Lnew, E], key: Float[B, Hkv, Lnew, E], value: Float[B, Hkv, Lnew, Ev], "
        "cache_key: Float[B, Hkv, Lpast, E], cache_value: Float[B, Hkv, Lpast, Ev], scale: float | None = None) "
        "-> (Float[B, Hq, Lnew, Ev], Float[B, Hkv, Lpast+Lnew, E], Float[B, Hkv, Lpast+Lnew, Ev])"
    ),
    summary="One decoding step with a KV cache: append the new keys/values and attend causally; new query t sits at "
    "position Lpast + t.",
    reference=ref.cached_attention,
    features={**BACKWARD},
)


@st.composite
def _cache_examples(draw) -> dict:
    p = draw(attention_examples(gqa=True))
    # a cache that fills part of a tile, or ends at / just past a tile edge (decode kernels split the cache in tiles)
    p["Lpast"] = draw(scaled(st.integers(0, 6), st.sampled_from(TILE_EDGES)))
    p["chunks"] = draw(st.lists(st.integers(1, 3), min_size=1, max_size=5))
    return p


def _cache_inputs(ctx: Context, p: dict) -> tuple:
    """This step's q, k, v (Lnew = Lq) and a cache of Lpast keys [B, Hkv, Lpast, E] and values [.., Ev]."""
    q, k, v = qkv(ctx, {**p, "Lk": p["Lq"]})

    def mk(shape: tuple[int, ...], salt: int) -> torch.Tensor:
        return materialize(shape, p["seed"], ctx.dtype, ctx.device, p["pattern"], salt=salt)

    ck, cv = mk((p["B"], p["Hkv"], p["Lpast"], p["E"]), 4), mk((p["B"], p["Hkv"], p["Lpast"], p["Ev"]), 5)
    return q, k, v, ck, cv


def _cache_outputs(ctx: Context, result, q, v, lall: int):
    """The target's (output, cache_key, cache_value), each of the right shape, dtype and device."""
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        ctx.fail(f"cached attention must return (output, cache_key, cache_value), got {type(result).__name__}")
    out, keys, values = result
    b, hkv = v.shape[0], v.shape[1]
    expect_tensor(out, output_shape(q, v), ctx.dtype, ctx.device)
    expect_tensor(keys, (b, hkv, lall, q.shape[-1]), ctx.dtype, ctx.device, what="returned cache_key")
    expect_tensor(values, (b, hkv, lall, v.shape[-1]), ctx.dtype, ctx.device, what="returned cache_value")
    return out, keys, values


@invariant("cached_attention.reference.matches", kind="differential", examples=_cache_examples(),
           statement="A step with a cache of Lpast tokens equals the float64 reference (query t sees keys <= Lpast "
           "+ t).",
           source=KV_SOURCE)
def check_cache_reference(ctx: Context, p: dict) -> None:
    q, k, v, ck, cv = _cache_inputs(ctx, p)
    ref64, ref_lowp = reference_pair(lambda *a: ref.cached_attention(*a)[0], q, k, v, ck, cv)
    out, _, _ = _cache_outputs(ctx, ctx.target(q, k, v, ck, cv), q, v, p["Lpast"] + p["Lq"])
    assert_matches(ctx, out, ref64, ref_lowp)


@invariant("cached_attention.appends_in_order", kind="property", examples=_cache_examples(),
           statement="The returned cache is the old cache followed by the new keys and values; its size is 2 x "
           "kv_heads x head_dim x tokens x batch x bytes.",
           source=KV_SOURCE)
def check_cache_appends(ctx: Context, p: dict) -> None:
    q, k, v, ck, cv = _cache_inputs(ctx, p)
    lall = p["Lpast"] + p["Lq"]
    _, keys, values = _cache_outputs(ctx, ctx.target(q, k, v, ck, cv), q, v, lall)
    assert_equal(ctx, keys, torch.cat([ck, k], -2), "returned cache_key (the old keys followed by the new, in order)")
    assert_equal(ctx, values, torch.cat([cv, v], -2),
                 "returned cache_value (the old values followed by the new, in order)")
    size = keys.numel() * keys.element_size() + values.numel() * values.element_size()
    expected = ref.kv_cache_bytes(1, p["Hkv"], p["E"], lall, p["B"], keys.element_size()) if p["E"] == p["Ev"] else size
    assert_equal(ctx, size, expected,
                 "bytes the cache holds (formula: 2 x kv_heads x head_dim x tokens x batch x bytes)")


@invariant("cached_attention.decode_equals_full_forward", kind="differential", examples=_cache_examples(),
           statement="Decoding token by token (or chunk by chunk) from an empty cache equals full causal attention "
           "over the sequence.",
           source=KV_SOURCE)
def check_cache_decode(ctx: Context, p: dict) -> None:
    # decoding chunk by chunk from an empty cache must give the full causal forward over the whole sequence.
    q, k, v = qkv(ctx, {**p, "Lk": p["Lq"]})
    ref64, ref_lowp = reference_pair(lambda q, k, v: ref.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                                      enable_gqa=True), q, k, v)
    ck, cv = k[..., :0, :], v[..., :0, :]
    outs, start, chunks = [], 0, list(p["chunks"])
    while start < p["Lq"]:
        stop = min(p["Lq"], start + (chunks.pop(0) if chunks else 1))
        part = (q[..., start:stop, :], k[..., start:stop, :], v[..., start:stop, :])
        out, ck, cv = _cache_outputs(ctx, ctx.target(*part, ck, cv), part[0], part[2], stop)
        outs.append(out)
        start = stop
    assert_matches(ctx, torch.cat(outs, dim=-2), ref64, ref_lowp, what="outputs decoded with the cache")


# --- multi-head latent attention ------------------------------------------------------------------------

DEEPSEEK = "DeepSeek-AI 2024, DeepSeek-V2, sec. 2.1.2-2.1.3, eqs. 9-19"

MLA = Component(
    name="multi_head_latent_attention",
    signature=(
        "multi_head_latent_attention(x: Float[B, L, D], w_dkv: Float[Dc, D], w_uk: Float[H*E, Dc], w_uv: Float[H*Ev, "
        "Dc], w_q: Float[H*E, D], w_qr: Float[H*Er, D], w_kr: Float[Er, D], w_o: Float[D, H*Ev], num_heads: int, "
        "rope_theta: float = 10000.0) -> Float[B, L, D]"
    ),
    summary="Causal MLA: keys/values from a shared latent c_KV = W_DKV x, plus a decoupled RoPE key shared by all "
    "heads (rotate-half RoPE at positions 0..L-1); scale 1/sqrt(E + Er). No query compression.",
    reference=ref.multi_head_latent_attention,
    features={**BACKWARD},
)


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
    """The target's arguments x, w_dkv, w_uk, w_uv, w_q, w_qr, w_kr, w_o, num_heads; per-head weights repeat one
    head's block when `identical_heads`."""
    d, h, e, er, ev, dc = p["D"], p["H"], p["E"], p["Er"], p["Ev"], p["Dc"]

    def mk(shape: tuple[int, ...], salt: int, magnitude: float) -> torch.Tensor:
        return materialize(shape, p["seed"], ctx.dtype, ctx.device, salt=salt, magnitude=magnitude)

    def per_head(shape: tuple[int, int], salt: int, magnitude: float) -> torch.Tensor:  # [H * rows, cols]
        if identical_heads:
            return mk(shape, salt, magnitude).repeat(h, 1)
        return mk((h * shape[0], shape[1]), salt, magnitude)

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


@invariant("multi_head_latent_attention.reference.matches", kind="differential", examples=_mla_examples(),
           statement="Output equals the float64 explicit-form reference (the absorbed form, W_UK folded into the "
           "query, is equal).",
           source=DEEPSEEK)
def check_mla_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.multi_head_latent_attention, *_mla_inputs(ctx, p))


@invariant("multi_head_latent_attention.causal.future_independence", kind="property", examples=_mla_examples(),
           statement="Outputs at positions <= t do not depend on tokens after t.",
           source=DEEPSEEK)
def check_mla_future(ctx: Context, p: dict) -> None:
    x, *weights = _mla_inputs(ctx, p)
    cut = min(p["cut"], p["L"] - 1)
    x2 = x.clone()
    x2[:, cut + 1 :] = 5.0
    a = call(ctx, x.shape, x, *weights)
    b = call(ctx, x.shape, x2, *weights)
    assert_agree(ctx, a[:, : cut + 1], b[:, : cut + 1], f"MLA outputs up to position {cut} after changing later tokens")


@invariant("multi_head_latent_attention.heads.shared_rope_key", kind="property", examples=_mla_examples(),
           statement="With identical per-head weights, H heads sharing the one RoPE key equal one head whose output "
           "projection sums the H blocks.",
           source=f"{DEEPSEEK} (eq. 17: k_R is shared by all heads)")
def check_mla_identical_heads(ctx: Context, p: dict) -> None:
    # identical per-head weights and one shared RoPE key: every head computes the same thing, so H heads
    # equal one head whose output projection is the sum of the H head blocks of w_o.
    x, w_dkv, w_uk, w_uv, w_q, w_qr, w_kr, w_o, h = _mla_inputs(ctx, p, identical_heads=True)
    e, ev, er = p["E"], p["Ev"], p["Er"]
    w_o_one = w_o.reshape(w_o.shape[0], h, ev).sum(1)
    many = call(ctx, x.shape, x, w_dkv, w_uk, w_uv, w_q, w_qr, w_kr, w_o, h)
    one = call(ctx, x.shape, x, w_dkv, w_uk[:e], w_uv[:ev], w_q[:e], w_qr[:er], w_kr, w_o_one, 1)
    assert_agree(ctx, many, one, f"{h} identical heads vs one head with the summed output projection")
