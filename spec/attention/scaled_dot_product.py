"""Scaled dot-product attention: the canonical `attention` component (torch's SDPA signature).

The variants (multi-head, GQA/MQA, sliding window, KV cache, MLA) live in variants.py and
share the probes defined here.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference import attention as ref
from ..checks import PROPERTY_ULPS, assert_agree, differential, to64
from ..core import Component, Context, Invariant, Option
from ..guard import expect_tensor
from ..strategies import layouts, materialize, patterns, seeds, sizes

TORCH_SDPA = "torch.nn.functional.scaled_dot_product_attention (torch 2.13 docs)"
VASWANI = "Vaswani et al. 2017, Attention Is All You Need, eq. 1"

CAUSAL_ALIGNMENT = Option(
    name="causal_alignment",
    default="top_left",
    choices=("top_left", "bottom_right"),
    doc="where `is_causal` aligns the mask when Lq != Lk: torch SDPA top-left (`tril(0)`), FlashAttention >= 2.1 "
    "and torch.nn.attention.bias.causal_lower_right bottom-right",
)
FULLY_MASKED = Option(
    name="fully_masked_rows",
    default="zeros",
    choices=("zeros", "unspecified"),
    doc="output of a query row that sees no key: zeros (torch >= 2.5 math and CPU paths, FlashAttention), or "
    "unspecified (e.g. Hugging Face eager masks with finfo.min and gives uniform weights); other rows are checked either way",
)
FEATURES = {
    "attn_mask": "boolean and additive `attn_mask`",
    "gqa": "`enable_gqa=True` with fewer KV heads than query heads",
    "dropout": "`dropout_p > 0` (training-mode attention dropout)",
    "lq_ne_lk": "query and key lengths that differ",
}


@st.composite
def attention_examples(draw, gqa: bool = False, same_length: bool = False, large: bool = False) -> dict:
    """Shapes for q [B, Hkv*G, Lq, E], k [B, Hkv, Lk, E], v [B, Hkv, Lk, Ev], plus seed, pattern, layout.

    `large` admits large-magnitude inputs (scores in the thousands): differential checks only, whose tolerance
    follows the problem's conditioning; properties compare two computation orders at a fixed number of ulps."""
    lq = draw(sizes(1, 9))
    return {
        "B": draw(sizes(1, 2)),
        "Hkv": draw(sizes(1, 3)),
        "G": draw(sizes(1, 3)) if gqa else 1,
        "Lq": lq,
        "Lk": lq if same_length else draw(sizes(1, 9)),
        "E": draw(st.one_of(sizes(1, 9), st.just(16))),
        "Ev": draw(sizes(1, 9)),
        "causal": draw(st.booleans()),
        "scale": draw(st.sampled_from([None, None, 0.3, 1.0])),
        "seed": draw(seeds()),
        "pattern": draw(patterns() if large else st.sampled_from(["normal", "ties"])),
        "layout": draw(layouts()),
    }


