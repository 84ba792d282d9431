"""Normalization in context: BatchNorm (against LayerNorm), pre- and post-norm residual blocks, QK-norm."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference import norms as ref
from ...reference.positions import apply_rotary, rope_inv_freq
from ...reference.positions import rope as rope_reference
from ..checks import (PROPERTY_ULPS, assert_agree, assert_equal, assert_matches, call, differential, reference_pair,
                      show, to64)
from ..core import Component, Context, Option, invariant
from ..gradients import BACKWARD
from ..guard import expect_tensor
from ..strategies import TILE_EDGES, layouts, materialize, scaled, seeds, sizes
from ..tolerance import eps as machine_eps
from ..checks import assert_each_within
from .closeness import layer_norm_condition
from .sources import BA, DEHGHANI, IOFFE, OLMO2, QWEN3, TORCH_BN, XIONG

# --- BatchNorm ------------------------------------------------------------------------------------------

BATCH_NORM = Component(
    name="batch_norm",
    signature="batch_norm(input: Float[N, C, *L], running_mean: Float[C] | None, running_var: Float[C] | None, "
    "weight: Float[C] | None = None, bias: Float[C] | None = None, training: bool = False, momentum: float = 0.1, "
    "eps: float = 1e-5) -> Float[N, C, *L]  (torch.nn.functional.batch_norm)",
    summary="Per-channel normalization with the batch's statistics (training) or the running ones (eval). Checks pass "
    "running statistics only in eval mode: torch updates them in place in training mode, which the harness forbids.",
    reference=ref.batch_norm,
    features=dict(BACKWARD),
)


def _bn_shapes() -> st.SearchStrategy[tuple[int, int, int | None]]:
    """(N, C, L; None: no positions dim). small: N 2..5, C 1..5, L up to 6; kernel: each channel reduces over N x L
    values across column blocks (L at tile edges), or many channels (C at tile edges); production: 8 x 256 x 4096."""
    small_l = st.sampled_from([None, 1, 3, 6])
    small = st.tuples(sizes(2, 5), sizes(1, 5), small_l)
    kernel = st.one_of(st.tuples(sizes(2, 5), sizes(1, 5), st.sampled_from((255, 256, 257, 1023, 1024, 1025, 2049))),
                       st.tuples(sizes(2, 5), st.sampled_from(TILE_EDGES), small_l))
    return scaled(small, kernel, st.just((8, 256, 4096)))


@st.composite
def _bn_examples(draw, training: bool | None = None) -> dict:
    """No grid values: a channel whose values are all equal normalizes to exactly 0, where torch's kernels leave
    cancellation error (see norm_examples)."""
    n, c, length = draw(_bn_shapes())
    return {
        "N": n,
        "C": c,
        "L": length,
        "training": draw(st.booleans()) if training is None else training,
        "affine": draw(st.booleans()),
        "momentum": draw(st.sampled_from([0.1, 0.5])),
        "eps": draw(st.sampled_from([1e-5, 1e-3])),
        "seed": draw(seeds()),
        "pattern": draw(st.sampled_from(["normal", "large"])),
        "layout": draw(layouts()),
    }


def _bn_input(ctx: Context, p: dict, salt: int = 0) -> torch.Tensor:
    shape = (p["N"], p["C"]) if p["L"] is None else (p["N"], p["C"], p["L"])
    return materialize(shape, p["seed"], ctx.dtype, ctx.device, p["pattern"], salt=salt, layout=p["layout"])


def _bn_params(ctx: Context, p: dict) -> dict:
    def mk(salt: int) -> torch.Tensor:
        return materialize((p["C"],), p["seed"], torch.float64, "cpu", salt=salt)

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(ctx.dtype).to(ctx.device)

    params = {"running_mean": cast(mk(3)), "running_var": cast(mk(4).abs() + 0.5)}
    params["weight"], params["bias"] = (cast(mk(5) * 0.5 + 1), cast(mk(6))) if p["affine"] else (None, None)
    return params


def _bn_call(ctx: Context, x: torch.Tensor, p: dict, training: bool, params: dict) -> tuple:
    # training with running statistics would update them in place (a mutated input): pass None, as torch allows.
    rm, rv = (None, None) if training else (params["running_mean"], params["running_var"])
    return (x, rm, rv, params["weight"], params["bias"], training, p["momentum"], p["eps"])


def bn_witness(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """The reference, except that in float16 / bfloat16 training the batch statistics are rounded to the input's
    dtype, where torch's kernels keep them (and where eval mode's running buffers live): a channel whose mean is large
    against its spread then carries eps(dtype) |mean| / std of error, as torch's CPU kernel does."""
    if not training or x.dtype not in (torch.float16, torch.bfloat16):
        return ref.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    dims = [0] + list(range(2, x.dim()))
    x32 = x.float()
    mean = x32.mean(dims)
    var = (x32 - mean.reshape([1, -1] + [1] * (x.dim() - 2))).pow(2).mean(dims)
    return ref.batch_norm(x, mean.to(x.dtype), var.to(x.dtype), weight, bias, False, momentum, eps)


