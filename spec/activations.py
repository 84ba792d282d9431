"""Activations (GELU, SiLU, ReLU, Swish-beta) and dropout: components and invariants."""

from __future__ import annotations

import dataclasses
import math

import torch
from hypothesis import strategies as st

from ..reference import activations as ref
from ..reference.norms import opmath_dtype
from .checks import (PROPERTY_ULPS, assert_agree, assert_each_within, assert_equal, assert_matches, call,
                     reference_pair, show, to64)
from .core import Component, Context, invariant, row
from .gradients import (BACKWARD, backward_complete, backward_finite_differences, backward_matches, backward_repeatable,
                        cotangents_for)
from .guard import expect_tensor
from .strategies import TILE_EDGES, layouts, materialize, patterns, relayout, scaled, seeds, sizes
from .tolerance import eps as machine_eps

HENDRYCKS = "Hendrycks & Gimpel 2016, Gaussian Error Linear Units, sec. 2"
TORCH_GELU = "torch.nn.functional.gelu (torch 2.13 docs)"
ELFWING = "Elfwing et al. 2017, Sigmoid-Weighted Linear Units, eq. 1; torch.nn.functional.silu"
RAMACHANDRAN = "Ramachandran et al. 2017, Searching for Activation Functions, sec. 4"
NAIR = "Nair & Hinton 2010, Rectified Linear Units; torch.nn.functional.relu"
SRIVASTAVA = ("Srivastava et al. 2014, Dropout, sec. 4 and 10 (inverted scaling); torch.nn.functional.dropout (torch "
              "2.13 docs)")

# --- the activations ------------------------------------------------------------------------------------

GELU = Component(
    name="gelu",
    signature="gelu(input: Float[*shape], approximate: 'none' | 'tanh' = 'none') -> Float[*shape]  "
    "(torch.nn.functional.gelu)",
    summary="x Phi(x) = x/2 (1 + erf(x / sqrt 2)); approximate='tanh': x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).",
    reference=ref.gelu,
    bound="elementwise",
    features=dict(BACKWARD),
)

SILU = Component(
    name="silu",
    signature="silu(input: Float[*shape]) -> Float[*shape]  (torch.nn.functional.silu)",
    summary="x sigma(x) (Swish with beta = 1), finite for large |x|.",
    reference=ref.silu,
    bound="elementwise",
    features=dict(BACKWARD),
)

SWISH = Component(
    name="swish",
    signature="swish(input: Float[*shape], beta: float = 1.0) -> Float[*shape]",
    summary="x sigma(beta x): SiLU at beta = 1, tends to ReLU as beta -> infinity.",
    reference=ref.swish,
    bound="elementwise",
    features=dict(BACKWARD),
)

RELU = Component(
    name="relu",
    signature="relu(input: Float[*shape]) -> Float[*shape]  (torch.nn.functional.relu)",
    summary="max(x, 0), exactly.",
    reference=ref.relu,
    bound="elementwise",
    features=dict(BACKWARD),
)


#: flat sizes (numel) at the edges of the programs elementwise kernels launch (1024-4096 elements each) and of their
#: vector width (8 elements: 16 bytes of float16), and sizes past 32767 / 65535 (int16 / uint16 offsets).
BLOCK_EDGES = TILE_EDGES + (2047, 2048, 2049, 4095, 4096, 4097, 8191, 8193)
INDEX_EDGES = (32767, 32769, 65535, 65537)
#: production: activations of real models, tokens x intermediate size (Llama-3-8B 14336, Llama-2-7B 11008).
PRODUCTION_SHAPES = ([512, 14336], [2048, 11008], [4096, 4096])


@st.composite
def _small_shape(draw) -> list[int]:
    return [draw(sizes(1, 9)) for _ in range(draw(st.integers(1, 3)))]


