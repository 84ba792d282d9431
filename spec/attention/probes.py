"""Reading which keys a query sees off the target itself, whatever mask it was given (causal, window, boolean)."""

from __future__ import annotations

from typing import Callable

import torch

from ..checks import PROPERTY_ULPS, assert_each_within, to64
from ..core import Context
from ..guard import expect_tensor


def probe_weights(ctx: Context, attend: Callable, q: torch.Tensor, lk: int, hkv: int) -> torch.Tensor:
    """Attention weights read off the target: keys all zero (every visible key scores the same) and values the
    identity (Ev = Lk), so output row i is the uniform distribution over the keys query i may see.

    `attend(q, k, v)` calls the target with the mask under test; rows that see no key may be non-finite."""
    b = q.shape[0]
    k = torch.zeros(b, hkv, lk, q.shape[-1], dtype=ctx.dtype, device=ctx.device)
    v = torch.eye(lk, dtype=ctx.dtype, device=ctx.device).expand(b, hkv, lk, lk).contiguous()
    out = expect_tensor(attend(q, k, v), (*q.shape[:-1], lk), ctx.dtype, ctx.device, finite=False)
    return to64(out)


def assert_visible_keys(ctx: Context, weights: torch.Tensor, allowed: torch.Tensor, what: str) -> None:
    """`weights` [..., Lq, Lk] read by `probe_weights` must be uniform over `allowed` [Lq, Lk], exactly the mask.

    A row that sees no key must be zeros, unless the option fully_masked_rows is "unspecified"."""
    allowed = allowed.to(torch.float64)
    count = allowed.sum(-1, keepdim=True)
    expected = torch.where(count > 0, allowed / count.clamp_min(1), torch.zeros_like(allowed)).expand_as(weights)
    if ctx.options.get("fully_masked_rows", "zeros") == "unspecified":
        weights = torch.where(count > 0, weights, expected)  # rows that see no key are not checked
    assert_each_within(ctx, weights, expected, PROPERTY_ULPS * torch.finfo(ctx.dtype).eps,
                       f"{what}: attention weight (uniform over exactly the keys the spec's mask lets a query see)")