@invariant("batch_norm.reference.matches", kind="differential", examples=_bn_examples(),
           statement="Output equals the float64 reference in training and eval mode.",
           source=f"{IOFFE}; {TORCH_BN}")
def check_bn_reference(ctx: Context, p: dict) -> None:
    x = _bn_input(ctx, p)
    differential(ctx, bn_witness, *_bn_call(ctx, x, p, p["training"], _bn_params(ctx, p)))


@invariant("batch_norm.training.batch_statistics", kind="differential", examples=_bn_examples(training=True),
           statement="Training mode normalizes each channel with the batch's mean and biased variance over N and "
           "positions: it equals eval mode with those as running statistics.",
           source=f"{IOFFE}, Algorithm 1")
def check_bn_batch_statistics(ctx: Context, p: dict) -> None:
    # training mode = eval mode whose running statistics are the batch's mean and biased variance.
    x = _bn_input(ctx, p)
    params = _bn_params(ctx, p)
    x64 = to64(x)
    dims = [0] + list(range(2, x.dim()))
    mean = x64.mean(dims)
    var = (x64 - mean.reshape([1, -1] + [1] * (x.dim() - 2))).pow(2).mean(dims)
    train = call(ctx, x.shape, *_bn_call(ctx, x, p, True, params))

    def eval_with_batch_statistics(x, rm, rv, w, b, training, momentum, eps):
        return ref.batch_norm(x, mean.to(x.dtype), var.to(x.dtype), w, b, False, momentum, eps)

    ref64, lowp = reference_pair(eval_with_batch_statistics, *_bn_call(ctx, x, p, False, params))
    assert_matches(ctx, train, ref64, lowp,
                   what="training-mode output (vs normalizing with the batch's mean and biased variance)")


@invariant("batch_norm.eval.running_statistics", kind="differential", examples=_bn_examples(training=False),
           statement="Eval mode normalizes with running_mean and running_var only: each sample's output is "
           "independent of the rest of the batch.",
           source=f"{IOFFE}, sec. 3.1")
def check_bn_eval_per_sample(ctx: Context, p: dict) -> None:
    # eval mode uses the running statistics only: a sample's output does not depend on the rest of the batch.
    x = _bn_input(ctx, p)
    params = _bn_params(ctx, p)
    full = call(ctx, x.shape, *_bn_call(ctx, x, p, False, params))
    other = x.clone()
    other[1:] = _bn_input(ctx, p, salt=7)[1:] * 3 + 2
    changed = call(ctx, x.shape, *_bn_call(ctx, other, p, False, params))
    assert_agree(ctx, full[:1], changed[:1], "eval-mode output of sample 0 after changing the other samples")
    ref64, lowp = reference_pair(ref.batch_norm, *_bn_call(ctx, x, p, False, params))
    assert_matches(ctx, full, ref64, lowp, what="eval-mode output (vs normalizing with running_mean and running_var)")


