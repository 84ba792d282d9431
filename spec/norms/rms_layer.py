"""Normalization: RMSNorm and LayerNorm (BatchNorm, residual orders and QK-norm are in variants.py)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from hypothesis import strategies as st

from ...reference import norms as ref
from ..checks import (PROPERTY_ULPS, assert_agree, assert_each_within, assert_matches, call, differential,
                      reference_pair, to64)
from ..core import Component, Context, Option, Violation, invariant
from ..gradients import BACKWARD
from ..strategies import TILE_EDGES, layouts, materialize, patterns, scaled, seeds, sizes
from ..tolerance import eps as machine_eps
from .closeness import layer_norm_condition
from .conventions import convention_hint
from .sources import BA, TORCH_LN, TORCH_RMS, ZHANG

# --- RMSNorm --------------------------------------------------------------------------------------------

EPS_DEFAULT = Option(
    name="eps_default",
    default="torch",
    choices=("torch", "1e-6", "1e-5"),
    doc="eps used when the caller passes none: torch (F.rms_norm, nn.RMSNorm: finfo of the computation type, float32 "
    "for half inputs), 1e-6 (Hugging Face LlamaRMSNorm, Qwen3RMSNorm, T5LayerNorm), 1e-5 (Meta Llama params.json "
    "norm_eps)",
)
#: known eps defaults, by option value: a function of the input dtype, and the libraries that use it.
KNOWN_EPS = {
    "torch": (ref.default_rms_eps, "torch F.rms_norm / nn.RMSNorm: torch.finfo(computation dtype).eps"),
    "1e-6": (lambda dtype: 1e-6, "Hugging Face LlamaRMSNorm / Qwen3RMSNorm / T5LayerNorm default"),
    "1e-5": (lambda dtype: 1e-5, "Meta Llama norm_eps, Llama 2 rms_norm_eps"),
}

WEIGHT_OFFSET = Option(
    name="weight_offset",
    default="0",
    choices=("0", "1"),
    doc="what the weight scales by: 0, the weight itself (torch F.rms_norm, nn.RMSNorm, Llama); 1, Gemma's "
    "convention, output = x / sqrt(mean(x^2) + eps) * (1 + weight) in float32 (transformers GemmaRMSNorm, "
    "gemma_pytorch RMSNorm add_unit_offset; its weight is stored zero-centred). weight=None scales by 1 in both",
)

RMS_NORM = Component(
    name="rms_norm",
    signature="rms_norm(input: Float[*batch, *norm], normalized_shape: list[int], weight: Float[*norm] | None = None, "
    "eps: float | None = None) -> Float[*batch, *norm]  (torch.nn.functional.rms_norm)",
    summary="x / sqrt(mean(x^2) + eps) * weight over the trailing normalized dims; eps None is a convention (option "
    "eps_default), and so is Gemma's (1 + weight) scaling (option weight_offset).",
    reference=ref.rms_norm,
    options=(EPS_DEFAULT, WEIGHT_OFFSET),
    # each output element is x_i * r * w_i: a few eps of itself in any honest kernel, so each is checked on its own.
    # LayerNorm's (x_i - mean) * r * w_i + b_i carries rounding at the scale |x_i| r (torch's x * scale + shift
    # form): relative to a small element that is many eps, so layer_norm keeps the norm-wise bound (docs/norms.md).
    bound="elementwise",
    features=dict(BACKWARD),
)


def default_eps(ctx: Context) -> float:
    return KNOWN_EPS[ctx.options.get("eps_default", "torch")][0](ctx.dtype)


def weight_offset(ctx: Context) -> float:
    """1.0 under Gemma's convention (output = x_hat * (1 + weight)), else 0.0."""
    return float(ctx.options.get("weight_offset", "0"))


def unit_weight(ctx: Context, shape: list[int]) -> torch.Tensor:
    """The weight that scales by 1 under the chosen convention: ones, or zeros under weight_offset=1."""
    return torch.full(shape, 1.0 - weight_offset(ctx), dtype=ctx.dtype, device=ctx.device)


