"""Inputs shared by the attention family's checks: the example strategy and the q, k, v it describes."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ..core import Context
from ..strategies import TILE_EDGES, layouts, materialize, patterns, scaled, seeds, sizes


#: head dims of real models (GPT-2 64, Phi-2 80, Llama-3 and Mistral 128, DeepSeek-V2's q/k 192 (128 + 64 RoPE),
#: Gemma 256) and FlashAttention's compiled head dims (64, 96, 128, 192, 256): 80, 96 and 192 are not powers of two.
HEAD_DIMS = (64, 80, 96, 128, 192, 256)
#: sequence lengths of production prefill, around the powers of two kernels tile by.
PRODUCTION_LENGTHS = (2047, 2048, 2049, 4095, 4096, 4097)


def _lengths(draw, same_length: bool, edges: tuple[int, ...]) -> tuple[int, int]:
    """Lq and Lk: each small or at a tile edge (so one of them, or both, spans several tiles)."""
    length = st.one_of(sizes(1, 9), st.sampled_from(edges))
    lq = draw(length)
    return lq, lq if same_length else draw(length)


@st.composite
def _small_shape(draw, gqa: bool, same_length: bool) -> dict:
    """Everything inside one tile of any kernel: L <= 9, E <= 16."""
    lq = draw(sizes(1, 9))
    return {"B": draw(sizes(1, 2)), "Hkv": draw(sizes(1, 3)), "G": draw(sizes(1, 3)) if gqa else 1, "Lq": lq,
            "Lk": lq if same_length else draw(sizes(1, 9)), "E": draw(st.one_of(sizes(1, 9), st.just(16))),
            "Ev": draw(sizes(1, 9))}


@st.composite
def _kernel_shape(draw, gqa: bool, same_length: bool, max_length: int) -> dict:
    """Large in one or two dimensions, small in the rest, B * Hq <= 4 (cheap on one CPU thread): the keys, the
    queries or both at a tile edge up to 1025 (E <= 64), or a real model's head dim with lengths up to 257."""
    large = draw(st.sampled_from(["keys", "queries", "both", "head_dim"]))
    if large == "head_dim":
        e = draw(st.sampled_from(HEAD_DIMS))
        lq, lk = _lengths(draw, same_length, tuple(n for n in TILE_EDGES if n <= min(max_length, 257)))
    else:
        e = draw(st.one_of(sizes(1, 16), st.just(64)))
        edge = st.sampled_from(tuple(n for n in TILE_EDGES if n <= max_length))
        lq = draw(edge if large in ("queries", "both") else sizes(1, 9))
        lk = lq if same_length else draw(edge if large in ("keys", "both") else sizes(1, 9))
    return {"B": 1, "Hkv": draw(sizes(1, 2)), "G": draw(sizes(1, 2)) if gqa else 1, "Lq": lq, "Lk": lk, "E": e,
            "Ev": draw(st.one_of(sizes(1, 9), st.just(e)))}


@st.composite
def _production_shape(draw, gqa: bool, same_length: bool, max_length: int) -> dict:
    """Large in every dimension at once, as in a real prefill: thousands of tokens, a real head dim, and batch x
    heads spanning many program instances of a kernel's grid (for GPU runs and long fuzzing)."""
    e = draw(st.sampled_from(HEAD_DIMS))
    lq, lk = _lengths(draw, same_length, tuple(n for n in TILE_EDGES + PRODUCTION_LENGTHS if n <= max_length))
    hkv = draw(st.sampled_from([1, 2, 8]))
    return {"B": draw(sizes(1, 4)), "Hkv": hkv, "G": draw(st.sampled_from([1, 4, 8])) if gqa else 1, "Lq": lq,
            "Lk": lk, "E": e, "Ev": e}


@st.composite
def attention_examples(draw, gqa: bool = False, same_length: bool = False, large: bool = False,
                       max_length: int = 8192) -> dict:
    """Shapes for q [B, Hkv*G, Lq, E], k [B, Hkv, Lk, E], v [B, Hkv, Lk, Ev], plus seed, pattern, layout.

    The shape is drawn at the current scale (spec.strategies.scaled): small (one tile), kernel (tile edges in
    the lengths or a real head dim) or production. `max_length` caps the kernel and production lengths for
    checks that call the target many times. `large` admits large-magnitude inputs (scores in the thousands):
    differential checks only, whose tolerance follows the problem's conditioning; properties compare two
    computation orders at a fixed number of ulps."""
    p = draw(scaled(_small_shape(gqa, same_length), _kernel_shape(gqa, same_length, max_length),
                    _production_shape(gqa, same_length, max_length)))
    return {
        **p,
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