@invariant("batch_norm.training.padding_changes_outputs", examples=_bn_examples(training=True),
           statement="In training mode, zero padding appended to the sequences changes the outputs at real positions "
           "(the padding enters the statistics), unlike LayerNorm.",
           source=f"{IOFFE}; {BA}, sec. 1 and 6")
def check_bn_padding(ctx: Context, p: dict) -> None:
    # training statistics include padding positions: appending zero padding changes the real positions' outputs.
    # no affine (a small weight would shrink the move); unweighted, the largest output moves by about 0.4 or more.
    x = _bn_input(ctx, {**p, "L": p["L"] or 3, "pattern": "normal"})
    params = _bn_params(ctx, {**p, "affine": False})
    padded = torch.cat([x, torch.zeros_like(x)], dim=-1)
    a = to64(call(ctx, x.shape, *_bn_call(ctx, x, p, True, params)))
    b = to64(call(ctx, padded.shape, *_bn_call(ctx, padded, p, True, params)))
    moved = float((a - b[..., : x.shape[-1]]).abs().max())
    if moved < 0.1:
        ctx.fail(f"training-mode outputs of the real positions moved by only {moved:.3g} when zero padding doubled "
                 "the length: the statistics are not the batch's (BatchNorm normalizes over batch and positions)",
                 max_abs=moved)


# --- pre-norm and post-norm residual blocks -------------------------------------------------------------

RESIDUAL_BLOCK = Component(
    name="residual_block",
    signature="residual_block(x: Float[*batch, D], sublayer: Callable, norm: Callable, order: 'pre' | 'post' = 'pre') "
    "-> Float[*batch, D]",
    summary="pre-norm x + F(Norm(x)) (GPT-2, Llama) or post-norm Norm(x + F(x)) (original Transformer, BERT).",
    reference=ref.residual_block,
    features=dict(BACKWARD),
)


@st.composite
def _block_examples(draw, order: str | None = None) -> dict:
    # kernel: D at tile edges (the sublayer is a D x D projection); production: 512 tokens of 4096
    batch, d = draw(scaled(st.tuples(st.lists(sizes(1, 3), min_size=1, max_size=2), sizes(2, 9)),
                           st.tuples(st.lists(sizes(1, 3), min_size=1, max_size=1), st.sampled_from(TILE_EDGES)),
                           st.just(([512], 4096))))
    return {
        "batch": list(batch),
        "D": d,
        "order": draw(st.sampled_from(["pre", "post"])) if order is None else order,
        "norm": draw(st.sampled_from(["layer_norm", "rms_norm"])),
        "seed": draw(seeds()),
        "layout": draw(layouts()),
    }


def _callables(ctx: Context, p: dict):
    """A sublayer tanh(h W^T) and an affine norm, with weights rounded to the target's dtype (so the float64 and
    low-precision reference runs use the same weights), each running in its input's dtype."""
    d = p["D"]

    def mk(shape, salt: int, m: float = 1.0) -> torch.Tensor:
        return materialize(shape, p["seed"], ctx.dtype, "cpu", salt=salt, magnitude=m).to(torch.float64)

    w_sub, gain, shift = mk((d, d), 11, d**-0.5), mk((d,), 12, 0.3) + 1, mk((d,), 13, 0.3)

    # objects of lmspec.reference cross to a worker by value: gradients flow through them where the target runs
    shift = shift if p["norm"] == "layer_norm" else None
    return ref.Projection(w_sub), ref.AffineNorm(p["norm"], gain, shift)


def _block_x(ctx: Context, p: dict) -> torch.Tensor:
    return materialize(p["batch"] + [p["D"]], p["seed"], ctx.dtype, ctx.device, layout=p["layout"])


@invariant("residual_block.reference.matches", kind="differential", examples=_block_examples(),
           statement="Both orders equal the float64 reference: pre x + F(Norm(x)), post Norm(x + F(x)).",
           source=f"Vaswani et al. 2017, sec. 3.1 (post); Radford et al. 2019, GPT-2, sec. 2.3 (pre); {XIONG}")