def hinted(ctx: Context, out, x: torch.Tensor, shape: list[int], weight, eps: float | None,
           check: Callable[[], None]) -> None:
    """Run `check` (assertions on `out`, the target's rms_norm(x, shape, weight, eps); eps None: omitted); a violation
    it finds is re-raised with the known convention the output matches, or the nearest one and how far it is."""
    try:
        check()
    except Violation as violation:
        if violation.cause != "violation":
            raise
        ctx.fail(violation.message + convention_hint(ctx, out, x, shape, weight, eps, KNOWN_EPS), **violation.details)


#: hidden sizes at the edges of a norm kernel's column blocks (one program per row, blocks of 256..2048 columns):
#: exact within one block, a kernel that drops the last partial block or does not combine blocks fails past one.
NORM_EDGES = (255, 256, 257, 1023, 1024, 1025, 2047, 2048, 2049)
#: real models' hidden sizes: Llama-2-7B / Llama-3-8B, Llama-2-13B, Llama-2-70B / Llama-3-70B.
HIDDEN_SIZES = (4096, 5120, 8192)
#: many rows (tokens) of a moderate hidden size: row-blocked kernels (several rows per program) cross tiles in rows.
MANY_ROWS = (127, 128, 129, 1023, 1024, 1025)


def norm_shapes(max_norm_rank: int = 2, max_batch_rank: int = 2) -> st.SearchStrategy[tuple[list[int], list[int]]]:
    """(batch, norm) shapes. small: up to `max_norm_rank` normalized dims of 1..9 and up to two batch dims of 1..4;
    kernel: one wide hidden dim (tile edges, real sizes) over 1..4 rows, or many rows (tile edges) of a moderate
    hidden size (32-wide edges); production: 2048 or 4096 rows of a real hidden size (4096 x 8192)."""
    small = st.tuples(st.lists(sizes(1, 4), min_size=0, max_size=max_batch_rank),
                      st.lists(sizes(1, 9), min_size=1, max_size=max_norm_rank))
    wide = st.tuples(st.lists(sizes(1, 4), min_size=0, max_size=1),
                     st.sampled_from(NORM_EDGES + HIDDEN_SIZES).map(lambda n: [n]))
    many = st.tuples(st.sampled_from(MANY_ROWS).map(lambda r: [r]),
                     st.sampled_from(TILE_EDGES[:9]).map(lambda n: [n]))
    production = st.tuples(st.sampled_from([2048, 4096]).map(lambda r: [r]),
                           st.sampled_from(HIDDEN_SIZES).map(lambda n: [n]))
    # wide rows twice as often as many rows: the hidden dim is where a norm kernel's blocks and reductions are
    return scaled(small, st.one_of(wide, wide, many), production).map(lambda s: (list(s[0]), list(s[1])))


@st.composite
def norm_examples(draw, eps=(None, 1e-6, 1e-5, 1e-2), max_norm_rank: int = 2, bias: bool = False,
                  varied: bool = False) -> dict:
    """x of shape batch + norm (normalized over the trailing `norm` dims, see `norm_shapes`), optional affine
    parameters.

    `varied`: at least two normalized elements and no grid values, so no row is constant. A constant row has
    LayerNorm output exactly 0, where kernels that compute x * rstd - mean * rstd (torch's half-precision CPU
    kernel) leave ~eps32 |x| / sqrt(eps) of cancellation: tiny against the normalized scale 1, but not
    against a reference scale of 0."""
    batch, norm = draw(norm_shapes(max_norm_rank))
    if varied and math.prod(norm) < 2:
        norm[-1] += 1
    return {
        "batch": batch,
        "norm": norm,
        "weight": draw(st.booleans()),
        "bias": draw(st.booleans()) if bias else False,
        "eps": draw(st.sampled_from(eps)),
        "seed": draw(seeds()),
        "pattern": draw(st.sampled_from(["normal", "large"]) if varied else patterns()),
        "layout": draw(layouts()),
    }


