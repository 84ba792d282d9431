"""The assertion vocabulary every check speaks (compare torch/testing/_comparison.py, array-api-tests'
pytest_helpers.py). Each reports through `ctx.fail` with one message format whose numbers carry enough digits to
tell the two values apart (`show`):

- `call(ctx, shape, *args)`: call the target, expecting a finite tensor of `shape` in the dtype and on the device
  under test (`expect_tensor` for any other expectation);
- `differential(ctx, reference, *args)` and `assert_matches(ctx, out, ref64, ref_lowp)`: the tolerance policy
  (spec/tolerance.py) against the float64 reference;
- `assert_agree(ctx, a, b, what)`: two outputs of the target that are equal in exact arithmetic agree up to
  rounding (properties that need no reference);
- `assert_equal(ctx, actual, expected, what)`: exact equality of tensors, sequences or scalars;
- `assert_within(ctx, value, expected, allowed, what)`: a scalar within an allowed distance of its expectation;
  `assert_each_within(ctx, got, expected, allowed, what)`: the same element by element, one allowance each.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .core import Context
from .guard import expect_tensor

from .tolerance import DEFAULT_FACTOR, FLOAT64_WITNESS_ULPS, FLOOR_ULPS, ErrorStats, compare, eps

__all__ = ["PROPERTY_ULPS", "assert_agree", "assert_each_within", "assert_equal", "assert_matches", "assert_within",
           "call", "differential", "dtype_name", "eps_units", "expect_tensor", "reference_pair", "show", "to64"]

#: two outputs of the target that must agree exactly in real arithmetic may differ by this many eps of
#: their scale (different reduction orders round differently); real bugs move outputs by O(scale).
PROPERTY_ULPS = 16.0


def to64(value: Any) -> Any:
    """Upcast floating tensors (inside tuples/lists/dicts too) to float64 on the CPU; leave the rest."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64) if value.is_floating_point() else value.detach().cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(to64(v) for v in value)
    if isinstance(value, dict):
        return {k: to64(v) for k, v in value.items()}
    return value


def to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    return value


def _float_dtype(value: Any) -> torch.dtype | None:
    if isinstance(value, torch.Tensor):
        return value.dtype if value.is_floating_point() else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for v in items:
        found = _float_dtype(v)
        if found is not None:
            return found
    return None


def perturb_ulp(value: Any, generator: torch.Generator) -> Any:
    """Every float64 input moved by up to FLOAT64_WITNESS_ULPS ulps: a stand-in for the rounding of inputs and
    intermediates (dot products, sums) that any float64 implementation commits."""
    if isinstance(value, torch.Tensor) and value.dtype == torch.float64:
        noise = torch.rand(value.shape, generator=generator, dtype=torch.float64) * 2 - 1
        return value * (1 + noise * FLOAT64_WITNESS_ULPS * torch.finfo(torch.float64).eps)
    if isinstance(value, (list, tuple)):
        return type(value)(perturb_ulp(v, generator) for v in value)
    if isinstance(value, dict):
        return {k: perturb_ulp(v, generator) for k, v in value.items()}
    return value


