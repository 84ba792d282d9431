"""Known RMSNorm conventions, and the hint a failing rms_norm check appends: which one the target's output matches.

A hint names a convention only when the target's output matches that convention's formula within the tolerance
policy (spec/tolerance.py: `factor` x the formula's own error in the dtype + the rounding floor), the formula
computed like the reference (float64, and in the target's dtype as the error witness). When none matches, it says
which is nearest and how far, in eps of the dtype at the output's scale, so a reader is never told a cause the
output does not show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ...reference import norms as ref
from ..checks import eps_units, reference_pair
from ..core import Context
from ..tolerance import compare


@dataclass(frozen=True)
class Convention:
    """A formula some library computes for rms_norm(x, shape, weight, eps), and how to say so."""

    does: str  # what a target following it does, a verb phrase: "adds eps outside the square root, ..."
    formula: Callable  # (input, normalized_shape, weight, eps) -> output, computed like the reference
    spec: bool = False  # the formula the check expects (under the options chosen)


def variant(input, normalized_shape, weight=None, eps=0.0, *, offset: float = 0.0, eps_outside: bool = False,
            root: bool = True, unbiased: bool = False, centered: bool = False, missing_weight: float | None = None):
    """RMSNorm with one thing changed, computed as the reference computes (opmath type, rounded once at the end).

    offset: the output is x_hat * (offset + weight); missing_weight: the weight a None stands for (None: no scaling)
    eps_outside: x / (sqrt(mean(x^2)) + eps); root=False: x / (mean(x^2) + eps); unbiased: sum of squares / (n - 1);
    centered: the mean subtracted first (a LayerNorm without bias)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    dims = tuple(range(-len(shape), 0))
    x = input.to(ref.opmath_dtype(input.dtype))
    if centered:
        x = x - x.mean(dim=dims, keepdim=True)
    n = math.prod(shape)
    ms = x.pow(2).sum(dim=dims, keepdim=True) / (n - 1 if unbiased and n > 1 else n)
    if eps_outside:
        y = x / (ms.sqrt() + eps)
    elif root:
        y = x * torch.rsqrt(ms + eps)
    else:
        y = x / (ms + eps)
    if weight is not None:
        y = y * (weight.to(y.dtype) + offset)
    elif missing_weight is not None:
        y = y * (missing_weight + offset)
    return y.to(input.dtype)


def _formula(eps: float, **changes) -> Callable:
    def formula(input, normalized_shape, weight=None):
        return variant(input, normalized_shape, weight, eps, **changes)

    return formula


XHAT = "x / sqrt(mean(x^2) + eps)"


def conventions(ctx: Context, weighted: bool, eps: float | None, known_eps: dict) -> list[Convention]:
    """The spec's formula under the chosen options, then every known convention that differs from it on this call.

    `eps` is the eps passed (None: omitted, resolved by the option eps_default); `known_eps` maps eps_default choices
    to (default as a function of the dtype, who uses it)."""
    offset = float(ctx.options.get("weight_offset", "0"))
    chosen = ctx.options.get("eps_default", "torch")
    spec_eps = known_eps[chosen][0](ctx.dtype) if eps is None else eps
    scaling = "(1 + weight)" if offset else "weight"
    found = [Convention(f"computes the spec's own formula {XHAT} * {scaling} (eps = {spec_eps:.3g})",
                        _formula(spec_eps, offset=offset), spec=True)]

    def add(does: str, **changes) -> None:
        found.append(Convention(does, _formula(changes.pop("eps", spec_eps), **changes)))

    add("adds eps outside the square root, x / (sqrt(mean(x^2)) + eps)", offset=offset, eps_outside=True)
    add("divides by mean(x^2) + eps, without the square root", offset=offset, root=False)
    add("subtracts the mean first, (x - mean) / sqrt(var + eps): a LayerNorm without bias", offset=offset,
        centered=True)
    add("divides the sum of squares by n - 1 instead of n", offset=offset, unbiased=True)
    if weighted and offset == 0:
        add(f"scales by (1 + weight), Gemma's convention: {XHAT} * (1 + weight) in float32 (transformers GemmaRMSNorm; "
            "check it with --option weight_offset=1)", offset=1.0)
    elif weighted:
        add(f"scales by the plain weight, {XHAT} * weight (torch, Llama; check it with --option weight_offset=0)")
    if weighted:
        add(f"ignores the weight, {XHAT}")
    else:
        add(f"outputs 2 {XHAT}: Gemma's (1 + weight) scaling with weight=None taken as ones (Gemma's own initial "
            "weight is zeros, which scales by 1)", missing_weight=1.0, offset=1.0)
    for key, (default, who) in known_eps.items():
        value = default(ctx.dtype)
        if value == spec_eps:
            continue
        if eps is None:
            add(f"takes eps omitted as eps={value:.3g}, the {who} (--option eps_default={key})", eps=value,
                offset=offset)
        else:
            add(f"ignores the eps argument for a fixed {value:.3g} (the {who})", eps=value, offset=offset)
    if eps is not None and eps != 0:
        add("ignores the eps argument (eps = 0)", eps=0.0, offset=offset)
    return found


def convention_hint(ctx: Context, out, input, normalized_shape, weight, eps: float | None, known_eps: dict) -> str:
    """"; the target <does> ..." when the target's output `out` (of input, normalized_shape, weight, eps) matches
    a known convention other than the spec's within the tolerance policy; otherwise "; it matches no known convention:
    the nearest is a target that <does>, <distance>"; "" when the output cannot be compared (wrong shape, dtype) or is
    within the policy of the spec's own formula (then the failure is not one of convention)."""
    try:
        if not isinstance(out, torch.Tensor) or out.shape != input.shape or out.dtype != input.dtype:
            return ""
        measured = []
        for convention in conventions(ctx, weight is not None, eps, known_eps):
            ref64, lowp = reference_pair(convention.formula, input, normalized_shape, weight)
            measured.append((compare(out, ref64, lowp, ctx.dtype, bound=ctx.bound), convention))
    except Exception:  # a hint must never turn a violation into an error of the check
        return ""
    if any(stats.ok and c.spec for stats, c in measured):
        return ""
    matches = [(stats, c) for stats, c in measured if stats.ok]
    if matches:
        return "; the target " + " or ".join(
            f"{c.does} (its output matches that formula within the tolerance policy, off by "
            f"{eps_units(stats.max_eps, ctx.dtype)})" for stats, c in matches)
    stats, nearest = min(measured, key=lambda m: m[0].max_eps)
    distance = (f"off by {eps_units(stats.max_eps, ctx.dtype)} at the output's scale (max error {stats.max_abs:.3g}, "
                f"allowed {stats.allowed:.3g})")
    if nearest.spec:
        return (f"; no known convention explains it: the nearest formula is the spec's own, {distance}, so this is an "
                "error of precision or a bug, not a convention")
    return f"; it matches no known convention: the nearest is a target that {nearest.does}, {distance}"

