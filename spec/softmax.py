"""Softmax and temperature softmax: components and invariants."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ..reference import softmax as ref
from ..reference.norms import opmath_dtype
from .backward import run_backward
from .checks import (PROPERTY_ULPS, assert_agree, assert_each_within, assert_matches, call, perturb_ulp, reference_pair,
                     show, to64, to_cpu)
from .core import Component, Context, invariant, row
from .gradients import BACKWARD, backward_complete, backward_finite_differences, backward_repeatable, cotangents_for
from .strategies import TILE_EDGES, layouts, materialize, patterns, scaled, seeds, sizes

#: row lengths at the edges of the tiles softmax kernels loop over (1024-4096 columns a block) and past int16 / 65536
#: column offsets, and vocabularies (Llama-2 32000, GPT-2 50257, Llama-3 128256, Qwen2 151936).
ROW_EDGES = TILE_EDGES + (2047, 2048, 2049, 4095, 4096, 4097)
VOCABS = (32000, 50257, 128256, 151936)
#: exp turns the rounding of its argument into relative error: a kernel forms the shifted logit z_i - c (c the row's
#: max or log-sum-exp, z = x / T) in the opmath type, off by up to eps(opmath) (|z_i| + |c|) / 2, and p_i moves by
#: that much relative. Kernels shift differently (x - max then divide; exp(x - lse); online rescaling), so the
#: reference's own rounding is no witness for theirs: each probability's witness error is made at least
#: LOGIT_ULPS eps(opmath) (|z_i| + max|z|) p_i (the bound grants 2x that; a flushed or wrong probability still shows).
LOGIT_ULPS = 1.0
#: the normalizer sums n terms in opmath: a blocked or vectorised sum errs by ~sqrt(n) eps (torch's last-dim kernel:
#: up to 0.3 sqrt(n) eps of float32 over 151936 tied logits), the same factor for every probability of the row. The
#: witness error is made at least SUM_ULPS sqrt(n) eps(opmath) p_i too; a tile's worth of missing mass still shows.
SUM_ULPS = 1.0

#: rows spanning many program instances (one program a row, or a few): batch x heads x queries.
MANY_ROWS = (1025, 4097)


# --- softmax --------------------------------------------------------------------------------------------

SOFTMAX = Component(
    name="softmax",
    signature="softmax(input: Float[*shape], dim: int) -> Float[*shape]  (torch.softmax)",
    summary="exp(x_i - max x) / sum_j exp(x_j - max x) along `dim`.",
    reference=ref.softmax,
    bound="elementwise",
    features=dict(BACKWARD),
)


@st.composite
def _small_shape_and_dim(draw, max_rank: int) -> tuple[list[int], int]:
    rank = draw(st.integers(1, max_rank))
    return [draw(sizes(1, 9)) for _ in range(rank)], draw(st.integers(-rank, rank - 1))


@st.composite
def _long_rows(draw) -> tuple[list[int], int]:
    """A few rows of a tile-edge or vocabulary length, reduced along the last axis (the layouts make it strided).
    Not along a leading axis: torch's CPU softmax over a non-last dim sums sequentially, off by up to 7e3 eps of
    float32 over 151936 tied logits, beyond the sqrt(n) summation allowance (SUM_ULPS) and sums_to_one's."""
    n = draw(st.one_of(st.sampled_from(ROW_EDGES), st.sampled_from(VOCABS)))
    return [draw(sizes(1, 3)), n], draw(st.sampled_from([1, -1]))


@st.composite
def _many_rows(draw) -> tuple[list[int], int]:
    """batch x (heads x queries) short rows: thousands of rows, as many program instances as a kernel launches."""
    return [draw(sizes(1, 2)), draw(st.sampled_from(MANY_ROWS)), draw(sizes(1, 9))], draw(st.sampled_from([2, -1]))


def _shapes_and_dims(max_rank: int) -> st.SearchStrategy[tuple[list[int], int]]:
    """Small shapes; from scale "kernel" also long rows (tile edges, vocabularies) or many short rows; at "production"
    a batch of vocabulary rows or a prefill's attention scores."""
    production = st.sampled_from([([32, 151936], -1), ([1, 16, 1024, 1024][4 - max_rank:], -1)])
    return scaled(_small_shape_and_dim(max_rank), st.one_of(_long_rows(), _many_rows()), production)