def reference_pair(reference: Callable, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """The reference on the float64 upcast of the (already rounded) inputs, and the reference's own error
    witness: the reference run in the inputs' dtype, or, for float64 inputs (which have no lower-precision
    run to compare with), the reference on inputs perturbed by a few ulps, which measures the conditioning."""
    args64, kwargs64 = to64(args), to64(kwargs)
    ref64 = reference(*args64, **kwargs64)
    if _float_dtype((args, kwargs)) == torch.float64:
        gen = torch.Generator().manual_seed(0)
        return ref64, reference(*perturb_ulp(args64, gen), **perturb_ulp(kwargs64, gen))
    return ref64, reference(*to_cpu(args), **to_cpu(kwargs))


def assert_matches(
    ctx: Context,
    out: Any,
    ref64: torch.Tensor,
    ref_lowp: torch.Tensor,
    what: str = "output",
    factor: float = DEFAULT_FACTOR,
    bound: str | None = None,
) -> ErrorStats:
    """The tolerance policy (spec/tolerance.py) applied to one output, with the component's bound unless `bound`
    says otherwise; records the error statistics."""
    finite = bool(torch.isfinite(ref64).all())
    expect_tensor(out, tuple(ref64.shape), ctx.dtype, ctx.device, what=what, finite=finite)
    stats = compare(out, ref64, ref_lowp, ctx.dtype, factor=factor, bound=bound or ctx.bound)
    ctx.errors.append(stats)
    if not stats.ok:
        got, want = show(stats.target_value, stats.reference_value)
        if stats.bound == "elementwise":
            off = abs(stats.target_value - stats.reference_value)
            ctx.fail(
                f"{what} differs from the float64 reference on this example by {off:.3g} at index {stats.worst_index}: "
                f"target {got}, reference {want}; allowed there {stats.allowed:.3g} = {factor:g} x the reference's own "
                f"{dtype_name(ctx.dtype)} error at that element {stats.reference_error:.3g} + {FLOOR_ULPS:g} eps of the "
                "element",
                **stats.as_dict(),
            )
        ctx.fail(
            f"{what} differs from the float64 reference on this example by {stats.max_abs:.3g} "
            f"({eps_units(stats.max_eps, ctx.dtype)} at the output's scale) at index {stats.worst_index}: target "
            f"{got}, reference {want}; allowed {stats.allowed:.3g} = {factor:g} x the reference's own "
            f"{dtype_name(ctx.dtype)} error {stats.reference_error:.3g} + floor",
            **stats.as_dict(),
        )
    return stats


def differential(ctx: Context, reference: Callable, *args: Any, factor: float = DEFAULT_FACTOR, bound: str | None = None,
                 **kwargs: Any) -> ErrorStats:
    """Call the target and the reference on the same inputs and apply the tolerance policy."""
    ref64, ref_lowp = reference_pair(reference, *args, **kwargs)
    out = ctx.target(*args, **kwargs)
    return assert_matches(ctx, out, ref64, ref_lowp, factor=factor, bound=bound)


def assert_agree(ctx: Context, a: torch.Tensor, b: torch.Tensor, what: str, ulps: float = PROPERTY_ULPS) -> None:
    """Two outputs of the target that must be equal in exact arithmetic agree up to `ulps` eps of their scale."""
    a64, b64 = to64(a), to64(b)
    if a64.shape != b64.shape:
        ctx.fail(f"{what}: shapes differ, {tuple(a64.shape)} vs {tuple(b64.shape)}")
    same = (a64.isnan() & b64.isnan()) | (a64 == b64)  # equal infinities agree too
    diff = torch.where(same, torch.zeros_like(a64), (a64 - b64).abs())
    diff = torch.nan_to_num(diff, nan=float("inf"))
    finite = torch.cat([a64[torch.isfinite(a64)].abs(), b64[torch.isfinite(b64)].abs(), torch.zeros(1, dtype=torch.float64)])
    scale = max(float(finite.max()), torch.finfo(ctx.dtype).tiny)
    allowed = ulps * eps(ctx.dtype) * scale
    worst = float(diff.max()) if diff.numel() else 0.0
    if worst > allowed:
        idx = [int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)] if diff.dim() else []
        x, y = show(float(a64[tuple(idx)]), float(b64[tuple(idx)]))
        ctx.fail(f"{what}: {x} vs {y} at index {idx}, differ by {worst:.3g} on this example; allowed {allowed:.3g} "
                 f"({eps_units(ulps, ctx.dtype)} at scale {scale:.3g})", index=idx, max_abs=worst, allowed=allowed)


def dtype_name(dtype: torch.dtype | None) -> str:
    """float32, not torch.float32."""
    return str(dtype).removeprefix("torch.")


def eps_units(count: float, dtype: torch.dtype | None = None) -> str:
    """An error in units of the dtype's eps, with 3 significant digits: "1.47e+15 eps of float32", "0.5 eps",
    never "1474441648118010.25 eps"."""
    return f"{count:.3g} eps" + ("" if dtype is None else f" of {dtype_name(dtype)}")


