"""Float-valued accounting formulas (utilization, PF-days, Chinchilla, memory traffic) against their expected value
within a relative tolerance, as math.isclose(got, want, rel_tol=rel) does, spoken through `assert_within`."""

from __future__ import annotations

from ..checks import assert_within
from ..core import Context

#: relative tolerance for float-valued formulas (one or two roundings of float64).
EXACT = 1e-12


def assert_relative(ctx: Context, got, want: float, what: str, rel: float = EXACT) -> None:
    """|got - want| <= rel x max(|got|, |want|); `got` must be a number."""
    if not isinstance(got, (int, float)):
        ctx.fail(f"{what}: expected a number, got {got!r}", target=repr(got))
    assert_within(ctx, got, want, rel * max(abs(got), abs(want)), what)
