"""Feed-forward blocks: SwiGLU / GEGLU, plain FFN (GPT-2, with biases; Llama-style without), hidden widths, and
the serial vs parallel (GPT-J, PaLM) transformer block."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ..reference import feedforward as ref
from ..reference.norms import AffineNorm, Projection
from .checks import (PROPERTY_ULPS, assert_agree, assert_each_within, assert_equal, assert_matches, call, differential,
                     reference_pair, to64)
from .core import Component, Context, invariant, row
from .gradients import (BACKWARD, backward_complete, backward_finite_differences, backward_matches,
                        backward_repeatable)
from .guard import leaves
from .strategies import TILE_EDGES, layouts, materialize, patterns, relayout, scaled, seeds, sizes
from .tolerance import eps as machine_eps

VASWANI_FFN = "Vaswani et al. 2017, eq. 2 and sec. 3.3 (d_ff = 4 d_model)"
SHAZEER = "Shazeer 2020, GLU Variants Improve Transformer, eqs. 5-6"
LLAMA = "Touvron et al. 2023, LLaMA, sec. 2.2; Meta llama/model.py FeedForward; transformers LlamaMLP"
GPT2 = "Radford et al. 2019 (GPT-2); transformers GPT2MLP (Conv1D c_fc, gelu_new, c_proj, biases)"
PARALLEL = ("Chowdhery et al. 2022, PaLM, sec. 2 (parallel layers); Wang & Komatsuzaki 2021, GPT-J "
            "(transformers GPTJBlock)")
SWIGLU_SOURCE = f"{SHAZEER} (FFN_SwiGLU); {LLAMA}"
GEGLU_SOURCE = f"{SHAZEER} (FFN_GEGLU)"


SWIGLU = Component(
    name="swiglu",
    signature="swiglu(x: Float[*batch, D], w_gate: Float[F, D], w_up: Float[F, D], w_down: Float[D, F]) "
    "-> Float[*batch, D]",
    summary="down(silu(x w_gate^T) * x w_up^T), nn.Linear-layout weights, no biases (the Llama MLP).",
    reference=ref.swiglu,
    features=dict(BACKWARD),
)

GEGLU = Component(
    name="geglu",
    signature="geglu(x: Float[*batch, D], w_gate: Float[F, D], w_up: Float[F, D], w_down: Float[D, F], "
    "approximate: 'none' | 'tanh' = 'none') -> Float[*batch, D]",
    summary="down(gelu(x w_gate^T) * x w_up^T); approximate='tanh' is Gemma's gelu_pytorch_tanh.",
    reference=ref.geglu,
    features=dict(BACKWARD),
)


#: real d_model sizes (Llama-2-7B / Llama-3-8B, Llama-2-13B) and intermediate sizes (Llama-2-7B 11008, Llama-2-13B
#: 13824, Llama-3-8B 14336): multiples of the kernels' tiles, so tile edges are drawn besides them.
D_MODELS = (4096, 5120)
INTERMEDIATE = (11008, 13824, 14336)
#: (tokens, D, F) of real models at decode time, every dimension real: production only (their float64 weights are
#: 0.4-0.6 GB each).
PRODUCTION_FFN = ((1, 4096, 11008), (2, 4096, 14336), (1, 5120, 13824))


def ffn_shapes() -> st.SearchStrategy[tuple[list[int], int, int]]:
    """(batch, D, F). small: 1-2 batch dims of 1..3, D 1..8, F 1..12; kernel: 1-2 tokens with D or F (or both) at
    tile edges, where a matmul's K loop ends on a partial tile, or one of them a real model's size with the other
    small; production: real (D, F) pairs at 1-2 tokens of decoding."""
    small = st.tuples(st.lists(sizes(1, 3), min_size=1, max_size=2), sizes(1, 8), sizes(1, 12))
    tokens = sizes(1, 2).map(lambda t: [t])
    edges = st.sampled_from(TILE_EDGES)
    kernel = st.one_of(st.tuples(tokens, edges, edges), st.tuples(tokens, edges, sizes(1, 12)),
                       st.tuples(tokens, sizes(1, 8), edges),
                       st.one_of(st.tuples(tokens, st.sampled_from(D_MODELS), sizes(1, 12)),
                                 st.tuples(tokens, sizes(1, 8), st.sampled_from(INTERMEDIATE))))
    production = st.sampled_from(PRODUCTION_FFN).map(lambda s: ([s[0]], s[1], s[2]))
    return scaled(small, kernel, production).map(lambda s: (list(s[0]), s[1], s[2]))


@st.composite
def ffn_examples(draw, activation: bool = False, approximate: bool = False) -> dict:
    batch, d, f = draw(ffn_shapes())
    p = {
        "batch": batch,
        "D": d,
        "F": f,
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
    return materialize(shape, p["seed"], ctx.dtype, ctx.device, salt=salt, magnitude=shape[1] ** -0.5,
                       layout=p["layout"])


def _glu_weights(ctx: Context, p: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d, f = p["D"], p["F"]
    return _w(ctx, p, (f, d), 1), _w(ctx, p, (f, d), 2), _w(ctx, p, (d, f), 3)


def _glu_kwargs(p: dict) -> dict:
    """GEGLU's `approximate`, passed only when drawn (None: the target's default)."""
    return {} if p.get("approximate") is None else {"approximate": p["approximate"]}


@invariant(row("swiglu.reference.matches", reference=ref.swiglu, source=SWIGLU_SOURCE, examples=ffn_examples(),
               statement="down(silu(gate x) * up x) equals the float64 reference."),
           row("geglu.reference.matches", reference=ref.geglu, source=GEGLU_SOURCE,
               examples=ffn_examples(approximate=True),
               statement="down(gelu(gate x) * up x) equals the float64 reference."),
           kind="differential")
def check_glu_reference(ctx: Context, p: dict, reference) -> None:
    differential(ctx, reference, _x(ctx, p), *_glu_weights(ctx, p), **_glu_kwargs(p))


@st.composite
def _linear_examples(draw, approximate: bool = False) -> dict:
    p = draw(ffn_examples(approximate=approximate))
    p["c"] = draw(st.sampled_from([2.0, 0.5, -1.0, -4.0]))
    return p


@invariant(row("swiglu.linear_in_up", source=SWIGLU_SOURCE, examples=_linear_examples()),
           row("geglu.linear_in_up", source=GEGLU_SOURCE, examples=_linear_examples(approximate=True)),
           statement="The output is linear in w_up: scaling w_up by c scales the output by c (the activation is on "
           "the gate).")
def check_linear_in_up(ctx: Context, p: dict) -> None:
    # scaling by a power of two is exact, so act(gate x) * (c up x) = c (act(gate x) * up x) in every dtype.
    x = _x(ctx, p)
    wg, wu, wd = _glu_weights(ctx, p)
    kw = _glu_kwargs(p)
    plain = to64(call(ctx, x.shape, x, wg, wu, wd, **kw))
    # the scaled weight in the same memory layout as w_up: a matmul's summation order may depend on it (at kernel
    # sizes that alone moves outputs by more than PROPERTY_ULPS), the scaling never does
    scaled = call(ctx, x.shape, x, wg, relayout(wu * p["c"], p["layout"]), wd, **kw)
    assert_agree(ctx, scaled, plain * p["c"], f"output with w_up scaled by {p['c']:g} vs {p['c']:g} x output: the up "
                 "projection must enter linearly (the activation goes on the gate)")


@invariant(row("swiglu.gate_zero_closes", source=SWIGLU_SOURCE, examples=ffn_examples(),
               statement="With w_gate = 0 the output is exactly 0, since silu(0) = 0."),
           row("geglu.gate_zero_closes", source=GEGLU_SOURCE, examples=ffn_examples(approximate=True),
               statement="With w_gate = 0 the output is exactly 0, since gelu(0) = 0."))
def check_gate_zero(ctx: Context, p: dict) -> None:
    x = _x(ctx, p)
    _, wu, wd = _glu_weights(ctx, p)
    out = call(ctx, x.shape, x, torch.zeros_like(wu), wu, wd, **_glu_kwargs(p))
    assert_equal(ctx, out, torch.zeros_like(out), "output with w_gate = 0: act(0) must be 0 (SiLU, GELU), so a "
                 "closed gate passes nothing")


# --- plain feed-forward ---------------------------------------------------------------------------------

FEED_FORWARD = Component(
    name="feed_forward",
    signature="feed_forward(x: Float[*batch, D], w_in: Float[F, D], w_out: Float[D, F], b_in: Float[F] | None = None, "
    "b_out: Float[D] | None = None, activation: 'relu' | 'gelu' | 'gelu_tanh' | 'silu' = 'gelu') -> Float[*batch, D]",
    summary="act(x w_in^T + b_in) w_out^T + b_out; biases given: GPT-2 style (gelu_tanh = gelu_new), None: Llama "
    "style.",
    reference=ref.feed_forward,
    features=dict(BACKWARD),
)


def _ffn_args(ctx: Context, p: dict, bias: bool | None = None) -> tuple:
    d, f = p["D"], p["F"]
    use_bias = p["bias"] if bias is None else bias
    b_in = materialize((f,), p["seed"], ctx.dtype, ctx.device, salt=4, magnitude=0.5) if use_bias else None
    b_out = materialize((d,), p["seed"], ctx.dtype, ctx.device, salt=5, magnitude=0.5) if use_bias else None
    return _x(ctx, p), _w(ctx, p, (f, d), 1), _w(ctx, p, (d, f), 3), b_in, b_out


@invariant("feed_forward.reference.matches", kind="differential", examples=ffn_examples(activation=True),
           statement="Output equals the float64 reference for every activation, with biases (GPT-2) and without "
           "(Llama).", source=f"{VASWANI_FFN}; {GPT2}")
def check_ffn_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.feed_forward, *_ffn_args(ctx, p), activation=p["activation"])


def _rounding_scale(x, w_in, w_out, b_in, activation: str) -> torch.Tensor:
    """|act(x w_in^T + b_in)| |w_out|^T in float64: the sum of the magnitudes of each output's dot-product terms, the
    scale at which it rounds whatever order a kernel sums them in (two orders differ by a few eps of it, which grows
    with the reduction length F, not with the output)."""
    h = ref.activation_fn(activation)(to64(x) @ to64(w_in).T + (0 if b_in is None else to64(b_in)))
    return h.abs() @ to64(w_out).abs().T


@invariant("feed_forward.bias.output_added", examples=ffn_examples(activation=True), source=VASWANI_FFN,
           statement="b_out is added after the output projection: FFN(x; b_out) = FFN(x; None) + b_out.")
def check_ffn_output_bias(ctx: Context, p: dict) -> None:
    x, w_in, w_out, b_in, b_out = _ffn_args(ctx, p, bias=True)
    without = to64(call(ctx, x.shape, x, w_in, w_out, b_in, None, activation=p["activation"]))
    with_bias = call(ctx, x.shape, x, w_in, w_out, b_in, b_out, activation=p["activation"])
    # a bias added inside the matmul (addmm: the accumulator starts at b_out) rounds differently from one added after
    allowed = PROPERTY_ULPS * machine_eps(ctx.dtype) * (_rounding_scale(x, w_in, w_out, b_in, p["activation"])
                                                         + to64(b_out).abs())
    assert_each_within(ctx, with_bias, without + to64(b_out), allowed, "FFN with b_out vs FFN without it plus b_out "
                       f"({PROPERTY_ULPS:g} eps of the sum of each output's term magnitudes)")


@invariant("feed_forward.bias.none_is_zero", examples=ffn_examples(activation=True),
           statement="Omitting the biases (Llama) equals zero biases (GPT-2 with b = 0).",
           source=f"{VASWANI_FFN}; {LLAMA} (no biases)")
def check_ffn_no_bias_is_zero_bias(ctx: Context, p: dict) -> None:
    x, w_in, w_out, _, _ = _ffn_args(ctx, p, bias=False)
    zeros_in = torch.zeros(p["F"], dtype=ctx.dtype, device=ctx.device)
    zeros_out = torch.zeros(p["D"], dtype=ctx.dtype, device=ctx.device)
    none = call(ctx, x.shape, x, w_in, w_out, activation=p["activation"])
    zero = call(ctx, x.shape, x, w_in, w_out, zeros_in, zeros_out, activation=p["activation"])
    allowed = PROPERTY_ULPS * machine_eps(ctx.dtype) * _rounding_scale(x, w_in, w_out, None, p["activation"])
    assert_each_within(ctx, none, zero, allowed, "FFN without biases (Llama-style) vs FFN with zero biases "
                       f"(GPT-2-style) ({PROPERTY_ULPS:g} eps of the sum of each output's term magnitudes)")


# --- widths ---------------------------------------------------------------------------------------------

FFN_HIDDEN_DIM = Component(
    name="ffn_hidden_dim",
    signature="ffn_hidden_dim(dim: int, gated: bool = False, multiple_of: int = 1, "
    "ffn_dim_multiplier: float | None = None) -> int",
    summary="4 * dim for a plain FFN; for a GLU FFN Meta's Llama rule int(2 * 4 * dim / 3), times the multiplier, "
    "rounded up to multiple_of.",
    reference=ref.ffn_hidden_dim,
    dtypes=(),
)

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


@invariant("ffn_hidden_dim.llama.published_widths", examples=st.just({}),
           statement="The gated rule reproduces the published widths of LLaMA 7B-65B, Llama 2 7B-70B, Llama 3 8B/70B "
           "and Llama 3.1 405B.",
           source=f"{LLAMA}; the models' params.json (dim, multiple_of, ffn_dim_multiplier) and intermediate_size")
def check_published_widths(ctx: Context, p: dict) -> None:
    wrong = []  # every model that disagrees, named: one message shows the whole pattern
    for model, ((dim, multiple_of, multiplier), expected) in PUBLISHED_WIDTHS.items():
        got = ctx.target(dim, True, multiple_of, multiplier)
        if got != expected:
            wrong.append(f"{model}: ffn_hidden_dim({dim}, gated=True, multiple_of={multiple_of}, "
                         f"ffn_dim_multiplier={multiplier}) = {got}, published {expected}")
    if wrong:
        ctx.fail("; ".join(wrong))


@st.composite
def _width_examples(draw) -> dict:
    return {
        "dim": draw(st.integers(1, 20000)),
        "multiple_of": draw(st.sampled_from([1, 2, 3, 8, 64, 256, 1024, 4096])),
        "multiplier": draw(st.sampled_from([None, 1.0, 1.3, 1.5, 0.5])),
    }


@invariant("ffn_hidden_dim.gated.rounding", examples=_width_examples(),
           statement="Gated: the smallest multiple of multiple_of that is >= int(multiplier * int(8 dim / 3)).",
           source=f"{LLAMA} (Meta's FeedForward.__init__)")
def check_gated_rounding(ctx: Context, p: dict) -> None:
    dim, m, mult = p["dim"], p["multiple_of"], p["multiplier"]
    got = ctx.target(dim, True, m, mult)
    required = int(2 * (4 * dim) / 3)
    if mult is not None:
        required = int(mult * required)
    if not isinstance(got, int) or got % m or got < required or got - m >= required:
        ctx.fail(f"ffn_hidden_dim({dim}, gated=True, multiple_of={m}, ffn_dim_multiplier={mult}) = {got!r}: expected "
                 f"the smallest multiple of {m} that is >= int({mult or 1} * int(8 * {dim} / 3)) = {required}")


@invariant("ffn_hidden_dim.plain.four_d", examples=_width_examples(), statement="Plain (two-matrix) FFN: d_ff = 4 d.",
           source=f"{VASWANI_FFN}; GPT-2 n_inner = 4 * n_embd")
def check_plain_four_d(ctx: Context, p: dict) -> None:
    assert_equal(ctx, ctx.target(p["dim"], False), 4 * p["dim"], f"ffn_hidden_dim({p['dim']}, gated=False) (4 * dim)")


# --- serial vs parallel block ---------------------------------------------------------------------------

TRANSFORMER_BLOCK = Component(
    name="transformer_block",
    signature="transformer_block(x: Float[B, L, D], attention: Callable, mlp: Callable, attention_norm: Callable, "
    "mlp_norm: Callable, parallel: bool = False) -> Float[B, L, D]",
    summary="Pre-norm block: serial h = x + attn(n1(x)), h + mlp(n2(h)) (GPT-2, Llama) or parallel x + attn(n1(x)) + "
    "mlp(n2(x)) (GPT-J, PaLM).",
    reference=ref.transformer_block,
    features=dict(BACKWARD),
)


@st.composite
def _block_examples(draw, parallel: bool | None = None) -> dict:
    # kernel: D at tile edges (the stand-in sublayers are D x D projections) or many tokens; production: 512 x 4096
    b, length, d = draw(scaled(st.tuples(sizes(1, 2), sizes(1, 5), sizes(2, 8)),
                               st.one_of(st.tuples(sizes(1, 2), sizes(1, 5), st.sampled_from(TILE_EDGES)),
                                         st.tuples(sizes(1, 2), st.sampled_from(TILE_EDGES), sizes(2, 8))),
                               st.just((1, 512, 4096))))
    return {
        "B": b,
        "L": length,
        "D": d,
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

    def weight(shape, salt, magnitude=1.0):
        return materialize(shape, p["seed"], ctx.dtype, "cpu", salt=salt, magnitude=magnitude).to(torch.float64)

    w_a, w_m = weight((d, d), 21, d**-0.5), weight((d, d), 22, d**-0.5)
    g1, g2 = weight((d,), 23, 0.3) + 1, weight((d,), 24, 0.3) + 1
    # objects of lmspec.reference cross to a worker by value: gradients flow through them where the target runs
    return (Projection(w_a, causal_mean=True), Projection(w_m), AffineNorm(p["norm"], g1), AffineNorm(p["norm"], g2))


def _block_x(ctx: Context, p: dict) -> torch.Tensor:
    return materialize((p["B"], p["L"], p["D"]), p["seed"], ctx.dtype, ctx.device, layout=p["layout"])


@invariant("transformer_block.reference.matches", kind="differential", examples=_block_examples(),
           statement="Serial and parallel blocks equal the float64 reference.", source=f"{PARALLEL}; {GPT2}")
def check_block_reference(ctx: Context, p: dict) -> None:
    x = _block_x(ctx, p)
    subs = _sublayers(ctx, p)
    ref64, lowp = reference_pair(ref.transformer_block, x, *subs, p["parallel"])
    assert_matches(ctx, ctx.target(x, *subs, p["parallel"]), ref64, lowp,
                   what=f"{'parallel' if p['parallel'] else 'serial'} block output")


@invariant("transformer_block.parallel.additive", examples=_block_examples(parallel=True), source=PARALLEL,
           statement="Parallel: both branches read the block input, so block(A, M) = block(A, 0) + block(0, M) - x.")
def check_parallel_additive(ctx: Context, p: dict) -> None:
    x = _block_x(ctx, p)
    attention, mlp, n1, n2 = _sublayers(ctx, p)
    both = call(ctx, x.shape, x, attention, mlp, n1, n2, True)
    only_a = to64(call(ctx, x.shape, x, attention, torch.zeros_like, n1, n2, True))
    only_m = to64(call(ctx, x.shape, x, torch.zeros_like, mlp, n1, n2, True))
    assert_agree(ctx, both, only_a + only_m - to64(x), "parallel block vs (attention-only block) + (MLP-only block) "
                 "- x: the MLP must read the block input, not the attention output")


@invariant("transformer_block.serial.mlp_reads_attention_output", examples=_block_examples(parallel=False),
           statement="Serial: the MLP reads h = x + attention(n1(x)), so block(x; A, M) = block(h; 0, M).",
           source=f"Vaswani et al. 2017, sec. 3.1; {GPT2}")
def check_serial_composition(ctx: Context, p: dict) -> None:
    x = _block_x(ctx, p)
    attention, mlp, n1, n2 = _sublayers(ctx, p)
    h = x + attention(n1(x))
    a = call(ctx, x.shape, x, attention, mlp, n1, n2, False)
    b = call(ctx, h.shape, h, torch.zeros_like, mlp, n1, n2, False)
    assert_agree(ctx, a, b, "serial block vs the block with zero attention applied to h = x + attention(n1(x)): the "
                 "MLP must read h")


@invariant("transformer_block.zero_sublayers_identity", examples=_block_examples(),
           statement="With attention and MLP outputting zeros the block is exactly the identity, in both layouts.",
           source="Xiong et al. 2020 (pre-norm residual stream)")
def check_zero_sublayers_identity(ctx: Context, p: dict) -> None:
    x = _block_x(ctx, p)
    _, _, n1, n2 = _sublayers(ctx, p)
    out = call(ctx, x.shape, x, torch.zeros_like, torch.zeros_like, n1, n2, p["parallel"])
    assert_equal(ctx, out, x, "block with zero attention and zero MLP (a pre-norm block must be the identity)")


# --- backward passes (issue 15) -------------------------------------------------------------------------

GLU_GRAD = (f"{SHAZEER}; chain rule: d(a * u) = a' u dgate + a dup, torch derivatives.yaml silu_backward / "
            "gelu_backward and mm (grad W = g^T x)")
FFN_GRAD = f"{VASWANI_FFN}; torch derivatives.yaml addmm / mm (grad W = g^T h, grad b = sum g), relu / gelu backward"
BLOCK_GRAD = f"{PARALLEL}; chain rule through both residual branches"


def _differentiable(args: tuple, kwargs: dict, names: dict[int, str]) -> tuple[list[int], list[str]]:
    """Positions among the call's tensor leaves of the arguments named in `names` (positional index -> name) that
    are tensors, and their names."""
    chosen = {id(args[i]): name for i, name in names.items() if isinstance(args[i], torch.Tensor)}
    wrt, found = [], []
    for n, t in enumerate(t for t in leaves((args, kwargs)) if isinstance(t, torch.Tensor)):
        if id(t) in chosen:
            wrt.append(n)
            found.append(chosen[id(t)])
    return wrt, found


def glu_call(ctx: Context, p: dict, reference) -> tuple:
    args = (_x(ctx, p), *_glu_weights(ctx, p))
    return reference, args, _glu_kwargs(p), {0: "x", 1: "w_gate", 2: "w_up", 3: "w_down"}


def ffn_call(ctx: Context, p: dict) -> tuple:
    args = _ffn_args(ctx, p)
    return ref.feed_forward, args, {"activation": p["activation"]}, {0: "x", 1: "w_in", 2: "w_out", 3: "b_in",
                                                                      4: "b_out"}


def block_call(ctx: Context, p: dict) -> tuple:
    return ref.transformer_block, (_block_x(ctx, p), *_sublayers(ctx, p), p["parallel"]), {}, {0: "x"}


def _moderate(p: dict) -> dict:
    """No 'large' inputs (30x) for gradients: a weight's gradient grows as |x|^2 (g^T x through the up projection),
    past float16's range in the exact result at d_model 4096, which no float16 kernel can represent."""
    return {**p, "pattern": "normal"} if p.get("pattern") == "large" else p


