"""Number formats (bit layouts, casts, int8 absmax quantization) and tensor storage semantics, checked against
torch: `torch.finfo`, bit patterns decoded by `Tensor.view(dtype)`, and strides of real tensors."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference.accounting import formats as ref
from ..checks import assert_equal, assert_within, expect_tensor, show
from ..core import FLOAT_DTYPES, Component, Context, Option, invariant
from ..strategies import materialize, seeds

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}
INT_OF_WIDTH = {32: torch.int32, 16: torch.int16, 8: torch.int8}
NAMES = tuple(TORCH_DTYPES)


def decode(name: str, pattern: int) -> float:
    """The value of a bit pattern of format `name`, decoded by torch."""
    dtype = TORCH_DTYPES[name]
    bits = torch.finfo(dtype).bits
    signed = pattern - (1 << bits) if pattern >= 1 << (bits - 1) else pattern
    return torch.tensor([signed], dtype=INT_OF_WIDTH[bits]).view(dtype).to(torch.float64).item()


# --- layouts --------------------------------------------------------------------------------------------

FLOAT_FORMAT = Component(
    name="float_format",
    signature="float_format(name: str) -> {'bits', 'exponent_bits', 'mantissa_bits', 'bias', 'max', 'smallest_normal', "
    "'smallest_subnormal', 'eps', 'has_infinity'}",
    summary="fp32, fp16, bf16, fp8 e4m3fn and e5m2 from their bit layouts: bias 2^(e-1) - 1, eps 2^-m, max, "
    "smallest normal and subnormal (fp16 max 65504; bf16 eps 2^-7; e4m3fn max 448 without inf; e5m2 max 57344).",
    reference=ref.float_format,
    dtypes=(),
)


def _layout(ctx: Context, name: str) -> dict:
    out = ctx.target(name)
    keys = ("bits", "exponent_bits", "mantissa_bits", "bias", "max", "smallest_normal", "smallest_subnormal", "eps",
            "has_infinity")
    if not isinstance(out, dict) or any(k not in out for k in keys):
        ctx.fail(f"float_format({name!r}) must return a dict with keys {keys}, got {out!r}")
    return out


@invariant("float_format.finfo", examples=st.just({}),
           statement="bits, max, eps and the smallest normal agree with torch.finfo for all five formats.",
           source="IEEE 754-2019; Micikevicius et al. 2022 (FP8 formats); torch.finfo (torch 2.13)")
def check_float_format_finfo(ctx: Context, p: dict) -> None:
    for name in NAMES:
        f, fi = _layout(ctx, name), torch.finfo(TORCH_DTYPES[name])
        for key, want in (("bits", fi.bits), ("max", fi.max), ("eps", fi.eps), ("smallest_normal", fi.smallest_normal)):
            assert_equal(ctx, f[key], want, f"{name}: {key} vs torch.finfo")
        assert_equal(ctx, 1 + f["exponent_bits"] + f["mantissa_bits"], fi.bits,
                     f"{name}: 1 + exponent_bits + mantissa_bits vs torch.finfo's bits")


@invariant("float_format.bit_patterns", examples=st.just({}),
           statement="Each constant is the value of its bit pattern: exponent field = bias is 1.0, the largest finite "
           "pattern is max (S.1111.110 for e4m3fn), pattern 1 the smallest subnormal; infinities exist except in "
           "e4m3fn.",
           source="IEEE 754-2019 sec. 3.4; Micikevicius et al. 2022, Table 1")
def check_float_format_bit_patterns(ctx: Context, p: dict) -> None:
    for name in NAMES:
        f = _layout(ctx, name)
        e, m = f["exponent_bits"], f["mantissa_bits"]
        top = (1 << e) - 1
        largest = (top << m) | ((1 << m) - 2) if not f["has_infinity"] else ((top - 1) << m) | ((1 << m) - 1)
        want = {
            "bias": (f["bias"] << m, 1.0),  # the pattern with exponent field = bias is 1.0
            "max": (largest, f["max"]),
            "smallest_subnormal": (1, f["smallest_subnormal"]),
            "smallest_normal": (1 << m, f["smallest_normal"]),
            "eps": ((f["bias"] << m) | 1, 1.0 + f["eps"]),
        }
        for key, (pattern, value) in want.items():
            assert_equal(ctx, decode(name, pattern), value,
                         f"{name}: the value of the bit pattern {pattern:#x} that {key} = {f[key]!r} implies")
        inf_decoded = decode(name, top << m)
        assert_equal(ctx, bool(f["has_infinity"]), math.isinf(inf_decoded),
                     f"{name}: has_infinity vs whether the all-ones exponent decodes to infinity ({inf_decoded!r})")


# --- casts ----------------------------------------------------------------------------------------------

FLOAT_CAST = Component(
    name="float_cast",
    signature="float_cast(x: Float32[*shape], format: str) -> Float64[*shape]  (the values after x.to(format))",
    summary="The value of each float32 element after a cast to fp32 / fp16 / bf16 / fp8: round to nearest even, "
    "gradual underflow, overflow to inf (e4m3fn: saturation to 448 in torch).",
    reference=ref.float_cast,
    dtypes=(),
    options=(
        Option("e4m3_overflow", "saturate", ("saturate", "nan"),
               "what a cast to float8_e4m3fn gives beyond 448: torch 2.13 saturates to +-448 (even for +-inf); "
               "ml_dtypes and the OCP spec's non-saturating mode give NaN"),
    ),
)


def _cast(ctx: Context, x: torch.Tensor, name: str) -> torch.Tensor:
    out = ctx.target(x, name)
    return expect_tensor(out, tuple(x.shape), torch.float64, x.device, what=f"cast to {name}", finite=False)


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Equal values with equal signs of zero, NaN equal to NaN."""
    return ((a == b) & (torch.signbit(a) == torch.signbit(b))) | (a.isnan() & b.isnan())