def check_block_reference(ctx: Context, p: dict) -> None:
    x = _block_x(ctx, p)
    sublayer, norm = _callables(ctx, p)
    ref64, lowp = reference_pair(ref.residual_block, x, sublayer, norm, p["order"])
    assert_matches(ctx, ctx.target(x, sublayer, norm, p["order"]), ref64, lowp, what=f"{p['order']}-norm block output")


@invariant("residual_block.pre.identity_when_sublayer_zero", examples=_block_examples(order="pre"),
           statement="A pre-norm block whose sublayer outputs zeros is exactly the identity (the residual stream "
           "bypasses the norm).",
           source=XIONG)
def check_pre_identity(ctx: Context, p: dict) -> None:
    x = _block_x(ctx, p)
    _, norm = _callables(ctx, p)
    out = call(ctx, x.shape, x, torch.zeros_like, norm, "pre")
    assert_equal(ctx, out, x, "pre-norm block with a sublayer that outputs zeros vs x (x + F(Norm(x)) must be x)")


@invariant("residual_block.post.output_normalized", examples=_block_examples(order="post"),
           statement="A post-norm block's output is normalized (mean 0 per token with LayerNorm) whatever the "
           "sublayer: the norm comes last.",
           source=f"Vaswani et al. 2017, sec. 3.1 (LayerNorm(x + Sublayer(x))); {XIONG}")
def check_post_normalized(ctx: Context, p: dict) -> None:
    # Norm(x + F(x)) with an un-weighted LayerNorm: mean 0 and variance ~1 whatever x and the sublayer are.
    x = _block_x(ctx, p) * 4
    sublayer, _ = _callables(ctx, p)
    d = p["D"]
    out = to64(call(ctx, x.shape, x, sublayer, lambda h: ref.layer_norm(h, (d,)), "post"))
    z = to64(x + sublayer(x))  # what the norm sees
    tol = PROPERTY_ULPS * machine_eps(ctx.dtype) * math.sqrt(d) * layer_norm_condition(z, (-1,), 1e-5)
    assert_each_within(ctx, out.mean(-1), 0.0, tol, "post-norm block output's mean per token with an un-weighted "
                       "LayerNorm as Norm (the norm must be applied last, to x + F(x))")


# --- QK-norm --------------------------------------------------------------------------------------------

QK_SCOPE = Option(
    name="qk_norm_scope",
    default="per_head",
    choices=("per_head", "all_heads"),
    doc="statistics per head over head_dim with weights [E] (Qwen3), or per token over all heads with weights [H*E] "
    "(OLMo 2)",
)

QK_NORM = Component(
    name="qk_norm",
    signature="qk_norm(query: Float[B, H, L, E], key: Float[B, Hkv, L, E], q_weight: Float[E] (all_heads: [H*E]), "
    "k_weight: Float[E] (all_heads: [Hkv*E]), positions: Int[L], eps: float = 1e-6) -> (Float[B, H, L, E], "
    "Float[B, Hkv, L, E])",
    summary="RMSNorm of queries and keys (with their weights), then rotate-half RoPE (theta 10000) at `positions`.",
    reference=ref.qk_norm,
    options=(QK_SCOPE,),
    features=dict(BACKWARD),
)


def _scope(ctx: Context) -> str:
    return ctx.options.get("qk_norm_scope", "per_head")


#: head dims of real models (GPT-2 64, Phi-2 80, 96, Llama 128, DeepSeek's 192, Gemma 256)
QK_HEAD_DIMS = (64, 80, 96, 128, 192, 256)


