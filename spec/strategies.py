"""Input strategies shared by every family.

Hypothesis draws small JSON-serialisable parameter dicts (shapes, a seed, a value pattern, a memory layout);
`materialize` turns them into tensors. Shrinking therefore shrinks shapes and seeds, a counterexample is a
dict a user can paste into `--replay`, and tensors are cheap to build at any size.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

#: value patterns: plain normal draws, values on a coarse grid (many exact ties), large magnitudes.
PATTERNS = ("normal", "ties", "large")
#: memory layouts: contiguous, every other element of a wider buffer, and a transposed buffer.
LAYOUTS = ("contiguous", "strided", "transposed")


def seeds() -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=2**31 - 1)


def sizes(lo: int = 1, hi: int = 9) -> st.SearchStrategy[int]:
    """Small sizes, 1 and non-powers of two included; shrinks towards `lo`."""
    return st.integers(min_value=lo, max_value=hi)


def patterns() -> st.SearchStrategy[str]:
    return st.sampled_from(PATTERNS)


def layouts() -> st.SearchStrategy[str]:
    return st.sampled_from(LAYOUTS)


def values64(shape: tuple[int, ...], seed: int, pattern: str = "normal", salt: int = 0, magnitude: float = 1.0) -> torch.Tensor:
    """Float64 values for `shape`, reproducible from (seed, salt)."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + salt * 7919) % (2**63 - 1))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if pattern == "ties":
        x = torch.round(x * 2.0) / 2.0  # multiples of 0.5, exactly representable in every dtype
    elif pattern == "large":
        x = x * 30.0
    elif pattern != "normal":
        raise ValueError(f"unknown pattern {pattern!r}")
    return x * magnitude


def relayout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Same values, different strides: tests that a target does not assume contiguity."""
    if layout == "contiguous" or x.dim() == 0:
        return x.contiguous()
    if layout == "strided":
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
        wide[..., ::2] = x
        return wide[..., ::2]
    if layout == "transposed":
        if x.dim() < 2:
            return relayout(x, "strided")
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    raise ValueError(f"unknown layout {layout!r}")


def materialize(
    shape: tuple[int, ...],
    seed: int,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    pattern: str = "normal",
    salt: int = 0,
    magnitude: float = 1.0,
    layout: str = "contiguous",
) -> torch.Tensor:
    """A tensor in the target's dtype and device; its float64 upcast is what the reference sees."""
    x = values64(tuple(shape), seed, pattern, salt, magnitude).to(dtype)
    return relayout(x.to(device), layout)
