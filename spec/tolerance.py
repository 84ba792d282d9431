"""The tolerance policy: one place, used by every differential check.

A differential check computes the float64 reference on the same (rounded) inputs the target saw. The
target's error must be at most `factor` x the error the reference itself makes when run in the target's
dtype, plus a rounding floor of `FLOOR_ULPS` units of the dtype's eps at the output's scale:

    max|target - ref64| <= factor * max|ref_lowp - ref64| + FLOOR_ULPS * eps(dtype) * max|ref64|

This is the FlashAttention test method (tests/test_flash_attn.py: `2 * max|out_pt - ref|`). It adapts to
each example's conditioning instead of a hand-picked atol, and an all-zeros, constant or copied output
fails it because its error is of the order of the output itself. Errors are reported absolute, relative
to the output's scale, and in units of the dtype's eps. See docs/tolerance.md.

That norm-wise bound lets every element err by `FLOOR_ULPS` eps of the *largest* output, so small elements (a
GELU's tail, small probabilities) go unchecked. Elementwise components (a Component's `bound="elementwise"`) are
held to a bound per element instead, the same two terms at that element:

    |target_i - ref64_i| <= factor * |ref_lowp_i - ref64_i| + FLOOR_ULPS * eps(dtype) * max(|ref64_i|, tiny(dtype))

(torch.testing's `rtol * |expected| + atol`, with rtol from the dtype and the reference's own error at the element
as the atol).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch

#: "normwise": one allowance for the whole output, from its largest element (reductions, matmul-like outputs);
#: "elementwise": one allowance per element, from that element (activations, probabilities, normalised outputs).
Bound = Literal["normwise", "elementwise"]
BOUNDS = ("normwise", "elementwise")

DEFAULT_FACTOR = 2.0
FLOOR_ULPS = 8.0
#: float64 has no lower precision to run the reference in: its error witness is the float64 reference on
#: inputs perturbed by up to this many ulps (spec/checks.py: perturb_ulp), i.e. the problem's conditioning.
FLOAT64_WITNESS_ULPS = 8.0


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


@dataclass(frozen=True)
class ErrorStats:
    """How far a target's output is from the float64 reference, and how far it may be."""

    max_abs: float
    mean_abs: float
    max_rel: float  # max_abs / max|ref64|
    max_eps: float  # max_rel in units of eps(dtype)
    reference_error: float  # |ref_lowp - ref64| (max, or at the worst element): the reference's own error
    allowed: float  # for the whole output, or (elementwise) at the worst element
    worst_index: list[int]  # the largest error, or (elementwise) the element furthest beyond its allowance
    target_value: float
    reference_value: float
    bound: str = "normwise"
    within: bool = True  # every element within its allowance

    @property
    def ok(self) -> bool:
        return self.within

    def as_dict(self) -> dict:
        return asdict(self)


def compare(
    actual: torch.Tensor,
    ref64: torch.Tensor,
    ref_lowp: torch.Tensor,
    dtype: torch.dtype,
    factor: float = DEFAULT_FACTOR,
    bound: Bound = "normwise",
) -> ErrorStats:
    """Measure `actual` against `ref64`, allowing `factor` x the reference's own error in `dtype` plus a floor,
    for the output as a whole (`normwise`) or element by element (`elementwise`).

    Non-finite values in `actual` where the reference is finite count as infinite error.
    """
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; known: {BOUNDS}")
    expected = ref64.to(torch.float64)
    got = actual.detach().to(device=expected.device, dtype=torch.float64)
    diff = (got - expected).abs()
    diff = torch.where(torch.isfinite(expected) & ~torch.isfinite(got), torch.full_like(diff, float("inf")), diff)
    diff = torch.where(~torch.isfinite(expected) & (got == expected), torch.zeros_like(diff), diff)
    diff = torch.nan_to_num(diff, nan=float("inf"))
    finite = torch.isfinite(expected)
    scale = max(float(expected[finite].abs().max()) if finite.any() else 0.0, torch.finfo(dtype).tiny)
    ref_err = (ref_lowp.detach().to(device=expected.device, dtype=torch.float64) - expected).abs()
    ref_err = torch.where(torch.isfinite(ref_err), ref_err, torch.zeros_like(ref_err))
    if bound == "elementwise":
        magnitude = torch.where(finite, expected.abs(), torch.zeros_like(expected)).clamp_min(torch.finfo(dtype).tiny)
        allowed = factor * ref_err + FLOOR_ULPS * eps(dtype) * magnitude
    else:
        allowed = torch.tensor(factor * (float(ref_err.max()) if ref_err.numel() else 0.0)
                               + FLOOR_ULPS * eps(dtype) * scale, dtype=torch.float64)
    if diff.numel() == 0:
        return ErrorStats(0.0, 0.0, 0.0, 0.0, 0.0, float(allowed.max()) if allowed.numel() else 0.0, [], 0.0, 0.0, bound)
    allowed = allowed.expand(diff.shape)
    excess = diff - allowed  # inf - inf (an infinite allowance) stays beyond nothing
    excess = torch.where(torch.isnan(excess), torch.zeros_like(excess), excess)
    flat = int((excess if bound == "elementwise" else diff).reshape(-1).argmax())
    index = [int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape)] if diff.dim() else []
    max_abs = float(diff.max())
    return ErrorStats(
        max_abs=max_abs,
        mean_abs=float(diff[torch.isfinite(diff)].mean()) if torch.isfinite(diff).any() else float("inf"),
        max_rel=max_abs / scale,
        max_eps=max_abs / scale / eps(dtype),
        reference_error=float(ref_err.reshape(-1)[flat]) if bound == "elementwise" else float(ref_err.max()),
        allowed=float(allowed.reshape(-1)[flat]),
        worst_index=index,
        target_value=float(got.reshape(-1)[flat]),
        reference_value=float(expected.reshape(-1)[flat]),
        bound=bound,
        within=bool((excess <= 0).all()),
    )


def exactly_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exact properties (shapes, dtypes, masks, indices) are exact: bitwise equality, NaN equal to NaN."""
    return a.shape == b.shape and bool(torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))) and bool(
        torch.equal(a.isnan(), b.isnan())
    )
