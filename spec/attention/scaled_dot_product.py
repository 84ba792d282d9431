"""Scaled dot-product attention: the canonical `attention` component (torch's SDPA signature).

The variants (multi-head, GQA/MQA, sliding window, KV cache, MLA) live in variants.py; both read their inputs
from inputs.py and the keys a query sees through probes.py.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference import attention as ref
from ..checks import PROPERTY_ULPS, assert_agree, assert_each_within, assert_equal, call, differential, show, to64
from ..core import Component, Context, Option, invariant, row
from ..gradients import BACKWARD
from ..guard import expect_tensor
from ..strategies import seeds
from .inputs import attention_examples, output_shape, qkv
from .probes import assert_visible_keys, identity_values_output, probe_weights
from .sources import TORCH_SDPA, VASWANI

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
    "unspecified (e.g. Hugging Face eager masks with finfo.min and gives uniform weights); other rows are checked "
    "either way",
)

ATTENTION = Component(
    name="attention",
    signature=(
        "scaled_dot_product_attention(query: Float[B, Hq, Lq, E], key: Float[B, Hkv, Lk, E], value: Float[B, Hkv, Lk, "
        "Ev], attn_mask: Bool|Float[broadcastable to B, Hq, Lq, Lk] | None = None, dropout_p: float = 0.0, "
        "is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> Float[B, Hq, Lq, Ev]  "
        "(torch's SDPA)"
    ),
    summary="softmax(q k^T * scale + mask) v with torch's semantics; the mask alignment for Lq != Lk is an option.",
    reference=ref.scaled_dot_product_attention,
    options=(CAUSAL_ALIGNMENT, FULLY_MASKED),
    features={
        "attn_mask": "boolean and additive `attn_mask`",
        "gqa": "`enable_gqa=True` with fewer KV heads than query heads",
        "dropout": "`dropout_p > 0` (training-mode attention dropout)",
        "lq_ne_lk": "query and key lengths that differ",
        **BACKWARD,
    },
)


def alignment(ctx: Context) -> str:
    return ctx.options.get("causal_alignment", "top_left")


def _ref(ctx: Context):
    """The reference with the chosen causal alignment, keeping torch's signature."""
    align = alignment(ctx)

    def reference(*args, **kwargs):
        return ref.scaled_dot_product_attention(*args, causal_alignment=align, **kwargs)

    return reference


@invariant("attention.reference.matches", kind="differential", examples=attention_examples(large=True),
           requires=("lq_ne_lk",),
           statement="Output equals the float64 reference (causal or not, default or explicit scale).",
           source=f"{VASWANI}; {TORCH_SDPA}")
