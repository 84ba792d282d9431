"""Positional encodings: RoPE (rotate-half and interleaved), Llama 3 RoPE scaling, sinusoidal and learned positions,
and GPT-2's context cropping."""

from __future__ import annotations

import functools
import math

import torch
from hypothesis import strategies as st

from ..reference import positions as ref
from .checks import (PROPERTY_ULPS, assert_agree, assert_equal, assert_matches, assert_within, call, eps_units,
                     reference_pair, to64)
from .core import Component, Context, Violation, invariant, row
from .gradients import BACKWARD, backward_complete, backward_finite_differences, backward_matches, backward_repeatable
from .gradients import cotangents_for, gradient_of
from .strategies import TILE_EDGES, layouts, materialize, patterns, scaled, seeds, sizes
from .tolerance import compare

SU = "Su et al. 2021, RoFormer, eq. 34"
HF_ROPE = "transformers models/llama/modeling_llama.py (rotate_half, apply_rotary_pos_emb, LlamaRotaryEmbedding)"
GPTJ_ROPE = "transformers models/gptj/modeling_gptj.py (rotate_every_two); Meta llama/model.py apply_rotary_emb"
LLAMA3 = "Meta llama-models apply_scaling (Llama 3.1); transformers modeling_rope_utils._compute_llama3_parameters"
VASWANI = "Vaswani et al. 2017, Attention Is All You Need, sec. 3.5"
GPT2_GEN = ("Radford et al. 2019 (GPT-2 wpe, n_positions); Raschka 2024, Build a Large Language Model (From Scratch), "
            "listing 4.8")

#: the two RoPE pair layouts, by `interleaved`; a convention failure names the one the target follows.
CONVENTIONS = {
    False: "rotate-half: pair i is dims (i, i + D/2), as in Hugging Face Llama and GPT-NeoX",
    True: "interleaved: pair i is dims (2i, 2i + 1), as in GPT-J and Meta's original Llama",
}
FEATURES = {"theta": "a RoPE base theta other than 10000"}
#: the bases the theta invariants draw: tiny, default, Llama 3's, and Qwen/Code Llama's.
THETAS = (100.0, 10000.0, 500000.0, 1e6)

# --- sizes by scale (docs/scale.md): small = one tile of every kernel, kernel = one or two dimensions at a tile edge
# or a real model's size, production = real models' shapes ------------------------------------------------------

#: head dims of real models: 64 (GPT-2, DeepSeek's rotary part), 80 (Phi-2), 96 (Phi-3), 128 (Llama, Mistral, Qwen),
#: 192 (MLA's q/k head), 256 (Gemma); past 64 a kernel needs more than one 64-wide tile of the head.
HEAD_DIMS = (64, 80, 96, 128, 192, 256)
#: sequence lengths at kernel scale (with few heads): the tile edges and long prefills.
SEQ_EDGES = TILE_EDGES + (2047, 2048, 2049, 4095, 4096, 4097)
#: heads at kernel scale: a block of 32 or 64 heads and one more (with a few batches, many program instances).
HEAD_EDGES = (31, 32, 33, 63, 64, 65)
#: positions a kernel's position arithmetic crosses: a 1024-row table, float16's last exact integer (2048), a
#: 4096-row cos/sin cache (max_position_embeddings of Llama 2), int16 (32767), 16 bits (65535), Llama 3.1's 128K.
POSITION_EDGES = (1024, 2048, 4096, 32768, 65536, 131072)
#: small-scale first positions: all below 1024 + 6, so within every tile and type a kernel uses.
SMALL_STARTS = (0, 0, 1, 17, 1000)
#: kernel-scale first positions: one below each edge, so an example of two or more tokens crosses it.
KERNEL_STARTS = tuple(e - 1 for e in POSITION_EDGES)
#: (B, H, L, D) of real models at production scale, up to 2^26 elements: Llama 2 7B, Llama 3 8B (q and kv heads),
#: Llama 70B, Phi-2, Gemma 7B, DeepSeek's rotary part.
PRODUCTION_SHAPES = ((1, 32, 4096, 128), (2, 32, 8192, 128), (4, 8, 8192, 128), (1, 64, 8192, 128),
                     (2, 32, 2048, 80), (1, 16, 8192, 256), (4, 128, 2048, 64))

ROPE = Component(
    name="rope",
    signature="rope(x: Float[B, H, L, D], positions: Int64[L], theta: float = 10000.0) -> Float[B, H, L, D]",
    summary="Rotary position embedding, rotate-half convention (HF Llama, GPT-NeoX): x cos + rotate_half(x) sin.",
    reference=ref.rope,
    features={**FEATURES, **BACKWARD},
)

ROPE_INTERLEAVED = Component(
    name="rope_interleaved",
    signature="rope_interleaved(x: Float[B, H, L, D], positions: Int64[L], theta: float = 10000.0) "
    "-> Float[B, H, L, D]",
    summary="Rotary position embedding on adjacent pairs (GPT-J, Meta's original Llama).",
    reference=ref.rope_interleaved,
    features={**FEATURES, **BACKWARD},
)


def angle_ulps(ctx: Context, max_position: int) -> float:
    """Tolerance in eps(dtype) units for comparing two RoPE outputs: rounding, plus the float32 (float64 for float64)
    angle error m * f * few eps that every implementation has at position m (f <= 1)."""
    angle_eps = torch.finfo(ref.angle_dtype_for(ctx.dtype)).eps
    return PROPERTY_ULPS + 4 * max(max_position, 1) * angle_eps / torch.finfo(ctx.dtype).eps


def rotary_reference_pair(x: torch.Tensor, positions: torch.Tensor, inv_freq64: torch.Tensor, inv_freq_lowp,
                          interleaved: bool = False):
    """(float64 reference, error witness) for a rotation with frequencies `inv_freq64` (float64).

    The witness is what the tolerance policy compares against: in float64, the rotation with x and the frequencies
    both perturbed by a few ulps (so the angle's conditioning, m * f * eps, is included); below float64, the rotation
    computed as libraries do, with `inv_freq_lowp()` frequencies and angles in float32 and cos / sin rounded to x's
    dtype, whose angle error grows with the position. Fewer frequencies than x has pairs rotate only x's first
    2 * len(inv_freq64) dims and pass the rest through (partial rotary)."""
    k = 2 * inv_freq64.shape[0]

    def rotation(x, positions, inv_freq):
        if x.dtype == torch.float64:
            head = ref.apply_rotary(x[..., :k], positions, inv_freq, interleaved)
        else:
            head = ref.apply_rotary(x[..., :k], positions, inv_freq_lowp(), interleaved, angle_dtype=torch.float32)
        return head if k == x.shape[-1] else torch.cat([head, x[..., k:]], dim=-1)

    return reference_pair(rotation, x, positions, inv_freq64)


