"""Backward passes of the attention family (issue 15): the vector-Jacobian products of every differentiable input
and weight against the float64 reference's, the properties of a backward pass that need no reference, and
attention's own: a key that no query with a nonzero cotangent may see gets exactly zero gradient in key and value.

Gradient examples are capped at MAX_LENGTH keys and queries (a backward pass costs about twice the forward, and
the float64 reference's is taken twice per example); they still cross the tile edges up to it.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference import attention as ref
from ..checks import assert_equal, to64
from ..core import Context, invariant, row
from ..gradients import backward_complete, backward_finite_differences, backward_matches, backward_repeatable
from ..guard import expect_tensor
from ..strategies import seeds
from .inputs import attention_examples, qkv
from .scaled_dot_product import _ref, alignment, make_mask
from .sources import TORCH_SDPA, VASWANI
from .variants import (DEEPSEEK, KV_SOURCE, MISTRAL, _cache_examples, _cache_inputs, _mha_examples, _mha_inputs,
                       _mla_examples, _mla_inputs)

#: longest query or key sequence of a gradient example (kernel scale: tile edges up to 257)
MAX_LENGTH = 257
#: the derivation every attention gradient follows
DERIVATION = ("torch derivatives.yaml (_scaled_dot_product_*_attention_backward; mm, softmax: grad = p * (g - <p, "
              "g>)); Dao et al. 2022, FlashAttention, appendix B.2 (the attention backward pass)")

CHECKS = {"matches_reference": backward_matches, "complete": backward_complete, "repeatable": backward_repeatable,
          "finite_differences": backward_finite_differences}


@st.composite
def _attention_grad_examples(draw, gqa: bool = False, mask: bool = False) -> dict:
    p = draw(attention_examples(gqa=gqa, max_length=MAX_LENGTH))
    if mask:  # a float additive mask: finite biases, -inf on some keys (every row keeps one)
        p["mask_seed"] = draw(seeds())
        p["mask_shape"] = draw(st.sampled_from(["lq_lk", "b_1_lq_lk", "b_h_lq_lk"]))
        p["causal"] = False
    return p


@st.composite
def _window_grad_examples(draw) -> dict:
    p = draw(attention_examples(gqa=True, same_length=True, max_length=MAX_LENGTH))
    p["window"] = draw(st.integers(1, p["Lk"] + 2))
    return p


@st.composite
def _cache_grad_examples(draw) -> dict:
    p = draw(_cache_examples())
    # a step of at most 65 new tokens after a cache of at most 129: every tensor's backward still crosses tile edges
    p["Lq"], p["Lpast"] = min(p["Lq"], 65), min(p["Lpast"], 129)
    return p


#: finite differences cannot step through a -inf mask entry: there it is this (a weight of e^-30 relative)
FINITE_MASKED = -30.0


def _attention_call(ctx: Context, p: dict, gqa: bool = False, mask: bool = False, finite: bool = False) -> tuple:
    """(reference, args, kwargs, wrt, names) of one scaled_dot_product_attention call; `finite` replaces the
    additive mask's -inf entries by FINITE_MASKED (for finite differences)."""
    q, k, v = qkv(ctx, p)
    kwargs = {"is_causal": p["causal"], "scale": p["scale"]}
    if gqa:
        kwargs["enable_gqa"] = True
    wrt, names = [0, 1, 2], ["query", "key", "value"]
    if mask:
        additive = make_mask(ctx, p, q.shape[1], additive=True)
        if finite:
            additive = additive.clamp_min(FINITE_MASKED)
        kwargs = {"attn_mask": additive, **kwargs}
        wrt, names = [0, 1, 2, 3], ["query", "key", "value", "attn_mask"]
    return _ref(ctx), (q, k, v), kwargs, wrt, names


def _window_call(ctx: Context, p: dict) -> tuple:
    q, k, v = qkv(ctx, p)
    return ref.sliding_window_attention, (q, k, v, p["window"]), {"scale": p["scale"]}, [0, 1, 2], \
        ["query", "key", "value"]


