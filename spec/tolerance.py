"""The tolerance policy: one place, used by every differential check.

A differential check computes the float64 reference on the same (rounded) inputs the target saw. The
target's error must be at most `factor` x the error the reference itself makes when run in the target's
dtype, plus a rounding floor of `FLOOR_ULPS` units of the dtype's eps at the output's scale:

    max|target - ref64| <= factor * max|ref_lowp - ref64| + FLOOR_ULPS * eps(dtype) * max|ref64|

This is the FlashAttention test method (tests/test_flash_attn.py: `2 * max|out_pt - ref|`). It adapts to
each example's conditioning instead of a hand-picked atol, and an all-zeros, constant or copied output
fails it because its error is of the order of the output itself. Errors are reported absolute, relative
to the output's scale, and in units of the dtype's eps. See docs/tolerance.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

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
    reference_error: float  # max|ref_lowp - ref64|: the reference's own error in this dtype
    allowed: float
    worst_index: list[int]
    target_value: float
    reference_value: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.allowed

    def as_dict(self) -> dict:
        return asdict(self)


def compare(
    actual: torch.Tensor,
    ref64: torch.Tensor,
    ref_lowp: torch.Tensor,
    dtype: torch.dtype,
    factor: float = DEFAULT_FACTOR,
) -> ErrorStats:
    """Measure `actual` against `ref64`, allowing `factor` x the reference's own error in `dtype`.

    Non-finite values in `actual` where the reference is finite count as infinite error.
    """
    expected = ref64.to(torch.float64)
    got = actual.detach().to(device=expected.device, dtype=torch.float64)
    diff = (got - expected).abs()
    diff = torch.where(torch.isfinite(expected) & ~torch.isfinite(got), torch.full_like(diff, float("inf")), diff)
    diff = torch.where(~torch.isfinite(expected) & (got == expected), torch.zeros_like(diff), diff)
    scale = float(expected[torch.isfinite(expected)].abs().max()) if torch.isfinite(expected).any() else 0.0
    scale = max(scale, torch.finfo(dtype).tiny)
    ref_err = (ref_lowp.detach().to(device=expected.device, dtype=torch.float64) - expected).abs()
    ref_err = float(ref_err[torch.isfinite(ref_err)].max()) if ref_err.numel() and torch.isfinite(ref_err).any() else 0.0
    allowed = factor * ref_err + FLOOR_ULPS * eps(dtype) * scale
    if diff.numel() == 0:
        return ErrorStats(0.0, 0.0, 0.0, 0.0, ref_err, allowed, [], 0.0, 0.0)
    flat = int(torch.nan_to_num(diff, nan=float("inf")).reshape(-1).argmax())
    index = list(torch.unravel_index(torch.tensor(flat), diff.shape)) if diff.dim() else []
    index = [int(i) for i in index]
    max_abs = float(diff.reshape(-1)[flat])
    max_abs = float("inf") if max_abs != max_abs else max_abs
    return ErrorStats(
        max_abs=max_abs,
        mean_abs=float(diff[torch.isfinite(diff)].mean()) if torch.isfinite(diff).any() else float("inf"),
        max_rel=max_abs / scale,
        max_eps=max_abs / scale / eps(dtype),
        reference_error=ref_err,
        allowed=allowed,
        worst_index=index,
        target_value=float(got.reshape(-1)[flat]),
        reference_value=float(expected.reshape(-1)[flat]),
    )


def exactly_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exact properties (shapes, dtypes, masks, indices) are exact: bitwise equality, NaN equal to NaN."""
    return a.shape == b.shape and bool(torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))) and bool(
        torch.equal(a.isnan(), b.isnan())
    )