@st.composite
def _flat_shape(draw, edges: tuple[int, ...]) -> list[int]:
    """A run of `edges` elements, alone or behind a few rows (n % 8 and n % 1024 are what a kernel's tail sees)."""
    n = draw(st.sampled_from(edges))
    return [n] if draw(st.booleans()) else [draw(sizes(2, 3)), n]


def shapes() -> st.SearchStrategy[list[int]]:
    """Small shapes (rank 1-3, sizes 1-9); from scale "kernel" also a flat size at a program or vector-width edge or
    past an int16 offset; at "production" a real model's activation."""
    kernel = st.one_of(_flat_shape(BLOCK_EDGES), _flat_shape(INDEX_EDGES))
    return scaled(_small_shape(), kernel, st.sampled_from(PRODUCTION_SHAPES))


@st.composite
def elementwise_examples(draw) -> dict:
    """`magnitude` 4 puts x < -4.5 (GELU's left tail) in most examples; 100 on top of the 'large' pattern reaches
    |x| ~ 1e4: exp(x) overflows every dtype there."""
    return {
        "shape": draw(shapes()),
        "magnitude": draw(st.sampled_from([1.0, 4.0, 100.0])),
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }


def _input(ctx: Context, p: dict, magnitude: float | None = None) -> torch.Tensor:
    magnitude = p.get("magnitude", 1.0) if magnitude is None else magnitude
    return materialize(p["shape"], p["seed"], ctx.dtype, ctx.device, p["pattern"], magnitude=magnitude,
                       layout=p["layout"])


def _kwargs(p: dict) -> dict:
    """The drawn `approximate` (GELU) or `beta` (Swish), passed only when drawn (None: the target's default)."""
    return {k: p[k] for k in ("approximate", "beta") if p.get(k) is not None}


@st.composite
def _gelu_examples(draw) -> dict:
    p = draw(elementwise_examples())
    p["approximate"] = draw(st.sampled_from([None, "none", "tanh"]))  # None: the default (erf)
    return p


@st.composite
def _swish_examples(draw) -> dict:
    p = draw(elementwise_examples())
    p["beta"] = draw(st.sampled_from([0.5, 1.0, 1.702, 4.0]))
    return p


@invariant(
    row("gelu.reference.matches", reference=ref.gelu, examples=_gelu_examples(), source=f"{HENDRYCKS}; {TORCH_GELU}",
        statement="Output equals the float64 reference for the erf form (default) and the tanh approximation."),
    row("silu.reference.matches", reference=ref.silu, examples=elementwise_examples(), source=ELFWING,
        statement="SiLU(x) = x sigma(x) equals the float64 reference, large |x| included (no exp overflow)."),
    row("swish.reference.matches", reference=ref.swish, examples=_swish_examples(), source=RAMACHANDRAN,
        statement="swish(x, beta) = x sigma(beta x) equals the float64 reference."),
    kind="differential")
def check_reference(ctx: Context, p: dict, reference) -> None:
    x = _input(ctx, p)
    kwargs = _kwargs(p)
    ref64, witness = reference_pair(reference, x, **kwargs)
    assert_matches(ctx, ctx.target(x, **kwargs), ref64, gate_witness(ctx.dtype, x, ref64, witness))


#: f(x) = x g(x) with a gate g in [0, 1] (Phi, sigma): implementations compute g in the opmath type to a few ulps,
#: absolute, often as (1 + erf(x / sqrt 2)) / 2 or (1 + tanh u) / 2, which cancel in the left tail (torch's
#: AVX-512 GELU errs by up to 5.6 eps of float32 in 1 + erf). That is an error of up to GATE_ULPS eps(opmath) |x| in
#: f, more than |f| itself where Phi(x) < GATE_ULPS eps: x < -4.8 in float32 and below, x < -8 in float64.
GATE_ULPS = 4.0