def _x(ctx: Context, p: dict, magnitude: float = 1.0) -> torch.Tensor:
    shape = p["batch"] + p["norm"]
    return materialize(shape, p["seed"], ctx.dtype, ctx.device, p["pattern"], magnitude=magnitude, layout=p["layout"])


def _affine(ctx: Context, p: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    def mk(salt: int, offset: float) -> torch.Tensor:
        values = materialize(p["norm"], p["seed"], torch.float64, "cpu", salt=salt) * 0.5 + offset
        return values.to(ctx.dtype).to(ctx.device)

    return (mk(1, 1.0) if p["weight"] else None), (mk(2, 0.0) if p["bias"] else None)


def _rms_reference(ctx: Context):
    """The reference with eps=None resolved to the chosen convention's default for the target's dtype."""

    def reference(input, normalized_shape, weight=None, eps=None):
        return ref.rms_norm(input, normalized_shape, weight, default_eps(ctx) if eps is None else eps,
                            weight_offset=weight_offset(ctx))

    return reference


def _eps_kwargs(eps: float | None) -> dict:
    return {} if eps is None else {"eps": eps}


def _property_allowance(ctx: Context, expected64: torch.Tensor) -> torch.Tensor:
    """PROPERTY_ULPS eps of a normalized output's natural scale: 1, or its magnitude where larger."""
    return PROPERTY_ULPS * machine_eps(ctx.dtype) * expected64.abs().clamp_min(1.0)


def _check_rms_against_reference(ctx: Context, p: dict, magnitude: float = 1.0) -> None:
    x = _x(ctx, p, magnitude)
    w, _ = _affine(ctx, p)
    ref64, lowp = reference_pair(_rms_reference(ctx), x, p["norm"], w, **_eps_kwargs(p["eps"]))
    out = ctx.target(x, p["norm"], w, **_eps_kwargs(p["eps"]))
    hinted(ctx, out, x, p["norm"], w, p["eps"], lambda: assert_matches(ctx, out, ref64, lowp))


@invariant("rms_norm.reference.matches", kind="differential", examples=norm_examples(),
           statement="Output equals the float64 reference, with and without weight, for explicit and default eps "
           "(weight scaling as the option weight_offset says).",
           source=f"{ZHANG}; {TORCH_RMS}; transformers GemmaRMSNorm (weight_offset=1)")
def check_rms_reference(ctx: Context, p: dict) -> None:
    _check_rms_against_reference(ctx, p)


@st.composite
def _unit_rms_examples(draw) -> dict:
    p = draw(norm_examples(eps=(1e-6, 1e-4, 1e-2)))
    p["ratio"] = draw(st.sampled_from([0.25, 1.0, 4.0, 100.0]))  # mean square / eps
    p["pattern"] = "normal"
    return p


@invariant("rms_norm.scale.unit_rms", examples=_unit_rms_examples(),
           statement="With unit weight (weight 0 under weight_offset=1) the output's mean square is exactly ms / (ms + "
           "eps), ms the input's mean square: RMS 1 up to eps.",
           source=ZHANG)
def check_unit_rms(ctx: Context, p: dict) -> None:
    # inputs scaled so mean(x^2) ~ ratio * eps: the output's mean square is exactly ms / (ms + eps).
    x = _x(ctx, p, magnitude=math.sqrt(p["ratio"] * p["eps"]))
    w = unit_weight(ctx, p["norm"]) if p["weight"] else None
    out = call(ctx, x.shape, x, p["norm"], w, eps=p["eps"])
    dims = tuple(range(-len(p["norm"]), 0))
    ms = to64(x).pow(2).mean(dims)
    expected = ms / (ms + p["eps"])
    unit = "no weight" if w is None else f"unit scaling (weight {1 - weight_offset(ctx):g})"
    hinted(ctx, out, x, p["norm"], w, p["eps"], lambda: assert_each_within(
        ctx, to64(out).pow(2).mean(dims), expected, _property_allowance(ctx, expected),
        f"mean square of RMSNorm(x) with {unit}, eps={p['eps']:g}"))


@st.composite
def _constant_magnitude_examples(draw) -> dict:
    batch, norm = draw(norm_shapes(max_norm_rank=1, max_batch_rank=1))
    return {
        "batch": batch,
        "norm": norm,
        "eps": draw(st.sampled_from([1e-6, 1e-4, 1e-2])),
        "ratio": draw(st.sampled_from([0.25, 1.0, 4.0])),  # a^2 / eps
        "seed": draw(seeds()),
    }


@invariant("rms_norm.eps.inside_sqrt", examples=_constant_magnitude_examples(),
           statement="eps is added inside the square root: a vector with every |x_i| = a maps to sign(x_i) a / "
           "sqrt(a^2 + eps), not a / (a + eps).",
           source=f"{ZHANG}; {TORCH_RMS}; transformers LlamaRMSNorm (rsqrt(variance + eps))")
def check_eps_inside_sqrt(ctx: Context, p: dict) -> None:
    # every |x_i| = a with a^2 = ratio * eps: RMSNorm gives sign(x) a / sqrt(a^2 + eps); eps outside the root
    # (a / (a + eps)) or ignored (sign(x)) differ from it by far more than rounding.
    shape = p["batch"] + p["norm"]
    coin = torch.rand(shape, generator=torch.Generator().manual_seed(p["seed"]))
    signs = torch.where(coin < 0.5, -1.0, 1.0).double()
    x = (signs * math.sqrt(p["ratio"] * p["eps"])).to(ctx.dtype).to(ctx.device)
    a = to64(x).abs()
    out = call(ctx, shape, x, p["norm"], None, eps=p["eps"])
    expected = signs * a / (a.pow(2) + p["eps"]).sqrt()
    what = f"RMSNorm of a vector with every |x_i| = {float(a.max()):.3g}, eps={p['eps']:g}"
    hinted(ctx, out, x, p["norm"], None, p["eps"], lambda: assert_each_within(
        ctx, to64(out), expected, _property_allowance(ctx, expected), what))


@st.composite
def _scale_examples(draw) -> dict:
    p = draw(norm_examples(eps=(0.0,), varied=True))  # no all-zero row: with eps = 0 its output is 0/0
    p["scale"] = draw(st.sampled_from([0.0625, 0.5, 2.0, 3.0, 64.0, 0.1]))
    return p


@invariant("rms_norm.scale.invariance", examples=_scale_examples(),
           statement="With eps = 0, RMSNorm(c x) = RMSNorm(x) for every c > 0.",
           source=f"{ZHANG}, sec. 3 (re-scaling invariance)")
def check_scale_invariance(ctx: Context, p: dict) -> None:
    x = _x(ctx, p)
    w, _ = _affine(ctx, p)
    a = call(ctx, x.shape, x, p["norm"], w, eps=0.0)
    b = call(ctx, x.shape, x * p["scale"], p["norm"], w, eps=0.0)
    hinted(ctx, a, x, p["norm"], w, 0.0,
           lambda: assert_agree(ctx, a, b, f"RMSNorm(x) vs RMSNorm({p['scale']:g} x) with eps=0"))


def zero_mean(p: dict, dtype: torch.dtype) -> torch.Tensor:
    """Rows of +-v pairs (and a 0 when the row length is odd), shuffled: their mean is exactly 0 in every dtype,
    since rounding is symmetric (x - mean(x) is not: its mean is a rounding residual, 1e-15 relative in float64)."""
    n = math.prod(p["norm"])
    half = materialize(p["batch"] + [n // 2], p["seed"], torch.float64, "cpu", p["pattern"]).to(dtype)
    rows = torch.cat([half, -half, torch.zeros(p["batch"] + [n % 2], dtype=dtype)], dim=-1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(p["seed"]))
    return rows[..., order].reshape(p["batch"] + p["norm"])


@invariant("rms_norm.equals_layer_norm_on_zero_mean", kind="differential", examples=norm_examples(),
           statement="On inputs with zero mean over the normalized dims, RMSNorm equals LayerNorm without bias (same "
           "weight and eps; LayerNorm's weight is 1 + weight under weight_offset=1).",
           source=f"{ZHANG}, sec. 3; {BA}")
def check_equals_layer_norm_on_zero_mean(ctx: Context, p: dict) -> None:
    x = zero_mean(p, ctx.dtype).to(ctx.device)
    w, _ = _affine(ctx, p)
    eps = 1e-5 if p["eps"] is None else p["eps"]
    offset = weight_offset(ctx)

    def layer_norm_without_bias(x, shape, w):
        scale = None if w is None else w.to(ref.opmath_dtype(w.dtype)) + offset  # the sum in float32, as Gemma
        return ref.layer_norm(x, shape, scale, None, eps)

    ref64, lowp = reference_pair(layer_norm_without_bias, x, p["norm"], w)
    out = ctx.target(x, p["norm"], w, eps=eps)
    # norm-wise, as layer_norm: the reference's computed mean is a rounding residual (2.5e-17 in float64), not 0, so
    # a target's exact 0 at a zero element is "off" by more than the reference's own error there
    hinted(ctx, out, x, p["norm"], w, eps, lambda: assert_matches(
        ctx, out, ref64, lowp, what="RMSNorm of a zero-mean input (vs LayerNorm without bias)", bound="normwise"))


@invariant("rms_norm.eps.default", examples=norm_examples(eps=(None,)),
           statement="eps omitted means the option's default (torch: finfo of the computation type); a mismatch is "
           "reported with the convention it matches.",
           source=f"{TORCH_RMS}; transformers LlamaRMSNorm(eps=1e-6); Meta llama ModelArgs.norm_eps")
def check_eps_default(ctx: Context, p: dict) -> None:
    # mean(x^2) ~ the expected eps, so a different default visibly changes the output.
    expected = default_eps(ctx)
    x = _x(ctx, {**p, "pattern": "normal"}, magnitude=math.sqrt(expected))
    default = call(ctx, x.shape, x, p["norm"])
    explicit = call(ctx, x.shape, x, p["norm"], None, eps=expected)
    option = ctx.options.get("eps_default", "torch")

    def check() -> None:
        try:
            assert_agree(ctx, default, explicit, f"rms_norm(x) with eps omitted vs eps={expected:.3g}")
        except Violation as violation:
            ctx.fail(f"{violation.message}: eps=None is not eps_default={option} ({KNOWN_EPS[option][1]})",
                     **violation.details)

    hinted(ctx, default, x, p["norm"], None, None, check)  # says which convention the target follows instead


@invariant("rms_norm.precision.large_inputs", kind="differential", examples=norm_examples(eps=(1e-6, 1e-5)),
           statement="Inputs of magnitude ~300 are normalized correctly in every dtype; in float16 their squares "
           "overflow (> 65504), so the mean square must be computed in float32.",
           source=f"{TORCH_RMS} (computation type float32 for half inputs); transformers LlamaRMSNorm "
           "(hidden_states.to(torch.float32))")
def check_rms_large(ctx: Context, p: dict) -> None:
    # |x| ~ 300: in float16 every square exceeds the largest value 65504 unless computed in float32.
    _check_rms_against_reference(ctx, {**p, "pattern": "normal"}, magnitude=300.0)


# --- LayerNorm ------------------------------------------------------------------------------------------

LAYER_NORM = Component(
    name="layer_norm",
    signature="layer_norm(input: Float[*batch, *norm], normalized_shape: list[int], weight: Float[*norm] | None = "
    "None, bias: Float[*norm] | None = None, eps: float = 1e-5) -> Float[*batch, *norm]  "
    "(torch.nn.functional.layer_norm)",
    summary="(x - mean) / sqrt(biased variance + eps) * weight + bias over the trailing normalized dims.",
    reference=ref.layer_norm,
    features=dict(BACKWARD),
)


def _ln_args(ctx: Context, p: dict, x: torch.Tensor) -> tuple[tuple, dict]:
    w, b = _affine(ctx, p)
    return (x, p["norm"], w, b), _eps_kwargs(p["eps"])


@invariant("layer_norm.reference.matches", kind="differential", examples=norm_examples(bias=True, varied=True),
           statement="Output equals the float64 reference, with and without weight and bias, default eps included.",
           source=f"{BA}; {TORCH_LN}")
def check_ln_reference(ctx: Context, p: dict) -> None:
    args, kwargs = _ln_args(ctx, p, _x(ctx, p))
    differential(ctx, ref.layer_norm, *args, **kwargs)


@invariant("layer_norm.statistics.zero_mean_unit_variance", examples=norm_examples(),
           statement="With unit weight and zero bias the output has mean 0 and biased variance var / (var + eps) (1 "
           "up to eps).",
           source=f"{BA}; {TORCH_LN} (biased variance)")
def check_ln_statistics(ctx: Context, p: dict) -> None:
    x = _x(ctx, {**p, "pattern": "normal"})
    eps = 1e-5 if p["eps"] is None else p["eps"]
    ones = torch.ones(p["norm"], dtype=ctx.dtype, device=ctx.device) if p["weight"] else None
    zeros = torch.zeros(p["norm"], dtype=ctx.dtype, device=ctx.device) if p["weight"] else None
    out = to64(call(ctx, x.shape, x, p["norm"], ones, zeros, eps=eps))
    dims = tuple(range(-len(p["norm"]), 0))
    x64 = to64(x)
    var = (x64 - x64.mean(dims, keepdim=True)).pow(2).mean(dims)
    n = math.prod(p["norm"])
    tol = PROPERTY_ULPS * machine_eps(ctx.dtype) * layer_norm_condition(x64, dims, eps)
    mean = out.mean(dims)
    assert_each_within(ctx, mean, 0.0, tol * math.sqrt(n), "mean of LayerNorm(x) over the normalized dims, per row")
    got = (out - mean[(...,) + (None,) * len(dims)]).pow(2).mean(dims)
    assert_each_within(ctx, got, var / (var + eps), 2 * tol,
                       f"biased variance of LayerNorm(x) with unit weight and zero bias, eps={eps:g}, per row "
                       "(expected var / (var + eps))")


@st.composite
def _shift_examples(draw) -> dict:
    p = draw(norm_examples(bias=True))
    p["pattern"] = "ties"
    p["shift"] = draw(st.integers(-16, 16))
    return p


@invariant("layer_norm.shift_invariance", examples=_shift_examples(),
           statement="LayerNorm(x + c) = LayerNorm(x) for any constant c.",
           source=f"{BA} (outputs compared at the row's conditioning max|x + c| / std)")
def check_ln_shift(ctx: Context, p: dict) -> None:
    # grid values plus an integer: x + c is exact in every dtype. Computing the mean of x + c rounds at the scale
    # |x + c|, so the two outputs may differ by a few eps of max|x + c| / sqrt(var + eps) per row.
    x = _x(ctx, p)
    args, kwargs = _ln_args(ctx, p, x)
    a = to64(call(ctx, x.shape, *args, **kwargs))
    b = to64(call(ctx, x.shape, x + p["shift"], *args[1:], **kwargs))
    dims = tuple(range(-len(p["norm"]), 0))
    x64 = to64(x)
    eps = 1e-5 if p["eps"] is None else p["eps"]
    spread = ((x64 - x64.mean(dims, keepdim=True)).pow(2).mean(dims, keepdim=True) + eps).sqrt()
    magnitude = torch.maximum(x64.abs(), (x64 + p["shift"]).abs()).amax(dims, keepdim=True)
    condition = (magnitude / spread).clamp_min(1.0)
    w = to64(args[2]).abs() if args[2] is not None else torch.ones(())
    allowed = PROPERTY_ULPS * machine_eps(ctx.dtype) * (condition * w.clamp_min(1.0) + a.abs())
    assert_each_within(ctx, b, a, allowed, f"LayerNorm(x + {p['shift']}) vs LayerNorm(x) ({PROPERTY_ULPS:g} eps at "
                       "the row's conditioning max|x + c| / std)")


@invariant("layer_norm.affine.after_normalization", examples=norm_examples(varied=True),
           statement="LayerNorm(x; w, b) = w * LayerNorm(x) + b: the affine parameters are applied after normalizing.",
           source=f"{BA}, eq. 4 (gain and bias after normalization); {TORCH_LN}")
def check_ln_affine_after(ctx: Context, p: dict) -> None:
    x = _x(ctx, p)
    w, b = _affine(ctx, {**p, "weight": True, "bias": True})
    kwargs = _eps_kwargs(p["eps"])
    plain = to64(call(ctx, x.shape, x, p["norm"], None, None, **kwargs))
    affine = call(ctx, x.shape, x, p["norm"], w, b, **kwargs)
    assert_agree(ctx, affine, plain * to64(w) + to64(b), "LayerNorm(x; w, b) vs w * LayerNorm(x) + b",
                 ulps=2 * PROPERTY_ULPS)


@st.composite
def _sequence_examples(draw) -> dict:
    """Variable-length sequences: x [N, L, D] with sample 0 of `length` real tokens, the rest padding."""
    length = draw(sizes(1, 6))
    return {
        "N": draw(sizes(1, 3)),
        "L": length + draw(st.integers(0, 3)),
        "length": length,
        "D": draw(scaled(sizes(1, 9), st.sampled_from(NORM_EDGES + HIDDEN_SIZES), st.sampled_from(HIDDEN_SIZES))),
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }


def _sequence(ctx: Context, p: dict, salt: int = 0) -> torch.Tensor:
    shape = (p["N"], p["L"], p["D"])
    return materialize(shape, p["seed"], ctx.dtype, ctx.device, p["pattern"], salt=salt, layout=p["layout"])


@invariant("layer_norm.per_sample_independence", examples=_sequence_examples(),
           statement="Each token is normalized on its own features: its output does not depend on other samples, "
           "other tokens or padding (why LayerNorm, unlike BatchNorm, suits variable-length sequences).",
           source=f"{BA}, sec. 3 and 6 (no dependence between training cases)")
def check_ln_per_sample(ctx: Context, p: dict) -> None:
    # sample 0's real tokens alone, or batched with other samples and padding: the same outputs, to PROPERTY_ULPS
    # eps of the normalized scale 1 (or of their magnitude where larger).
    x = _sequence(ctx, p)
    other = _sequence(ctx, p, salt=9) * 3 + 1
    other[0, : p["length"]] = x[0, : p["length"]]
    alone = x[:1, : p["length"]]
    shape = [p["D"]]
    a = call(ctx, x.shape, x, shape)
    b = to64(call(ctx, x.shape, other, shape))
    c = to64(call(ctx, alone.shape, alone, shape))
    real = b[0, : p["length"]]
    assert_each_within(ctx, a[0, : p["length"]], real, _property_allowance(ctx, real),
                       "sample 0's real tokens after changing the other samples and the padding")
    assert_each_within(ctx, a[:1, : p["length"]], c, _property_allowance(ctx, c),
                       "sample 0's real tokens normalized alone vs in the padded batch")