@st.composite
def _tensor_and_dim(draw, max_rank: int = 4) -> dict:
    shape, dim = draw(_shapes_and_dims(max_rank))
    return {
        "shape": shape,
        "dim": dim,
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }


def matches_reference(ctx: Context, reference, z64: torch.Tensor, dim: int, *args) -> None:
    """`differential` of a softmax over `dim` of logits z64 (float64), its witness widened by the rounding of the
    shifted logits (LOGIT_ULPS) and of the normalizer's sum (SUM_ULPS)."""
    ref64, witness = reference_pair(reference, *args)
    error = to64(witness) - ref64
    shift = LOGIT_ULPS * (z64.abs() + z64.abs().amax(dim=dim, keepdim=True))
    rounding = torch.finfo(opmath_dtype(ctx.dtype)).eps * (shift + SUM_ULPS * math.sqrt(z64.shape[dim])) * ref64.abs()
    widened = ref64 + torch.where(error < 0, -1.0, 1.0) * torch.maximum(error.abs().nan_to_num(nan=0.0), rounding)
    assert_matches(ctx, ctx.target(*args), ref64, widened)


def _input(ctx: Context, p: dict) -> torch.Tensor:
    return materialize(p["shape"], p["seed"], ctx.dtype, ctx.device, p["pattern"], layout=p["layout"])


@invariant("softmax.reference.matches", kind="differential", examples=_tensor_and_dim(),
           statement="softmax(x, dim) equals the float64 reference within the tolerance policy, for every dim and "
           "layout.",
           source="Bridle 1990; torch.softmax (aten/src/ATen/native/SoftMax.cpp)")
def check_matches_reference(ctx: Context, p: dict) -> None:
    x = _input(ctx, p)
    matches_reference(ctx, ref.softmax, to64(x), p["dim"], x, p["dim"])


@invariant("softmax.normalization.sums_to_one", kind="property", examples=_tensor_and_dim(),
           statement="Outputs are non-negative and sum to 1 along `dim` (and only along `dim`).",
           source="definition of softmax")
def check_sums_to_one(ctx: Context, p: dict) -> None:
    x = _input(ctx, p)
    out64 = to64(call(ctx, x.shape, x, p["dim"]))
    if (out64 < 0).any():
        ctx.fail(f"softmax output has a negative entry, {show(float(out64.min()))}", min=float(out64.min()))
    allowed = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * max(1.0, math.sqrt(x.shape[p["dim"]]))
    assert_each_within(ctx, out64.sum(dim=p["dim"]), 1.0, allowed, f"sum along dim {p['dim']}")


@st.composite
def _shift_examples(draw) -> dict:
    p = draw(_tensor_and_dim())
    p["pattern"] = "ties"
    p["shift"] = draw(st.integers(-48, 48))
    return p


@invariant("softmax.shift_invariance", kind="property", examples=_shift_examples(),
           statement="softmax(x + c, dim) = softmax(x, dim) for any constant c.",
           source="definition of softmax (exp(c) cancels)")
def check_shift_invariance(ctx: Context, p: dict) -> None:
    # grid inputs and integer shifts: x + c is exact in every dtype, so the two outputs must agree.
    x = _input(ctx, p)
    a = call(ctx, x.shape, x, p["dim"])
    b = call(ctx, x.shape, x + p["shift"], p["dim"])
    assert_agree(ctx, a, b, f"softmax(x) vs softmax(x + {p['shift']})")


@st.composite
def _extreme_examples(draw) -> dict:
    p = draw(_tensor_and_dim(max_rank=3))
    p["extreme"] = draw(st.sampled_from([1e4, -1e4]))
    return p


@invariant("softmax.stability.no_overflow", kind="differential", examples=_extreme_examples(),
           statement="Logits around +-1e4 give a finite, correct softmax in every dtype (the maximum is subtracted "
           "before exp).",
           source="torch.softmax; Goodfellow et al. 2016, Deep Learning, sec. 4.1")
