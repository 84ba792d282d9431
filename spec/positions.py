"""Positional encodings: RoPE (rotate-half and interleaved), Llama 3 RoPE scaling, sinusoidal and learned positions,
and GPT-2's context cropping."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ..reference import positions as ref
from .checks import PROPERTY_ULPS, assert_agree, assert_matches, reference_pair, to64
from .core import Component, Context, Invariant, Violation
from .guard import expect_tensor
from .strategies import layouts, materialize, patterns, seeds, sizes

SU = "Su et al. 2021, RoFormer, eq. 34"
HF_ROPE = "transformers models/llama/modeling_llama.py (rotate_half, apply_rotary_pos_emb, LlamaRotaryEmbedding)"
GPTJ_ROPE = "transformers models/gptj/modeling_gptj.py (rotate_every_two); Meta llama/model.py apply_rotary_emb"
LLAMA3 = "Meta llama-models apply_scaling (Llama 3.1); transformers modeling_rope_utils._compute_llama3_parameters"
VASWANI = "Vaswani et al. 2017, Attention Is All You Need, sec. 3.5"
GPT2_GEN = "Radford et al. 2019 (GPT-2 wpe, n_positions); Raschka 2024, Build a Large Language Model (From Scratch), listing 4.8"

CONVENTIONS = {
    False: "rotate-half: pair i is dims (i, i + D/2), as in Hugging Face Llama and GPT-NeoX",
    True: "interleaved: pair i is dims (2i, 2i + 1), as in GPT-J and Meta's original Llama",
}
FEATURES = {"theta": "a RoPE base theta other than 10000"}


def angle_ulps(ctx: Context, max_position: int) -> float:
    """Tolerance in eps(dtype) units for comparing two RoPE outputs: rounding, plus the float32 (float64 for float64)
    angle error m * f * few eps that every implementation has at position m (f <= 1)."""
    angle_eps = torch.finfo(ref.angle_dtype_for(ctx.dtype)).eps
    return PROPERTY_ULPS + 4 * max(max_position, 1) * angle_eps / torch.finfo(ctx.dtype).eps


def rotary_reference_pair(x: torch.Tensor, positions: torch.Tensor, inv_freq64: torch.Tensor, inv_freq_lowp, interleaved: bool = False):
    """(float64 reference, error witness) for a rotation with frequencies `inv_freq64` (float64).

    The witness is what the tolerance policy compares against: in float64, the rotation with x and the frequencies
    both perturbed by a few ulps (so the angle's conditioning, m * f * eps, is included); below float64, the rotation
    computed as libraries do, with `inv_freq_lowp()` frequencies and angles in float32 and cos / sin rounded to x's
    dtype, whose angle error grows with the position."""

    def rotation(x, positions, inv_freq):
        if x.dtype == torch.float64:
            return ref.apply_rotary(x, positions, inv_freq, interleaved)
        return ref.apply_rotary(x, positions, inv_freq_lowp(), interleaved, angle_dtype=torch.float32)

    return reference_pair(rotation, x, positions, inv_freq64)


def rope_pair(x: torch.Tensor, positions: torch.Tensor, theta: float, interleaved: bool):
    d = x.shape[-1]
    return rotary_reference_pair(x, positions, ref.rope_inv_freq(d, theta), lambda: ref.rope_inv_freq(d, theta, torch.float32), interleaved)


@st.composite
def rope_examples(draw, thetas=(10000.0,)) -> dict:
    return {
        "B": draw(sizes(1, 2)),
        "H": draw(sizes(1, 3)),
        "L": draw(sizes(1, 6)),
        "D": 2 * draw(sizes(1, 8)),
        "start": draw(st.sampled_from([0, 0, 1, 17, 1000, 4093])),
        "shuffle": draw(st.booleans()),
        "theta": draw(st.sampled_from(thetas)),
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }


def rope_inputs(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    x = materialize((p["B"], p["H"], p["L"], p["D"]), p["seed"], ctx.dtype, ctx.device, p["pattern"], layout=p["layout"])
    positions = torch.arange(p["start"], p["start"] + p["L"])
    if p["shuffle"]:
        positions = positions[torch.randperm(p["L"], generator=torch.Generator().manual_seed(p["seed"]))]
    return x, positions.to(ctx.device)


def _theta_kwargs(p: dict) -> dict:
    return {} if p["theta"] == 10000.0 else {"theta": p["theta"]}


def _rope(ctx: Context, x: torch.Tensor, positions: torch.Tensor, **kwargs) -> torch.Tensor:
    return expect_tensor(ctx.target(x, positions, **kwargs), tuple(x.shape), ctx.dtype, ctx.device)


def _reference_check(interleaved: bool):
    def check(ctx: Context, p: dict) -> None:
        x, positions = rope_inputs(ctx, p)
        ref64, lowp = rope_pair(x, positions, p["theta"], interleaved)
        assert_matches(ctx, ctx.target(x, positions, **_theta_kwargs(p)), ref64, lowp)

    return check


def _check_norm(ctx: Context, p: dict) -> None:
    x, positions = rope_inputs(ctx, p)
    out = _rope(ctx, x, positions, **_theta_kwargs(p))
    slack = angle_ulps(ctx, int(positions.max()))
    assert_agree(ctx, to64(out).norm(dim=-1), to64(x).norm(dim=-1), "per-position vector norms after vs before RoPE", ulps=slack)


def _check_position_zero(ctx: Context, p: dict) -> None:
    x, positions = rope_inputs(ctx, p)
    out = _rope(ctx, x, torch.zeros_like(positions), **_theta_kwargs(p))
    if not torch.equal(out, x):
        idx = [int(i) for i in (out != x).nonzero()[0]]
        ctx.fail(f"RoPE at position 0 changed element {idx}: {float(x[tuple(idx)]):.6g} -> {float(out[tuple(idx)]):.6g} "
                 "(cos 0 = 1 and sin 0 = 0 make it exactly the identity)", index=idx)


@st.composite
def _relative_examples(draw, thetas=(10000.0,)) -> dict:
    p = draw(rope_examples(thetas))
    p["m"], p["n"], p["shift"] = (draw(st.integers(0, 2048)) for _ in range(3))
    return p


def _check_relative(ctx: Context, p: dict) -> None:
    # <rope(q, m), rope(k, n)> = <rope(q, m + s), rope(k, n + s)>: q and k are two positions of one call.
    x, _ = rope_inputs(ctx, {**p, "L": 2})
    kwargs = _theta_kwargs(p)
    dots = []
    for offset in (0, p["shift"]):
        positions = torch.tensor([p["m"] + offset, p["n"] + offset], device=ctx.device)
        out = to64(_rope(ctx, x, positions, **kwargs))
        dots.append((out[..., 0, :] * out[..., 1, :]).sum(-1))
    x64 = to64(x)
    scale = float((x64[..., 0, :].norm(dim=-1) * x64[..., 1, :].norm(dim=-1)).max())
    slack = angle_ulps(ctx, max(p["m"], p["n"]) + p["shift"]) * torch.finfo(ctx.dtype).eps * max(scale, 1e-30)
    worst = float((dots[0] - dots[1]).abs().max())
    if worst > slack:
        ctx.fail(f"<rope(q, {p['m']}), rope(k, {p['n']})> and the same at positions shifted by {p['shift']} differ by {worst:.3g} "
                 f"(allowed {slack:.3g}): the score must depend on m - n only", max_abs=worst)


def probe_rotations(ctx: Context, dim: int, position: int, call) -> torch.Tensor:
    """Image of every basis vector e_j at one position: a [D, D] float64 matrix, row j = rope(e_j). The basis vectors
    are the D heads of one [1, D, 1, D] input."""
    eye = torch.eye(dim, dtype=ctx.dtype, device=ctx.device)[None, :, None, :]
    out = expect_tensor(call(eye, torch.tensor([position], device=ctx.device)), tuple(eye.shape), ctx.dtype, ctx.device)
    return to64(out)[0, :, 0, :]


def partners(dim: int, interleaved: bool) -> torch.Tensor:
    j = torch.arange(dim)
    return j ^ 1 if interleaved else (j + dim // 2) % dim


@st.composite
def _convention_examples(draw, thetas=(10000.0,)) -> dict:
    return {"D": 2 * draw(sizes(1, 8)), "position": draw(st.sampled_from([1, 2, 3])), "theta": draw(st.sampled_from(thetas))}


def _convention_check(interleaved: bool):
    def check(ctx: Context, p: dict) -> None:
        d = p["D"]
        rows = probe_rotations(ctx, d, p["position"], lambda x, pos: ctx.target(x, pos, **_theta_kwargs(p)))
        support = rows.abs() > PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
        j = torch.arange(d)
        allowed = torch.zeros(d, d, dtype=torch.bool)
        allowed[j, j] = True
        allowed[j, partners(d, interleaved)] = True
        if (support & ~allowed).any():
            other = torch.zeros(d, d, dtype=torch.bool)
            other[j, j] = True
            other[j, partners(d, not interleaved)] = True
            bad = [int(i) for i in (support & ~allowed).nonzero()[0]]
            name = ("; the target follows the other convention, " + CONVENTIONS[not interleaved]) if not (support & ~other).any() else ""
            ctx.fail(f"RoPE mixes dims {bad[0]} and {bad[1]}, which are not a pair in the {CONVENTIONS[interleaved]}{name}", index=bad)

    return check


def _check_frequencies(ctx: Context, p: dict, interleaved: bool, expected_inv_freq: torch.Tensor, call, what: str) -> None:
    """Read each pair's rotation angle at p['position'] off the target and compare with position * expected_inv_freq."""
    d, m = p["D"], p["position"]
    rows = probe_rotations(ctx, d, m, call)
    first = torch.arange(0, d, 2) if interleaved else torch.arange(d // 2)
    second = partners(d, interleaved)[first]
    angles = torch.atan2(rows[first, second], rows[first, first])
    expected = m * expected_inv_freq
    eps = torch.finfo(ctx.dtype).eps
    allowed = 8 * eps * expected + 4 * m * torch.finfo(ref.angle_dtype_for(ctx.dtype)).eps + 2 * eps * (expected > 1)
    if ((angles - expected).abs() > allowed).any():
        i = int(((angles - expected).abs() - allowed).argmax())
        ctx.fail(f"pair {i} rotates by {float(angles[i]):.6g} rad at position {m}, expected {float(expected[i]):.6g} ({what})", index=[i])


def _theta_check(interleaved: bool):
    def check(ctx: Context, p: dict) -> None:
        expected = ref.rope_inv_freq(p["D"], p["theta"])
        _check_frequencies(ctx, p, interleaved, expected, lambda x, pos: ctx.target(x, pos, **_theta_kwargs(p)),
                           f"theta={p['theta']:g}: pair i turns by m * theta^(-2i/D)")

    return check


def _check_interleaved_is_permuted(ctx: Context, p: dict) -> None:
    # rope_interleaved(x)[..., P] = rope(x[..., P]) with P = (0, 2, 4, ..., 1, 3, 5, ...).
    x, positions = rope_inputs(ctx, p)
    perm = ref.interleaved_to_half(p["D"]).to(ctx.device)
    ref64, lowp = rope_pair(x[..., perm], positions, p["theta"], interleaved=False)
    inverse = torch.argsort(perm).cpu()
    out = ctx.target(x, positions, **_theta_kwargs(p))
    assert_matches(ctx, out, ref64[..., inverse], lowp[..., inverse], what="interleaved RoPE vs rotate-half RoPE conjugated by P")


def _rope_invariants(name: str, interleaved: bool) -> tuple[Invariant, ...]:
    source = f"{SU}; {GPTJ_ROPE if interleaved else HF_ROPE}"
    thetas = (100.0, 10000.0, 500000.0, 1e6)
    convention = CONVENTIONS[interleaved].split(":")[0]
    invariants = [
        Invariant(f"{name}.reference.matches",
                  f"Output equals the float64 reference ({convention}) at arbitrary int64 positions, up to 4098.",
                  source, "differential", rope_examples(), _reference_check(interleaved)),
        Invariant(f"{name}.norm_preserving", "Each position's head vector keeps its Euclidean norm (a rotation).",
                  f"{SU} (orthogonal R_m)", "property", rope_examples(), _check_norm),
        Invariant(f"{name}.position_zero_identity", "At position 0 the output is exactly the input.",
                  f"{SU} (R_0 = I)", "property", rope_examples(), _check_position_zero),
        Invariant(f"{name}.relative.dot_product",
                  "<rope(q, m), rope(k, n)> depends only on m - n: shifting both positions by s leaves it unchanged (random m, n, s).",
                  f"{SU}, eq. 16", "property", _relative_examples(), _check_relative),
        Invariant(f"{name}.convention.pairs", f"Only the dims of a pair are mixed, pairs in the {CONVENTIONS[interleaved]}; "
                  "a target in the other convention is reported by name.",
                  source, "property", _convention_examples(), _convention_check(interleaved)),
        Invariant(f"{name}.theta.frequencies",
                  "theta changes only the frequencies: pair i turns by m * theta^(-2i/D) (pair 0 by m, whatever theta).",
                  f"{SU}, eq. 15", "property", _convention_examples(thetas), _theta_check(interleaved), requires=frozenset({"theta"})),
    ]
    if interleaved:
        invariants.append(Invariant(
            f"{name}.equals_permuted_rotate_half", "rope_interleaved(x)[..., P] = rope(x[..., P]) for the fixed permutation P = (0, 2, 4, ..., 1, 3, 5, ...).",
            f"{SU}; {HF_ROPE}; {GPTJ_ROPE}", "differential", rope_examples(thetas), _check_interleaved_is_permuted, requires=frozenset({"theta"})))
    return tuple(invariants)


ROPE = Component(
    name="rope",
    family="positions",
    signature="rope(x: Float[B, H, L, D], positions: Int64[L], theta: float = 10000.0) -> Float[B, H, L, D]",
    summary="Rotary position embedding, rotate-half convention (HF Llama, GPT-NeoX): x cos + rotate_half(x) sin.",
    reference=ref.rope,
    features=FEATURES,
    invariants=_rope_invariants("rope", interleaved=False),
)

ROPE_INTERLEAVED = Component(
    name="rope_interleaved",
    family="positions",
    signature="rope_interleaved(x: Float[B, H, L, D], positions: Int64[L], theta: float = 10000.0) -> Float[B, H, L, D]",
    summary="Rotary position embedding on adjacent pairs (GPT-J, Meta's original Llama).",
    reference=ref.rope_interleaved,
    features=FEATURES,
    invariants=_rope_invariants("rope_interleaved", interleaved=True),
)


# --- Llama 3 scaling ------------------------------------------------------------------------------------


@st.composite
def _llama3_examples(draw, factors=(1.0, 2.0, 8.0, 32.0)) -> dict:
    low, high = draw(st.sampled_from([(1.0, 4.0), (1.0, 2.0), (2.0, 8.0)]))
    p = draw(rope_examples())
    p.update(theta=draw(st.sampled_from([10000.0, 500000.0])), factor=draw(st.sampled_from(factors)), low=low, high=high,
             original=draw(st.sampled_from([16, 64, 512, 8192])), start=draw(st.sampled_from([0, 5, 1000, 9000])))
    return p


def _scaling(p: dict) -> tuple:
    return (p["theta"], p["factor"], p["low"], p["high"], p["original"])


def _check_llama3_reference(ctx: Context, p: dict) -> None:
    x, positions = rope_inputs(ctx, p)
    d = x.shape[-1]
    ref64, lowp = rotary_reference_pair(x, positions, ref.llama3_inv_freq(d, *_scaling(p)),
                                        lambda: ref.llama3_inv_freq(d, *_scaling(p), dtype=torch.float32))
    assert_matches(ctx, ctx.target(x, positions, *_scaling(p)), ref64, lowp)


def _check_llama3_factor_one(ctx: Context, p: dict) -> None:
    x, positions = rope_inputs(ctx, p)
    ref64, lowp = rope_pair(x, positions, p["theta"], interleaved=False)
    out = ctx.target(x, positions, p["theta"], 1.0, p["low"], p["high"], p["original"])
    assert_matches(ctx, out, ref64, lowp, what="Llama 3 RoPE with factor 1 (vs plain rotate-half RoPE)")


@st.composite
def _bands_examples(draw) -> dict:
    p = draw(_llama3_examples(factors=(2.0, 8.0, 32.0)))
    p.update(D=2 * draw(sizes(2, 16)), position=1)
    return p


def _check_llama3_bands(ctx: Context, p: dict) -> None:
    base = ref.rope_inv_freq(p["D"], p["theta"])
    wavelength = 2 * math.pi / base
    high_band, low_band = wavelength < p["original"] / p["high"], wavelength > p["original"] / p["low"]
    expected = ref.llama3_inv_freq(p["D"], *_scaling(p))
    bands = ", ".join(f"{n} pairs {w}" for n, w in ((int(high_band.sum()), "kept"), (int(low_band.sum()), f"divided by {p['factor']:g}"),
                                                     (int((~high_band & ~low_band).sum()), "interpolated")))
    _check_frequencies(ctx, p, False, expected, lambda x, pos: ctx.target(x, pos, *_scaling(p)),
                       f"Llama 3 bands for original_max {p['original']}, low/high {p['low']:g}/{p['high']:g}: {bands}")


ROPE_LLAMA3 = Component(
    name="rope_llama3",
    family="positions",
    signature="rope_llama3(x: Float[B, H, L, D], positions: Int64[L], theta: float = 500000.0, factor: float = 8.0, "
    "low_freq_factor: float = 1.0, high_freq_factor: float = 4.0, original_max_position_embeddings: int = 8192) -> Float[B, H, L, D]",
    summary="Rotate-half RoPE with Llama 3.1 frequency scaling (HF rope_type 'llama3').",
    reference=ref.rope_llama3,
    invariants=(
        Invariant("rope_llama3.reference.matches",
                  "Output equals the float64 reference for varied factors, bands and positions up to 9005.",
                  f"{LLAMA3}; {HF_ROPE}", "differential", _llama3_examples(), _check_llama3_reference),
        Invariant("rope_llama3.frequencies.bands", "Pairs with wavelength 2 pi / f below original_max / high_freq_factor keep f, those above original_max / "
                  "low_freq_factor turn at f / factor, and the rest interpolate: (1 - s) f / factor + s f, s = (original_max / wavelength - low) / (high - low).",
                  LLAMA3, "property", _bands_examples(), _check_llama3_bands),
        Invariant("rope_llama3.factor_one_is_rope",
                  "factor = 1 gives plain rotate-half RoPE with the same theta, whatever the band parameters.",
                  LLAMA3, "differential", _llama3_examples(factors=(1.0,)), _check_llama3_factor_one),
    ),
)


# --- sinusoidal -----------------------------------------------------------------------------------------


@st.composite
def _sinusoidal_examples(draw) -> dict:
    return {"num_positions": draw(st.one_of(sizes(1, 40), st.sampled_from([512, 2048]))), "dim": 2 * draw(sizes(1, 12)),
            "k": draw(st.integers(0, 300)), "pos": draw(st.integers(0, 300))}


def _table(ctx: Context, n: int, d: int) -> torch.Tensor:
    return expect_tensor(ctx.target(n, d), (n, d), ctx.dtype, ctx.device)


def _check_sinusoidal_reference(ctx: Context, p: dict) -> None:
    n, d = p["num_positions"], p["dim"]
    ref64 = ref.sinusoidal_positions(n, d, torch.float64)
    lowp = ref.sinusoidal_positions(n, d, ctx.dtype, angle_dtype=ref.angle_dtype_for(ctx.dtype))
    assert_matches(ctx, ctx.target(n, d), ref64, lowp, what="sinusoidal table")


def _check_sinusoidal_rotation(ctx: Context, p: dict) -> None:
    # PE(pos + k) = R(k) PE(pos): per pair, sin(a + b) = sin a cos b + cos a sin b and cos(a + b) = cos a cos b - sin a sin b,
    # with cos b, sin b read from the target's own row k.
    d, k, pos = p["dim"], p["k"], p["pos"]
    table = to64(_table(ctx, pos + k + 1, d))
    sa, ca, sb, cb = table[pos, 0::2], table[pos, 1::2], table[k, 0::2], table[k, 1::2]
    rotated = torch.stack([sa * cb + ca * sb, ca * cb - sa * sb], dim=-1).flatten()
    assert_agree(ctx, table[pos + k], rotated, f"PE({pos} + {k}) vs the rotation by PE({k}) of PE({pos})", ulps=angle_ulps(ctx, pos + k))


def _check_sinusoidal_zero(ctx: Context, p: dict) -> None:
    row = _table(ctx, p["num_positions"], p["dim"])[0]
    expected = torch.tensor([0.0, 1.0] * (p["dim"] // 2), dtype=ctx.dtype, device=ctx.device)
    if not torch.equal(row, expected):
        ctx.fail(f"PE(0) is {row.tolist()}, expected exactly (0, 1, 0, 1, ...): sin 0 at even dims, cos 0 at odd dims")


SINUSOIDAL = Component(
    name="sinusoidal_positions",
    family="positions",
    signature="sinusoidal_positions(num_positions: int, dim: int) -> Float32[num_positions, dim]",
    summary="PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i + 1) = cos(pos / 10000^(2i/dim)); float32 table.",
    reference=ref.sinusoidal_positions,
    dtypes=(torch.float32,),
    invariants=(
        Invariant("sinusoidal_positions.reference.matches",
                  "The table equals the formula (sin at even dims, cos at odd dims), computed in float64, up to 2048 positions.",
                  VASWANI, "differential", _sinusoidal_examples(), _check_sinusoidal_reference),
        Invariant("sinusoidal_positions.relative.rotation",
                  "PE(pos + k) is a fixed linear function of PE(pos): the rotation of each (sin, cos) pair by the angle of PE(k).",
                  f"{VASWANI} ('PE_pos+k can be represented as a linear function of PE_pos')", "property", _sinusoidal_examples(), _check_sinusoidal_rotation),
        Invariant("sinusoidal_positions.position_zero", "PE(0) = (0, 1, 0, 1, ...) exactly.", VASWANI, "property", _sinusoidal_examples(), _check_sinusoidal_zero),
    ),
)


# --- learned positions and context cropping -------------------------------------------------------------


@st.composite
def _embedding_examples(draw) -> dict:
    return {
        "P": draw(sizes(1, 12)),
        "D": draw(sizes(1, 8)),
        "batch": [draw(sizes(1, 3)) for _ in range(draw(st.integers(0, 2)))],
        "L": draw(sizes(1, 8)),
        "beyond": draw(st.integers(0, 5)),
        "seed": draw(seeds()),
        "layout": draw(layouts()),
    }


def _embedding_inputs(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    table = materialize((p["P"], p["D"]), p["seed"], ctx.dtype, ctx.device, layout=p["layout"])
    gen = torch.Generator().manual_seed(p["seed"])
    positions = torch.randint(0, p["P"], (*p["batch"], p["L"]), generator=gen)
    return positions.to(ctx.device), table


def _check_lookup(ctx: Context, p: dict) -> None:
    positions, table = _embedding_inputs(ctx, p)
    out = expect_tensor(ctx.target(positions, table), (*positions.shape, p["D"]), ctx.dtype, ctx.device)
    expected = table[positions]
    if not torch.equal(out, expected):
        idx = [int(i) for i in (out != expected).nonzero()[0]]
        ctx.fail(f"output at {idx} is {float(out[tuple(idx)]):.6g}, expected row {int(positions[tuple(idx[:-1])])} of the table: "
                 f"{float(expected[tuple(idx)]):.6g}", index=idx)


def _check_out_of_range(ctx: Context, p: dict) -> None:
    positions, table = _embedding_inputs(ctx, p)
    n = p["P"]
    for bad in (n + p["beyond"], -1 - p["beyond"]):
        probe = positions.clone()
        probe.reshape(-1)[-1] = bad
        try:
            out = ctx.target(probe, table)
        except Violation as violation:
            if isinstance(violation.__cause__, Exception):  # the target raised: the clear error the spec asks for
                continue
            raise
        got = out.reshape(-1, p["D"])[-1] if isinstance(out, torch.Tensor) and out.numel() else None
        how = ""
        if got is not None and torch.equal(got, table[bad % n]):
            how = f": it silently wrapped to row {bad % n}"
        elif got is not None and torch.equal(got, table[min(max(bad, 0), n - 1)]):
            how = f": it silently clamped to row {min(max(bad, 0), n - 1)}"
        ctx.fail(f"position {bad} with a table of {n} rows returned a value instead of raising{how}")


LEARNED_POSITIONS = Component(
    name="learned_positions",
    family="positions",
    signature="embedding(input: Int64[*batch, L], weight: Float[num_positions, D]) -> Float[*batch, L, D]  (torch.nn.functional.embedding)",
    summary="Learned absolute positional embeddings (GPT-2 wpe): a table lookup that refuses positions outside the table.",
    reference=ref.embedding,
    invariants=(
        Invariant("learned_positions.lookup.exact", "Output row [..., l, :] is exactly weight[input[..., l]] (any order, repeats allowed).",
                  f"{GPT2_GEN}; torch.nn.functional.embedding", "property", _embedding_examples(), _check_lookup),
        Invariant("learned_positions.out_of_range.raises",
                  "A position >= num_positions or < 0 raises an error; it is never wrapped or clamped silently.",
                  f"{GPT2_GEN}; torch.nn.functional.embedding (IndexError: index out of range)", "property", _embedding_examples(), _check_out_of_range),
    ),
)


@st.composite
def _crop_examples(draw) -> dict:
    return {"B": draw(sizes(1, 3)), "T": draw(sizes(1, 12)), "context_size": draw(sizes(1, 12)), "seed": draw(seeds())}


def _crop(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, 50257, (p["B"], p["T"]), generator=torch.Generator().manual_seed(p["seed"])).to(ctx.device)
    out = ctx.target(idx, p["context_size"])
    kept = min(p["T"], p["context_size"])
    if not isinstance(out, torch.Tensor) or out.dtype != idx.dtype or tuple(out.shape) != (p["B"], kept):
        got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        ctx.fail(f"crop_context of a [{p['B']}, {p['T']}] int64 context to {p['context_size']} gave {got}, expected shape ({p['B']}, {kept}) int64")
    return idx, out


def _check_keeps_last(ctx: Context, p: dict) -> None:
    idx, out = _crop(ctx, p)
    if not torch.equal(out, idx[:, idx.shape[1] - out.shape[1]:]):
        ctx.fail(f"cropping {p['T']} tokens to {p['context_size']} did not keep the last {out.shape[1]} in order: got {out[0].tolist()}, "
                 f"context {idx[0].tolist()}")


def _check_short_unchanged(ctx: Context, p: dict) -> None:
    # the drawn limit (raised to T), and every limit from T to 2T + 1: contexts shorter than the limit by every
    # margin from 0 to more than their own length (slicing from T - limit, a negative start, goes wrong in between)
    for size in dict.fromkeys([max(p["context_size"], p["T"]), *range(p["T"], 2 * p["T"] + 2)]):
        idx, out = _crop(ctx, {**p, "context_size": size})
        if not torch.equal(out, idx):
            ctx.fail(f"a context of {p['T']} tokens within context_size {size} was changed: {idx[0].tolist()} -> {out[0].tolist()}",
                     context_size=size)


CROP_CONTEXT = Component(
    name="crop_context",
    family="positions",
    signature="crop_context(idx: Int64[B, T], context_size: int) -> Int64[B, min(T, context_size)]",
    summary="The last context_size tokens of the running context (GPT-2 generation: idx[:, -context_size:]), so positions fit the table.",
    reference=ref.crop_context,
    dtypes=(),
    invariants=(
        Invariant("crop_context.keeps_last_tokens", "The output is the last min(T, context_size) tokens of each row, in order.",
                  GPT2_GEN, "property", _crop_examples(), _check_keeps_last),
        Invariant("crop_context.short_context_unchanged", "A context no longer than context_size is returned unchanged.",
                  GPT2_GEN, "property", _crop_examples(), _check_short_unchanged),
    ),
)

COMPONENTS = (ROPE, ROPE_INTERLEAVED, ROPE_LLAMA3, SINUSOIDAL, LEARNED_POSITIONS, CROP_CONTEXT)