def _cache_call(ctx: Context, p: dict) -> tuple:
    return ref.cached_attention, _cache_inputs(ctx, p), {}, [0, 1, 2, 3, 4], \
        ["query", "key", "value", "cache_key", "cache_value"]


def _mha_call(ctx: Context, p: dict) -> tuple:
    return ref.multi_head_attention, (*_mha_inputs(ctx, p), p["H"], p["Hkv"], p["causal"]), {}, [0, 1, 2, 3, 4], \
        ["x", "w_q", "w_k", "w_v", "w_o"]


def _mla_call(ctx: Context, p: dict) -> tuple:
    names = ["x", "w_dkv", "w_uk", "w_uv", "w_q", "w_qr", "w_kr", "w_o"]
    return ref.multi_head_latent_attention, _mla_inputs(ctx, p), {}, list(range(8)), names


CALLS = {"attention": _attention_call, "sliding_window_attention": _window_call, "cached_attention": _cache_call,
         "multi_head_attention": _mha_call, "multi_head_latent_attention": _mla_call}


def _rows(ids: tuple[str, ...], statement: str, **overrides) -> list:
    """One row per differentiable component (and attention's GQA and additive-mask calls) for one kind of check, from
    their literal ids, in this order: attention, attention.gqa, attention.mask, sliding_window_attention,
    cached_attention, multi_head_attention, multi_head_latent_attention."""
    kind = ids[0].rsplit(".", 1)[1]
    vjp = "vector-Jacobian products" if kind == "matches_reference" else "gradients"
    prefixes = ("attention.backward.", "attention.gqa.backward.", "attention.mask.backward.",
                "sliding_window_attention.backward.", "cached_attention.backward.", "multi_head_attention.backward.",
                "multi_head_latent_attention.backward.")
    if len(ids) != len(prefixes) or any(i != p + kind for i, p in zip(ids, prefixes)):
        raise ValueError(f"attention gradient rows out of order: {ids}")
    a, gqa, mask, window, cache, mha, mla = ids
    return [
        row(a, component="attention", examples=_attention_grad_examples(),
            requires=("backward", "lq_ne_lk"), kind_of_check=kind, source=f"{TORCH_SDPA}; {DERIVATION}",
            statement=statement.format(what=f"The {vjp} for query, key and value (causal or not)"), **overrides),
        row(gqa, component="attention", gqa=True,
            examples=_attention_grad_examples(gqa=True), requires=("backward", "gqa", "lq_ne_lk"),
            kind_of_check=kind, source=f"Ainslie et al. 2023 (GQA); {TORCH_SDPA}; {DERIVATION}",
            statement=statement.format(what=f"With enable_gqa, the {vjp} for query, key and value (a KV head's "
                                       "gradient sums over its group)"), **overrides),
        row(mask, component="attention", mask=True,
            examples=_attention_grad_examples(mask=True), requires=("backward", "attn_mask", "lq_ne_lk"),
            kind_of_check=kind, source=f"{TORCH_SDPA}; {DERIVATION}",
            statement=statement.format(what=f"The {vjp} for query, key, value and a float additive attn_mask (0 on "
                                       "-inf entries)"), **overrides),
        row(window, component="sliding_window_attention",
            examples=_window_grad_examples(), requires=("backward",),
            kind_of_check=kind, source=f"{MISTRAL}; {DERIVATION}",
            statement=statement.format(what=f"The {vjp} for query, key and value"), **overrides),
        row(cache, component="cached_attention", examples=_cache_grad_examples(),
            requires=("backward",), kind_of_check=kind, source=f"{KV_SOURCE}; {DERIVATION}",
            statement=statement.format(what=f"The {vjp} for query, key, value and both caches (through the output "
                                       "and the returned caches)"), **overrides),
        row(mha, component="multi_head_attention", examples=_mha_examples(),
            requires=("backward",), kind_of_check=kind, source=f"{VASWANI}; {DERIVATION}",
            statement=statement.format(what=f"The {vjp} for x, w_q, w_k, w_v and w_o"), **overrides),
        row(mla, component="multi_head_latent_attention",
            examples=_mla_examples(), requires=("backward",),
            kind_of_check=kind, source=f"{DEEPSEEK}; {DERIVATION}",
            statement=statement.format(what=f"The {vjp} for x and every weight (w_dkv, w_uk, w_uv, w_q, w_qr, "
                                       "w_kr, w_o)"), **overrides),
    ]