def check_no_overflow(ctx: Context, p: dict) -> None:
    # logits around +-1e4 overflow exp() in float32 and float16 unless the maximum is subtracted first.
    x = materialize(p["shape"], p["seed"], torch.float64, "cpu", "normal") + p["extreme"]
    x = x.to(ctx.dtype).to(ctx.device)
    matches_reference(ctx, ref.softmax, to64(x), p["dim"], x, p["dim"])


# --- temperature softmax --------------------------------------------------------------------------------

TEMPERATURE_SOFTMAX = Component(
    name="temperature_softmax",
    signature="temperature_softmax(logits: Float[*batch, vocab], temperature: float > 0) -> Float[*batch, vocab]",
    summary="softmax(logits / temperature) over the last axis.",
    reference=ref.temperature_softmax,
    bound="elementwise",
    features=dict(BACKWARD),
)


@st.composite
def _temperature_examples(draw) -> dict:
    rank = draw(st.integers(1, 3))
    vocab = draw(scaled(sizes(1, 17), st.one_of(st.sampled_from(ROW_EDGES), st.sampled_from(VOCABS)),
                        st.sampled_from(VOCABS)))
    rows = draw(scaled(st.just(None), None, st.sampled_from([[64], [8, 32]])))  # production: a batch of requests
    if rows is None:  # a few rows; of a long vocabulary, at most 2 x 2
        rows = [draw(sizes(1, 5 if vocab < 32 else 2)) for _ in range(rank - 1)]
    return {
        "shape": rows + [vocab],
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
        "temperature": draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 7.0])),
    }


def _logits(ctx: Context, p: dict, pattern: str | None = None) -> torch.Tensor:
    return materialize(p["shape"], p["seed"], ctx.dtype, ctx.device, pattern or p["pattern"], layout=p["layout"])


@invariant("temperature_softmax.reference.matches", kind="differential", examples=_temperature_examples(),
           statement="softmax(logits / T) equals the float64 reference (T = 1 is plain softmax).",
           source="Hinton et al. 2015, Distilling the Knowledge in a Neural Network, eq. 1")
def check_temperature_reference(ctx: Context, p: dict) -> None:
    x = _logits(ctx, p)
    matches_reference(ctx, ref.temperature_softmax, to64(x) / p["temperature"], -1, x, p["temperature"])


@invariant("temperature_softmax.limit.zero_is_argmax", kind="property", examples=_temperature_examples(),
           statement="As T -> 0 the distribution tends to the argmax, uniform over tied maxima.",
           source="Hinton et al. 2015, eq. 1 (limit); vLLM treats temperature < 1e-5 as greedy")
def check_zero_limit(ctx: Context, p: dict) -> None:
    # grid logits (gaps >= 0.5) at T = 1e-3: every non-maximal probability is below exp(-500).
    x = _logits(ctx, p, "ties")
    out = to64(call(ctx, x.shape, x, 1e-3))
    x64 = to64(x)
    is_max = x64 == x64.amax(-1, keepdim=True)
    expected = is_max.to(torch.float64) / is_max.sum(-1, keepdim=True)
    allowed = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    assert_each_within(ctx, out, expected, allowed, "at temperature 1e-3 (uniform over the argmax ties), probability")


@invariant("temperature_softmax.limit.infinity_is_uniform", kind="property", examples=_temperature_examples(),
           statement="As T -> infinity the distribution tends to uniform over the vocabulary.",
           source="Hinton et al. 2015, eq. 1 (limit)")
def check_infinity_uniform(ctx: Context, p: dict) -> None:
    x = _logits(ctx, p, "normal")
    out = to64(call(ctx, x.shape, x, 1e6))
    v = x.shape[-1]
    # |z| <~ 6 so |z/T| <= 1e-5: each probability is within ~2e-5 relative of 1/V, plus rounding.
    allowed = (1.0 / v) * (1e-4 + PROPERTY_ULPS * torch.finfo(ctx.dtype).eps)
    assert_each_within(ctx, out, 1.0 / v, allowed, f"at temperature 1e6 (uniform 1/{v}), probability")


