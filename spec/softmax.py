"""Softmax and temperature softmax: components and invariants."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ..reference import softmax as ref
from .checks import PROPERTY_ULPS, assert_agree, differential, to64
from .core import Component, Context, Invariant, Violation
from .guard import expect_tensor
from .strategies import layouts, materialize, patterns, seeds, sizes


@st.composite
def _tensor_and_dim(draw, max_rank: int = 4) -> dict:
    rank = draw(st.integers(1, max_rank))
    shape = [draw(sizes(1, 9)) for _ in range(rank)]
    return {
        "shape": shape,
        "dim": draw(st.integers(-rank, rank - 1)),
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }


def _input(ctx: Context, p: dict, magnitude: float = 1.0) -> torch.Tensor:
    return materialize(p["shape"], p["seed"], ctx.dtype, ctx.device, p["pattern"], magnitude=magnitude, layout=p["layout"])


def _check_matches_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.softmax, _input(ctx, p), p["dim"])


def _check_sums_to_one(ctx: Context, p: dict) -> None:
    x = _input(ctx, p)
    out = expect_tensor(ctx.target(x, p["dim"]), tuple(x.shape), ctx.dtype, ctx.device)
    out64 = to64(out)
    if (out64 < 0).any():
        ctx.fail("softmax output has negative entries", min=float(out64.min()))
    sums = out64.sum(dim=p["dim"])
    n = x.shape[p["dim"]]
    allowed = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * max(1.0, math.sqrt(n))
    worst = float((sums - 1).abs().max())
    if worst > allowed:
        ctx.fail(f"sums along dim {p['dim']} deviate from 1 by {worst:.3g} (allowed {allowed:.3g})", max_abs=worst)


@st.composite
def _shift_examples(draw) -> dict:
    p = draw(_tensor_and_dim())
    p["pattern"] = "ties"
    p["shift"] = draw(st.integers(-48, 48))
    return p


def _check_shift_invariance(ctx: Context, p: dict) -> None:
    # grid inputs and integer shifts: x + c is exact in every dtype, so the two outputs must agree.
    x = _input(ctx, p)
    shifted = x + p["shift"]
    a = expect_tensor(ctx.target(x, p["dim"]), tuple(x.shape), ctx.dtype, ctx.device)
    b = expect_tensor(ctx.target(shifted, p["dim"]), tuple(x.shape), ctx.dtype, ctx.device)
    assert_agree(ctx, a, b, f"softmax(x) vs softmax(x + {p['shift']})")


@st.composite
def _extreme_examples(draw) -> dict:
    p = draw(_tensor_and_dim(max_rank=3))
    p["extreme"] = draw(st.sampled_from([1e4, -1e4]))
    return p


def _check_no_overflow(ctx: Context, p: dict) -> None:
    # logits around +-1e4 overflow exp() in float32 and float16 unless the maximum is subtracted first.
    x = materialize(p["shape"], p["seed"], torch.float64, "cpu", "normal") + p["extreme"]
    x = x.to(ctx.dtype).to(ctx.device)
    differential(ctx, ref.softmax, x, p["dim"])


@st.composite
def _temperature_examples(draw) -> dict:
    rank = draw(st.integers(1, 3))
    return {
        "shape": [draw(sizes(1, 5)) for _ in range(rank - 1)] + [draw(sizes(1, 17))],
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
        "temperature": draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 7.0])),
    }


def _logits(ctx: Context, p: dict, pattern: str | None = None) -> torch.Tensor:
    return materialize(p["shape"], p["seed"], ctx.dtype, ctx.device, pattern or p["pattern"], layout=p["layout"])


def _check_temperature_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.temperature_softmax, _logits(ctx, p), p["temperature"])


def _check_zero_limit(ctx: Context, p: dict) -> None:
    # grid logits (gaps >= 0.5) at T = 1e-3: every non-maximal probability is below exp(-500).
    x = _logits(ctx, p, "ties")
    out = to64(expect_tensor(ctx.target(x, 1e-3), tuple(x.shape), ctx.dtype, ctx.device))
    x64 = to64(x)
    is_max = x64 == x64.amax(-1, keepdim=True)
    expected = is_max.to(torch.float64) / is_max.sum(-1, keepdim=True)
    worst = float((out - expected).abs().max())
    allowed = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    if worst > allowed:
        ctx.fail(f"at temperature 1e-3 the output is not uniform over the argmax ties (off by {worst:.3g})", max_abs=worst)


def _check_infinity_uniform(ctx: Context, p: dict) -> None:
    x = _logits(ctx, p, "normal")
    out = to64(expect_tensor(ctx.target(x, 1e6), tuple(x.shape), ctx.dtype, ctx.device))
    v = x.shape[-1]
    # |z| <~ 6 so |z/T| <= 1e-5: each probability is within ~2e-5 relative of 1/V, plus rounding.
    allowed = (1.0 / v) * (1e-4 + PROPERTY_ULPS * torch.finfo(ctx.dtype).eps)
    worst = float((out - 1.0 / v).abs().max())
    if worst > allowed:
        ctx.fail(f"at temperature 1e6 the output is not uniform 1/{v} (off by {worst:.3g}, allowed {allowed:.3g})", max_abs=worst)


def _check_entropy_monotone(ctx: Context, p: dict) -> None:
    x = _logits(ctx, p)
    temps = (0.5 * p["temperature"], p["temperature"], 2.0 * p["temperature"])
    entropies = []
    for t in temps:
        out = to64(expect_tensor(ctx.target(x, t), tuple(x.shape), ctx.dtype, ctx.device))
        entropies.append(ref.entropy(out.clamp_min(0)))
    slack = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * max(1.0, math.log(x.shape[-1]))
    for (t1, h1), (t2, h2) in zip(zip(temps, entropies), list(zip(temps, entropies))[1:]):
        drop = float((h1 - h2).max())
        if drop > slack:
            raise Violation(f"entropy decreased from T={t1:g} to T={t2:g} by {drop:.3g} nats", max_abs=drop)


SOFTMAX = Component(
    name="softmax",
    family="softmax",
    signature="softmax(input: Float[*shape], dim: int) -> Float[*shape]  (torch.softmax)",
    summary="exp(x_i - max x) / sum_j exp(x_j - max x) along `dim`.",
    reference=ref.softmax,
    invariants=(
        Invariant(
            id="softmax.reference.matches",
            statement="softmax(x, dim) equals the float64 reference within the tolerance policy, for every dim and layout.",
            source="Bridle 1990; torch.softmax (aten/src/ATen/native/SoftMax.cpp)",
            kind="differential",
            examples=_tensor_and_dim(),
            check=_check_matches_reference,
        ),
        Invariant(
            id="softmax.normalization.sums_to_one",
            statement="Outputs are non-negative and sum to 1 along `dim` (and only along `dim`).",
            source="definition of softmax",
            kind="property",
            examples=_tensor_and_dim(),
            check=_check_sums_to_one,
        ),
        Invariant(
            id="softmax.shift_invariance",
            statement="softmax(x + c, dim) = softmax(x, dim) for any constant c.",
            source="definition of softmax (exp(c) cancels)",
            kind="property",
            examples=_shift_examples(),
            check=_check_shift_invariance,
        ),
        Invariant(
            id="softmax.stability.no_overflow",
            statement="Logits around +-1e4 give a finite, correct softmax in every dtype (the maximum is subtracted before exp).",
            source="torch.softmax; Goodfellow et al. 2016, Deep Learning, sec. 4.1",
            kind="differential",
            examples=_extreme_examples(),
            check=_check_no_overflow,
        ),
    ),
)

TEMPERATURE_SOFTMAX = Component(
    name="temperature_softmax",
    family="softmax",
    signature="temperature_softmax(logits: Float[*batch, vocab], temperature: float > 0) -> Float[*batch, vocab]",
    summary="softmax(logits / temperature) over the last axis.",
    reference=ref.temperature_softmax,
    invariants=(
        Invariant(
            id="temperature_softmax.reference.matches",
            statement="softmax(logits / T) equals the float64 reference (T = 1 is plain softmax).",
            source="Hinton et al. 2015, Distilling the Knowledge in a Neural Network, eq. 1",
            kind="differential",
            examples=_temperature_examples(),
            check=_check_temperature_reference,
        ),
        Invariant(
            id="temperature_softmax.limit.zero_is_argmax",
            statement="As T -> 0 the distribution tends to the argmax, uniform over tied maxima.",
            source="Hinton et al. 2015, eq. 1 (limit); vLLM treats temperature < 1e-5 as greedy",
            kind="property",
            examples=_temperature_examples(),
            check=_check_zero_limit,
        ),
        Invariant(
            id="temperature_softmax.limit.infinity_is_uniform",
            statement="As T -> infinity the distribution tends to uniform over the vocabulary.",
            source="Hinton et al. 2015, eq. 1 (limit)",
            kind="property",
            examples=_temperature_examples(),
            check=_check_infinity_uniform,
        ),
        Invariant(
            id="temperature_softmax.entropy.monotone",
            statement="Entropy of softmax(logits / T) is non-decreasing in T.",
            source="Jaynes 1957; d H / d T = Var(z) / T^3 >= 0",
            kind="property",
            examples=_temperature_examples(),
            check=_check_entropy_monotone,
        ),
    ),
)

COMPONENTS = (SOFTMAX, TEMPERATURE_SOFTMAX)