def _check(ctx: Context, p: dict, component: str, kind_of_check: str, **call) -> None:
    if call.get("mask") and kind_of_check == "finite_differences":
        call["finite"] = True
    reference, args, kwargs, wrt, names = CALLS[component](ctx, p, **call)
    CHECKS[kind_of_check](ctx, reference, args, kwargs, wrt=wrt, seed=p["seed"], names=names)


@invariant(*_rows(("attention.backward.matches_reference",
                   "attention.gqa.backward.matches_reference",
                   "attention.mask.backward.matches_reference",
                   "sliding_window_attention.backward.matches_reference",
                   "cached_attention.backward.matches_reference",
                   "multi_head_attention.backward.matches_reference",
                   "multi_head_latent_attention.backward.matches_reference"),
                  "{what} match the float64 reference's within the tolerance policy."),
           kind="differential", budget=0.5)
def check_backward_matches(ctx: Context, p: dict, **row_arguments) -> None:
    _check(ctx, p, **row_arguments)


@invariant(*_rows(("attention.backward.complete",
                   "attention.gqa.backward.complete",
                   "attention.mask.backward.complete",
                   "sliding_window_attention.backward.complete",
                   "cached_attention.backward.complete",
                   "multi_head_attention.backward.complete",
                   "multi_head_latent_attention.backward.complete"),
                  "{what} exist with each input's shape, dtype and device, and requiring grad does not "
                  "change the output."), kind="property", budget=0.5)
def check_backward_complete(ctx: Context, p: dict, **row_arguments) -> None:
    _check(ctx, p, **row_arguments)


@invariant(*_rows(("attention.backward.repeatable",
                   "attention.gqa.backward.repeatable",
                   "attention.mask.backward.repeatable",
                   "sliding_window_attention.backward.repeatable",
                   "cached_attention.backward.repeatable",
                   "multi_head_attention.backward.repeatable",
                   "multi_head_latent_attention.backward.repeatable"),
                  "{what} are the same when pulled back twice through one graph, and two backward "
                  "calls accumulate their sum."), kind="property", budget=0.5)
def check_backward_repeatable(ctx: Context, p: dict, **row_arguments) -> None:
    _check(ctx, p, **row_arguments)


@invariant(*_rows(("attention.backward.finite_differences",
                   "attention.gqa.backward.finite_differences",
                   "attention.mask.backward.finite_differences",
                   "sliding_window_attention.backward.finite_differences",
                   "cached_attention.backward.finite_differences",
                   "multi_head_attention.backward.finite_differences",
                   "multi_head_latent_attention.backward.finite_differences"),
                  "{what} agree with central finite differences of the target's own forward "
                  "along a random direction (float64)."), kind="property", budget=0.5, dtypes=(torch.float64,))
def check_backward_finite_differences(ctx: Context, p: dict, **row_arguments) -> None:
    _check(ctx, p, **row_arguments)




# --- keys no query may see get no gradient --------------------------------------------------------------------


@st.composite
def _masked_examples(draw, window: bool = False) -> dict:
    p = draw(_window_grad_examples() if window else _attention_grad_examples())
    p["cut"] = draw(st.integers(0, p["Lq"] - 1))  # the queries with a nonzero cotangent: first..cut
    p["first"] = draw(st.integers(0, p["cut"]))
    p["mask_seed"] = draw(seeds())
    return p


def _padding_mask(ctx: Context, p: dict) -> torch.Tensor:
    """A boolean key-padding mask [B, 1, 1, Lk] (True = attend): each batch row pads some keys, keeps key 0."""
    gen = torch.Generator().manual_seed(p["mask_seed"])
    keep = torch.rand(p["B"], 1, 1, p["Lk"], generator=gen) < 0.6
    keep[..., 0] = True
    return keep.to(ctx.device)