def _smooth(p: dict) -> dict:
    """Finite differences also without grid values: an all-zero row puts relu's pre-activation exactly on its kink,
    where central differences see |d| / 2 and autograd's subgradient 0 (and the one step, scaled to the largest
    input, must stay small where the activations curve, at pre-activations of order 1)."""
    return {**p, "pattern": "normal"}


#: the family's example strategies for gradients (`_moderate`; `_smooth` for finite differences)
GLU_GRAD_EXAMPLES = ffn_examples().map(_moderate)
GEGLU_GRAD_EXAMPLES = ffn_examples(approximate=True).map(_moderate)
FFN_GRAD_EXAMPLES = ffn_examples(activation=True).map(_moderate)


def _run_backward(check, ctx: Context, p: dict, call, **kw) -> None:
    reference, args, kwargs, names = call(ctx, p, **kw)
    wrt, found = _differentiable(args, kwargs, names)
    check(ctx, reference, args, kwargs, wrt=wrt, seed=p["seed"], names=found)


def _vjp(what: str) -> str:
    return (f"The vector-Jacobian products for {what} match the float64 reference's within the tolerance policy "
            "(random cotangents; the reference's own gradient error in the dtype under test is the yardstick).")


GRAD_COMPLETE = ("Every input and parameter that requires grad gets a gradient of its own shape, dtype and device, "
                 "and requiring grad does not change the forward output.")
