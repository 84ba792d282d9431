"""Feed-forward blocks: plain FFN (GPT-2, with biases; Llama-style without), SwiGLU / GEGLU, hidden widths, and
the serial vs parallel (GPT-J, PaLM) transformer block."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ..reference import feedforward as ref
from ..reference.norms import layer_norm, rms_norm
from .checks import assert_agree, differential, reference_pair, assert_matches, to64
from .core import Component, Context, Invariant
from .guard import expect_tensor
from .strategies import layouts, materialize, patterns, seeds, sizes

VASWANI_FFN = "Vaswani et al. 2017, eq. 2 and sec. 3.3 (d_ff = 4 d_model)"
SHAZEER = "Shazeer 2020, GLU Variants Improve Transformer, eqs. 5-6"
LLAMA = "Touvron et al. 2023, LLaMA, sec. 2.2; Meta llama/model.py FeedForward; transformers LlamaMLP"
GPT2 = "Radford et al. 2019 (GPT-2); transformers GPT2MLP (Conv1D c_fc, gelu_new, c_proj, biases)"
PARALLEL = "Chowdhery et al. 2022, PaLM, sec. 2 (parallel layers); Wang & Komatsuzaki 2021, GPT-J (transformers GPTJBlock)"


@st.composite
def ffn_examples(draw, activation: bool = False, approximate: bool = False) -> dict:
    p = {
        "batch": [draw(sizes(1, 3)) for _ in range(draw(st.integers(1, 2)))],
        "D": draw(sizes(1, 8)),
        "F": draw(sizes(1, 12)),
        "bias": draw(st.booleans()),
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }
    if activation:
        p["activation"] = draw(st.sampled_from(["relu", "gelu", "gelu_tanh", "silu"]))
    if approximate:
        p["approximate"] = draw(st.sampled_from([None, "none", "tanh"]))
    return p


def _x(ctx: Context, p: dict) -> torch.Tensor:
    return materialize(p["batch"] + [p["D"]], p["seed"], ctx.dtype, ctx.device, p["pattern"], layout=p["layout"])


def _w(ctx: Context, p: dict, shape: tuple[int, int], salt: int) -> torch.Tensor:
    """nn.Linear-layout weights scaled by 1/sqrt(fan_in), so every activation stays O(1)."""
    return materialize(shape, p["seed"], ctx.dtype, ctx.device, salt=salt, magnitude=shape[1] ** -0.5, layout=p["layout"])


def _glu_weights(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d, f = p["D"], p["F"]
    return _w(ctx, p, (f, d), 1), _w(ctx, p, (f, d), 2), _w(ctx, p, (d, f), 3)


def _glu_kwargs(p: dict) -> dict:
    return {} if p.get("approximate") is None else {"approximate": p["approximate"]}


def _glu_reference(reference):
    def check(ctx: Context, p: dict) -> None:
        differential(ctx, reference, _x(ctx, p), *_glu_weights(ctx, p), **_glu_kwargs(p))

    return check


@st.composite
def _linear_examples(draw, approximate: bool = False) -> dict:
    p = draw(ffn_examples(approximate=approximate))
    p["c"] = draw(st.sampled_from([2.0, 0.5, -1.0, -4.0]))
    return p


def _check_linear_in_up(ctx: Context, p: dict) -> None:
    # scaling by a power of two is exact, so act(gate x) * (c up x) = c (act(gate x) * up x) in every dtype.
    x = _x(ctx, p)
    wg, wu, wd = _glu_weights(ctx, p)
    kw = _glu_kwargs(p)
    shape = tuple(x.shape)
    plain = to64(expect_tensor(ctx.target(x, wg, wu, wd, **kw), shape, ctx.dtype, ctx.device))
    scaled = expect_tensor(ctx.target(x, wg, wu * p["c"], wd, **kw), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, scaled, plain * p["c"], f"output with w_up scaled by {p['c']:g} vs {p['c']:g} x output: the up projection "
                 "must enter linearly (the activation goes on the gate)")


def _check_gate_zero(ctx: Context, p: dict) -> None:
    x = _x(ctx, p)
    _, wu, wd = _glu_weights(ctx, p)
    out = expect_tensor(ctx.target(x, torch.zeros_like(wu), wu, wd, **_glu_kwargs(p)), tuple(x.shape), ctx.dtype, ctx.device)
    if out.abs().max() != 0:
        ctx.fail(f"with w_gate = 0 the output is not exactly 0 (max |out| = {float(out.abs().max()):.3g}): act(0) must be 0 "
                 "(SiLU, GELU), so a closed gate passes nothing", max_abs=float(out.abs().max()))


def _glu_invariants(name: str, reference, activation: str, source: str, approximate: bool = False) -> tuple[Invariant, ...]:
    return (
        Invariant(f"{name}.reference.matches", f"down({activation}(gate x) * up x) equals the float64 reference.",
                  source, "differential", ffn_examples(approximate=approximate), _glu_reference(reference)),
        Invariant(f"{name}.linear_in_up",
                  "The output is linear in w_up: scaling w_up by c scales the output by c (the activation is on the gate).",
                  source, "property", _linear_examples(approximate=approximate), _check_linear_in_up),
        Invariant(f"{name}.gate_zero_closes", f"With w_gate = 0 the output is exactly 0, since {activation}(0) = 0.",
                  source, "property", ffn_examples(approximate=approximate), _check_gate_zero),
    )


SWIGLU = Component(
    name="swiglu",
    family="feedforward",
    signature="swiglu(x: Float[*batch, D], w_gate: Float[F, D], w_up: Float[F, D], w_down: Float[D, F]) -> Float[*batch, D]",
    summary="down(silu(x w_gate^T) * x w_up^T), nn.Linear-layout weights, no biases (the Llama MLP).",
    reference=ref.swiglu,
    invariants=_glu_invariants("swiglu", ref.swiglu, "silu", f"{SHAZEER} (FFN_SwiGLU); {LLAMA}"),
)

GEGLU = Component(
    name="geglu",
    family="feedforward",
    signature="geglu(x: Float[*batch, D], w_gate: Float[F, D], w_up: Float[F, D], w_down: Float[D, F], approximate: 'none' | 'tanh' = 'none') -> Float[*batch, D]",
    summary="down(gelu(x w_gate^T) * x w_up^T); approximate='tanh' is Gemma's gelu_pytorch_tanh.",
    reference=ref.geglu,
    invariants=_glu_invariants("geglu", ref.geglu, "gelu", f"{SHAZEER} (FFN_GEGLU)", approximate=True),
)


# --- plain feed-forward ---------------------------------------------------------------------------------


def _ffn_args(ctx: Context, p: dict, bias: bool | None = None) -> tuple:
    d, f = p["D"], p["F"]
    use_bias = p["bias"] if bias is None else bias
    b_in = materialize((f,), p["seed"], ctx.dtype, ctx.device, salt=4, magnitude=0.5) if use_bias else None
    b_out = materialize((d,), p["seed"], ctx.dtype, ctx.device, salt=5, magnitude=0.5) if use_bias else None
    return _x(ctx, p), _w(ctx, p, (f, d), 1), _w(ctx, p, (d, f), 3), b_in, b_out


def _check_ffn_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.feed_forward, *_ffn_args(ctx, p), activation=p["activation"])


def _check_ffn_output_bias(ctx: Context, p: dict) -> None:
    x, w_in, w_out, b_in, b_out = _ffn_args(ctx, p, bias=True)
    shape = tuple(x.shape)
    without = to64(expect_tensor(ctx.target(x, w_in, w_out, b_in, None, activation=p["activation"]), shape, ctx.dtype, ctx.device))
    with_bias = expect_tensor(ctx.target(x, w_in, w_out, b_in, b_out, activation=p["activation"]), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, with_bias, without + to64(b_out), "FFN with b_out vs FFN without it plus b_out")


def _check_ffn_no_bias_is_zero_bias(ctx: Context, p: dict) -> None:
    x, w_in, w_out, _, _ = _ffn_args(ctx, p, bias=False)
    shape = tuple(x.shape)
    zeros_in, zeros_out = torch.zeros(p["F"], dtype=ctx.dtype, device=ctx.device), torch.zeros(p["D"], dtype=ctx.dtype, device=ctx.device)
    none = expect_tensor(ctx.target(x, w_in, w_out, activation=p["activation"]), shape, ctx.dtype, ctx.device)
    zero = expect_tensor(ctx.target(x, w_in, w_out, zeros_in, zeros_out, activation=p["activation"]), shape, ctx.dtype, ctx.device)
    assert_agree(ctx, none, zero, "FFN without biases (Llama-style) vs FFN with zero biases (GPT-2-style)")


FEED_FORWARD = Component(
    name="feed_forward",
    family="feedforward",
    signature="feed_forward(x: Float[*batch, D], w_in: Float[F, D], w_out: Float[D, F], b_in: Float[F] | None = None, "
    "b_out: Float[D] | None = None, activation: 'relu' | 'gelu' | 'gelu_tanh' | 'silu' = 'gelu') -> Float[*batch, D]",
    summary="act(x w_in^T + b_in) w_out^T + b_out; biases given: GPT-2 style (gelu_tanh = gelu_new), None: Llama style.",
    reference=ref.feed_forward,
    invariants=(
        Invariant("feed_forward.reference.matches",
                  "Output equals the float64 reference for every activation, with biases (GPT-2) and without (Llama).",
                  f"{VASWANI_FFN}; {GPT2}", "differential", ffn_examples(activation=True), _check_ffn_reference),
        Invariant("feed_forward.bias.output_added", "b_out is added after the output projection: FFN(x; b_out) = FFN(x; None) + b_out.",
                  VASWANI_FFN, "property", ffn_examples(activation=True), _check_ffn_output_bias),
        Invariant("feed_forward.bias.none_is_zero", "Omitting the biases (Llama) equals zero biases (GPT-2 with b = 0).",
                  f"{VASWANI_FFN}; {LLAMA} (no biases)", "property", ffn_examples(activation=True), _check_ffn_no_bias_is_zero_bias),
    ),
)


# --- widths ---------------------------------------------------------------------------------------------

#: (dim, multiple_of, ffn_dim_multiplier) -> hidden width, from the published params.json / configs.
PUBLISHED_WIDTHS = {
    "LLaMA-7B / Llama-2-7B": ((4096, 256, None), 11008),
    "LLaMA-13B / Llama-2-13B": ((5120, 256, None), 13824),
    "LLaMA-33B": ((6656, 256, None), 17920),
    "LLaMA-65B": ((8192, 256, None), 22016),
    "Llama-2-70B": ((8192, 4096, 1.3), 28672),
    "Llama-3-8B": ((4096, 1024, 1.3), 14336),
    "Llama-3-70B": ((8192, 4096, 1.3), 28672),
    "Llama-3.1-405B": ((16384, 1024, 1.2), 53248),
}


def _check_published(ctx: Context, p: dict) -> None:
    wrong = []
    for model, ((dim, multiple_of, multiplier), expected) in PUBLISHED_WIDTHS.items():
        got = ctx.target(dim, True, multiple_of, multiplier)
        if got != expected:
            wrong.append(f"{model}: ffn_hidden_dim({dim}, gated=True, multiple_of={multiple_of}, ffn_dim_multiplier={multiplier}) = {got}, published {expected}")
    if wrong:
        ctx.fail("; ".join(wrong))


@st.composite
def _width_examples(draw) -> dict:
    return {
        "dim": draw(st.integers(1, 20000)),
        "multiple_of": draw(st.sampled_from([1, 2, 3, 8, 64, 256, 1024, 4096])),
        "multiplier": draw(st.sampled_from([None, 1.0, 1.3, 1.5, 0.5])),
    }


def _check_rounding(ctx: Context, p: dict) -> None:
    dim, m, mult = p["dim"], p["multiple_of"], p["multiplier"]
    got = ctx.target(dim, True, m, mult)
    required = int(2 * (4 * dim) / 3)
    if mult is not None:
        required = int(mult * required)
    if not isinstance(got, int) or got % m or got < required or got - m >= required:
        ctx.fail(f"ffn_hidden_dim({dim}, gated=True, multiple_of={m}, ffn_dim_multiplier={mult}) = {got!r}: expected the smallest "
                 f"multiple of {m} that is >= int({mult or 1} * int(8 * {dim} / 3)) = {required}")


def _check_plain(ctx: Context, p: dict) -> None:
    got = ctx.target(p["dim"], False)
    if got != 4 * p["dim"]:
        ctx.fail(f"ffn_hidden_dim({p['dim']}, gated=False) = {got!r}, expected 4 * dim = {4 * p['dim']}")


FFN_HIDDEN_DIM = Component(
    name="ffn_hidden_dim",
    family="feedforward",
    signature="ffn_hidden_dim(dim: int, gated: bool = False, multiple_of: int = 1, ffn_dim_multiplier: float | None = None) -> int",
    summary="4 * dim for a plain FFN; for a GLU FFN Meta's Llama rule int(2 * 4 * dim / 3), times the multiplier, rounded up to multiple_of.",
    reference=ref.ffn_hidden_dim,
    dtypes=(),
    invariants=(
        Invariant("ffn_hidden_dim.llama.published_widths",
                  "The gated rule reproduces the published widths of LLaMA 7B-65B, Llama 2 7B-70B, Llama 3 8B/70B and Llama 3.1 405B.",
                  f"{LLAMA}; the models' params.json (dim, multiple_of, ffn_dim_multiplier) and intermediate_size", "property",
                  st.just({}), _check_published),
        Invariant("ffn_hidden_dim.gated.rounding",
                  "Gated: the smallest multiple of multiple_of that is >= int(multiplier * int(8 dim / 3)).",
                  f"{LLAMA} (Meta's FeedForward.__init__)", "property", _width_examples(), _check_rounding),
        Invariant("ffn_hidden_dim.plain.four_d", "Plain (two-matrix) FFN: d_ff = 4 d.",
                  f"{VASWANI_FFN}; GPT-2 n_inner = 4 * n_embd", "property", _width_examples(), _check_plain),
    ),
)


# --- serial vs parallel block ---------------------------------------------------------------------------


@st.composite
def _block_examples(draw, parallel: bool | None = None) -> dict:
    return {
        "B": draw(sizes(1, 2)),
        "L": draw(sizes(1, 5)),
        "D": draw(sizes(2, 8)),
        "parallel": draw(st.booleans()) if parallel is None else parallel,
        "norm": draw(st.sampled_from(["layer_norm", "rms_norm"])),
        "seed": draw(seeds()),
        "layout": draw(layouts()),
    }


def _sublayers(ctx: Context, p: dict):
    """Stand-ins with the sublayers' shapes and roles, weights rounded to the target's dtype and applied in the input's
    dtype: a causal token mixer (running mean over positions, then tanh of a projection) for attention, a tanh MLP,
    and two differently weighted norms."""
    d = p["D"]
    mk = lambda shape, salt, m=1.0: materialize(shape, p["seed"], ctx.dtype, "cpu", salt=salt, magnitude=m).to(torch.float64)  # noqa: E731
    w_a, w_m, g1, g2 = mk((d, d), 21, d**-0.5), mk((d, d), 22, d**-0.5), mk((d,), 23, 0.3) + 1, mk((d,), 24, 0.3) + 1
    cast = lambda t, h: t.to(h.device, h.dtype)  # noqa: E731

    def attention(h):
        counts = torch.arange(1, h.shape[-2] + 1, device=h.device, dtype=h.dtype)[:, None]
        return torch.tanh((h.cumsum(-2) / counts) @ cast(w_a, h).T)

    def mlp(h):
        return torch.tanh(h @ cast(w_m, h).T)

    def make_norm(g):
        if p["norm"] == "layer_norm":
            return lambda h: layer_norm(h, (d,), cast(g, h))
        return lambda h: rms_norm(h, (d,), cast(g, h), 1e-6)

    return attention, mlp, make_norm(g1), make_norm(g2)


def _block_x(ctx: Context, p: dict) -> torch.Tensor:
    return materialize((p["B"], p["L"], p["D"]), p["seed"], ctx.dtype, ctx.device, layout=p["layout"])


def _block(ctx: Context, x, attention, mlp, n1, n2, parallel) -> torch.Tensor:
    return expect_tensor(ctx.target(x, attention, mlp, n1, n2, parallel), tuple(x.shape), ctx.dtype, ctx.device)


def _check_block_reference(ctx: Context, p: dict) -> None:
    x = _block_x(ctx, p)
    subs = _sublayers(ctx, p)
    ref64, lowp = reference_pair(ref.transformer_block, x, *subs, p["parallel"])
    assert_matches(ctx, ctx.target(x, *subs, p["parallel"]), ref64, lowp, what=f"{'parallel' if p['parallel'] else 'serial'} block output")


def _check_parallel_additive(ctx: Context, p: dict) -> None:
    # both branches read the block input: block(A, M) = block(A, 0) + block(0, M) - x.
    x = _block_x(ctx, p)
    attention, mlp, n1, n2 = _sublayers(ctx, p)
    both = _block(ctx, x, attention, mlp, n1, n2, True)
    only_a = to64(_block(ctx, x, attention, torch.zeros_like, n1, n2, True))
    only_m = to64(_block(ctx, x, torch.zeros_like, mlp, n1, n2, True))
    assert_agree(ctx, both, only_a + only_m - to64(x), "parallel block vs (attention-only block) + (MLP-only block) - x: the MLP must "
                 "read the block input, not the attention output")


def _check_serial_composition(ctx: Context, p: dict) -> None:
    # the MLP reads h = x + attention(n1(x)): block(x; A, M) = block(h; 0, M).
    x = _block_x(ctx, p)
    attention, mlp, n1, n2 = _sublayers(ctx, p)
    h = x + attention(n1(x))
    a = _block(ctx, x, attention, mlp, n1, n2, False)
    b = _block(ctx, h, torch.zeros_like, mlp, n1, n2, False)
    assert_agree(ctx, a, b, "serial block vs the block with zero attention applied to h = x + attention(n1(x)): the MLP must read h")


def _check_zero_identity(ctx: Context, p: dict) -> None:
    x = _block_x(ctx, p)
    _, _, n1, n2 = _sublayers(ctx, p)
    out = _block(ctx, x, torch.zeros_like, torch.zeros_like, n1, n2, p["parallel"])
    if not torch.equal(out, x):
        idx = [int(i) for i in (out != x).nonzero()[0]]
        ctx.fail(f"block with zero attention and zero MLP changed x at {idx}: a pre-norm block must be the identity", index=idx)


TRANSFORMER_BLOCK = Component(
    name="transformer_block",
    family="feedforward",
    signature="transformer_block(x: Float[B, L, D], attention: Callable, mlp: Callable, attention_norm: Callable, mlp_norm: Callable, "
    "parallel: bool = False) -> Float[B, L, D]",
    summary="Pre-norm block: serial h = x + attn(n1(x)), h + mlp(n2(h)) (GPT-2, Llama) or parallel x + attn(n1(x)) + mlp(n2(x)) (GPT-J, PaLM).",
    reference=ref.transformer_block,
    invariants=(
        Invariant("transformer_block.reference.matches", "Serial and parallel blocks equal the float64 reference.",
                  f"{PARALLEL}; {GPT2}", "differential", _block_examples(), _check_block_reference),
        Invariant("transformer_block.parallel.additive",
                  "Parallel: both branches read the block input, so block(A, M) = block(A, 0) + block(0, M) - x.",
                  PARALLEL, "property", _block_examples(parallel=True), _check_parallel_additive),
        Invariant("transformer_block.serial.mlp_reads_attention_output",
                  "Serial: the MLP reads h = x + attention(n1(x)), so block(x; A, M) = block(h; 0, M).",
                  f"Vaswani et al. 2017, sec. 3.1; {GPT2}", "property", _block_examples(parallel=False), _check_serial_composition),
        Invariant("transformer_block.zero_sublayers_identity",
                  "With attention and MLP outputting zeros the block is exactly the identity, in both layouts.",
                  "Xiong et al. 2020 (pre-norm residual stream)", "property", _block_examples(), _check_zero_identity),
    ),
)

COMPONENTS = (FEED_FORWARD, SWIGLU, GEGLU, FFN_HIDDEN_DIM, TRANSFORMER_BLOCK)