def _expect_values(ctx: Context, x: torch.Tensor, got: torch.Tensor, want: torch.Tensor, name: str, what: str) -> None:
    """assert_equal's message, with the input cast, and signs of zero compared too (assert_equal takes -0.0 == 0.0)."""
    bad = ~_same(got, want)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        value, expected = show(got[i].item(), want[i].item())
        ctx.fail(f"{what}: cast of {show(x[i].item())} to {name}: {value}, expected {expected} at index [{i}]",
                 index=[i], input=x[i].item(), target=got[i].item(), expected=want[i].item())


@st.composite
def _cast_examples(draw) -> dict:
    return {"format": draw(st.sampled_from(NAMES)), "seed": draw(seeds()), "n": draw(st.integers(1, 512))}


def _float32_across_range(name: str, seed: int, n: int) -> torch.Tensor:
    """Log-uniform magnitudes from below the smallest subnormal to above max, both signs, as float32."""
    f = ref.float_format(name)
    gen = torch.Generator().manual_seed(seed)
    lo = math.log2(max(f["smallest_subnormal"], 2.0**-149)) - 2
    hi = min(math.log2(f["max"]) + 2, 127.9)
    exponents = torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo) + lo
    signs = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    return (signs * torch.exp2(exponents)).to(torch.float32)


@invariant("float_cast.matches_reference", examples=_cast_examples(),
           statement="Casting float32 values from below the smallest subnormal to beyond max gives exactly the "
           "bit-layout emulation's values (signs of zero included).",
           source="IEEE 754-2019 sec. 4.3.1 (roundTiesToEven) and 7.4 (overflow); torch 2.13 casts")
def check_cast_matches_reference(ctx: Context, p: dict) -> None:
    x = _float32_across_range(p["format"], p["seed"], p["n"])
    want = ref.float_cast(x, p["format"], ctx.options["e4m3_overflow"])
    _expect_values(ctx, x, _cast(ctx, x, p["format"]), want, p["format"], "value")


