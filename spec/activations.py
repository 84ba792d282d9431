"""Activations (GELU, SiLU, ReLU, Swish-beta) and dropout: components and invariants."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ..reference import activations as ref
from .checks import PROPERTY_ULPS, assert_agree, differential, to64
from .core import Component, Context, Invariant
from .guard import expect_tensor
from .strategies import layouts, materialize, patterns, relayout, seeds, sizes

HENDRYCKS = "Hendrycks & Gimpel 2016, Gaussian Error Linear Units, sec. 2"
TORCH_GELU = "torch.nn.functional.gelu (torch 2.13 docs)"
ELFWING = "Elfwing et al. 2017, Sigmoid-Weighted Linear Units, eq. 1; torch.nn.functional.silu"
RAMACHANDRAN = "Ramachandran et al. 2017, Searching for Activation Functions, sec. 4"
NAIR = "Nair & Hinton 2010, Rectified Linear Units; torch.nn.functional.relu"
SRIVASTAVA = "Srivastava et al. 2014, Dropout, sec. 4 and 10 (inverted scaling); torch.nn.functional.dropout (torch 2.13 docs)"


@st.composite
def elementwise_examples(draw) -> dict:
    """`magnitude` 100 on top of the 'large' pattern reaches |x| ~ 1e4: exp(x) overflows every dtype there."""
    rank = draw(st.integers(1, 3))
    return {
        "shape": [draw(sizes(1, 9)) for _ in range(rank)],
        "magnitude": draw(st.sampled_from([1.0, 1.0, 100.0])),
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }


def _input(ctx: Context, p: dict, magnitude: float | None = None, pattern: str | None = None) -> torch.Tensor:
    magnitude = p.get("magnitude", 1.0) if magnitude is None else magnitude
    return materialize(p["shape"], p["seed"], ctx.dtype, ctx.device, pattern or p["pattern"], magnitude=magnitude, layout=p["layout"])


def seed_target_rng(ctx: Context, seed: int) -> None:
    """Seed the generator the target draws from (CPU, or the current CUDA device): cheaper than torch.manual_seed,
    which also records a stack trace for each lazily initialized accelerator backend."""
    torch.default_generator.manual_seed(seed)
    if ctx.device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _call(ctx: Context, x: torch.Tensor, **kwargs) -> torch.Tensor:
    return expect_tensor(ctx.target(x, **kwargs), tuple(x.shape), ctx.dtype, ctx.device)


# --- shared properties ----------------------------------------------------------------------------------


def _kwargs(p: dict) -> dict:
    return {k: p[k] for k in ("approximate", "beta") if p.get(k) is not None}


def odd_part_check(ctx: Context, p: dict) -> None:
    """f(x) - f(-x) = x for f(x) = x g(x) with g(x) + g(-x) = 1: GELU (Phi, and its tanh form), SiLU (sigma), ReLU (step)."""
    x = _input(ctx, p, magnitude=3.0)
    kwargs = _kwargs(p)
    diff = to64(_call(ctx, x, **kwargs)) - to64(_call(ctx, -x, **kwargs))
    assert_agree(ctx, diff, to64(x), "f(x) - f(-x) vs x")


@st.composite
def _monotone_examples(draw) -> dict:
    return {"n": draw(st.sampled_from([16, 64, 257])), "hi": draw(st.sampled_from([1.0, 4.0, 10.0, 30.0]))}


def monotone_check(ctx: Context, p: dict, kwargs: dict | None = None) -> None:
    """On a sorted grid of x >= 0 the outputs never decrease (beyond 2 eps: a faithfully rounded monotone function)."""
    x = torch.linspace(0.0, p["hi"], p["n"], dtype=torch.float64).to(ctx.dtype).to(ctx.device)
    y = to64(_call(ctx, x, **(kwargs or {})))
    drop = (y[:-1] - y[1:]) - 2 * torch.finfo(ctx.dtype).eps * y[:-1].abs()
    if (drop > 0).any():
        i = int(drop.argmax())
        ctx.fail(f"not monotone on x >= 0: f({float(to64(x)[i]):.4g}) = {float(y[i]):.6g} > f({float(to64(x)[i + 1]):.4g}) = "
                 f"{float(y[i + 1]):.6g}", index=[i])


def _reference_check(reference):
    def check(ctx: Context, p: dict) -> None:
        # x and -x side by side: f(x) = x g(x) computed as x * (1 + erf(.)) / 2 or x * sigmoid(x) errs by ~eps |x| at
        # negative x (cancellation), where f is tiny; with -x present the output's scale, hence the tolerance floor,
        # is |x| too, as f(|x|) ~ |x|.
        x = _input(ctx, p)
        differential(ctx, reference, torch.cat([x, -x], dim=-1), **_kwargs(p))

    return check


# --- GELU -----------------------------------------------------------------------------------------------


@st.composite
def _gelu_examples(draw) -> dict:
    p = draw(elementwise_examples())
    p["approximate"] = draw(st.sampled_from([None, "none", "tanh"]))  # None: the default (erf)
    return p


def _check_gelu_tanh_bound(ctx: Context, p: dict) -> None:
    # inputs spread over [-9, 9] (the gap peaks at |x| = 2.7); bound plus the rounding of both outputs.
    x = _input(ctx, {**p, "pattern": "normal"}, magnitude=3.0)
    exact, approx = to64(_call(ctx, x)), to64(_call(ctx, x, approximate="tanh"))
    gap = (approx - exact).abs()
    allowed = ref.GELU_TANH_MAX_ABS_DIFFERENCE + PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * exact.abs().clamp_min(1.0)
    if (gap > allowed).any():
        i = int((gap - allowed).reshape(-1).argmax())
        ctx.fail(f"gelu(x, 'tanh') and gelu(x) differ by {float(gap.reshape(-1)[i]):.3g} at x = {float(to64(x).reshape(-1)[i]):.4g}; "
                 f"the tanh approximation is within {ref.GELU_TANH_MAX_ABS_DIFFERENCE:g} of the erf form everywhere", max_abs=float(gap.max()))


@st.composite
def _gelu_monotone_examples(draw) -> dict:
    p = draw(_monotone_examples())
    p["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    return p


GELU = Component(
    name="gelu",
    family="activations",
    signature="gelu(input: Float[*shape], approximate: 'none' | 'tanh' = 'none') -> Float[*shape]  (torch.nn.functional.gelu)",
    summary="x Phi(x) = x/2 (1 + erf(x / sqrt 2)); approximate='tanh': x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).",
    reference=ref.gelu,
    invariants=(
        Invariant("gelu.reference.matches", "Output equals the float64 reference for the erf form (default) and the tanh approximation.",
                  f"{HENDRYCKS}; {TORCH_GELU}", "differential", _gelu_examples(), _reference_check(ref.gelu)),
        Invariant("gelu.tanh_approximation.bound",
                  f"|gelu(x, 'tanh') - gelu(x)| <= {ref.GELU_TANH_MAX_ABS_DIFFERENCE:g} for every x (the supremum, at |x| = 2.70), "
                  f"plus rounding.",
                  f"{HENDRYCKS} (tanh approximation); bound computed in float64 (reference/activations.py)", "property",
                  elementwise_examples(), _check_gelu_tanh_bound),
        Invariant("gelu.odd_part.identity", "gelu(x) - gelu(-x) = x, in both forms (Phi(x) + Phi(-x) = 1, tanh odd).",
                  HENDRYCKS, "property", _gelu_examples(), odd_part_check),
        Invariant("gelu.monotone.nonnegative", "gelu is non-decreasing on x >= 0, in both forms.",
                  HENDRYCKS, "property", _gelu_monotone_examples(), lambda ctx, p: monotone_check(ctx, p, {"approximate": p["approximate"]})),
    ),
)


# --- SiLU, Swish, ReLU ----------------------------------------------------------------------------------

SILU = Component(
    name="silu",
    family="activations",
    signature="silu(input: Float[*shape]) -> Float[*shape]  (torch.nn.functional.silu)",
    summary="x sigma(x) (Swish with beta = 1), finite for large |x|.",
    reference=ref.silu,
    invariants=(
        Invariant("silu.reference.matches", "SiLU(x) = x sigma(x) equals the float64 reference, large |x| included (no exp overflow).",
                  ELFWING, "differential", elementwise_examples(), _reference_check(ref.silu)),
        Invariant("silu.odd_part.identity", "silu(x) - silu(-x) = x (sigma(x) + sigma(-x) = 1).",
                  ELFWING, "property", elementwise_examples(), odd_part_check),
        Invariant("silu.monotone.nonnegative", "silu is non-decreasing on x >= 0.",
                  ELFWING, "property", _monotone_examples(), monotone_check),
    ),
)


@st.composite
def _swish_examples(draw) -> dict:
    p = draw(elementwise_examples())
    p["beta"] = draw(st.sampled_from([0.5, 1.0, 1.702, 4.0]))
    return p


@st.composite
def _swish_limit_examples(draw) -> dict:
    p = draw(elementwise_examples())
    p["beta"] = draw(st.sampled_from([10.0, 100.0, 1000.0]))
    return p


def _check_swish_limit(ctx: Context, p: dict) -> None:
    # |x sigma(beta x) - relu(x)| = |x| sigma(-beta |x|) <= 0.2785 / beta.
    x = _input(ctx, {**p, "pattern": "normal"}, magnitude=2.0)
    y = to64(_call(ctx, x, beta=p["beta"]))
    x64 = to64(x)
    gap = (y - x64.clamp_min(0)).abs()
    allowed = ref.SWISH_RELU_GAP_TIMES_BETA / p["beta"] + PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * x64.abs().clamp_min(1.0)
    if (gap > allowed).any():
        i = int((gap - allowed).reshape(-1).argmax())
        ctx.fail(f"swish(x, beta={p['beta']:g}) is {float(y.reshape(-1)[i]):.6g} at x = {float(x64.reshape(-1)[i]):.4g}, "
                 f"{float(gap.reshape(-1)[i]):.3g} from relu(x); the limit beta -> infinity allows {ref.SWISH_RELU_GAP_TIMES_BETA:g} / beta",
                 max_abs=float(gap.max()))


SWISH = Component(
    name="swish",
    family="activations",
    signature="swish(input: Float[*shape], beta: float = 1.0) -> Float[*shape]",
    summary="x sigma(beta x): SiLU at beta = 1, tends to ReLU as beta -> infinity.",
    reference=ref.swish,
    invariants=(
        Invariant("swish.reference.matches", "swish(x, beta) = x sigma(beta x) equals the float64 reference.",
                  RAMACHANDRAN, "differential", _swish_examples(), _reference_check(ref.swish)),
        Invariant("swish.limit.relu",
                  f"|swish(x, beta) - relu(x)| <= {ref.SWISH_RELU_GAP_TIMES_BETA:g} / beta: Swish tends to ReLU as beta -> infinity.",
                  f"{RAMACHANDRAN} ('as beta -> infinity, Swish becomes like ReLU')", "property", _swish_limit_examples(), _check_swish_limit),
    ),
)


def _check_relu_exact(ctx: Context, p: dict) -> None:
    x = _input(ctx, p, magnitude=3.0)
    out = _call(ctx, x)
    expected = torch.where(x > 0, x, torch.zeros_like(x))
    if not torch.equal(out, expected):
        i = int((out != expected).reshape(-1).nonzero()[0])
        ctx.fail(f"relu({float(x.reshape(-1)[i]):.6g}) = {float(out.reshape(-1)[i]):.6g}, expected exactly max(x, 0)", index=[i])


RELU = Component(
    name="relu",
    family="activations",
    signature="relu(input: Float[*shape]) -> Float[*shape]  (torch.nn.functional.relu)",
    summary="max(x, 0), exactly.",
    reference=ref.relu,
    invariants=(
        Invariant("relu.definition.exact", "relu(x) is exactly x where x > 0 and 0 elsewhere (no rounding, no leak).",
                  NAIR, "property", elementwise_examples(), _check_relu_exact),
        Invariant("relu.odd_part.identity", "relu(x) - relu(-x) = x.", NAIR, "property", elementwise_examples(), odd_part_check),
        Invariant("relu.monotone.nonnegative", "relu is non-decreasing on x >= 0.", NAIR, "property", _monotone_examples(), monotone_check),
    ),
)


# --- dropout --------------------------------------------------------------------------------------------

#: kept-fraction test: |z| < DROPOUT_Z over DROPOUT_DRAWS calls; two-sided normal tail 2 (1 - Phi(5)) = 5.7e-7 per example.
DROPOUT_Z = 5.0
DROPOUT_DRAWS = 4


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


def _dropout(ctx: Context, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return expect_tensor(ctx.target(x, p, training), tuple(x.shape), ctx.dtype, ctx.device)


def _assert_identical(ctx: Context, out: torch.Tensor, x: torch.Tensor, what: str) -> None:
    if not torch.equal(out, x):
        i = int((out != x).reshape(-1).nonzero()[0])
        ctx.fail(f"{what} changed element {i}: {float(x.reshape(-1)[i]):.6g} -> {float(out.reshape(-1)[i]):.6g}", index=[i])


def _check_p_zero(ctx: Context, p: dict) -> None:
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    _assert_identical(ctx, _dropout(ctx, x, 0.0, True), x, "dropout(x, p=0, training=True)")


def _check_eval(ctx: Context, p: dict) -> None:
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    for prob in (p["p"], 1.0):
        _assert_identical(ctx, _dropout(ctx, x, prob, False), x, f"dropout(x, p={prob:g}, training=False)")


def _check_p_one(ctx: Context, p: dict) -> None:
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    out = _dropout(ctx, x, 1.0, True)
    if not torch.equal(out, torch.zeros_like(x)):
        ctx.fail(f"dropout(x, p=1) is not all zeros: {int((out != 0).sum())} nonzero or NaN of {x.numel()}")


def _check_kept_scaled(ctx: Context, p: dict) -> None:
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    out, x64 = to64(_dropout(ctx, x, p["p"], True)), to64(x)
    scaled = x64 / (1 - p["p"])
    kept = out != 0
    bad = kept & ((out - scaled).abs() > PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * scaled.abs())
    if bad.any():
        i = int(bad.reshape(-1).nonzero()[0])
        ctx.fail(f"kept element {i} is {float(out.reshape(-1)[i]):.6g}, expected x / (1 - p) = {float(scaled.reshape(-1)[i]):.6g}", index=[i])


def _check_kept_fraction(ctx: Context, p: dict) -> None:
    """Binomial z-test on DROPOUT_DRAWS calls' kept counts: false-alarm rate 5.7e-7 per example (|z| < 5)."""
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    kept = sum(int((_dropout(ctx, x, p["p"], True) != 0).sum()) for _ in range(DROPOUT_DRAWS))
    n, q = x.numel() * DROPOUT_DRAWS, 1 - p["p"]
    z = (kept - n * q) / math.sqrt(n * q * (1 - q))
    if abs(z) > DROPOUT_Z:
        ctx.fail(f"kept fraction {kept / n:.4f} over {n} elements is not 1 - p = {q:.2f} (z = {z:.1f}; |z| < {DROPOUT_Z:g} "
                 "has a false-alarm rate of 5.7e-7)", max_abs=abs(kept / n - q))