@st.composite
def _qk_examples(draw) -> dict:
    # kernel: real head dims (one head per program) or many tokens; production: 32 query heads over 8 of 128, L 2048
    hkv, group, length, e = draw(scaled(
        st.tuples(sizes(1, 2), sizes(1, 2), sizes(1, 5), sizes(1, 4).map(lambda h: 2 * h)),
        st.one_of(st.tuples(sizes(1, 2), sizes(1, 2), sizes(1, 5), st.sampled_from(QK_HEAD_DIMS)),
                  st.tuples(sizes(1, 2), sizes(1, 2), st.sampled_from(TILE_EDGES), sizes(1, 4).map(lambda h: 2 * h))),
        st.just((8, 4, 2048, 128))))
    return {
        "B": draw(sizes(1, 2)),
        "Hkv": hkv,
        "H": hkv * group,
        "L": length,
        "E": e,
        "start": draw(st.sampled_from([0, 0, 3, 100])),
        "magnitude": draw(st.sampled_from([1.0, 1.0, 30.0, 1000.0])),
        "seed": draw(seeds()),
        "layout": draw(layouts()),
    }


def _qk_inputs(ctx: Context, p: dict) -> tuple:
    def mk(shape, salt: int, m: float = 1.0) -> torch.Tensor:
        return materialize(shape, p["seed"], ctx.dtype, ctx.device, salt=salt, magnitude=m, layout=p["layout"])

    def gain(n: int, salt: int) -> torch.Tensor:
        values = materialize((n,), p["seed"], torch.float64, "cpu", salt=salt) * 0.3 + 1
        return values.to(ctx.dtype).to(ctx.device)

    e = p["E"]
    wq, wk = (p["H"] * e, p["Hkv"] * e) if _scope(ctx) == "all_heads" else (e, e)
    q = mk((p["B"], p["H"], p["L"], e), 1, p["magnitude"])
    k = mk((p["B"], p["Hkv"], p["L"], e), 2, p["magnitude"])
    positions = torch.arange(p["start"], p["start"] + p["L"], device=ctx.device)
    return q, k, gain(wq, 3), gain(wk, 4), positions


def _qk_reference(ctx: Context):
    """The reference; run in float32/float16/bfloat16 (the error witness) its RoPE angles are computed in float32, as
    torch-based implementations do (HF's rotary embedding: float32 inv_freq times float positions), not in float64:
    at positions in the thousands their rounding (eps32 x position) is the largest error an honest kernel makes."""
    scope = _scope(ctx)

    def reference(q, k, wq, wk, positions, eps=1e-6):
        if q.dtype == torch.float64:
            return ref.qk_norm(q, k, wq, wk, positions, eps, scope=scope)
        inv_freq = rope_inv_freq(q.shape[-1], 10000.0, torch.float32)

        def rotate(x):
            return apply_rotary(x, positions, inv_freq, angle_dtype=torch.float32)

        return rotate(ref.qk_rms(q, wq, eps, scope)), rotate(ref.qk_rms(k, wk, eps, scope))

    return reference