def qkv(ctx: Context, p: dict, pattern: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pat, lay = pattern or p["pattern"], p["layout"]
    b, hkv, hq = p["B"], p["Hkv"], p["Hkv"] * p["G"]
    # "large" scales the queries only: scores of magnitude ~100 overflow exp() in float32 without the max
    # subtraction, while the problem stays conditioned well enough for a factor-2 tolerance.
    kv_pat = "normal" if pat == "large" else pat
    mk = lambda shape, salt, pat: materialize(shape, p["seed"], ctx.dtype, ctx.device, pat, salt=salt, layout=lay)  # noqa: E731
    return mk((b, hq, p["Lq"], p["E"]), 1, pat), mk((b, hkv, p["Lk"], p["E"]), 2, kv_pat), mk((b, hkv, p["Lk"], p["Ev"]), 3, kv_pat)


def alignment(ctx: Context) -> str:
    return ctx.options.get("causal_alignment", "top_left")


def output_shape(q: torch.Tensor, v: torch.Tensor) -> tuple[int, ...]:
    return (*q.shape[:-1], v.shape[-1])


def probe_weights(ctx: Context, call, q: torch.Tensor, lk: int, hkv: int) -> torch.Tensor:
    """Attention weights read off the target: keys all zero (every visible key scores the same) and values the
    identity (Ev = Lk), so output row i is the uniform distribution over the keys query i may see."""
    b = q.shape[0]
    k = torch.zeros(b, hkv, lk, q.shape[-1], dtype=ctx.dtype, device=ctx.device)
    v = torch.eye(lk, dtype=ctx.dtype, device=ctx.device).expand(b, hkv, lk, lk).contiguous()
    out = expect_tensor(call(q, k, v), (*q.shape[:-1], lk), ctx.dtype, ctx.device, finite=False)
    return to64(out)


def assert_visible_keys(ctx: Context, weights: torch.Tensor, allowed: torch.Tensor, what: str) -> None:
    """`weights` [..., Lq, Lk] read by `probe_weights` must be uniform over `allowed` [Lq, Lk], exactly the mask."""
    allowed = allowed.to(torch.float64)
    count = allowed.sum(-1, keepdim=True)
    expected = torch.where(count > 0, allowed / count.clamp_min(1), torch.zeros_like(allowed)).expand_as(weights)
    rows = (count.squeeze(-1) > 0).expand(weights.shape[:-1])
    if ctx.options.get("fully_masked_rows", "zeros") == "unspecified":
        weights, expected = weights[rows], expected[rows]
    wrong = (weights - expected).abs().nan_to_num(nan=float("inf"))
    tol = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    if (wrong > tol).any():
        idx = [int(i) for i in (wrong > tol).nonzero()[0]]
        ctx.fail(
            f"{what}: the keys visible to a query differ from the spec's mask (at index {idx}: weight "
            f"{float(weights[tuple(idx)]):.4g}, expected {float(expected[tuple(idx)]):.4g})",
            index=idx,
        )


# --- checks ---------------------------------------------------------------------------------------------


def _check_reference(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    differential(ctx, _ref(ctx), q, k, v, is_causal=p["causal"], scale=p["scale"])


def _ref(ctx: Context):
    """The reference with the chosen causal alignment, keeping torch's signature."""
    align = alignment(ctx)

    def reference(*args, **kwargs):
        return ref.scaled_dot_product_attention(*args, causal_alignment=align, **kwargs)

    return reference


def _check_default_scale(ctx: Context, p: dict) -> None:
    # doubling q is exact in every dtype; halving the explicit scale must undo it: the default is 1/sqrt(E).
    q, k, v = qkv(ctx, p)
    shape = output_shape(q, v)
    default = expect_tensor(ctx.target(q, k, v, is_causal=p["causal"]), shape, ctx.dtype, ctx.device)
    explicit = expect_tensor(
        ctx.target(q * 2, k, v, is_causal=p["causal"], scale=1.0 / (2 * math.sqrt(q.shape[-1]))), shape, ctx.dtype, ctx.device
    )
    assert_agree(ctx, default, explicit, "attention(q) with the default scale vs attention(2q, scale=1/(2 sqrt(E)))")


@st.composite
def _mask_examples(draw, additive: bool, large: bool = False) -> dict:
    p = draw(attention_examples(large=large))
    p["mask_seed"] = draw(seeds())
    p["mask_shape"] = draw(st.sampled_from(["lq_lk", "b_1_lq_lk", "b_h_lq_lk"]))
    p["additive"] = additive
    return p


def make_mask(ctx: Context, p: dict, hq: int, additive: bool, allow_empty_rows: bool = False) -> torch.Tensor:
    """A random boolean mask (True = attend) broadcastable to [B, Hq, Lq, Lk]; every row keeps a key unless
    `allow_empty_rows`. Additive masks are 0 / -inf plus finite biases."""
    shape = {"lq_lk": (p["Lq"], p["Lk"]), "b_1_lq_lk": (p["B"], 1, p["Lq"], p["Lk"]), "b_h_lq_lk": (p["B"], hq, p["Lq"], p["Lk"])}[
        p["mask_shape"]
    ]
    gen = torch.Generator().manual_seed(p["mask_seed"])
    keep = torch.rand(shape, generator=gen) < 0.6
    if not allow_empty_rows:
        first = torch.randint(0, p["Lk"], shape[:-1], generator=gen)
        keep = keep | torch.nn.functional.one_hot(first, p["Lk"]).bool()
    if not additive:
        return keep.to(ctx.device)
    bias = torch.randn(shape, generator=gen, dtype=torch.float64)
    mask = torch.where(keep, bias, torch.full_like(bias, float("-inf")))
    return mask.to(ctx.dtype).to(ctx.device)


def _check_mask(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    mask = make_mask(ctx, p, q.shape[1], p["additive"])
    differential(ctx, _ref(ctx), q, k, v, attn_mask=mask, is_causal=False, scale=p["scale"])


def _check_bool_equals_additive(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    keep = make_mask(ctx, p, q.shape[1], additive=False)
    additive = torch.zeros(keep.shape, dtype=ctx.dtype, device=ctx.device).masked_fill(~keep, float("-inf"))
    shape = output_shape(q, v)
    a = expect_tensor(ctx.target(q, k, v, attn_mask=keep), shape, ctx.dtype, ctx.device)
    b = expect_tensor(ctx.target(q, k, v, attn_mask=additive), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, a, b, "boolean mask vs the additive 0/-inf mask")


def _check_fully_masked(ctx: Context, p: dict) -> None:
    q, _, _ = qkv(ctx, p)
    keep = make_mask(ctx, p, q.shape[1], additive=False, allow_empty_rows=True)
    keep[..., 0, :] = False  # query 0 sees nothing
    weights = probe_weights(ctx, lambda q, k, v: ctx.target(q, k, v, attn_mask=keep), q, p["Lk"], p["Hkv"])
    assert_visible_keys(ctx, weights, keep.cpu(), "with fully masked rows")


def _check_visible_keys(ctx: Context, p: dict) -> None:
    q, _, _ = qkv(ctx, p)
    weights = probe_weights(ctx, lambda q, k, v: ctx.target(q, k, v, is_causal=True), q, p["Lk"], p["Hkv"])
    allowed = ref.causal_mask(p["Lq"], p["Lk"], alignment(ctx))
    assert_visible_keys(ctx, weights, allowed, f"is_causal=True, Lq={p['Lq']}, Lk={p['Lk']}, {alignment(ctx)} alignment")


@st.composite
def _perturb_examples(draw, same_length: bool = False) -> dict:
    p = draw(attention_examples(same_length=same_length))
    p["cut"] = draw(st.integers(0, p["Lk"] - 1))
    return p


def _check_future_independence(ctx: Context, p: dict) -> None:
    # replacing every key/value after position `cut` must leave each query that cannot see past `cut` unchanged.
    q, k, v = qkv(ctx, p)
    cut = p["cut"]
    k2, v2 = k.clone(), v.clone()
    k2[..., cut + 1 :, :] = -3 * k2[..., cut + 1 :, :] + 1
    v2[..., cut + 1 :, :] = 10
    shape = output_shape(q, v)
    a = to64(expect_tensor(ctx.target(q, k, v, is_causal=True), shape, ctx.dtype, ctx.device, finite=False))
    b = to64(expect_tensor(ctx.target(q, k2, v2, is_causal=True), shape, ctx.dtype, ctx.device, finite=False))
    allowed = ref.causal_mask(p["Lq"], p["Lk"], alignment(ctx))
    blind = ~allowed[:, cut + 1 :].any(-1)  # queries that see nothing after `cut`
    if blind.any():
        assert_agree(ctx, a[..., blind, :], b[..., blind, :], f"outputs of queries that only see keys <= {cut}")


def _check_convex(ctx: Context, p: dict) -> None:
    # with values = identity each output row is the weight vector: non-negative, summing to 1 (or 0 if masked).
    q, k, _ = qkv(ctx, p)
    lk = p["Lk"]
    v = torch.eye(lk, dtype=ctx.dtype, device=ctx.device).expand(p["B"], p["Hkv"], lk, lk).contiguous()
    w = to64(expect_tensor(ctx.target(q, k, v, is_causal=p["causal"], scale=p["scale"]), (*q.shape[:-1], lk), ctx.dtype, ctx.device))
    tol = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    if (w < -tol).any():
        ctx.fail(f"a weight is negative ({float(w.min()):.3g}): the output is not a convex combination of values")
    sums = w.sum(-1)
    if p["causal"]:
        empty = ~ref.causal_mask(p["Lq"], lk, alignment(ctx)).any(-1)
        sums = sums[..., ~empty]
    worst = float((sums - 1).abs().max()) if sums.numel() else 0.0
    if worst > tol * math.sqrt(lk):
        ctx.fail(f"weights of an output row sum to 1 {'+-'} {worst:.3g}: not a convex combination of value rows")


def _check_permutation(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    perm = torch.randperm(p["Lk"], generator=torch.Generator().manual_seed(p["seed"])).to(ctx.device)
    shape = output_shape(q, v)
    a = expect_tensor(ctx.target(q, k, v, scale=p["scale"]), shape, ctx.dtype, ctx.device)
    b = expect_tensor(ctx.target(q, k[..., perm, :], v[..., perm, :], scale=p["scale"]), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, a, b, "unmasked output before and after permuting keys and values together")


def _check_gqa_reference(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    differential(ctx, _ref(ctx), q, k, v, is_causal=p["causal"], scale=p["scale"], enable_gqa=True)


def _check_gqa_repeat(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    g = p["G"]
    shape = output_shape(q, v)
    grouped = expect_tensor(ctx.target(q, k, v, is_causal=p["causal"], enable_gqa=True), shape, ctx.dtype, ctx.device)
    repeated = expect_tensor(
        ctx.target(q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1), is_causal=p["causal"]), shape, ctx.dtype, ctx.device
    )
    assert_agree(ctx, grouped, repeated, f"GQA ({p['Hkv']} KV heads, groups of {g}) vs MHA with KV heads repeat_interleave'd")


def _check_dropout_zero(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    shape = output_shape(q, v)
    plain = expect_tensor(ctx.target(q, k, v, is_causal=p["causal"]), shape, ctx.dtype, ctx.device)
    zero = expect_tensor(ctx.target(q, k, v, dropout_p=0.0, is_causal=p["causal"]), shape, ctx.dtype, ctx.device)
    again = expect_tensor(ctx.target(q, k, v, dropout_p=0.0, is_causal=p["causal"]), shape, ctx.dtype, ctx.device)
    if not (torch.equal(plain, zero) and torch.equal(zero, again)):
        ctx.fail("dropout_p=0.0 is not the deterministic identity: outputs differ from the call without dropout")


DROPOUT_DRAWS = 64
DROPOUT_Z = 5.0  # two-sided false-alarm rate ~5.7e-7 per example


@st.composite
def _dropout_examples(draw) -> dict:
    p = draw(attention_examples())
    p["p"] = draw(st.sampled_from([0.1, 0.3, 0.6]))
    return p


def _check_dropout_unbiased(ctx: Context, p: dict) -> None:
    """Values = identity, so each output entry is one dropped weight: it must be 0 or w / (1 - p), and the kept
    fraction over DROPOUT_DRAWS calls must match 1 - p (binomial z-test, |z| < 5). Together: E[out] = w."""
    q, k, _ = qkv(ctx, p)
    lk, drop = p["Lk"], p["p"]
    v = torch.eye(lk, dtype=ctx.dtype, device=ctx.device).expand(p["B"], p["Hkv"], lk, lk).contiguous()
    shape = (*q.shape[:-1], lk)
    w = to64(expect_tensor(ctx.target(q, k, v, is_causal=p["causal"]), shape, ctx.dtype, ctx.device))
    torch.manual_seed(p["seed"])
    live = w > 0
    kept, tol = 0, PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    for _ in range(DROPOUT_DRAWS):
        out = to64(expect_tensor(ctx.target(q, k, v, dropout_p=drop, is_causal=p["causal"]), shape, ctx.dtype, ctx.device))
        is_kept = out != 0
        scaled = w / (1 - drop)
        bad = is_kept & ((out - scaled).abs() > tol * scaled.abs().clamp_min(1e-30) + tol * w.max())
        if bad.any():
            idx = [int(i) for i in bad.nonzero()[0]]
            ctx.fail(f"a kept weight is {float(out[tuple(idx)]):.4g}, expected w/(1-p) = {float(scaled[tuple(idx)]):.4g}", index=idx)
        kept += int((is_kept & live).sum())
    n = int(live.sum()) * DROPOUT_DRAWS
    if n == 0:
        return
    z = (kept - n * (1 - drop)) / math.sqrt(n * drop * (1 - drop))
    if abs(z) > DROPOUT_Z:
        ctx.fail(f"kept fraction {kept / n:.4f} over {n} weights is not 1 - p = {1 - drop:.2f} (z = {z:.1f}, |z| must be < {DROPOUT_Z})")


ATTENTION = Component(
    name="attention",
    family="attention",
    signature=(
        "scaled_dot_product_attention(query: Float[B, Hq, Lq, E], key: Float[B, Hkv, Lk, E], value: Float[B, Hkv, Lk, Ev], "
        "attn_mask: Bool|Float[broadcastable to B, Hq, Lq, Lk] | None = None, dropout_p: float = 0.0, is_causal: bool = False, "
        "scale: float | None = None, enable_gqa: bool = False) -> Float[B, Hq, Lq, Ev]  (torch's SDPA)"
    ),
    summary="softmax(q k^T * scale + mask) v with torch's semantics; the mask alignment for Lq != Lk is an option.",
    reference=ref.scaled_dot_product_attention,
    options=(CAUSAL_ALIGNMENT, FULLY_MASKED),
    features=FEATURES,
    invariants=(
        Invariant("attention.reference.matches", "Output equals the float64 reference (causal or not, default or explicit scale).",
             f"{VASWANI}; {TORCH_SDPA}", "differential", attention_examples(large=True), _check_reference, ["lq_ne_lk"]),
        Invariant("attention.scale.default_inv_sqrt_e", "With scale=None the scores are scaled by 1/sqrt(E): attention(q) = attention(2q, scale=1/(2 sqrt(E))).",
             f"{VASWANI} (sec. 3.2.1); {TORCH_SDPA}", "property", attention_examples(), _check_default_scale, ["lq_ne_lk"]),
        Invariant("attention.mask.boolean", "A boolean attn_mask (True = may attend), broadcast over batch and heads, matches the reference.",
             TORCH_SDPA, "differential", _mask_examples(additive=False, large=True), _check_mask, ["attn_mask", "lq_ne_lk"]),
        Invariant("attention.mask.additive", "A float attn_mask is added to the scaled scores (-inf removes a key) and matches the reference.",
             TORCH_SDPA, "differential", _mask_examples(additive=True, large=True), _check_mask, ["attn_mask", "lq_ne_lk"]),
        Invariant("attention.mask.boolean_equals_additive", "A boolean mask and the additive mask with 0 where True and -inf where False give the same output.",
             TORCH_SDPA, "property", _mask_examples(additive=False), _check_bool_equals_additive, ["attn_mask", "lq_ne_lk"]),
        Invariant("attention.mask.fully_masked_rows", "A query row that may attend no key outputs zeros (option fully_masked_rows) and does not affect any other row.",
             f"{TORCH_SDPA} (math path _safe_softmax, torch >= 2.5); FlashAttention 2", "property", _mask_examples(additive=False),
             _check_fully_masked, ["attn_mask", "lq_ne_lk"]),
        Invariant("attention.causal.visible_keys", "With is_causal=True query i sees exactly keys j <= i (top_left) or j <= i + Lk - Lq (bottom_right), diagonal included.",
             f"{TORCH_SDPA}; FlashAttention >= 2.1 causal; torch.nn.attention.bias.causal_lower_right", "property",
             attention_examples(), _check_visible_keys, ["lq_ne_lk"]),
        Invariant("attention.causal.future_independence", "With is_causal=True, changing keys and values a query cannot see leaves its output unchanged.",
             f"{VASWANI} (sec. 3.2.3, masked decoder self-attention)", "property", _perturb_examples(), _check_future_independence, ["lq_ne_lk"]),
        Invariant("attention.convex_combination", "Each output row is a convex combination of value rows (weights >= 0 summing to 1).",
             VASWANI, "property", attention_examples(), _check_convex, ["lq_ne_lk"]),
        Invariant("attention.permutation_invariance", "Without a mask, permuting keys and values together leaves the output unchanged.",
             VASWANI, "property", attention_examples(), _check_permutation, ["lq_ne_lk"]),
        Invariant("attention.gqa.matches_reference", "enable_gqa with Hq = G * Hkv (G = 1: MHA, Hkv = 1: MQA) matches the reference.",
             f"Ainslie et al. 2023 (GQA); Shazeer 2019 (MQA); {TORCH_SDPA}", "differential", attention_examples(gqa=True, large=True),
             _check_gqa_reference, ["gqa", "lq_ne_lk"]),
        Invariant("attention.gqa.equals_repeated_kv", "GQA equals MHA with each KV head repeated for its group: query head h uses KV head h // G (repeat_interleave, HF repeat_kv).",
             f"{TORCH_SDPA} enable_gqa; transformers repeat_kv", "property", attention_examples(gqa=True), _check_gqa_repeat, ["gqa", "lq_ne_lk"]),
        Invariant("attention.dropout.zero_is_identity", "dropout_p=0 gives exactly the output without dropout, deterministically.",
             f"Srivastava et al. 2014; {TORCH_SDPA}", "property", attention_examples(), _check_dropout_zero, ["lq_ne_lk"]),
        Invariant("attention.dropout.unbiased", "With dropout_p = p each weight is kept with probability 1 - p and scaled by 1/(1 - p), so the expected output is unchanged.",
             f"Srivastava et al. 2014 (inverted dropout); {TORCH_SDPA}", "statistical", _dropout_examples(), _check_dropout_unbiased,
             ["dropout", "lq_ne_lk"], budget=0.5),
    ),
)

COMPONENTS = (ATTENTION,)