GRAD_REPEATABLE = ("Pulling back twice through one graph gives the same gradients, and two backward calls accumulate "
                   "their sum into .grad.")
GRAD_FINITE = ("float64: the gradients' directional derivative equals central finite differences of the target's own "
               "forward along a random direction.")
GRADCHECK = "torch.autograd.gradcheck (directional form); central differences, O(h^2) truncation"
AUTOGRAD = "torch.autograd (accumulation into .grad, retain_graph); issue 15"
GLU_X = "x, w_gate, w_up and w_down"


@invariant(row("swiglu.backward.matches_reference", call=glu_call, kw={"reference": ref.swiglu},
               examples=GLU_GRAD_EXAMPLES, source=GLU_GRAD, statement=_vjp(GLU_X)),
           row("geglu.backward.matches_reference", call=glu_call, kw={"reference": ref.geglu},
               examples=GEGLU_GRAD_EXAMPLES, source=GLU_GRAD, statement=_vjp(GLU_X)),
           row("feed_forward.backward.matches_reference", call=ffn_call, kw={}, examples=FFN_GRAD_EXAMPLES,
               source=FFN_GRAD, statement=_vjp("x, w_in, w_out and the biases b_in, b_out (when given)")),
           row("transformer_block.backward.matches_reference", call=block_call, kw={}, examples=_block_examples(),
               source=BLOCK_GRAD, statement=_vjp("the block input x, serial and parallel")),
           kind="differential", requires={"backward"}, budget=0.5)