@invariant("temperature_softmax.entropy.monotone", kind="property", examples=_temperature_examples(),
           statement="Entropy of softmax(logits / T) is non-decreasing in T.",
           source="Jaynes 1957; d H / d T = Var(z) / T^3 >= 0")
def check_entropy_monotone(ctx: Context, p: dict) -> None:
    x = _logits(ctx, p)
    temps = (0.5 * p["temperature"], p["temperature"], 2.0 * p["temperature"])
    entropies = [ref.entropy(to64(call(ctx, x.shape, x, t)).clamp_min(0)) for t in temps]
    slack = PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * max(1.0, math.log(x.shape[-1]))
    for (t1, h1), (t2, h2) in zip(zip(temps, entropies), list(zip(temps, entropies))[1:]):
        drops = h1 - h2
        drop = float(drops.max())
        if drop > slack:
            at = int(drops.flatten().argmax())
            e1, e2 = show(float(h1.flatten()[at]), float(h2.flatten()[at]))
            ctx.fail(f"entropy decreased from {e1} nats at T={t1:g} to {e2} at T={t2:g} (by {drop:.3g}; allowed "
                     f"{slack:.3g})", max_abs=drop)


# --- backward -------------------------------------------------------------------------------------------

#: the vector-Jacobian product of p = softmax(x) along dim: dx = p * (g - <p, g>) (J = diag(p) - p p^T)
SOFTMAX_GRAD = ("torch tools/autograd/derivatives.yaml, _softmax: _softmax_backward_data(grad, result, dim), "
                "dx = p * (g - sum_dim(p g)) (the Jacobian diag(p) - p p^T)")
TEMPERATURE_GRAD = f"{SOFTMAX_GRAD}; chain rule through logits / T: dz = (p * (g - sum(p g))) / T"


def _backward_call(ctx: Context, p: dict, component: str) -> tuple[tuple, object]:
    """The call's arguments and reference: softmax(x, dim) or temperature_softmax(logits, T); only the first
    argument is differentiable (dim and T are Python numbers)."""
    if component == "softmax":
        return (_input(ctx, p), p["dim"]), ref.softmax
    return (_logits(ctx, p), p["temperature"]), ref.temperature_softmax


def _reference_grad(reference, args: tuple, cotangent: torch.Tensor) -> torch.Tensor:
    result = run_backward(reference, args, {}, [0], [cotangent])
    if "problem" in result:
        raise RuntimeError(f"the reference's backward: {result['problem']}")  # a bug in the spec, not the target
    return to64(result["grads"][0])


def backward_matches_reference(ctx: Context, reference, args: tuple, dim: int, scale: float, seed: int,
                               name: str) -> None:
    """gradients.backward_matches with the witness widened as the forward's is (SUM_ULPS): dx_i = p_i (g_i - <p, g>)
    s (s = 1 / T) and a kernel sums <p, g> over the row in opmath in its own order, an error of up to ~sqrt(n)
    eps(opmath) sum_j |p_j g_j| in every element's p_i <p, g> (torch's float32 backward over 32000 tied logits: 12
    eps at the output's scale, 20x the reference's own sum); a dropped or wrong term still shows."""
    args64 = to64(args)
    p64 = reference(*args64)
    cotangents = cotangents_for(p64, seed, ctx.dtype, ctx.device)
    g64 = to64(cotangents[0])
    ref64 = _reference_grad(reference, args64, g64)
    if ctx.dtype == torch.float64:
        witness = _reference_grad(reference, perturb_ulp(args64, torch.Generator().manual_seed(0)), g64)
    else:
        witness = _reference_grad(reference, to_cpu(args), cotangents[0].cpu())
    n = p64.shape[dim] if p64.dim() else 1
    reduction = (p64 * g64).abs().sum(dim=dim, keepdim=True)
    rounding = SUM_ULPS * math.sqrt(n) * torch.finfo(opmath_dtype(ctx.dtype)).eps * p64 * reduction * abs(scale)
    error = witness - ref64
    widened = ref64 + torch.where(error < 0, -1.0, 1.0) * torch.maximum(error.abs().nan_to_num(nan=0.0), rounding)
    result = ctx.target.vjp(args, {}, [0], cotangents)
    if "problem" in result:
        ctx.fail(f"backward: {result['problem']}")
    grad = result["grads"][0]
    if grad is None:
        ctx.fail(f"gradient of {name}: the input got no gradient although it requires grad and the output depends on "
                 "it")
    assert_matches(ctx, grad, ref64, widened, what=f"gradient of {name}", bound="normwise")