def _check_fresh_masks(ctx: Context, p: dict) -> None:
    """Two calls keep the same set with probability (p^2 + (1 - p)^2)^n <= 0.82^64 = 3e-6 for n >= 64 (p in [0.1, 0.8])."""
    seed_target_rng(ctx, p["seed"])
    x = _nonzero_input(ctx, p)
    a, b = (_dropout(ctx, x, p["p"], True) != 0 for _ in range(2))
    if torch.equal(a, b):
        ctx.fail(f"two training-mode calls dropped exactly the same {int((~a).sum())} of {x.numel()} elements: the mask is not "
                 f"redrawn (chance for independent masks: {(p['p'] ** 2 + (1 - p['p']) ** 2) ** x.numel():.1e})")


DROPOUT = Component(
    name="dropout",
    family="activations",
    signature="dropout(input: Float[*shape], p: float = 0.5, training: bool = True) -> Float[*shape]  (torch.nn.functional.dropout)",
    summary="Inverted dropout: zero each element with probability p, scale the kept ones by 1/(1-p); identity in eval mode.",
    reference=ref.dropout,
    invariants=(
        Invariant("dropout.identity.p_zero", "p = 0 returns the input unchanged, bit for bit, in training mode.",
                  SRIVASTAVA, "property", _dropout_examples(), _check_p_zero),
        Invariant("dropout.identity.eval", "training=False returns the input unchanged, bit for bit, for any p (1 included).",
                  SRIVASTAVA, "property", _dropout_examples(), _check_eval),
        Invariant("dropout.training.p_one_is_zero", "p = 1 in training mode returns all zeros (not NaN from 0 / 0).",
                  "torch.nn.functional.dropout (p = 1 zeroes everything)", "property", _dropout_examples(), _check_p_one),
        Invariant("dropout.training.kept_scaled",
                  "In training mode every output is 0 or x / (1 - p) (inverted dropout keeps the expectation).",
                  SRIVASTAVA, "property", _dropout_examples(), _check_kept_scaled),
        Invariant("dropout.training.kept_fraction", f"The kept fraction is 1 - p: binomial z-test over {DROPOUT_DRAWS} calls of 64-512 elements, "
                  "|z| < 5, false-alarm rate 5.7e-7 per example.",
                  SRIVASTAVA, "statistical", _dropout_examples(), _check_kept_fraction),
        Invariant("dropout.training.fresh_masks",
                  "Each call draws a new mask: two calls drop the same set with probability at most 3e-6 (the false-alarm rate).",
                  SRIVASTAVA, "statistical", _dropout_examples(), _check_fresh_masks),
    ),
)

COMPONENTS = (GELU, SILU, SWISH, RELU, DROPOUT)