def rope_pair(x: torch.Tensor, positions: torch.Tensor, theta: float, interleaved: bool, rotated: int | None = None):
    """rotary_reference_pair for RoPE with base theta over all of x's dims, or over its first `rotated` dims only (the
    frequencies then those of a head of `rotated` dims, as GPT-NeoX's partial rotary computes them)."""
    k = x.shape[-1] if rotated is None else rotated
    return rotary_reference_pair(x, positions, ref.rope_inv_freq(k, theta),
                                 lambda: ref.rope_inv_freq(k, theta, torch.float32), interleaved)


def _layout_name(interleaved: bool, rotated: int, dim: int) -> str:
    if rotated == dim:
        return CONVENTIONS[interleaved]
    if rotated == 0:
        return (f"rotates none of its {dim} dims and passes them all through unchanged (partial rotary whose rotated "
                "dims round down to 0, e.g. GPT-NeoX partial_rotary_factor=0.25 on a head of fewer than 4 dims)")
    example = "GPT-J rotary_dim" if interleaved else "GPT-NeoX partial_rotary_factor=0.25"
    pairs = "(2i, 2i + 1)" if interleaved else f"(i, i + {rotated // 2})"
    return (f"rotates only the first {rotated} of {dim} dims (partial rotary, e.g. {example}): pairs {pairs} of "
            f"those turn by m theta^(-2i/{rotated}), the other {dim - rotated} dims pass through unchanged")


def passed_through(out: torch.Tensor, x: torch.Tensor) -> int:
    """How many trailing dims of the last axis `out` leaves bit-exactly equal to `x` (partial rotary's pass-through)."""
    same = (out == x).reshape(-1, x.shape[-1]).all(0)
    n = 0
    while n < same.numel() and bool(same[-1 - n]):
        n += 1
    return n


def layouts_to_try(dim: int, interleaved: bool, passed: int) -> list[tuple[bool, int]]:
    """(interleaved, rotated dims) of the layout checked, then of the known others: the other pairing, and partial
    rotary of the leading dims in either pairing when the trailing `passed` dims are passed through bit-exactly (no
    rotation at all when every dim is)."""
    found = [(interleaved, dim), (not interleaved, dim)]
    rotated = dim - passed
    if rotated == 0:
        found.insert(1, (False, 0))
    elif rotated < dim and rotated % 2 == 0:
        found = found[:1] + [(False, rotated), (True, rotated)] + found[1:]
    return found


def layout_hint(ctx: Context, out: torch.Tensor, x: torch.Tensor, positions: torch.Tensor, theta: float,
                interleaved: bool) -> str:
    """Which known RoPE layout the target's `out` = rope(x, positions, theta) matches within the tolerance policy;
    else the nearest and how far. "" when it matches the layout checked (the failure is not one of layout)."""
    try:
        d = x.shape[-1]
        measured = []
        for layout in layouts_to_try(d, interleaved, passed_through(out, x)):
            ref64, lowp = rope_pair(x, positions, theta, layout[0], layout[1])
            measured.append((compare(out, ref64, lowp, ctx.dtype), layout))
    except Exception:  # a hint must never turn a violation into an error of the check
        return ""
    if measured[0][0].ok:
        return ""
    for stats, (inter, rotated) in measured[1:]:
        if stats.ok:
            return f"; the target {_layout_name(inter, rotated, d)}" if rotated < d else \
                f"; the target follows the other convention, {CONVENTIONS[inter]}"
    stats, (inter, rotated) = min(measured, key=lambda m: m[0].max_eps)
    return (f"; it matches no known RoPE layout: the nearest is {_layout_name(inter, rotated, d)}, off by "
            f"{eps_units(stats.max_eps, ctx.dtype)} at the output's scale (max error {stats.max_abs:.3g})")


def _shape(B, H, L, D) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({"B": B, "H": H, "L": L, "D": D})


@functools.cache
def rope_shapes() -> st.SearchStrategy[dict]:
    """B, H, L, D: small (one tile), or at kernel scale one of a long sequence (one head, L at a tile edge or in the
    thousands, D small or a real head dim) and many heads (B x H over a few blocks of heads, real head dims, a few
    tokens), or a real model's shape at production scale."""
    small_d = sizes(1, 8).map(lambda n: 2 * n)
    small = _shape(sizes(1, 2), sizes(1, 3), sizes(1, 6), small_d)
    long = _shape(st.just(1), st.just(1), st.sampled_from(SEQ_EDGES), small_d)
    long_heads = _shape(st.just(1), st.just(1), st.sampled_from(SEQ_EDGES), st.sampled_from(HEAD_DIMS))
    heads = _shape(sizes(1, 3), st.sampled_from(HEAD_EDGES), sizes(2, 6), st.sampled_from(HEAD_DIMS))
    production = st.sampled_from(PRODUCTION_SHAPES).map(lambda s: dict(zip("BHLD", s)))
    return scaled(small, st.one_of(long, long_heads, heads), production)


@functools.cache
def starts(small=SMALL_STARTS) -> st.SearchStrategy[int]:
    """The first position, drawn apart from the shape (positions cost nothing): below 1024 + 6 at small scale, or
    one below an edge of POSITION_EDGES from kernel scale, so that two or more tokens cross it."""
    return scaled(st.sampled_from(small), st.sampled_from(KERNEL_STARTS))


@st.composite
def rope_examples(draw, thetas=(10000.0,), small_starts=SMALL_STARTS) -> dict:
    return {
        **draw(rope_shapes()),
        "start": draw(starts(small_starts)),
        "shuffle": draw(st.booleans()),
        "theta": draw(st.sampled_from(thetas)),
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }


