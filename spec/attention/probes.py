"""Reading which keys a query sees off the target itself, whatever mask it was given (causal, window, boolean)."""

from __future__ import annotations

from typing import Callable

import torch

from ..checks import PROPERTY_ULPS, assert_each_within, to64
from ..core import Context
from ..guard import expect_tensor


#: keys whose weights one call reads: identity values in blocks of this many columns (Ev <= 128), since
#: FlashAttention and other fused kernels take head dims up to 256 only.
PROBE_COLUMNS = 128


def identity_values_output(ctx: Context, attend_values: Callable, lead: tuple[int, ...], b: int, hkv: int, lk: int,
                           finite: bool = True) -> torch.Tensor:
    """The target's output [*lead, Lk] for values = the identity [B, Hkv, Lk, Lk] (so output row i is query i's
    weights), read in blocks of PROBE_COLUMNS identity columns: `attend_values(v)` calls the target with values v."""
    eye = torch.eye(lk, dtype=ctx.dtype, device=ctx.device)
    blocks = []
    for start in range(0, lk, PROBE_COLUMNS):
        cols = eye[:, start : start + PROBE_COLUMNS]  # [Lk, n]
        v = cols.expand(b, hkv, lk, cols.shape[-1]).contiguous()
        out = expect_tensor(attend_values(v), (*lead, cols.shape[-1]), ctx.dtype, ctx.device, finite=finite)
        blocks.append(to64(out))
    return torch.cat(blocks, dim=-1)


def probe_weights(ctx: Context, attend: Callable, q: torch.Tensor, lk: int, hkv: int) -> torch.Tensor:
    """Attention weights read off the target: keys all zero (every visible key scores the same) and values the
    identity, so output row i is the uniform distribution over the keys query i may see.

    `attend(q, k, v)` calls the target with the mask under test; rows that see no key may be non-finite."""
    b = q.shape[0]
    k = torch.zeros(b, hkv, lk, q.shape[-1], dtype=ctx.dtype, device=ctx.device)
    return identity_values_output(ctx, lambda v: attend(q, k, v), tuple(q.shape[:-1]), b, hkv, lk, finite=False)


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