def _backward(check, ctx: Context, p: dict, component: str) -> None:
    args, reference = _backward_call(ctx, p, component)
    check(ctx, reference, args, {}, wrt=[0], seed=p["seed"], names=["input" if component == "softmax" else "logits"])


@invariant(
    row("softmax.backward.matches_reference", component="softmax", examples=_tensor_and_dim(), source=SOFTMAX_GRAD,
        statement="The vector-Jacobian product for the input, p * (g - <p, g>) along dim, matches the float64 "
        "reference's within the tolerance policy, for every dim and layout."),
    row("temperature_softmax.backward.matches_reference", component="temperature_softmax",
        examples=_temperature_examples(), source=TEMPERATURE_GRAD,
        statement="The vector-Jacobian product for the logits, p * (g - <p, g>) / T, matches the float64 "
        "reference's within the tolerance policy."),
    kind="differential", requires={"backward"}, budget=0.5)
def check_backward_matches(ctx: Context, p: dict, component: str) -> None:
    args, reference = _backward_call(ctx, p, component)
    dim, scale = (p["dim"], 1.0) if component == "softmax" else (-1, 1.0 / p["temperature"])
    backward_matches_reference(ctx, reference, args, dim, scale, p["seed"], "input" if component == "softmax" else
                               "logits")


@invariant(
    row("softmax.backward.complete", component="softmax", examples=_tensor_and_dim(), source=SOFTMAX_GRAD),
    row("temperature_softmax.backward.complete", component="temperature_softmax", examples=_temperature_examples(),
        source=TEMPERATURE_GRAD),
    statement="An input that requires grad gets a gradient of its shape, dtype and device, and requiring grad does "
    "not change the forward output.",
    requires={"backward"}, budget=0.5)
def check_backward_complete(ctx: Context, p: dict, component: str) -> None:
    _backward(backward_complete, ctx, p, component)


@invariant(
    row("softmax.backward.repeatable", component="softmax", examples=_tensor_and_dim(), source=SOFTMAX_GRAD),
    row("temperature_softmax.backward.repeatable", component="temperature_softmax",
        examples=_temperature_examples(), source=TEMPERATURE_GRAD),
    statement="Two pull-backs through one graph give the same gradient, and two backward calls accumulate their "
    "sum into .grad.",
    requires={"backward"}, budget=0.5)
def check_backward_repeatable(ctx: Context, p: dict, component: str) -> None:
    _backward(backward_repeatable, ctx, p, component)


def _conditioned(p: dict) -> dict:
    """FD_RELATIVE grants no rounding of the forward: where a row saturates (p_max = 1 - 1e-95 at T = 0.25 on
    'large' logits) central differences lose the change of p_max to its ulp. 'normal' logits at T >= 1 keep every
    p_i >= ~1e-5, so the quotient carries the derivative."""
    return {**p, "pattern": "normal", **({"temperature": max(1.0, p["temperature"])} if "temperature" in p else {})}

@invariant(
    row("softmax.backward.finite_differences", component="softmax", examples=_tensor_and_dim().map(_conditioned),
        source=f"{SOFTMAX_GRAD}; torch.autograd.gradcheck (one random direction)"),
    row("temperature_softmax.backward.finite_differences", component="temperature_softmax",
        examples=_temperature_examples().map(_conditioned),
        source=f"{TEMPERATURE_GRAD}; torch.autograd.gradcheck (one random direction)"),
    statement="In float64 the gradient's directional derivative along a random direction agrees with central "
    "differences of the target's own forward.",
    requires={"backward"}, dtypes=(torch.float64,), budget=0.5)
def check_backward_finite_differences(ctx: Context, p: dict, component: str) -> None:
    _backward(backward_finite_differences, ctx, p, component)