def gate_witness(dtype: torch.dtype, x: torch.Tensor, ref64: torch.Tensor, witness: torch.Tensor) -> torch.Tensor:
    """The reference's own error at each element, made at least what a gate computed to GATE_ULPS ulps of opmath
    costs (GATE_ULPS eps(opmath) |x|): the elementwise bound then grants 2x that in the tails, never more than the
    norm-wise bound did (8 eps max|x|), and still sees a zeroed tail or a wrong gate (spec/tolerance.py)."""
    error = to64(witness) - ref64
    gate = GATE_ULPS * machine_eps(opmath_dtype(dtype)) * to64(x).abs()
    return ref64 + torch.where(error < 0, -1.0, 1.0) * torch.maximum(error.abs().nan_to_num(nan=0.0), gate)


@invariant("gelu.tanh_approximation.bound", examples=elementwise_examples(),
           statement=f"|gelu(x, 'tanh') - gelu(x)| <= {ref.GELU_TANH_MAX_ABS_DIFFERENCE:g} for every x (the supremum, "
           "at |x| = 2.70), plus rounding.",
           source=f"{HENDRYCKS} (tanh approximation); bound computed in float64 (reference/activations.py)")
def check_gelu_tanh_bound(ctx: Context, p: dict) -> None:
    # inputs spread over [-9, 9] (the gap peaks at |x| = 2.7); bound plus the rounding of both outputs.
    x = _input(ctx, {**p, "pattern": "normal"}, magnitude=3.0)
    exact, approx = to64(call(ctx, x.shape, x)), to64(call(ctx, x.shape, x, approximate="tanh"))
    allowed = ref.GELU_TANH_MAX_ABS_DIFFERENCE + PROPERTY_ULPS * machine_eps(ctx.dtype) * exact.abs().clamp_min(1.0)
    assert_each_within(ctx, approx, exact, allowed, f"gelu(x, 'tanh') vs gelu(x) (the tanh approximation is within "
                       f"{ref.GELU_TANH_MAX_ABS_DIFFERENCE:g} of the erf form everywhere)", x=x)


@st.composite
def _swish_limit_examples(draw) -> dict:
    p = draw(elementwise_examples())
    p["beta"] = draw(st.sampled_from([10.0, 100.0, 1000.0]))
    return p


@invariant("swish.limit.relu", examples=_swish_limit_examples(),
           statement=f"|swish(x, beta) - relu(x)| <= {ref.SWISH_RELU_GAP_TIMES_BETA:g} / beta: Swish tends to ReLU as "
           "beta -> infinity.",
           source=f"{RAMACHANDRAN} ('as beta -> infinity, Swish becomes like ReLU')")
def check_swish_limit(ctx: Context, p: dict) -> None:
    # |x sigma(beta x) - relu(x)| = |x| sigma(-beta |x|) <= 0.2785 / beta.
    x = _input(ctx, {**p, "pattern": "normal"}, magnitude=2.0)
    y = call(ctx, x.shape, x, beta=p["beta"])
    x64 = to64(x)
    allowed = (ref.SWISH_RELU_GAP_TIMES_BETA / p["beta"]
               + PROPERTY_ULPS * machine_eps(ctx.dtype) * x64.abs().clamp_min(1.0))
    assert_each_within(ctx, y, x64.clamp_min(0), allowed, f"swish(x, beta={p['beta']:g}) vs relu(x) (the limit beta "
                       f"-> infinity allows {ref.SWISH_RELU_GAP_TIMES_BETA:g} / beta)", x=x)


@invariant("relu.definition.exact", examples=elementwise_examples(),
           statement="relu(x) is exactly x where x > 0 and 0 elsewhere (no rounding, no leak).",
           source=NAIR)
def check_relu_exact(ctx: Context, p: dict) -> None:
    x = _input(ctx, p, magnitude=3.0)
    out = call(ctx, x.shape, x)
    assert_equal(ctx, out, torch.where(x > 0, x, torch.zeros_like(x)), "relu(x) vs exactly max(x, 0)")


