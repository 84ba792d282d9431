"""Input strategies shared by every family.

Hypothesis draws small JSON-serialisable parameter dicts (shapes, a seed, a value pattern, a memory layout);
`materialize` turns them into tensors. Shrinking therefore shrinks shapes and seeds, a counterexample is a
dict a user can paste into `--replay`, and tensors are cheap to build at any size.

Sizes come in three scales (`--scale`, docs/scale.md): `small` (one tile of any kernel), `kernel` (also sizes at
and around tile boundaries and the sizes real models use in one dimension at a time; the default) and
`production` (real models' sizes in several dimensions at once, for GPU runs and long fuzzing). A strategy built
with `scaled` reads the scale when it draws, so one declared strategy serves every scale, and Hypothesis shrinks a
failure towards the small branch, then towards the smallest failing size within its branch.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, TypeVar

import torch
from hypothesis import strategies as st

T = TypeVar("T")

#: the scales, smallest first; each includes what the smaller ones draw.
SCALES = ("small", "kernel", "production")
DEFAULT_SCALE = "kernel"
_SCALE: contextvars.ContextVar[str] = contextvars.ContextVar("lmspec_scale", default=DEFAULT_SCALE)

#: sizes at and around the tiles GPU kernels use (warps of 32, blocks of 64..256, 1024-wide candidate lists):
#: exact within a tile and wrong past it, or wrong on the last partial tile, a kernel fails at one of these.
TILE_EDGES = (31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025)

#: value patterns: plain normal draws, values on a coarse grid (many exact ties), large magnitudes.
PATTERNS = ("normal", "ties", "large")
#: memory layouts: contiguous, every other element of a wider buffer, a transposed buffer, and a buffer whose data
#: pointer is one element past an aligned address (storage offset 1: not 16-byte aligned, as vectorised loads assume).
LAYOUTS = ("contiguous", "strided", "transposed", "misaligned")


def current_scale() -> str:
    return _SCALE.get()


@contextlib.contextmanager
def at_scale(scale: str) -> Iterator[None]:
    """Draw examples at `scale` inside this block (the runner wraps each invariant's search in it)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    token = _SCALE.set(scale)
    try:
        yield
    finally:
        _SCALE.reset(token)


def scaled(
    small: st.SearchStrategy[T],
    kernel: st.SearchStrategy[T] | None = None,
    production: st.SearchStrategy[T] | None = None,
) -> st.SearchStrategy[T]:
    """`small` at every scale, or `kernel` from scale "kernel" up, or `production` at scale "production".

    One branch is drawn per example (so a single example is never large in every dimension unless its branch
    says so), and shrinking prefers the earlier, smaller branch."""
    by_scale = {}
    branches: list[st.SearchStrategy[T]] = []
    for scale, branch in zip(SCALES, (small, kernel, production)):
        if branch is not None:
            branches.append(branch)
        by_scale[scale] = st.one_of(*branches) if len(branches) > 1 else branches[0]

    @st.composite
    def at_current_scale(draw) -> T:  # the scale is read when an example is drawn, not when the strategy is built
        return draw(by_scale[current_scale()])

    return at_current_scale()


def tile_sizes(lo: int = 1, hi: int = 9, edges: tuple[int, ...] = TILE_EDGES,
               production: tuple[int, ...] = ()) -> st.SearchStrategy[int]:
    """A size: small (lo..hi), or at a tile boundary (`edges`) from scale "kernel", or a production size."""
    return scaled(sizes(lo, hi), st.sampled_from(edges), st.sampled_from(production) if production else None)


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
    if layout == "misaligned":
        buffer = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)
        out = buffer[1:].view(x.shape)  # storage offset 1: the data pointer is off 16-byte alignment
        out.copy_(x)
        return out
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