def check_backward_matches(ctx: Context, p: dict, call, kw: dict) -> None:
    _run_backward(backward_matches, ctx, p, call, **kw)


@invariant(row("swiglu.backward.complete", call=glu_call, kw={"reference": ref.swiglu}, examples=GLU_GRAD_EXAMPLES,
               source=GLU_GRAD),
           row("geglu.backward.complete", call=glu_call, kw={"reference": ref.geglu},
               examples=GEGLU_GRAD_EXAMPLES, source=GLU_GRAD),
           row("feed_forward.backward.complete", call=ffn_call, kw={},
               examples=FFN_GRAD_EXAMPLES.map(lambda p: {**p, "bias": True}),  # every parameter's gradient
               source=FFN_GRAD),
           row("transformer_block.backward.complete", call=block_call, kw={}, examples=_block_examples(),
               source=BLOCK_GRAD),
           statement=GRAD_COMPLETE, requires={"backward"}, budget=0.5)
def check_backward_complete(ctx: Context, p: dict, call, kw: dict) -> None:
    _run_backward(backward_complete, ctx, p, call, **kw)


@invariant(row("swiglu.backward.repeatable", call=glu_call, kw={"reference": ref.swiglu}, examples=GLU_GRAD_EXAMPLES),
           row("geglu.backward.repeatable", call=glu_call, kw={"reference": ref.geglu},
               examples=GEGLU_GRAD_EXAMPLES),
           row("feed_forward.backward.repeatable", call=ffn_call, kw={}, examples=FFN_GRAD_EXAMPLES),
           row("transformer_block.backward.repeatable", call=block_call, kw={}, examples=_block_examples()),
           statement=GRAD_REPEATABLE, source=AUTOGRAD, requires={"backward"}, budget=0.5)
def check_backward_repeatable(ctx: Context, p: dict, call, kw: dict) -> None:
    _run_backward(backward_repeatable, ctx, p, call, **kw)


@invariant(row("swiglu.backward.finite_differences", call=glu_call, kw={"reference": ref.swiglu},
               examples=GLU_GRAD_EXAMPLES.map(_smooth)),
           row("geglu.backward.finite_differences", call=glu_call, kw={"reference": ref.geglu},
               examples=GEGLU_GRAD_EXAMPLES.map(_smooth)),
           row("feed_forward.backward.finite_differences", call=ffn_call, kw={},
               examples=FFN_GRAD_EXAMPLES.map(_smooth)),
           row("transformer_block.backward.finite_differences", call=block_call, kw={}, examples=_block_examples()),
           statement=GRAD_FINITE, source=GRADCHECK, requires={"backward"}, dtypes=(torch.float64,), budget=0.5)
def check_backward_finite_differences(ctx: Context, p: dict, call, kw: dict) -> None:
    _run_backward(backward_finite_differences, ctx, p, call, **kw)