@invariant(row("attention.backward.masked_keys_zero", how="causal", examples=_masked_examples(),
               requires=("backward", "lq_ne_lk"),
               statement="With is_causal=True and a cotangent on queries s..t only, every key none of them may see "
               "(under the causal alignment) gets exactly zero gradient in key and value.",
               source=f"{VASWANI} (sec. 3.2.3); {DERIVATION}: dV = P^T dO and dK = dS^T Q scale with P = dS = 0 "
               "where masked"),
           row("attention.mask.backward.masked_keys_zero", how="padding", examples=_masked_examples(),
               requires=("backward", "attn_mask", "lq_ne_lk"),
               statement="With a boolean key-padding attn_mask (False = padded), every padded key gets exactly zero "
               "gradient in key and value.",
               source=f"{TORCH_SDPA}; {DERIVATION}: dV = P^T dO and dK = dS^T Q scale with P = dS = 0 where masked"),
           row("sliding_window_attention.backward.masked_keys_zero", how="window", examples=_masked_examples(True),
               requires=("backward",),
               statement="With a cotangent on queries s..t only, every key outside all their windows gets exactly "
               "zero gradient in key and value.",
               source=f"{MISTRAL}; {DERIVATION}: dV = P^T dO and dK = dS^T Q scale with P = dS = 0 where masked"),
           kind="property", budget=0.5)
def check_masked_keys_zero(ctx: Context, p: dict, how: str) -> None:
    q, k, v = qkv(ctx, p)
    lq, lk, b, first, cut = p["Lq"], p["Lk"], p["B"], p["first"], p["cut"]
    if how == "padding":
        first, cut = 0, lq - 1
    rows = (torch.arange(lq) >= first) & (torch.arange(lq) <= cut)  # [Lq] queries with a nonzero cotangent
    if how == "causal":
        args, kwargs = (q, k, v), {"is_causal": True, "scale": p["scale"]}
        allowed = ref.causal_mask(lq, lk, alignment(ctx)).expand(b, lq, lk)
        what = f"is_causal=True ({alignment(ctx)}), cotangent on queries {first}..{cut}"
    elif how == "padding":
        keep = _padding_mask(ctx, p)
        args, kwargs = (q, k, v), {"attn_mask": keep, "scale": p["scale"]}
        allowed = keep.cpu()[:, 0].expand(b, lq, lk)
        what = "key-padding attn_mask"
    else:
        args, kwargs = (q, k, v, p["window"]), {"scale": p["scale"]}
        allowed = ref.sliding_window_mask(lq, lk, p["window"]).expand(b, lq, lk)
        what = f"window={p['window']}, cotangent on queries {first}..{cut}"
    gen = torch.Generator().manual_seed(p["seed"] * 7919 + 104729)
    cotangent = torch.randn(*q.shape[:-1], v.shape[-1], generator=gen, dtype=torch.float64)
    cotangent = (cotangent * rows[:, None]).to(ctx.dtype).to(ctx.device)  # [B, Hq, Lq, Ev], zero off first..cut
    result = ctx.target.vjp(args, kwargs, [0, 1, 2], [cotangent], False)
    if "problem" in result:
        ctx.fail(f"backward: {result['problem']}")
    hidden = ~(allowed & rows[None, :, None]).any(1)  # [B, Lk]: keys no query with a cotangent may see
    if not hidden.any():
        return
    for n, (name, given) in enumerate((("key", k), ("value", v)), start=1):
        grad = result["grads"][n]
        if grad is None:
            continue  # no gradient at all: backward.complete's concern; here only the hidden keys' entries count
        grad = expect_tensor(grad, tuple(given.shape), given.dtype, ctx.device, finite=False,
                             what=f"gradient of {name}")
        at_hidden = to64(grad).cpu().permute(0, 2, 1, 3)[hidden].abs()  # [hidden keys, Hkv, E]; -0.0 counts as 0
        assert_equal(ctx, at_hidden, torch.zeros_like(at_hidden),
                     f"gradient of {name} at the {int(hidden.sum())} keys no query with a cotangent may see ({what})")