def _qk_call(ctx: Context, q, k, wq, wk, positions, eps=1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    out = ctx.target(q, k, wq, wk, positions, eps)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        ctx.fail(f"qk_norm must return (query, key), got {type(out).__name__}")
    return (expect_tensor(out[0], tuple(q.shape), ctx.dtype, ctx.device, "query"),
            expect_tensor(out[1], tuple(k.shape), ctx.dtype, ctx.device, "key"))


@invariant("qk_norm.reference.matches", kind="differential", examples=_qk_examples(),
           statement="Both outputs equal the float64 reference rope(RMSNorm(q) w_q), rope(RMSNorm(k) w_k).",
           source=f"{QWEN3}; {OLMO2}")
def check_qk_reference(ctx: Context, p: dict) -> None:
    args = _qk_inputs(ctx, p)
    ref64, lowp = reference_pair(_qk_reference(ctx), *args)
    q, k = _qk_call(ctx, *args)
    assert_matches(ctx, q, ref64[0], lowp[0], what="normalized, rotated query")
    assert_matches(ctx, k, ref64[1], lowp[1], what="normalized, rotated key")


@invariant("qk_norm.order.norm_before_rope", examples=_qk_examples(),
           statement="Queries and keys are normalized before RoPE: the output at positions m is RoPE of the output "
           "at position 0.",
           source=QWEN3)
def check_qk_before_rope(ctx: Context, p: dict) -> None:
    # outputs at positions m are RoPE(outputs at position 0): the norm (with its weight) comes before the rotation.
    q, k, wq, wk, positions = _qk_inputs(ctx, {**p, "magnitude": 1.0})
    at_zero = _qk_call(ctx, q, k, wq, wk, torch.zeros_like(positions))
    at_m = _qk_call(ctx, q, k, wq, wk, positions)
    # the target's rotation angles m theta_i carry float32 rounding (float64 for float64 inputs) that grows with m
    angle_eps = machine_eps(torch.float64 if ctx.dtype == torch.float64 else torch.float32)
    slack = PROPERTY_ULPS + 4 * int(positions.max()) * angle_eps / machine_eps(ctx.dtype)
    for name, zero, moved in zip(("query", "key"), at_zero, at_m):
        assert_agree(ctx, moved, rope_reference(to64(zero), positions.cpu()), f"{name} at positions {p['start']}.. vs "
                     "RoPE of the position-0 output (normalize, then rotate)", ulps=slack)


@invariant("qk_norm.bounded_logits", examples=_qk_examples(),
           statement="Attention logits are bounded whatever the input scale: |q'.k'| <= E max|w_q| max|w_k| per head "
           "(sqrt(H E Hkv E) max|w_q| max|w_k| for all_heads).",
           source=DEHGHANI)
def check_qk_bounded(ctx: Context, p: dict) -> None:
    # |q'.k'| <= |q'| |k'| and RMSNorm bounds each: per head |q'_h| <= sqrt(E) max|w_q| (all_heads: sqrt(H E)
    # max|w_q|).
    q, k, wq, wk, positions = _qk_inputs(ctx, p)
    qo, ko = (to64(t) for t in _qk_call(ctx, q, k, wq, wk, positions))
    g = p["H"] // p["Hkv"]
    logits = qo @ ko.repeat_interleave(g, dim=1).transpose(-1, -2)
    e, h, hkv = p["E"], p["H"], p["Hkv"]
    dims = (e, e) if _scope(ctx) == "per_head" else (h * e, hkv * e)
    bound = math.sqrt(dims[0] * dims[1]) * float(to64(wq).abs().max()) * float(to64(wk).abs().max())
    worst = float(logits.abs().max())
    if not worst <= bound * (1 + PROPERTY_ULPS * machine_eps(ctx.dtype)):
        got, limit = show(worst, bound)
        ctx.fail(f"attention logit |q'.k'| = {got} exceeds the QK-norm bound {limit} for inputs of magnitude "
                 f"{p['magnitude']:g}: queries or keys are not normalized", max_abs=worst)


@invariant("qk_norm.scope.statistics", examples=_qk_examples(),
           statement="The statistics are per head (per_head: rescaling one head changes nothing) or per token over "
           "all heads (all_heads: rescaling a token changes nothing).",
           source=f"{QWEN3} ('unlike olmo, only on the head dim'); {OLMO2}")
def check_qk_scope(ctx: Context, p: dict) -> None:
    # with eps = 0, scaling one head (per_head) or one token's every head (all_heads) by c leaves every output
    # unchanged.
    q, k, wq, wk, positions = _qk_inputs(ctx, {**p, "magnitude": 1.0})
    scaled_q, scaled_k = q.clone(), k.clone()
    if _scope(ctx) == "per_head":
        scaled_q[:, -1] *= 4
        scaled_k[:, 0] *= 0.25
        what = "scaling query head H-1 by 4 and key head 0 by 1/4"
    else:
        scaled_q[:, :, -1] *= 4
        scaled_k[:, :, 0] *= 0.25
        what = "scaling every head of the last token's query by 4 and of the first token's key by 1/4"
    a = _qk_call(ctx, q, k, wq, wk, positions, 0.0)
    b = _qk_call(ctx, scaled_q, scaled_k, wq, wk, positions, 0.0)
    for name, x, y in zip(("query", "key"), a, b):
        assert_agree(ctx, x, y, f"{name} outputs before and after {what} (eps=0, scope {_scope(ctx)})")