def check_reference(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    differential(ctx, _ref(ctx), q, k, v, is_causal=p["causal"], scale=p["scale"])


@invariant("attention.scale.default_inv_sqrt_e", kind="property", examples=attention_examples(),
           requires=("lq_ne_lk",),
           statement="With scale=None the scores are scaled by 1/sqrt(E): attention(q) = attention(2q, "
           "scale=1/(2 sqrt(E))).",
           source=f"{VASWANI} (sec. 3.2.1); {TORCH_SDPA}")
def check_default_scale(ctx: Context, p: dict) -> None:
    # doubling q is exact in every dtype; halving the explicit scale must undo it: the default is 1/sqrt(E).
    q, k, v = qkv(ctx, p)
    shape = output_shape(q, v)
    default = call(ctx, shape, q, k, v, is_causal=p["causal"])
    explicit = call(ctx, shape, q * 2, k, v, is_causal=p["causal"], scale=1.0 / (2 * math.sqrt(q.shape[-1])))
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
    shape = {"lq_lk": (p["Lq"], p["Lk"]), "b_1_lq_lk": (p["B"], 1, p["Lq"], p["Lk"]),
             "b_h_lq_lk": (p["B"], hq, p["Lq"], p["Lk"])}[p["mask_shape"]]
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


@invariant(row("attention.mask.boolean", examples=_mask_examples(additive=False, large=True),
               statement="A boolean attn_mask (True = may attend), broadcast over batch and heads, matches the "
               "reference."),
           row("attention.mask.additive", examples=_mask_examples(additive=True, large=True),
               statement="A float attn_mask is added to the scaled scores (-inf removes a key) and matches the "
               "reference."),
           kind="differential", requires=("attn_mask", "lq_ne_lk"), source=TORCH_SDPA)
def check_mask(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    mask = make_mask(ctx, p, q.shape[1], p["additive"])
    differential(ctx, _ref(ctx), q, k, v, attn_mask=mask, is_causal=False, scale=p["scale"])


@invariant("attention.mask.boolean_equals_additive", kind="property", examples=_mask_examples(additive=False),
           requires=("attn_mask", "lq_ne_lk"),
           statement="A boolean mask and the additive mask with 0 where True and -inf where False give the same "
           "output.",
           source=TORCH_SDPA)
def check_bool_equals_additive(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    keep = make_mask(ctx, p, q.shape[1], additive=False)
    additive = torch.zeros(keep.shape, dtype=ctx.dtype, device=ctx.device).masked_fill(~keep, float("-inf"))
    a = call(ctx, output_shape(q, v), q, k, v, attn_mask=keep)
    b = call(ctx, output_shape(q, v), q, k, v, attn_mask=additive)
    assert_agree(ctx, a, b, "boolean mask vs the additive 0/-inf mask")


@invariant("attention.mask.fully_masked_rows", kind="property", examples=_mask_examples(additive=False),
           requires=("attn_mask", "lq_ne_lk"),
           statement="A query row that may attend no key outputs zeros (option fully_masked_rows) and does not "
           "affect any other row.",
           source=f"{TORCH_SDPA} (math path _safe_softmax, torch >= 2.5); FlashAttention 2")
def check_fully_masked(ctx: Context, p: dict) -> None:
    q, _, _ = qkv(ctx, p)
    keep = make_mask(ctx, p, q.shape[1], additive=False, allow_empty_rows=True)
    keep[..., 0, :] = False  # query 0 sees nothing
    weights = probe_weights(ctx, lambda q, k, v: ctx.target(q, k, v, attn_mask=keep), q, p["Lk"], p["Hkv"])
    assert_visible_keys(ctx, weights, keep.cpu(), "with fully masked rows")


@invariant("attention.causal.visible_keys", kind="property", examples=attention_examples(), requires=("lq_ne_lk",),
           statement="With is_causal=True query i sees exactly keys j <= i (top_left) or j <= i + Lk - Lq "
           "(bottom_right), diagonal included.",
           source=f"{TORCH_SDPA}; FlashAttention >= 2.1 causal; torch.nn.attention.bias.causal_lower_right")
def check_visible_keys(ctx: Context, p: dict) -> None:
    # always is_causal=True: the example's "causal" flag (drawn for the other checks) is not used here.
    q, _, _ = qkv(ctx, p)
    weights = probe_weights(ctx, lambda q, k, v: ctx.target(q, k, v, is_causal=True), q, p["Lk"], p["Hkv"])
    allowed = ref.causal_mask(p["Lq"], p["Lk"], alignment(ctx))
    assert_visible_keys(ctx, weights, allowed, f"is_causal=True (always here, whatever the example's \"causal\"), "
                        f"Lq={p['Lq']}, Lk={p['Lk']}, {alignment(ctx)} alignment")


@st.composite
def _perturb_examples(draw, same_length: bool = False) -> dict:
    p = draw(attention_examples(same_length=same_length))
    p["cut"] = draw(st.integers(0, p["Lk"] - 1))
    return p


@invariant("attention.causal.future_independence", kind="property", examples=_perturb_examples(),
           requires=("lq_ne_lk",),
           statement="With is_causal=True, changing keys and values a query cannot see leaves its output unchanged.",
           source=f"{VASWANI} (sec. 3.2.3, masked decoder self-attention)")
def check_future_independence(ctx: Context, p: dict) -> None:
    # replacing every key/value after position `cut` must leave each query that cannot see past `cut` unchanged;
    # rows that see no key (bottom_right, Lq > Lk) may be non-finite.
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
        assert_agree(ctx, a[..., blind, :], b[..., blind, :],
                     f"is_causal=True outputs of queries that only see keys <= {cut}, before and after changing the "
                     f"later keys and values")


@invariant("attention.convex_combination", kind="property", examples=attention_examples(), requires=("lq_ne_lk",),
           statement="Each output row is a convex combination of value rows (weights >= 0 summing to 1).",
           source=VASWANI)
def check_convex(ctx: Context, p: dict) -> None:
    # with values = identity each output row is the weight vector: non-negative, summing to 1 (or 0 if masked).
    q, k, _ = qkv(ctx, p)
    lk = p["Lk"]
    w = identity_values_output(ctx, lambda v: ctx.target(q, k, v, is_causal=p["causal"], scale=p["scale"]),
                               tuple(q.shape[:-1]), p["B"], p["Hkv"], lk)
    tol = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    if (w < -tol).any():
        ctx.fail(f"a weight is negative ({show(float(w.min()))}): the output is not a convex combination of values")
    sums = w.sum(-1)
    if p["causal"]:
        empty = ~ref.causal_mask(p["Lq"], lk, alignment(ctx)).any(-1)
        sums = sums[..., ~empty]
    assert_each_within(ctx, sums, 1.0, tol * math.sqrt(lk),
                       "sum of an output row's weights (values = identity; a convex combination's weights sum to 1)")


@invariant("attention.permutation_invariance", kind="property", examples=attention_examples(),
           requires=("lq_ne_lk",),
           statement="Without a mask, permuting keys and values together leaves the output unchanged.",
           source=VASWANI)
def check_permutation(ctx: Context, p: dict) -> None:
    # non-negative values: the output is then of the scale of the values it averages (no cancellation over
    # thousands of keys), so the two summation orders agree to a few ulps of the output.
    q, k, v = qkv(ctx, p)
    v = v.abs()
    perm = torch.randperm(p["Lk"], generator=torch.Generator().manual_seed(p["seed"])).to(ctx.device)
    a = call(ctx, output_shape(q, v), q, k, v, scale=p["scale"])
    b = call(ctx, output_shape(q, v), q, k[..., perm, :], v[..., perm, :], scale=p["scale"])
    assert_agree(ctx, a, b, "unmasked output before and after permuting keys and values together")


@invariant("attention.gqa.matches_reference", kind="differential", examples=attention_examples(gqa=True, large=True),
           requires=("gqa", "lq_ne_lk"),
           statement="enable_gqa with Hq = G * Hkv (G = 1: MHA, Hkv = 1: MQA) matches the reference.",
           source=f"Ainslie et al. 2023 (GQA); Shazeer 2019 (MQA); {TORCH_SDPA}")
def check_gqa_reference(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    differential(ctx, _ref(ctx), q, k, v, is_causal=p["causal"], scale=p["scale"], enable_gqa=True)


@invariant("attention.gqa.equals_repeated_kv", kind="property", examples=attention_examples(gqa=True),
           requires=("gqa", "lq_ne_lk"),
           statement="GQA equals MHA with each KV head repeated for its group: query head h uses KV head h // G "
           "(repeat_interleave, HF repeat_kv).",
           source=f"{TORCH_SDPA} enable_gqa; transformers repeat_kv")
def check_gqa_repeat(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    g = p["G"]
    grouped = call(ctx, output_shape(q, v), q, k, v, is_causal=p["causal"], enable_gqa=True)
    repeated = call(ctx, output_shape(q, v), q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1),
                    is_causal=p["causal"])
    assert_agree(ctx, grouped, repeated,
                 f"GQA ({p['Hkv']} KV heads, groups of {g}) vs MHA with KV heads repeat_interleave'd")


@invariant("attention.dropout.zero_is_identity", kind="property", examples=attention_examples(),
           requires=("lq_ne_lk",),
           statement="dropout_p=0 gives exactly the output without dropout, deterministically.",
           source=f"Srivastava et al. 2014; {TORCH_SDPA}")
def check_dropout_zero(ctx: Context, p: dict) -> None:
    q, k, v = qkv(ctx, p)
    shape = output_shape(q, v)
    plain = call(ctx, shape, q, k, v, is_causal=p["causal"])
    zero = call(ctx, shape, q, k, v, dropout_p=0.0, is_causal=p["causal"])
    again = call(ctx, shape, q, k, v, dropout_p=0.0, is_causal=p["causal"])
    assert_equal(ctx, zero, plain, "output with dropout_p=0.0 (must be the output without dropout)")
    assert_equal(ctx, again, zero, "a second call with dropout_p=0.0 (must repeat the first)")


DROPOUT_DRAWS = 64
DROPOUT_Z = 5.0  # two-sided false-alarm rate ~5.7e-7 per example


@st.composite
def _dropout_examples(draw) -> dict:
    p = draw(attention_examples(max_length=129))  # DROPOUT_DRAWS calls per example
    p["p"] = draw(st.sampled_from([0.1, 0.3, 0.6]))
    return p


@invariant("attention.dropout.unbiased", kind="statistical", examples=_dropout_examples(),
           requires=("dropout", "lq_ne_lk"), budget=0.5,
           statement="With dropout_p = p each weight is kept with probability 1 - p and scaled by 1/(1 - p), so the "
           "expected output is unchanged.",
           source=f"Srivastava et al. 2014 (inverted dropout); {TORCH_SDPA}")
def check_dropout_unbiased(ctx: Context, p: dict) -> None:
    """Values = identity, so each output entry is one dropped weight: it must be 0 or w / (1 - p), and the kept
    fraction over DROPOUT_DRAWS calls must match 1 - p (binomial z-test, |z| < 5). Together: E[out] = w."""
    q, k, _ = qkv(ctx, p)
    lk, drop = p["Lk"], p["p"]
    v = torch.eye(lk, dtype=ctx.dtype, device=ctx.device).expand(p["B"], p["Hkv"], lk, lk).contiguous()
    shape = (*q.shape[:-1], lk)
    w = to64(call(ctx, shape, q, k, v, is_causal=p["causal"]))
    torch.manual_seed(p["seed"])
    live = w > 0
    kept, tol = 0, PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    scaled = w / (1 - drop)
    allowed = tol * scaled.abs().clamp_min(1e-30) + tol * w.max()
    for _ in range(DROPOUT_DRAWS):
        out = to64(call(ctx, shape, q, k, v, dropout_p=drop, is_causal=p["causal"]))
        is_kept = out != 0
        assert_each_within(ctx, torch.where(is_kept, out, scaled), scaled, allowed,
                           f"kept weight (must be w / (1 - p), p = {drop})")
        kept += int((is_kept & live).sum())
    n = int(live.sum()) * DROPOUT_DRAWS
    if n == 0:
        return
    z = (kept - n * (1 - drop)) / math.sqrt(n * drop * (1 - drop))
    if abs(z) > DROPOUT_Z:
        got, want = show(kept / n, 1 - drop)
        ctx.fail(f"kept fraction {got} over {n} weights is not 1 - p = {want} (z = {z:.3g}, |z| must be < {DROPOUT_Z})")