def rope_inputs(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    x = materialize((p["B"], p["H"], p["L"], p["D"]), p["seed"], ctx.dtype, ctx.device, p["pattern"],
                    layout=p["layout"])
    positions = torch.arange(p["start"], p["start"] + p["L"])
    if p["shuffle"]:
        positions = positions[torch.randperm(p["L"], generator=torch.Generator().manual_seed(p["seed"]))]
    return x, positions.to(ctx.device)


def _theta_kwargs(p: dict) -> dict:
    """theta only when it is not the default, so a target without the `theta` feature is checked at 10000."""
    return {} if p["theta"] == 10000.0 else {"theta": p["theta"]}


@invariant(row("rope.reference.matches", interleaved=False, source=f"{SU}; {HF_ROPE}",
               statement="Output equals the float64 reference (rotate-half) at arbitrary int64 positions, up to 1005 "
               "at small scale and past 131072 from kernel scale."),
           row("rope_interleaved.reference.matches", interleaved=True, source=f"{SU}; {GPTJ_ROPE}",
               statement="Output equals the float64 reference (interleaved) at arbitrary int64 positions, up to 1005 "
               "at small scale and past 131072 from kernel scale."),
           kind="differential", examples=rope_examples())
def check_rope_reference(ctx: Context, p: dict, interleaved: bool) -> None:
    x, positions = rope_inputs(ctx, p)
    ref64, lowp = rope_pair(x, positions, p["theta"], interleaved)
    out = ctx.target(x, positions, **_theta_kwargs(p))
    try:
        assert_matches(ctx, out, ref64, lowp)
    except Violation as violation:
        if violation.cause != "violation":
            raise
        ctx.fail(violation.message + layout_hint(ctx, out, x, positions, p["theta"], interleaved), **violation.details)


@invariant("rope.norm_preserving", "rope_interleaved.norm_preserving", examples=rope_examples(),
           statement="Each position's head vector keeps its Euclidean norm (a rotation).",
           source=f"{SU} (orthogonal R_m)")
def check_norm_preserving(ctx: Context, p: dict) -> None:
    x, positions = rope_inputs(ctx, p)
    out = call(ctx, x.shape, x, positions, **_theta_kwargs(p))
    assert_agree(ctx, to64(out).norm(dim=-1), to64(x).norm(dim=-1), "per-position vector norms after vs before RoPE",
                 ulps=angle_ulps(ctx, int(positions.max())))


@invariant("rope.position_zero_identity", "rope_interleaved.position_zero_identity", examples=rope_examples(),
           statement="At position 0 the output is exactly the input.", source=f"{SU} (R_0 = I)")
def check_position_zero_identity(ctx: Context, p: dict) -> None:
    x, positions = rope_inputs(ctx, p)
    out = call(ctx, x.shape, x, torch.zeros_like(positions), **_theta_kwargs(p))
    assert_equal(ctx, out, x, "RoPE at position 0 vs its input (cos 0 = 1 and sin 0 = 0 make it exactly the identity)")


#: m, n and the shift s: below 1024 at small scale, up to 131072 from kernel scale.
_RELATIVE_POSITIONS = scaled(st.integers(0, 1023), st.integers(0, POSITION_EDGES[-1]))


@st.composite
def _relative_examples(draw, thetas=(10000.0,)) -> dict:
    p = draw(rope_examples(thetas))
    p["m"], p["n"], p["shift"] = (draw(_RELATIVE_POSITIONS) for _ in range(3))
    return p


@invariant("rope.relative.dot_product", "rope_interleaved.relative.dot_product", examples=_relative_examples(),
           statement="<rope(q, m), rope(k, n)> depends only on m - n: shifting both positions by s leaves it unchanged "
           "(random m, n, s).", source=f"{SU}, eq. 16")
def check_relative_dot_product(ctx: Context, p: dict) -> None:
    # <rope(q, m), rope(k, n)> = <rope(q, m + s), rope(k, n + s)>: q and k are two positions of one call.
    x, _ = rope_inputs(ctx, {**p, "L": 2})
    dots = []
    for offset in (0, p["shift"]):
        positions = torch.tensor([p["m"] + offset, p["n"] + offset], device=ctx.device)
        out = to64(call(ctx, x.shape, x, positions, **_theta_kwargs(p)))
        dots.append((out[..., 0, :] * out[..., 1, :]).sum(-1))
    x64 = to64(x)
    scale = float((x64[..., 0, :].norm(dim=-1) * x64[..., 1, :].norm(dim=-1)).max())
    allowed = angle_ulps(ctx, max(p["m"], p["n"]) + p["shift"]) * torch.finfo(ctx.dtype).eps * max(scale, 1e-30)
    worst = int((dots[0] - dots[1]).abs().argmax())
    assert_within(ctx, float(dots[1].flatten()[worst]), float(dots[0].flatten()[worst]), allowed,
                  f"<rope(q, {p['m']} + {p['shift']}), rope(k, {p['n']} + {p['shift']})> vs <rope(q, {p['m']}), "
                  f"rope(k, {p['n']})>: the score must depend on m - n only")


def probe_rotations(ctx: Context, dim: int, position: int, *args, **kwargs) -> torch.Tensor:
    """Image of every basis vector e_j at one position: a [D, D] float64 matrix, row j = rope(e_j). The basis vectors
    are the D heads of one [1, D, 1, D] input; `args` and `kwargs` follow x and positions in the call."""
    eye = torch.eye(dim, dtype=ctx.dtype, device=ctx.device)[None, :, None, :]
    out = call(ctx, eye.shape, eye, torch.tensor([position], device=ctx.device), *args, **kwargs)
    return to64(out)[0, :, 0, :]


def partners(dim: int, interleaved: bool) -> torch.Tensor:
    j = torch.arange(dim)
    return j ^ 1 if interleaved else (j + dim // 2) % dim


#: the head dims the probing invariants draw: 2..16, and real head dims from kernel scale.
_PROBED_DIMS = scaled(sizes(1, 8).map(lambda n: 2 * n), st.sampled_from(HEAD_DIMS))


@st.composite
def _convention_examples(draw, thetas=(10000.0,)) -> dict:
    return {"D": draw(_PROBED_DIMS),
            "position": draw(st.sampled_from([1, 2, 3])),
            "theta": draw(st.sampled_from(thetas))}


def layout_rows(dim: int, position: int, theta: float, interleaved: bool, rotated: int) -> torch.Tensor:
    """What probe_rotations reads off a layout, in float64: row j = rope(e_j) with only the first `rotated` dims
    rotated (frequencies theta^(-2i/rotated)) and the rest passed through."""
    eye = torch.eye(dim, dtype=torch.float64)
    head = ref.apply_rotary(eye[:, None, :rotated], torch.tensor([position]), ref.rope_inv_freq(rotated, theta),
                            interleaved)[:, 0]
    return torch.cat([head, eye[:, rotated:]], dim=-1)


def _name_layout(ctx: Context, rows: torch.Tensor, position: int, theta: float, interleaved: bool) -> str:
    """The known layout the probed `rows` follow, named only when they match its formula to angle_ulps of the dtype
    (trailing dims passed through bit-exactly for partial rotary); else the nearest layout and how far it is."""
    d = rows.shape[-1]
    passed = int((rows == torch.eye(d, dtype=rows.dtype)).all(-1).flip(0).cumprod(0).sum())
    allowed = angle_ulps(ctx, position) * torch.finfo(ctx.dtype).eps
    measured = [(float((rows - layout_rows(d, position, theta, *layout)).abs().max()), layout)
                for layout in layouts_to_try(d, interleaved, passed)[1:]]
    for diff, (inter, rotated) in measured:
        if diff <= allowed:
            return f"; the target {_layout_name(inter, rotated, d)}" if rotated < d else \
                f"; the target follows the other convention, {CONVENTIONS[inter]}"
    diff, (inter, rotated) = min(measured)
    return (f"; it matches no known RoPE layout: the nearest is {_layout_name(inter, rotated, d)}, whose rotation at "
            f"position {position} differs by {diff:.3g} (allowed {allowed:.3g})")


@invariant(row("rope.convention.pairs", interleaved=False, source=f"{SU}; {HF_ROPE}",
               statement="Only the dims of a pair are mixed, pairs in the rotate-half: pair i is dims (i, i + D/2), as "
               "in Hugging Face Llama and GPT-NeoX; a target in the other convention, or rotating only its "
               "leading dims (partial rotary), is reported by name."),
           row("rope_interleaved.convention.pairs", interleaved=True, source=f"{SU}; {GPTJ_ROPE}",
               statement="Only the dims of a pair are mixed, pairs in the interleaved: pair i is dims (2i, 2i + 1), as "
               "in GPT-J and Meta's original Llama; a target in the other convention, or rotating only its "
               "leading dims (partial rotary), is reported by name."),
           examples=_convention_examples())
def check_convention_pairs(ctx: Context, p: dict, interleaved: bool) -> None:
    d = p["D"]
    rows = probe_rotations(ctx, d, p["position"], **_theta_kwargs(p))
    support = rows.abs() > PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    j = torch.arange(d)
    allowed = torch.zeros(d, d, dtype=torch.bool)
    allowed[j, j] = True
    allowed[j, partners(d, interleaved)] = True
    if (support & ~allowed).any():
        bad = [int(i) for i in (support & ~allowed).nonzero()[0]]
        name = _name_layout(ctx, rows, p["position"], p["theta"], interleaved)
        ctx.fail(f"RoPE mixes dims {bad[0]} and {bad[1]}, which are not a pair in the {CONVENTIONS[interleaved]}{name}",
                 index=bad)


def check_angles(ctx: Context, rows: torch.Tensor, position: int, interleaved: bool, expected_inv_freq: torch.Tensor,
                 what: str) -> None:
    """Read each pair's rotation angle off `rows` (probe_rotations at `position`) and compare it with
    position * expected_inv_freq, allowing 8 eps of the angle, the float32 (float64) angle error at `position`, and
    2 eps more for angles above 1 rad."""
    d = rows.shape[-1]
    first = torch.arange(0, d, 2) if interleaved else torch.arange(d // 2)
    second = partners(d, interleaved)[first]
    angles = torch.atan2(rows[first, second], rows[first, first])
    expected = position * expected_inv_freq
    eps, angle_eps = torch.finfo(ctx.dtype).eps, torch.finfo(ref.angle_dtype_for(ctx.dtype)).eps
    allowed = 8 * eps * expected + 4 * position * angle_eps + 2 * eps * (expected > 1)
    i = int(((angles - expected).abs() - allowed).argmax())  # the pair furthest outside its allowance
    assert_within(ctx, float(angles[i]), float(expected[i]), float(allowed[i]),
                  f"pair {i}'s rotation at position {position}, in rad ({what})")


@invariant(row("rope.theta.frequencies", interleaved=False),
           row("rope_interleaved.theta.frequencies", interleaved=True),
           statement="theta changes only the frequencies: pair i turns by m * theta^(-2i/D) (pair 0 by m, whatever "
           "theta).", source=f"{SU}, eq. 15", examples=_convention_examples(THETAS), requires={"theta"})
def check_theta_frequencies(ctx: Context, p: dict, interleaved: bool) -> None:
    rows = probe_rotations(ctx, p["D"], p["position"], **_theta_kwargs(p))
    check_angles(ctx, rows, p["position"], interleaved, ref.rope_inv_freq(p["D"], p["theta"]),
                 f"theta={p['theta']:g}: pair i turns by m * theta^(-2i/D)")


@invariant("rope_interleaved.equals_permuted_rotate_half", kind="differential", examples=rope_examples(THETAS),
           statement="rope_interleaved(x)[..., P] = rope(x[..., P]) for the fixed permutation P = (0, 2, 4, ..., 1, 3, "
           "5, ...).", source=f"{SU}; {HF_ROPE}; {GPTJ_ROPE}", requires={"theta"})
def check_interleaved_is_permuted(ctx: Context, p: dict) -> None:
    # rope_interleaved(x)[..., P] = rope(x[..., P]) with P = (0, 2, 4, ..., 1, 3, 5, ...).
    x, positions = rope_inputs(ctx, p)
    perm = ref.interleaved_to_half(p["D"]).to(ctx.device)
    ref64, lowp = rope_pair(x[..., perm], positions, p["theta"], interleaved=False)
    inverse = torch.argsort(perm).cpu()
    out = ctx.target(x, positions, **_theta_kwargs(p))
    assert_matches(ctx, out, ref64[..., inverse], lowp[..., inverse],
                   what="interleaved RoPE vs rotate-half RoPE conjugated by P")


# --- Llama 3 scaling ------------------------------------------------------------------------------------

ROPE_LLAMA3 = Component(
    name="rope_llama3",
    signature="rope_llama3(x: Float[B, H, L, D], positions: Int64[L], theta: float = 500000.0, factor: float = 8.0, "
    "low_freq_factor: float = 1.0, high_freq_factor: float = 4.0, original_max_position_embeddings: int = 8192) "
    "-> Float[B, H, L, D]",
    summary="Rotate-half RoPE with Llama 3.1 frequency scaling (HF rope_type 'llama3').",
    reference=ref.rope_llama3,
    features=BACKWARD,
)


@st.composite
def _llama3_examples(draw, factors=(1.0, 2.0, 8.0, 32.0)) -> dict:
    low, high = draw(st.sampled_from([(1.0, 4.0), (1.0, 2.0), (2.0, 8.0)]))
    p = draw(rope_examples(small_starts=(0, 5, 1000, 9000)))
    p.update(theta=draw(st.sampled_from([10000.0, 500000.0])), factor=draw(st.sampled_from(factors)), low=low,
             high=high, original=draw(st.sampled_from([16, 64, 512, 8192])))
    return p


def _scaling(p: dict) -> tuple:
    """rope_llama3's arguments after x and positions."""
    return (p["theta"], p["factor"], p["low"], p["high"], p["original"])


@invariant("rope_llama3.reference.matches", kind="differential", examples=_llama3_examples(),
           statement="Output equals the float64 reference for varied factors, bands and positions (up to 9005 at small "
           "scale, past Llama 3.1's 131072 from kernel scale).",
           source=f"{LLAMA3}; {HF_ROPE}")
def check_llama3_reference(ctx: Context, p: dict) -> None:
    x, positions = rope_inputs(ctx, p)
    d = x.shape[-1]
    ref64, lowp = rotary_reference_pair(x, positions, ref.llama3_inv_freq(d, *_scaling(p)),
                                        lambda: ref.llama3_inv_freq(d, *_scaling(p), dtype=torch.float32))
    assert_matches(ctx, ctx.target(x, positions, *_scaling(p)), ref64, lowp)


_BANDS_DIMS = scaled(sizes(2, 16).map(lambda n: 2 * n), st.sampled_from(HEAD_DIMS))


@st.composite
def _bands_examples(draw) -> dict:
    p = draw(_llama3_examples(factors=(2.0, 8.0, 32.0)))
    p.update(D=draw(_BANDS_DIMS), position=1)
    return p


@invariant("rope_llama3.frequencies.bands", examples=_bands_examples(), source=LLAMA3,
           statement="Pairs with wavelength 2 pi / f below original_max / high_freq_factor keep f, those above "
           "original_max / low_freq_factor turn at f / factor, and the rest interpolate: (1 - s) f / factor + s f, "
           "s = (original_max / wavelength - low) / (high - low).")
def check_llama3_bands(ctx: Context, p: dict) -> None:
    base = ref.rope_inv_freq(p["D"], p["theta"])
    wavelength = 2 * math.pi / base
    high_band, low_band = wavelength < p["original"] / p["high"], wavelength > p["original"] / p["low"]
    counts = ((int(high_band.sum()), "kept"), (int(low_band.sum()), f"divided by {p['factor']:g}"),
              (int((~high_band & ~low_band).sum()), "interpolated"))
    bands = ", ".join(f"{n} pairs {how}" for n, how in counts)
    rows = probe_rotations(ctx, p["D"], p["position"], *_scaling(p))
    check_angles(ctx, rows, p["position"], False, ref.llama3_inv_freq(p["D"], *_scaling(p)),
                 f"Llama 3 bands for original_max {p['original']}, low/high {p['low']:g}/{p['high']:g}: {bands}")


@invariant("rope_llama3.factor_one_is_rope", kind="differential", examples=_llama3_examples(factors=(1.0,)),
           statement="factor = 1 gives plain rotate-half RoPE with the same theta, whatever the band parameters.",
           source=LLAMA3)
def check_llama3_factor_one(ctx: Context, p: dict) -> None:
    x, positions = rope_inputs(ctx, p)
    d, scaling = x.shape[-1], (p["theta"], 1.0, p["low"], p["high"], p["original"])
    # the reference is plain RoPE; the witness is Llama 3's computation with factor 1 in float32, whose interpolated
    # band rounds (1 - s) f + s f to an ulp or two from f, an error that grows with the position like any angle's
    ref64, lowp = rotary_reference_pair(x, positions, ref.rope_inv_freq(d, p["theta"]),
                                        lambda: ref.llama3_inv_freq(d, *scaling, dtype=torch.float32))
    out = ctx.target(x, positions, *scaling)
    assert_matches(ctx, out, ref64, lowp, what="Llama 3 RoPE with factor 1 (vs plain rotate-half RoPE)")


# --- sinusoidal -----------------------------------------------------------------------------------------

SINUSOIDAL = Component(
    name="sinusoidal_positions",
    signature="sinusoidal_positions(num_positions: int, dim: int) -> Float32[num_positions, dim]",
    summary="PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i + 1) = cos(pos / 10000^(2i/dim)); float32 table.",
    reference=ref.sinusoidal_positions,
    dtypes=(torch.float32,),
)


#: table lengths at kernel scale: the tile edges, float16's last exact integer (2048) and beyond, and 8192.
TABLE_EDGES = (1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193)
#: model dims of sinusoidal tables: Transformer base / big, BERT base, GPT-2 XL.
MODEL_DIMS = (64, 128, 512, 768, 1024, 1600)


@functools.cache
def _sinusoidal_examples() -> st.SearchStrategy[dict]:
    """Small tables; from kernel scale a long table of few dims whose rows pos and k reach 8192, or a wide table
    (a real model dim) of few rows; at production, a long and wide one."""
    small = st.fixed_dictionaries({"num_positions": st.one_of(sizes(1, 40), st.sampled_from([512, 2048])),
                                   "dim": sizes(1, 12).map(lambda n: 2 * n), "k": st.integers(0, 300),
                                   "pos": st.integers(0, 300)})
    long = st.fixed_dictionaries({"num_positions": st.sampled_from(TABLE_EDGES),
                                  "dim": sizes(1, 12).map(lambda n: 2 * n), "k": st.integers(0, 8192),
                                  "pos": st.integers(0, 8192)})
    wide = st.fixed_dictionaries({"num_positions": sizes(1, 40), "dim": st.sampled_from(MODEL_DIMS),
                                  "k": st.integers(0, 300), "pos": st.integers(0, 300)})
    production = st.fixed_dictionaries({"num_positions": st.sampled_from([8192]), "dim": st.sampled_from(MODEL_DIMS),
                                        "k": st.integers(0, 8192), "pos": st.integers(0, 8192)})
    return scaled(small, st.one_of(long, wide), production)


@invariant("sinusoidal_positions.reference.matches", kind="differential", examples=_sinusoidal_examples(),
           statement="The table equals the formula (sin at even dims, cos at odd dims), computed in float64, up to "
           "2048 positions at small scale, 8193 from kernel scale.", source=VASWANI)
def check_sinusoidal_reference(ctx: Context, p: dict) -> None:
    n, d = p["num_positions"], p["dim"]
    ref64 = ref.sinusoidal_positions(n, d, torch.float64)
    lowp = ref.sinusoidal_positions(n, d, ctx.dtype, angle_dtype=ref.angle_dtype_for(ctx.dtype))
    assert_matches(ctx, ctx.target(n, d), ref64, lowp, what="sinusoidal table")


@invariant("sinusoidal_positions.relative.rotation", examples=_sinusoidal_examples(),
           statement="PE(pos + k) is a fixed linear function of PE(pos): the rotation of each (sin, cos) pair by the "
           "angle of PE(k).", source=f"{VASWANI} ('PE_pos+k can be represented as a linear function of PE_pos')")
def check_sinusoidal_rotation(ctx: Context, p: dict) -> None:
    # PE(pos + k) = R(k) PE(pos): per pair, sin(a + b) = sin a cos b + cos a sin b and
    # cos(a + b) = cos a cos b - sin a sin b, with cos b, sin b read from the target's own row k.
    d, k, pos = p["dim"], p["k"], p["pos"]
    table = to64(call(ctx, (pos + k + 1, d), pos + k + 1, d))
    sa, ca, sb, cb = table[pos, 0::2], table[pos, 1::2], table[k, 0::2], table[k, 1::2]
    rotated = torch.stack([sa * cb + ca * sb, ca * cb - sa * sb], dim=-1).flatten()
    assert_agree(ctx, table[pos + k], rotated, f"PE({pos} + {k}) vs the rotation by PE({k}) of PE({pos})",
                 ulps=angle_ulps(ctx, pos + k))


@invariant("sinusoidal_positions.position_zero", examples=_sinusoidal_examples(), source=VASWANI,
           statement="PE(0) = (0, 1, 0, 1, ...) exactly.")
def check_sinusoidal_position_zero(ctx: Context, p: dict) -> None:
    first = call(ctx, (p["num_positions"], p["dim"]), p["num_positions"], p["dim"])[0]
    expected = torch.tensor([0.0, 1.0] * (p["dim"] // 2), dtype=ctx.dtype, device=ctx.device)
    assert_equal(ctx, first, expected, "PE(0), which must be exactly (0, 1, 0, 1, ...): sin 0 at even dims, cos 0 at "
                 "odd dims")


# --- learned positions and context cropping -------------------------------------------------------------

LEARNED_POSITIONS = Component(
    name="learned_positions",
    signature="embedding(input: Int64[*batch, L], weight: Float[num_positions, D]) -> Float[*batch, L, D]  "
    "(torch.nn.functional.embedding)",
    summary="Learned absolute positional embeddings (GPT-2 wpe): a table lookup that refuses positions outside the "
    "table.",
    reference=ref.embedding,
    features=BACKWARD,
)


#: table rows at kernel scale: one past a 1024- and a 4096-row tile, and tables past int16 (32767), 16 bits (65535) and
#: 17 bits, with few dims.
ROW_EDGES = (1025, 4097, 32769, 65537, 131073)


@functools.cache
def _embedding_sizes() -> st.SearchStrategy[dict]:
    """A small table and lookup; from kernel scale a table of many rows (past int16's and 16 bits' range) whose last
    `top` rows are among the positions looked up, or GPT-2's 1024 rows of a real width read by a long sequence."""
    batch = st.lists(sizes(1, 3), max_size=2)
    small = st.fixed_dictionaries({"P": sizes(1, 12), "D": sizes(1, 8), "batch": batch, "L": sizes(1, 8),
                                   "top": st.just(0)})
    rows = st.fixed_dictionaries({"P": st.sampled_from(ROW_EDGES), "D": sizes(1, 8), "batch": batch,
                                  "L": sizes(2, 8), "top": st.integers(2, 4)})
    wide = st.fixed_dictionaries({"P": st.sampled_from([1024, 2048]), "D": st.sampled_from(MODEL_DIMS),
                                  "batch": st.lists(sizes(1, 2), max_size=1), "L": st.sampled_from(TILE_EDGES),
                                  "top": st.integers(0, 4)})
    production = st.fixed_dictionaries({"P": st.sampled_from([2050]), "D": st.sampled_from([2048, 4096]),
                                        "batch": st.lists(sizes(1, 4), max_size=1), "L": st.sampled_from([2048]),
                                        "top": st.integers(0, 4)})
    return scaled(small, st.one_of(rows, wide), production)


@st.composite
def _embedding_examples(draw) -> dict:
    p = draw(_embedding_sizes())
    return {
        "P": p["P"],
        "D": p["D"],
        "batch": p["batch"],
        "L": p["L"],
        "beyond": draw(st.integers(0, 5)),
        "seed": draw(seeds()),
        "layout": draw(layouts()),
        "top": p["top"],
    }


def _embedding_inputs(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Random positions, the first `top` of them replaced by the table's last rows (where narrow index types fail)."""
    table = materialize((p["P"], p["D"]), p["seed"], ctx.dtype, ctx.device, layout=p["layout"])
    gen = torch.Generator().manual_seed(p["seed"])
    positions = torch.randint(0, p["P"], (*p["batch"], p["L"]), generator=gen)
    top = min(p.get("top", 0), positions.numel(), p["P"])
    if top:
        positions.reshape(-1)[:top] = torch.arange(p["P"] - top, p["P"])
    return positions.to(ctx.device), table


@invariant("learned_positions.lookup.exact", examples=_embedding_examples(),
           statement="Output row [..., l, :] is exactly weight[input[..., l]] (any order, repeats allowed).",
           source=f"{GPT2_GEN}; torch.nn.functional.embedding")
def check_lookup_exact(ctx: Context, p: dict) -> None:
    positions, table = _embedding_inputs(ctx, p)
    out = call(ctx, (*positions.shape, p["D"]), positions, table)
    assert_equal(ctx, out, table[positions], "embedding(input, weight) vs weight[input]")


@invariant("learned_positions.out_of_range.raises", examples=_embedding_examples(),
           statement="A position >= num_positions or < 0 raises an error; it is never wrapped or clamped silently.",
           source=f"{GPT2_GEN}; torch.nn.functional.embedding (IndexError: index out of range)")
def check_out_of_range_raises(ctx: Context, p: dict) -> None:
    positions, table = _embedding_inputs(ctx, p)
    n = p["P"]
    for bad in (n + p["beyond"], -1 - p["beyond"]):
        probe = positions.clone()
        probe.reshape(-1)[-1] = bad
        try:
            out = ctx.target(probe, table)
        except Violation as violation:
            if violation.cause == "raised":  # the target raised: the clear error the spec asks for
                continue
            raise
        got = out.reshape(-1, p["D"])[-1] if isinstance(out, torch.Tensor) and out.numel() else None
        how = ""
        if got is not None and torch.equal(got, table[bad % n]):
            how = f": it silently wrapped to row {bad % n}"
        elif got is not None and torch.equal(got, table[min(max(bad, 0), n - 1)]):
            how = f": it silently clamped to row {min(max(bad, 0), n - 1)}"
        ctx.fail(f"position {bad} with a table of {n} rows returned a value instead of raising{how}")


CROP_CONTEXT = Component(
    name="crop_context",
    signature="crop_context(idx: Int64[B, T], context_size: int) -> Int64[B, min(T, context_size)]",
    summary="The last context_size tokens of the running context (GPT-2 generation: idx[:, -context_size:]), so "
    "positions fit the table.",
    reference=ref.crop_context,
    dtypes=(),
)


#: contexts and limits at kernel scale: around GPT-2's 1024 and GPT-3's 2048 tokens.
CONTEXT_EDGES = (1023, 1024, 1025, 2047, 2048, 2049)
_CROP_SIZES = scaled(st.fixed_dictionaries({"T": sizes(1, 12), "context_size": sizes(1, 12)}),
                     st.fixed_dictionaries({"T": st.sampled_from(CONTEXT_EDGES),
                                            "context_size": st.sampled_from(CONTEXT_EDGES + (4096,))}))


@st.composite
def _crop_examples(draw) -> dict:
    """Small contexts and limits; from kernel scale, contexts and limits around 1024 and 2048 tokens."""
    return {"B": draw(sizes(1, 3)), **draw(_CROP_SIZES), "seed": draw(seeds())}


def _crop(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A random int64 context and the target's crop of it, which must be an int64 [B, min(T, context_size)]."""
    idx = torch.randint(0, 50257, (p["B"], p["T"]), generator=torch.Generator().manual_seed(p["seed"])).to(ctx.device)
    out = ctx.target(idx, p["context_size"])
    kept = min(p["T"], p["context_size"])
    if not isinstance(out, torch.Tensor) or out.dtype != idx.dtype or tuple(out.shape) != (p["B"], kept):
        got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        ctx.fail(f"crop_context of a [{p['B']}, {p['T']}] int64 context to {p['context_size']} gave {got}, expected "
                 f"shape ({p['B']}, {kept}) int64")
    return idx, out


@invariant("crop_context.keeps_last_tokens", examples=_crop_examples(), source=GPT2_GEN,
           statement="The output is the last min(T, context_size) tokens of each row, in order.")
def check_keeps_last_tokens(ctx: Context, p: dict) -> None:
    idx, out = _crop(ctx, p)
    kept = out.shape[1]
    assert_equal(ctx, out, idx[:, idx.shape[1] - kept:],
                 f"{p['T']} tokens cropped to {p['context_size']}, which must keep the last {kept} in order")


@invariant("crop_context.short_context_unchanged", examples=_crop_examples(), source=GPT2_GEN,
           statement="A context no longer than context_size is returned unchanged.")
def check_short_context_unchanged(ctx: Context, p: dict) -> None:
    # the drawn limit (raised to T), and limits from T to 2T + 1: contexts shorter than the limit by every margin
    # from 0 to more than their own length (slicing from T - limit, a negative start, goes wrong in between); every
    # margin for a short context, a few on each side of the wrong range for a long one
    t = p["T"]
    margins = range(t + 2) if t <= 64 else (0, 1, 2, t // 2, t - 1, t, t + 1)
    for size in dict.fromkeys([max(p["context_size"], t), *(t + m for m in margins)]):
        idx, out = _crop(ctx, {**p, "context_size": size})
        assert_equal(ctx, out, idx, f"a context of {p['T']} tokens within context_size {size}, which must be "
                     "returned unchanged")


# --- backward passes (issue 15) --------------------------------------------------------------------------------
# RoPE is linear in x: y = R(m theta) x, so its vector-Jacobian product is R(m theta)^T g = R(-m theta) g (the
# rotation back). An embedding lookup's is a scatter-add of the output gradient into the looked-up rows
# (torch derivatives.yaml: embedding -> embedding_backward); positions are integers and get no gradient.

AUTOGRAD = "torch tools/autograd/derivatives.yaml and autograd's chain rule"
ROPE_VJP = f"{SU} (R_m orthogonal: the VJP is R_m^T g = R_(-m) g); {AUTOGRAD}"
EMBEDDING_VJP = ("torch tools/autograd/derivatives.yaml (embedding: embedding_backward, an index_add of grad into "
                 "weight)")


def backward_call(ctx: Context, p: dict, component: str) -> tuple:
    """(reference, args, kwargs, wrt, names) of one example of `component`'s backward: x for the rotations (the
    positions are integers), the table for learned positions."""
    if component == "learned_positions":
        positions, table = _embedding_inputs(ctx, p)
        return ref.embedding, (positions, table), {}, [1], ["weight"]
    x, positions = rope_inputs(ctx, p)
    if component == "rope_llama3":
        return ref.rope_llama3, (x, positions, *_scaling(p)), {}, [0], ["x"]
    return getattr(ref, component), (x, positions), _theta_kwargs(p), [0], ["x"]


def _frequencies(component: str, p: dict, dim: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    if component == "rope_llama3":
        return ref.llama3_inv_freq(dim, *_scaling(p), dtype=dtype)
    return ref.rope_inv_freq(dim, p["theta"], dtype)


def rotation_vjp_matches(ctx: Context, p: dict, component: str) -> None:
    """The target's gradient of x against R(-m theta) g, the VJP of the rotation y = R(m theta) x (R orthogonal), with
    the forward's reference and witness (rotary_reference_pair) applied to the cotangent g at positions -m: the
    yardstick then carries the angle error m * f * eps that every implementation has, as the forward's does."""
    reference, args, kwargs, wrt, names = backward_call(ctx, p, component)
    x, positions = args[0], args[1]
    (grad,) = gradient_of(ctx, reference, args, kwargs, wrt, p["seed"], names)
    (cotangent,) = cotangents_for(x, p["seed"], ctx.dtype, ctx.device)  # what gradient_of pulled back
    d = x.shape[-1]
    ref64, lowp = rotary_reference_pair(cotangent, -positions, _frequencies(component, p, d),
                                        lambda: _frequencies(component, p, d, torch.float32),
                                        component == "rope_interleaved")
    assert_matches(ctx, grad, ref64, lowp, what="gradient of x (vs R(-m theta) g, the rotation back)",
                   bound="normwise")


_BACKWARD_EXAMPLES = {"rope": rope_examples(), "rope_interleaved": rope_examples(), "rope_llama3": _llama3_examples(),
                      "learned_positions": _embedding_examples()}
_WRT = {"rope": "x", "rope_interleaved": "x", "rope_llama3": "x", "learned_positions": "the table (weight)"}


def _rows(ids: tuple[str, ...], statement: str, source: dict | None = None) -> list:
    """One row per differentiable component of the family, from its literal id (the component is the id's first
    part), with its examples and what it differentiates."""
    source = source or {}
    return [row(i, component=c, examples=_BACKWARD_EXAMPLES[c], statement=statement.format(wrt=_WRT[c]),
                source=source.get(c, EMBEDDING_VJP if c == "learned_positions" else ROPE_VJP))
            for i, c in ((i, i.split(".", 1)[0]) for i in ids)]


@invariant(*_rows(("rope.backward.matches_reference",
                   "rope_interleaved.backward.matches_reference",
                   "rope_llama3.backward.matches_reference",
                   "learned_positions.backward.matches_reference"),
                  "The vector-Jacobian product for {wrt} matches the float64 reference's within "
                  "the tolerance policy (random cotangents; the integer positions are not differentiable)."),
           kind="differential", requires={"backward"}, budget=0.5)
def check_backward_matches(ctx: Context, p: dict, component: str) -> None:
    if component != "learned_positions":
        return rotation_vjp_matches(ctx, p, component)
    reference, args, kwargs, wrt, names = backward_call(ctx, p, component)
    backward_matches(ctx, reference, args, kwargs, wrt, p["seed"], names)


@invariant(*_rows(("rope.backward.complete",
                   "rope_interleaved.backward.complete",
                   "rope_llama3.backward.complete",
                   "learned_positions.backward.complete"),
                  "{wrt} gets a gradient of its own shape, dtype and device when it requires grad, and "
                  "requiring grad does not change the output."),
           requires={"backward"}, budget=0.5)
def check_backward_complete(ctx: Context, p: dict, component: str) -> None:
    reference, args, kwargs, wrt, names = backward_call(ctx, p, component)
    backward_complete(ctx, reference, args, kwargs, wrt, p["seed"], names)


@invariant(*_rows(("rope.backward.repeatable",
                   "rope_interleaved.backward.repeatable",
                   "rope_llama3.backward.repeatable",
                   "learned_positions.backward.repeatable"),
                  "Pulling back twice through one graph gives the same gradient for {wrt}, and two "
                  "backward calls accumulate their sum into .grad."),
           requires={"backward"}, budget=0.5)
def check_backward_repeatable(ctx: Context, p: dict, component: str) -> None:
    reference, args, kwargs, wrt, names = backward_call(ctx, p, component)
    backward_repeatable(ctx, reference, args, kwargs, wrt, p["seed"], names)


@invariant(*_rows(("rope.backward.finite_differences",
                   "rope_interleaved.backward.finite_differences",
                   "rope_llama3.backward.finite_differences",
                   "learned_positions.backward.finite_differences"),
                  "float64: the gradient for {wrt} agrees with central finite differences of "
                  "the target's own forward along a random direction."),
           requires={"backward"}, dtypes=(torch.float64,), budget=0.5)
def check_backward_finite_differences(ctx: Context, p: dict, component: str) -> None:
    reference, args, kwargs, wrt, names = backward_call(ctx, p, component)
    backward_finite_differences(ctx, reference, args, kwargs, wrt, p["seed"], names)


@invariant("learned_positions.backward.unused_rows_zero", examples=_embedding_examples(), requires={"backward"},
           budget=0.5, source=EMBEDDING_VJP,
           statement="Table rows that no position looks up get exactly zero gradient (the output does not depend on "
           "them); a looked-up row's gradient is the sum of its output rows' cotangents.")
def check_unused_rows_zero(ctx: Context, p: dict) -> None:
    positions, table = _embedding_inputs(ctx, p)
    (grad,) = gradient_of(ctx, ref.embedding, (positions, table), {}, [1], p["seed"], ["weight"])
    unused = torch.ones(p["P"], dtype=torch.bool)
    unused[positions.reshape(-1).cpu()] = False
    got = grad.cpu()[unused]
    assert_equal(ctx, got, torch.zeros_like(got), f"gradient of the {int(unused.sum())} table rows no position "
                 "looks up")