# --- properties shared by the activations f(x) = x g(x) ------------------------------------------------


@invariant(
    row("gelu.odd_part.identity", examples=_gelu_examples(), source=HENDRYCKS,
        statement="gelu(x) - gelu(-x) = x, in both forms (Phi(x) + Phi(-x) = 1, tanh odd)."),
    row("silu.odd_part.identity", examples=elementwise_examples(), source=ELFWING,
        statement="silu(x) - silu(-x) = x (sigma(x) + sigma(-x) = 1)."),
    row("relu.odd_part.identity", examples=elementwise_examples(), source=NAIR,
        statement="relu(x) - relu(-x) = x."))
def check_odd_part(ctx: Context, p: dict) -> None:
    """f(x) - f(-x) = x for f(x) = x g(x) with g(x) + g(-x) = 1: GELU (Phi, and its tanh form), SiLU (sigma), ReLU
    (step)."""
    x = _input(ctx, p, magnitude=3.0)
    kwargs = _kwargs(p)
    diff = to64(call(ctx, x.shape, x, **kwargs)) - to64(call(ctx, x.shape, -x, **kwargs))
    assert_agree(ctx, diff, to64(x), "f(x) - f(-x) vs x")


@st.composite
def _monotone_examples(draw) -> dict:
    n = draw(scaled(st.sampled_from([16, 64, 257]), st.sampled_from([1025, 4097])))
    return {"n": n, "hi": draw(st.sampled_from([1.0, 4.0, 10.0, 30.0]))}


