"""Inputs shared by the attention family's checks: the example strategy and the q, k, v it describes."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ..core import Context
from ..strategies import layouts, materialize, patterns, seeds, sizes


@st.composite
def attention_examples(draw, gqa: bool = False, same_length: bool = False, large: bool = False) -> dict:
    """Shapes for q [B, Hkv*G, Lq, E], k [B, Hkv, Lk, E], v [B, Hkv, Lk, Ev], plus seed, pattern, layout.

    `large` admits large-magnitude inputs (scores in the thousands): differential checks only, whose tolerance
    follows the problem's conditioning; properties compare two computation orders at a fixed number of ulps."""
    lq = draw(sizes(1, 9))
    return {
        "B": draw(sizes(1, 2)),
        "Hkv": draw(sizes(1, 3)),
        "G": draw(sizes(1, 3)) if gqa else 1,
        "Lq": lq,
        "Lk": lq if same_length else draw(sizes(1, 9)),
        "E": draw(st.one_of(sizes(1, 9), st.just(16))),
        "Ev": draw(sizes(1, 9)),
        "causal": draw(st.booleans()),
        "scale": draw(st.sampled_from([None, None, 0.3, 1.0])),
        "seed": draw(seeds()),
        "pattern": draw(patterns() if large else st.sampled_from(["normal", "ties"])),
        "layout": draw(layouts()),
    }


def qkv(ctx: Context, p: dict, pattern: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q [B, Hkv*G, Lq, E], k [B, Hkv, Lk, E], v [B, Hkv, Lk, Ev] in the dtype, device and layout under test."""
    pat, lay = pattern or p["pattern"], p["layout"]
    b, hkv, hq = p["B"], p["Hkv"], p["Hkv"] * p["G"]
    # "large" scales the queries only: scores of magnitude ~100 overflow exp() in float32 without the max
    # subtraction, while the problem stays conditioned well enough for a factor-2 tolerance.
    kv_pat = "normal" if pat == "large" else pat

    def mk(shape: tuple[int, ...], salt: int, pat: str) -> torch.Tensor:
        return materialize(shape, p["seed"], ctx.dtype, ctx.device, pat, salt=salt, layout=lay)

    q = mk((b, hq, p["Lq"], p["E"]), 1, pat)
    return q, mk((b, hkv, p["Lk"], p["E"]), 2, kv_pat), mk((b, hkv, p["Lk"], p["Ev"]), 3, kv_pat)


def output_shape(q: torch.Tensor, v: torch.Tensor) -> tuple[int, ...]:
    """[B, Hq, Lq, Ev]: the queries' shape with the values' head dim."""
    return (*q.shape[:-1], v.shape[-1])