def _neighbours(name: str, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n random bit patterns and the adjacent positive finite values (pattern, pattern + 1) they decode to."""
    dtype = TORCH_DTYPES[name]
    bits = torch.finfo(dtype).bits
    gen = torch.Generator().manual_seed(seed)
    largest = torch.tensor([ref.float_format(name)["max"]], dtype=torch.float32).to(dtype)
    maxp = int(largest.view(INT_OF_WIDTH[bits]).item())
    lower = torch.randint(0, maxp, (n,), generator=gen)  # maxp - 1 at most: the upper neighbour is finite
    decode_all = lambda pats: pats.to(INT_OF_WIDTH[bits]).view(dtype).to(torch.float64)  # noqa: E731
    return lower, decode_all(lower), decode_all(lower + 1)


@invariant("float_cast.ties_to_even", examples=_cast_examples(),
           statement="A value halfway between two adjacent representable values rounds to the one with an even "
           "mantissa; any other value rounds to the nearer one.",
           source="IEEE 754-2019 sec. 4.3.1")
def check_cast_ties_to_even(ctx: Context, p: dict) -> None:
    name = p["format"]
    if name == "float32":
        x = _float32_across_range(name, p["seed"], p["n"])
        _expect_values(ctx, x, _cast(ctx, x, name), x.to(torch.float64), name, "float32 to float32 is exact")
        return
    lower, lo, hi = _neighbours(name, p["seed"], p["n"])
    mid = (lo + hi) / 2  # exactly representable in float32: one bit more than the format's mantissa
    even = torch.where(lower % 2 == 0, lo, hi)  # the last bit of the pattern is the mantissa's last bit
    x = torch.cat([mid, -mid]).to(torch.float32)
    want = torch.cat([even, -even])
    _expect_values(ctx, x, _cast(ctx, x, name), want, name, "a tie rounds to the neighbour with the even mantissa")
    nudge = (hi - lo) / 8  # a quarter of the way from the midpoint: nearest neighbour, no tie
    x = torch.cat([mid - nudge, mid + nudge]).to(torch.float32)
    _expect_values(ctx, x, _cast(ctx, x, name), torch.cat([lo, hi]), name, "off the midpoint the nearest value wins")


def _check_overflow_of(ctx: Context, name: str) -> None:
    f = ref.float_format(name)
    big = f["max"]
    ulp = big * f["eps"] / (2 - f["eps"]) if f["has_infinity"] else big * f["eps"] / (2 - 2 * f["eps"])
    values = [big, big + ulp / 4, big + ulp / 2, big + ulp * 3 / 4, big * 1.5, big * 1e3, math.inf]
    x = torch.tensor(values + [-v for v in values] + [math.nan], dtype=torch.float64)
    finite32 = x.abs() <= torch.finfo(torch.float32).max
    x = x[finite32 | x.isinf() | x.isnan()].to(torch.float32)
    x64 = x.to(torch.float64)
    if name == "float8_e4m3fn":  # 448 = S.1111.110 has an even mantissa: the tie at 448 + ulp/2 rounds down
        over = ctx.options["e4m3_overflow"]
        past = x64.abs() > big + ulp / 2 if over == "nan" else x64.abs() > big
        saturated = torch.copysign(torch.full_like(x64, big), x64)
        target_over = torch.full_like(x64, math.nan) if over == "nan" else saturated
        want = torch.where(past, target_over, torch.copysign(torch.full_like(x64, big), x64))
        want = torch.where(x64.isnan(), x64, want)
        what = f"e4m3fn overflow ({over})"
    elif name == "float32":
        want, what = x64, "float32 to float32 is exact"
    else:
        past = x64.abs() >= big + ulp / 2  # the midpoint to the next binade rounds up (max has an odd mantissa): inf
        want = torch.where(past, torch.copysign(torch.full_like(x64, math.inf), x64),
                           torch.copysign(torch.full_like(x64, big), x64))
        want = torch.where(x64.isnan(), x64, want)
        what = "overflow to infinity"
    _expect_values(ctx, x, _cast(ctx, x, name), want, name, what)


@invariant("float_cast.overflow", examples=st.just({}),
           statement="Values up to max + half an ulp round to max; from there (ties included: max's mantissa is odd) "
           "fp16, bf16 and e5m2 give +-inf; e4m3fn saturates to +-448 (option: NaN); NaN stays NaN.",
           source="IEEE 754-2019 sec. 7.4; torch 2.13 c10/util/Float8_e4m3fn.h (saturating cast on CPU)")
def check_cast_overflow(ctx: Context, p: dict) -> None:
    for name in NAMES:
        _check_overflow_of(ctx, name)


def _check_underflow_of(ctx: Context, name: str, p: dict) -> None:
    f = ref.float_format(name)
    tiny = f["smallest_subnormal"]
    gen = torch.Generator().manual_seed(p["seed"])
    # multiples of the smallest subnormal up to the first normal binade share its quantum: all representable
    k = torch.randint(1, 2 ** (f["mantissa_bits"] + 1), (p["n"],), generator=gen).to(torch.float64)
    values = torch.cat([torch.tensor([tiny / 4, tiny / 2, tiny * 0.75, tiny, tiny * 1.5, tiny * 2.5]), k * tiny])
    x = torch.cat([values, -values]).to(torch.float32)
    x64 = x.to(torch.float64)
    # below half the smallest subnormal: signed zero; half: tie to zero (even); then the subnormal grid, ties to even
    want = torch.copysign(torch.round(x64.abs() / tiny) * tiny, x64)
    if name == "float32":
        want = x64
    _expect_values(ctx, x, _cast(ctx, x, name), want, name, "gradual underflow (subnormal grid, signed zero)")


@invariant("float_cast.underflow", examples=st.fixed_dictionaries({"seed": seeds(), "n": st.integers(1, 64)}),
           statement="Tiny values round on the subnormal grid: below half the smallest subnormal to a zero of the same "
           "sign, exactly half to zero (tie to even), multiples of the smallest subnormal exactly.",
           source="IEEE 754-2019 sec. 3.4 (subnormals) and 7.5 (underflow)")
def check_cast_underflow(ctx: Context, p: dict) -> None:
    for name in NAMES:
        _check_underflow_of(ctx, name, p)


# --- int8 absmax quantization ---------------------------------------------------------------------------

ABSMAX_QUANTIZE = Component(
    name="absmax_quantize",
    signature="absmax_quantize(x: Float[*shape], dim: int | None = None) -> (Int8[*shape], Float32 scale)",
    summary="Symmetric int8 quantization: scale = max|x| / 127 (per tensor, or per slice along `dim`), "
    "q = round(x / scale).",
    reference=ref.absmax_quantize,
    dtypes=FLOAT_DTYPES,
)


@st.composite
def _quant_examples(draw) -> dict:
    rank = draw(st.integers(1, 3))
    return {"shape": [draw(st.integers(1, 9)) for _ in range(rank)],
            "dim": draw(st.one_of(st.none(), st.integers(-rank, rank - 1))), "seed": draw(seeds()),
            "pattern": draw(st.sampled_from(["normal", "ties", "large"])), "zero_slice": draw(st.booleans())}


def _quant_input(ctx: Context, p: dict) -> torch.Tensor:
    x = materialize(p["shape"], p["seed"], ctx.dtype, ctx.device, p["pattern"])
    if p["zero_slice"]:
        x = x.clone()
        x.select(0 if p["dim"] is None else p["dim"], 0).zero_()
    return x


def _quantize(ctx: Context, x: torch.Tensor, dim) -> tuple[torch.Tensor, torch.Tensor]:
    out = ctx.target(x, dim)
    if not (isinstance(out, tuple) and len(out) == 2):
        ctx.fail(f"absmax_quantize must return (q, scale), got {type(out).__name__}")
    q, scale = out
    expect_tensor(q, tuple(x.shape), torch.int8, ctx.device, what="q")
    scale_shape = () if dim is None else tuple(1 if i == dim % x.dim() else s for i, s in enumerate(x.shape))
    expect_tensor(scale, scale_shape, torch.float32, ctx.device, what="scale")
    return q, scale


@invariant("absmax_quantize.range", examples=_quant_examples(),
           statement="q is int8 in [-127, 127], the largest |x| of each slice maps to +-127 (all-zero slices to 0), "
           "and scale = max|x| / 127 in float32 (keepdim shape along `dim`).",
           source="Dettmers et al. 2022, LLM.int8(), sec. 2 (absmax quantization)")
def check_quant_range(ctx: Context, p: dict) -> None:
    x = _quant_input(ctx, p)
    q, scale = _quantize(ctx, x, p["dim"])
    q64, x64 = q.to(torch.int64).cpu(), x.to(torch.float64).cpu()
    if q64.abs().max() > 127:
        ctx.fail(f"q reaches {int(q64.abs().max())}: the symmetric range is [-127, 127]")
    absmax = x64.abs().amax() if p["dim"] is None else x64.abs().amax(dim=p["dim"], keepdim=True)
    peak = q64.abs().amax() if p["dim"] is None else q64.abs().amax(dim=p["dim"], keepdim=True)
    want_peak = torch.where(absmax > 0, torch.full_like(peak, 127), torch.zeros_like(peak))
    assert_equal(ctx, peak, want_peak, "the largest |q| of each slice (127; 0 for an all-zero slice)")
    scale64, want = scale.to(torch.float64).cpu().flatten(), (absmax / 127).flatten()
    allowed = 2**-22 * want.abs()  # float32 rounding of max|x| / 127
    i = int(((scale64 - want).abs() - allowed).argmax())
    assert_within(ctx, float(scale64[i]), float(want[i]), float(allowed[i]), f"scale of slice {i} vs max|x| / 127")


@invariant("absmax_quantize.round_trip", examples=_quant_examples(),
           statement="Dequantizing loses at most half a step: |x - q scale| <= scale / 2 (up to float32 rounding of "
           "x / scale).",
           source="Dettmers et al. 2022, sec. 2; round to nearest")
def check_quant_round_trip(ctx: Context, p: dict) -> None:
    x = _quant_input(ctx, p)
    q, scale = _quantize(ctx, x, p["dim"])
    x64, s64 = x.to(torch.float64).cpu(), scale.to(torch.float64).cpu()
    dequantized = q.to(torch.float64).cpu() * s64
    allowed = (s64 * (0.5 + 127 * 2.0**-22)).expand_as(x64)  # half a step, plus float32 rounding of x / scale
    i = int(((x64 - dequantized).abs() - allowed).flatten().argmax())
    assert_within(ctx, float(dequantized.flatten()[i]), float(x64.flatten()[i]), float(allowed.flatten()[i]),
                  f"q scale vs x at flat index {i} (at most half a step, scale / 2)")


@invariant("absmax_quantize.symmetric", examples=_quant_examples(),
           statement="absmax_quantize(-x) = (-q, scale): the grid is symmetric and rounding treats signs alike.",
           source="Dettmers et al. 2022, sec. 2 (symmetric quantization)")
def check_quant_symmetric(ctx: Context, p: dict) -> None:
    # the drawn input, and exact ties: absmax 127/4 makes scale 1/4, so (k + 1/2)/4 sits halfway between two steps
    halves = (torch.arange(-127, 127, dtype=torch.float64) + 0.5) / 4
    ties = torch.cat([torch.tensor([127 / 4], dtype=torch.float64), halves]).to(ctx.dtype).to(ctx.device)
    for x, dim, which in ((_quant_input(ctx, p), p["dim"], "the drawn x"), (ties, None, "exact ties (k + 1/2) / 4")):
        q, scale = _quantize(ctx, x, dim)
        qn, scale_n = _quantize(ctx, -x, dim)
        assert_equal(ctx, qn, -q, f"q of -x vs -q, on {which} (symmetric grid, ties rounded alike)")
        assert_equal(ctx, scale_n, scale, f"scale of -x vs scale of x, on {which}")


# --- tensor storage -------------------------------------------------------------------------------------


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


CONTIGUOUS_STRIDES = Component(
    name="contiguous_strides",
    signature="contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]",
    summary="Row-major strides in elements: stride[i] = prod(max(size[j], 1) for j > i).",
    reference=ref.contiguous_strides,
    dtypes=(),
)


@st.composite
def _shapes(draw, min_rank: int = 0) -> list[int]:
    """Rank <= 4, sizes 0 and 1 drawn as often as all larger sizes together: the degenerate sizes (a size 0
    counts as 1 in a stride's product)."""
    size = st.one_of(st.sampled_from([0, 1]), st.integers(2, 5))
    return [draw(size) for _ in range(draw(st.integers(min_rank, 4)))]


def _stride_examples() -> st.SearchStrategy[dict]:
    """A few shapes per example: strides are cheap to check."""
    return st.lists(_shapes(), min_size=1, max_size=6).map(lambda shapes: {"shapes": shapes})


@invariant("contiguous_strides.row_major", examples=_stride_examples(),
           statement="A contiguous tensor's stride[i] is the product of the sizes after i (sizes 0 count as 1): "
           "torch.empty(shape).stride().",
           source="PyTorch docs, torch.Tensor.stride; c10/core/TensorImpl (contiguous strides)")
def check_strides_row_major(ctx: Context, p: dict) -> None:
    for shape in p["shapes"]:
        assert_equal(ctx, tuple(ctx.target(tuple(shape))), torch.empty(shape, device="meta").stride(),
                     f"strides of a contiguous tensor of shape {tuple(shape)} vs torch's")


TENSOR_VIEW = Component(
    name="tensor_view",
    signature="tensor_view(x: Tensor, shape: tuple[int, ...]) -> Tensor  (torch.Tensor.view)",
    summary="A view reinterprets the same storage with new sizes and strides; no data is copied.",
    reference=ref.tensor_view,
    dtypes=(),
)


@st.composite
def _view_examples(draw) -> dict:
    shape = [draw(st.integers(1, 5)) for _ in range(draw(st.integers(1, 3)))]
    numel = math.prod(shape)
    split = draw(st.sampled_from([d for d in range(1, numel + 1) if numel % d == 0]))
    return {"shape": shape, "new_shape": [split, numel // split], "seed": draw(seeds()),
            "offset": draw(st.integers(0, 3))}


def _base(p: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(p["seed"])
    buffer = torch.randn(p.get("offset", 0) + math.prod(p["shape"]), generator=gen)
    return buffer[p.get("offset", 0):].view(p["shape"])  # contiguous, possibly at a storage offset


@invariant("tensor_view.shares_storage", examples=_view_examples(),
           statement="view(x, shape) shares x's storage and offset, has contiguous strides for a contiguous x, and "
           "writes through it are visible in x.",
           source="PyTorch docs, Tensor Views (torch.Tensor.view)")
def check_view_shares_storage(ctx: Context, p: dict) -> None:
    x = _base(p)
    v = ctx.target(x, tuple(p["new_shape"]))
    expect_tensor(v, tuple(p["new_shape"]), x.dtype, x.device, what="view")
    if _storage(v) != _storage(x) or v.storage_offset() != x.storage_offset():
        ctx.fail("a view must share the input's storage (same data pointer and offset); the target copied")
    assert_equal(ctx, v.stride(), ref.contiguous_strides(p["new_shape"]), "strides of a view of a contiguous tensor")
    v.view(-1)[0] += 1.0  # a write through the view is seen by the base
    assert_equal(ctx, x.reshape(-1)[0].item(), v.reshape(-1)[0].item(),
                 "the base tensor's first element after a write through the view")


TENSOR_TRANSPOSE = Component(
    name="tensor_transpose",
    signature="tensor_transpose(x: Tensor, dim0: int, dim1: int) -> Tensor  (torch.transpose)",
    summary="Transposing swaps two sizes and strides of the same storage; the result is no longer contiguous.",
    reference=ref.tensor_transpose,
    dtypes=(),
)


@st.composite
def _transpose_examples(draw) -> dict:
    rank = draw(st.integers(2, 4))
    return {"shape": [draw(st.integers(1, 5)) for _ in range(rank)], "dims": draw(st.permutations(range(rank)))[:2],
            "seed": draw(seeds())}


def _transposed(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    x = _base(p)
    d0, d1 = p["dims"]
    t = ctx.target(x, d0, d1)
    shape = list(x.shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    expect_tensor(t, tuple(shape), x.dtype, x.device, what="transpose")
    return x, t


@invariant("tensor_transpose.swaps_strides", examples=_transpose_examples(),
           statement="transpose(x, i, j) shares x's storage with sizes and strides i and j swapped (no data moves).",
           source="PyTorch docs, torch.transpose and Tensor Views")
def check_transpose_swaps_strides(ctx: Context, p: dict) -> None:
    x, t = _transposed(ctx, p)
    d0, d1 = p["dims"]
    strides = list(x.stride())
    strides[d0], strides[d1] = strides[d1], strides[d0]
    if _storage(t) != _storage(x):
        ctx.fail(f"transpose must share storage and swap strides {tuple(strides)}; the target copied (strides "
                 f"{t.stride()})")
    assert_equal(ctx, list(t.stride()), strides, f"strides of transpose({d0}, {d1}) (x's, with {d0} and {d1} swapped)")
    assert_equal(ctx, t, x.transpose(d0, d1), "transposed values vs x with dims swapped")


@invariant("tensor_transpose.breaks_contiguity", examples=_transpose_examples(),
           statement="Transposing a contiguous tensor breaks contiguity unless at most one dimension of size > 1 lies "
           "between the swapped ones (inclusive); is_contiguous() ignores strides of size-1 dimensions.",
           source="PyTorch docs, torch.Tensor.is_contiguous; c10 compute_contiguous")
def check_transpose_breaks_contiguity(ctx: Context, p: dict) -> None:
    x, t = _transposed(ctx, p)
    d0, d1 = p["dims"]
    sizes = [x.shape[d] for d in range(x.dim())]
    # torch ignores the strides of size-1 dims: swapping with one keeps the layout contiguous
    moved = [s for i, s in enumerate(sizes) if min(d0, d1) <= i <= max(d0, d1) and s > 1]
    assert_equal(ctx, t.is_contiguous(), len(moved) <= 1,
                 f"is_contiguous() of transpose({d0}, {d1}) of a contiguous {tuple(x.shape)} tensor")


TENSOR_CONTIGUOUS = Component(
    name="tensor_contiguous",
    signature="tensor_contiguous(x: Tensor) -> Tensor  (torch.Tensor.contiguous)",
    summary="A row-major tensor with x's values: x itself when already contiguous, else a copy.",
    reference=ref.tensor_contiguous,
    dtypes=(),
)


@invariant("tensor_contiguous.no_copy_when_contiguous", examples=_transpose_examples(),
           statement="contiguous() of a contiguous tensor returns it, sharing storage: no copy.",
           source="PyTorch docs, torch.Tensor.contiguous ('If self tensor is already in the specified memory format, "
           "this function returns the self tensor')")
def check_contiguous_no_copy(ctx: Context, p: dict) -> None:
    x = _base(p)
    out = ctx.target(x)
    expect_tensor(out, tuple(x.shape), x.dtype, x.device, what="contiguous")
    if _storage(out) != _storage(x) or out.storage_offset() != x.storage_offset() or out.stride() != x.stride():
        ctx.fail("contiguous() of an already contiguous tensor must return it without copying (same storage)")


@st.composite
def _contiguous_examples(draw) -> dict:
    p = draw(_transpose_examples())
    p["layout"] = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    return p


def _laid_out(p: dict) -> torch.Tensor:
    x = _base(p)
    if p["layout"] == "transposed":
        return x.transpose(*p["dims"])
    if p["layout"] == "strided":
        return torch.cat([x, x], dim=-1)[..., ::2]
    return x


@invariant("tensor_contiguous.copies_when_needed", examples=_contiguous_examples(),
           statement="contiguous() of a transposed or strided tensor copies the values into new row-major storage and "
           "leaves the input unchanged.",
           source="PyTorch docs, torch.Tensor.contiguous")
def check_contiguous_copies_when_needed(ctx: Context, p: dict) -> None:
    x = _laid_out(p)
    before = x.clone()
    out = ctx.target(x)
    expect_tensor(out, tuple(x.shape), x.dtype, x.device, what="contiguous")
    assert_equal(ctx, out, before, "values of contiguous(x) vs x")
    assert_equal(ctx, x, before, "x after contiguous(x) (the input must not change)")
    if x.is_contiguous():  # e.g. a strided slice whose only long dimension has size 1: nothing to do
        return
    assert_equal(ctx, out.stride(), ref.contiguous_strides(list(x.shape)), "strides of contiguous(x) (row-major)")
    if _storage(out) == _storage(x):
        ctx.fail("a non-contiguous input needs a copy into new storage")