@st.composite
def _gelu_monotone_examples(draw) -> dict:
    p = draw(_monotone_examples())
    p["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    return p


@invariant(
    row("gelu.monotone.nonnegative", examples=_gelu_monotone_examples(), source=HENDRYCKS,
        statement="gelu is non-decreasing on x >= 0, in both forms."),
    row("silu.monotone.nonnegative", examples=_monotone_examples(), source=ELFWING,
        statement="silu is non-decreasing on x >= 0."),
    row("relu.monotone.nonnegative", examples=_monotone_examples(), source=NAIR,
        statement="relu is non-decreasing on x >= 0."))
def check_monotone(ctx: Context, p: dict) -> None:
    """On a sorted grid of x >= 0 the outputs never decrease (beyond 2 eps: a faithfully rounded monotone function)."""
    x = torch.linspace(0.0, p["hi"], p["n"], dtype=torch.float64).to(ctx.dtype).to(ctx.device)
    y = to64(call(ctx, x.shape, x, **_kwargs(p)))
    drop = (y[:-1] - y[1:]) - 2 * machine_eps(ctx.dtype) * y[:-1].abs()
    if (drop > 0).any():
        i = int(drop.argmax())
        x64 = to64(x)
        xs, ys = show(float(x64[i]), float(x64[i + 1])), show(float(y[i]), float(y[i + 1]))
        ctx.fail(f"not monotone on x >= 0: f({xs[0]}) = {ys[0]} > f({xs[1]}) = {ys[1]}", index=[i])


# --- dropout --------------------------------------------------------------------------------------------

#: kept-fraction test: |z| < DROPOUT_Z over DROPOUT_DRAWS calls; two-sided normal tail 2 (1 - Phi(5)) = 5.7e-7 per
#: example.
DROPOUT_Z = 5.0
DROPOUT_DRAWS = 4

DROPOUT = Component(
    name="dropout",
    signature="dropout(input: Float[*shape], p: float = 0.5, training: bool = True) -> Float[*shape]  "
    "(torch.nn.functional.dropout)",
    summary="Inverted dropout: zero each element with probability p, scale the kept ones by 1/(1-p); identity in eval "
    "mode.",
    reference=ref.dropout,
    bound="elementwise",
    features=dict(BACKWARD),
)


def seed_target_rng(ctx: Context, seed: int) -> None:
    """Seed the generator the target draws from (CPU, or the current CUDA device): cheaper than torch.manual_seed,
    which also records a stack trace for each lazily initialized accelerator backend."""
    torch.default_generator.manual_seed(seed)
    if ctx.device.type == "cuda":
        torch.cuda.manual_seed(seed)


@st.composite
def _dropout_examples(draw) -> dict:
    return {
        "shape": [draw(sizes(1, 4)), draw(st.sampled_from([64, 96, 128]))],
        "p": draw(st.sampled_from([0.1, 0.3, 0.5, 0.8])),
        "seed": draw(seeds()),
        "layout": draw(layouts()),
    }


def _nonzero_input(ctx: Context, p: dict) -> torch.Tensor:
    """Values with |x| >= 0.25, so a kept element is never mistaken for a dropped one."""
    x = materialize(p["shape"], p["seed"], torch.float64, "cpu")
    x = torch.where(x >= 0, x + 0.25, x - 0.25)
    return relayout(x.to(ctx.dtype).to(ctx.device), p["layout"])


@invariant("dropout.identity.p_zero", examples=_dropout_examples(),
           statement="p = 0 returns the input unchanged, bit for bit, in training mode.",
           source=SRIVASTAVA)
def check_p_zero(ctx: Context, p: dict) -> None:
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    assert_equal(ctx, call(ctx, x.shape, x, 0.0, True), x, "dropout(x, p=0, training=True) vs x")


@invariant("dropout.identity.eval", examples=_dropout_examples(),
           statement="training=False returns the input unchanged, bit for bit, for any p (1 included).",
           source=SRIVASTAVA)
def check_eval(ctx: Context, p: dict) -> None:
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    for prob in (p["p"], 1.0):
        assert_equal(ctx, call(ctx, x.shape, x, prob, False), x, f"dropout(x, p={prob:g}, training=False) vs x")


@invariant("dropout.training.p_one_is_zero", examples=_dropout_examples(),
           statement="p = 1 in training mode returns all zeros (not NaN from 0 / 0).",
           source="torch.nn.functional.dropout (p = 1 zeroes everything)")
def check_p_one(ctx: Context, p: dict) -> None:
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    out = call(ctx, x.shape, x, 1.0, True)
    assert_equal(ctx, out, torch.zeros_like(x), "dropout(x, p=1, training=True) vs all zeros")


@invariant("dropout.training.kept_scaled", examples=_dropout_examples(),
           statement="In training mode every output is 0 or x / (1 - p) (inverted dropout keeps the expectation).",
           source=SRIVASTAVA)
def check_kept_scaled(ctx: Context, p: dict) -> None:
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    out, x64 = to64(call(ctx, x.shape, x, p["p"], True)), to64(x)
    scaled = x64 / (1 - p["p"])
    kept = out != 0  # a 0 is a dropped element (|x| >= 0.25 is never 0); every other output is x / (1 - p)
    expected = torch.where(kept, scaled, torch.zeros_like(scaled))
    allowed = torch.where(kept, PROPERTY_ULPS * machine_eps(ctx.dtype) * scaled.abs(), torch.inf)
    assert_each_within(ctx, out, expected, allowed, "kept elements vs x / (1 - p)", x=x)


@invariant("dropout.training.kept_fraction", kind="statistical", examples=_dropout_examples(),
           statement=f"The kept fraction is 1 - p: binomial z-test over {DROPOUT_DRAWS} calls of 64-512 elements, "
           "|z| < 5, false-alarm rate 5.7e-7 per example.",
           source=SRIVASTAVA)
def check_kept_fraction(ctx: Context, p: dict) -> None:
    """Binomial z-test on DROPOUT_DRAWS calls' kept counts: false-alarm rate 5.7e-7 per example (|z| < 5)."""
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    kept = sum(int((call(ctx, x.shape, x, p["p"], True) != 0).sum()) for _ in range(DROPOUT_DRAWS))
    n, q = x.numel() * DROPOUT_DRAWS, 1 - p["p"]
    z = (kept - n * q) / math.sqrt(n * q * (1 - q))
    if abs(z) > DROPOUT_Z:
        got, want = show(kept / n, q)
        ctx.fail(f"kept fraction {got} over {n} elements is not 1 - p = {want} (z = {z:.3g}; |z| < "
                 f"{DROPOUT_Z:g} has a false-alarm rate of 5.7e-7)", max_abs=abs(kept / n - q))


@invariant("dropout.training.fresh_masks", kind="statistical", examples=_dropout_examples(),
           statement="Each call draws a new mask: two calls drop the same set with probability at most 3e-6 (the "
           "false-alarm rate).",
           source=SRIVASTAVA)
def check_fresh_masks(ctx: Context, p: dict) -> None:
    """Two calls keep the same set with probability (p^2 + (1 - p)^2)^n <= 0.82^64 = 3e-6 for n >= 64 (p in
    [0.1, 0.8])."""
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    a, b = (call(ctx, x.shape, x, p["p"], True) != 0 for _ in range(2))
    if torch.equal(a, b):
        ctx.fail(f"two training-mode calls dropped exactly the same {int((~a).sum())} of {x.numel()} elements: the "
                 f"mask is not redrawn (chance for independent masks: "
                 f"{(p['p'] ** 2 + (1 - p['p']) ** 2) ** x.numel():.1e})")


# --- backward -------------------------------------------------------------------------------------------

GRAD_SOURCE = {
    "gelu": "torch tools/autograd/derivatives.yaml, gelu: gelu_backward(grad, self, approximate); d/dx x Phi(x) = "
            f"Phi(x) + x phi(x) ({HENDRYCKS}), and the tanh form's derivative",
    "silu": "torch derivatives.yaml, silu: silu_backward; d/dx x sigma(x) = sigma(x) (1 + x (1 - sigma(x)))",
    "swish": "d/dx x sigma(beta x) = sigma(beta x) (1 + beta x (1 - sigma(beta x))) (Ramachandran et al. 2017)",
    "relu": "torch derivatives.yaml, relu: threshold_backward(grad, result, 0): g where the output > 0, else 0 "
            "(at x = 0 the gradient is 0, torch's convention)",
    "dropout": "torch derivatives.yaml, native_dropout: native_dropout_backward(grad, mask, 1 / (1 - p)): g mask / "
               "(1 - p), the forward's mask",
}
WHAT = {"gelu": "gelu'(x) g, for the erf form and the tanh approximation",
        "silu": "silu'(x) g",
        "swish": "swish'(x; beta) g",
        "relu": "g where x > 0 and 0 elsewhere (0 at x = 0, torch's convention)",
        "dropout": "g mask / (1 - p) with the forward's own mask"}
EXAMPLES = {"gelu": _gelu_examples(), "silu": elementwise_examples(), "swish": _swish_examples(),
            "relu": elementwise_examples(), "dropout": _dropout_examples()}


def _away_from_kinks(p: dict) -> dict:
    """ReLU's central differences straddle its kink where |x| < step (the 'ties' pattern puts exact zeros there):
    such inputs are moved away from 0 (_backward_call); the derivative at 0 is a convention, relu.backward.exact's."""
    return {**p, "kink_free": True}


class _Reseeded:
    """The target with its random generators reseeded before every call: a dropout draws the same mask on every call
    of one example (in the worker through `reset`, in-process directly), so forward and backward calls compare."""

    def __init__(self, ctx: Context, seed: int):
        self.target, self.ctx, self.seed = ctx.target, ctx, seed

    def _reseed(self) -> None:
        seed_target_rng(self.ctx, self.seed)
        reset = getattr(self.target, "reset", None)
        if reset is not None:
            reset(self.seed)

    def __call__(self, *args, **kwargs):
        self._reseed()
        return self.target(*args, **kwargs)

    def vjp(self, *args, **kwargs) -> dict:
        self._reseed()
        return self.target.vjp(*args, **kwargs)


def _backward_call(ctx: Context, p: dict, component: str) -> tuple[Context, tuple, dict, object]:
    """The context (dropout: a reseeded target), the call's arguments and the reference; the input is the only
    differentiable argument (approximate, beta, p, training are Python values)."""
    if component == "dropout":
        return (dataclasses.replace(ctx, target=_Reseeded(ctx, p["seed"])), (_nonzero_input(ctx, p), p["p"], True), {},
                ref.dropout)
    x = _input(ctx, p)
    if p.get("kink_free"):  # the central difference's step h |d| (h = 1e-6 max|x|, |d| < 10) never straddles 0
        near = 1e-5 * max(1.0, float(x.abs().max())) if x.numel() else 1.0
        x = torch.where(x.abs() < near, torch.full_like(x, max(0.25, 2 * near)), x)
    return ctx, (x,), _kwargs(p), getattr(ref, component)


def dropout_backward_matches(ctx: Context, args: tuple, seed: int) -> None:
    """The gradient is g mask / (1 - p) with the mask the same call's forward drew (read off its output: |x| >= 0.25,
    so a kept element is never 0): a backward that draws a fresh mask, or drops its scale, shows."""
    x, prob = args[0], args[1]
    cotangents = cotangents_for(x, seed, ctx.dtype, ctx.device)
    result = ctx.target.vjp(args, {}, [0], cotangents)
    if "problem" in result:
        ctx.fail(f"backward: {result['problem']}")
    grad = result["grads"][0]
    if grad is None:
        ctx.fail("gradient of input: the input got no gradient although it requires grad and the output depends on it")
    expect_tensor(grad, tuple(x.shape), ctx.dtype, ctx.device, what="gradient of input")
    kept = to64(result["output"]) != 0
    expected = torch.where(kept, to64(cotangents[0]) / (1 - prob), torch.zeros_like(to64(cotangents[0])))
    allowed = PROPERTY_ULPS * machine_eps(ctx.dtype) * expected.abs()  # dropped elements: exactly 0
    assert_each_within(ctx, grad, expected, allowed, "gradient vs g mask / (1 - p), the mask of the same call's "
                       "forward", x=x)


def _backward(check, ctx: Context, p: dict, component: str) -> None:
    ctx, args, kwargs, reference = _backward_call(ctx, p, component)
    check(ctx, reference, args, kwargs, wrt=[0], seed=p["seed"], names=["input"])


def _rows(ids: tuple[str, ...], **fields) -> list:
    """One row per component, from its literal id (the component is the id's first part)."""
    return [row(i, component=c, examples=EXAMPLES[c], source=GRAD_SOURCE[c], **fields)
            for i, c in ((i, i.split(".", 1)[0]) for i in ids)]


@invariant(
    row("gelu.backward.matches_reference", component="gelu", examples=EXAMPLES["gelu"], source=GRAD_SOURCE["gelu"],
        statement=f"The vector-Jacobian product for the input, {WHAT['gelu']}, matches the float64 reference's within "
        "the tolerance policy."),
    row("silu.backward.matches_reference", component="silu", examples=EXAMPLES["silu"], source=GRAD_SOURCE["silu"],
        statement=f"The vector-Jacobian product for the input, {WHAT['silu']}, matches the float64 reference's within "
        "the tolerance policy."),
    row("swish.backward.matches_reference", component="swish", examples=EXAMPLES["swish"],
        source=GRAD_SOURCE["swish"],
        statement=f"The vector-Jacobian product for the input, {WHAT['swish']}, matches the float64 reference's "
        "within the tolerance policy."),
    row("relu.backward.matches_reference", component="relu", examples=EXAMPLES["relu"], source=GRAD_SOURCE["relu"],
        statement=f"The vector-Jacobian product for the input, {WHAT['relu']}, matches the float64 reference's within "
        "the tolerance policy."),
    row("dropout.backward.matches_reference", component="dropout", examples=EXAMPLES["dropout"],
        source=GRAD_SOURCE["dropout"],
        statement=f"The vector-Jacobian product for the input is {WHAT['dropout']} (read off the same call's "
        "output), within 16 ulps; exactly 0 where dropped."),
    kind="differential", requires={"backward"}, budget=0.5)
def check_backward_matches(ctx: Context, p: dict, component: str) -> None:
    if component == "dropout":
        ctx, args, _, _ = _backward_call(ctx, p, component)
        dropout_backward_matches(ctx, args, p["seed"])
        return
    _backward(backward_matches, ctx, p, component)


@invariant(
    *_rows(("gelu.backward.complete",
            "silu.backward.complete",
            "swish.backward.complete",
            "relu.backward.complete",
            "dropout.backward.complete")),
    statement="An input that requires grad gets a gradient of its shape, dtype and device, and requiring grad does "
    "not change the forward output (dropout: under the same seed, the same mask).",
    requires={"backward"}, budget=0.5)
def check_backward_complete(ctx: Context, p: dict, component: str) -> None:
    _backward(backward_complete, ctx, p, component)


@invariant(
    *_rows(("gelu.backward.repeatable",
            "silu.backward.repeatable",
            "swish.backward.repeatable",
            "relu.backward.repeatable",
            "dropout.backward.repeatable")),
    statement="Two pull-backs through one graph give the same gradient (dropout: the mask saved by the forward), and "
    "two backward calls accumulate their sum into .grad.",
    requires={"backward"}, budget=0.5)
def check_backward_repeatable(ctx: Context, p: dict, component: str) -> None:
    _backward(backward_repeatable, ctx, p, component)


@invariant(
    *[row(i, component=c, source=f"{GRAD_SOURCE[c]}; torch.autograd.gradcheck",
          examples=EXAMPLES[c].map(_away_from_kinks) if c == "relu" else EXAMPLES[c])
      for i, c in ((i, i.split(".", 1)[0]) for i in ("gelu.backward.finite_differences",
                                                     "silu.backward.finite_differences",
                                                     "swish.backward.finite_differences",
                                                     "relu.backward.finite_differences",
                                                     "dropout.backward.finite_differences"))],
    statement="In float64 the gradient's directional derivative along a random direction agrees with central "
    "differences of the target's own forward (ReLU away from its kink; dropout under one seed, so one mask).",
    requires={"backward"}, dtypes=(torch.float64,), budget=0.5)
def check_backward_finite_differences(ctx: Context, p: dict, component: str) -> None:
    _backward(backward_finite_differences, ctx, p, component)


@invariant("relu.backward.exact", examples=elementwise_examples(), requires={"backward"}, budget=0.5,
           statement="The gradient is exactly g where x > 0 and exactly 0 where x <= 0: at x = 0 torch's convention "
           "(threshold_backward) gives 0 ('ties' inputs hold exact zeros).",
           source=GRAD_SOURCE["relu"])
def check_relu_backward_exact(ctx: Context, p: dict) -> None:
    x = _input(ctx, p, magnitude=3.0)
    g = cotangents_for(x, p["seed"], ctx.dtype, ctx.device)
    result = ctx.target.vjp((x,), {}, [0], g)
    if "problem" in result:
        ctx.fail(f"backward: {result['problem']}")
    grad = result["grads"][0]
    if grad is None:
        ctx.fail("gradient of input: the input got no gradient although it requires grad and the output depends on it")
    assert_equal(ctx, expect_tensor(grad, tuple(x.shape), ctx.dtype, ctx.device, what="gradient of input"),
                 torch.where(x > 0, g[0], torch.zeros_like(g[0])), "relu's gradient vs g where x > 0, 0 elsewhere")