def call(ctx: Context, shape: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The target's output on these arguments, which must be a finite tensor of `shape` in the dtype and on the
    device under test."""
    return expect_tensor(ctx.target(*args, **kwargs), tuple(shape), ctx.dtype, ctx.device)


def show(*values: Any) -> tuple[str, ...] | str:
    """Values formatted with as many significant digits as it takes to tell them apart (up to float64's 17):
    "0.6931471805599453 vs 0.6931471805599454", never "0.693147 vs 0.693147". One value: its shortest repr."""
    if len(values) == 1:
        v = values[0]
        return repr(float(v)) if isinstance(v, float) else repr(v)
    floats = [isinstance(v, float) for v in values]
    if not all(floats):
        return tuple(repr(v) for v in values)
    for digits in range(6, 18):
        texts = tuple(f"{v:.{digits}g}" for v in values)
        if len(set(texts)) == len(set(values)):
            return texts
    return tuple(repr(v) for v in values)


def _first_difference(actual: Any, expected: Any) -> tuple[list[int] | int | None, Any, Any]:
    if isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor):
        if actual.shape != expected.shape:
            return None, tuple(actual.shape), tuple(expected.shape)
        a, e = actual.detach().cpu(), expected.detach().cpu()  # same dtype: assert_equal checked it
        differ = ~((a == e) | (a.isnan() & e.isnan())) if a.is_floating_point() else a != e
        if not bool(differ.any()):
            return [], None, None
        idx = [int(i) for i in differ.nonzero()[0]] if differ.dim() else []
        return idx, a[tuple(idx)].item(), e[tuple(idx)].item()
    if isinstance(actual, (list, tuple)) and isinstance(expected, (list, tuple)):
        for i, (x, y) in enumerate(zip(actual, expected)):
            if x != y:
                return i, x, y
        if len(actual) != len(expected):
            return min(len(actual), len(expected)), f"length {len(actual)}", f"length {len(expected)}"
        return [], None, None
    return ([], None, None) if actual == expected else (None, actual, expected)


def assert_equal(ctx: Context, actual: Any, expected: Any, what: str) -> None:
    """Exact equality (bitwise for tensors, NaN equal to NaN; element by element for sequences), reporting the
    first index where they differ."""
    if isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor) and actual.dtype != expected.dtype:
        ctx.fail(f"{what}: dtype {actual.dtype}, expected {expected.dtype}")
    index, got, want = _first_difference(actual, expected)
    if index == [] and got is None:
        return
    x, y = show(got, want)
    where = "" if index is None else f" at index {index}"
    ctx.fail(f"{what}: {x}, expected {y}{where}", index=index)


def assert_within(ctx: Context, value: float, expected: float, allowed: float, what: str) -> None:
    """|value - expected| <= allowed (NaN never is)."""
    off = abs(float(value) - float(expected))
    if not off <= allowed:
        x, y = show(float(value), float(expected))
        ctx.fail(f"{what}: {x}, expected {y} (off by {off:.3g} on this example; allowed deviation {allowed:.3g})",
                 value=float(value), expected=float(expected), max_abs=off, allowed=allowed)


def _float64(value) -> torch.Tensor:
    return to64(value) if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64)


def assert_each_within(ctx: Context, got, expected, allowed, what: str, x: torch.Tensor | None = None) -> None:
    """|got - expected| <= allowed element by element (a NaN never is); `allowed` is a number or a tensor that
    broadcasts, one allowance per element. Reports the element furthest beyond its allowance (with its input `x`)."""
    got64, expected64, allowed64 = torch.broadcast_tensors(_float64(got), _float64(expected), _float64(allowed))
    err = (got64 - expected64).abs()
    beyond = ~(err <= allowed64)
    if not bool(beyond.any()):
        return
    excess = torch.where(beyond, (err - allowed64).nan_to_num(nan=float("inf")), -float("inf"))
    idx = [int(i) for i in torch.unravel_index(excess.argmax(), err.shape)] if err.dim() else []
    at = tuple(idx)
    a, b = show(float(got64[at]), float(expected64[at]))
    where = (f" at index {idx}" if idx else "") + ("" if x is None else f", x = {show(float(to64(x)[at]))}")
    ctx.fail(f"{what}: {a}, expected {b}{where} (off by {float(err[at]):.3g} on this example; allowed deviation "
             f"{float(allowed64[at]):.3g})",
             index=idx, max_abs=float(err.nan_to_num(nan=float("inf")).max()), allowed=float(allowed64[at]))
