"""FLOP counts, checked against `torch.utils.flop_counter.FlopCounterMode` on the reference attention and on
transformers models (eager attention; see spec/accounting/models.py for what FlopCounterMode counts)."""

from __future__ import annotations

import functools
import math

import torch
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from ...reference import attention as ref_attention
from ...reference.accounting import flops as ref
from ...reference.accounting.params import architecture, with_layers
from .models import CASES, GPT_CASES, measured_flops
from ..core import Component, Context, Invariant

EXACT = 1e-12  # relative tolerance for float-valued formulas (one or two roundings of float64)


def _int(ctx: Context, value, what: str) -> int:
    if not isinstance(value, int):
        ctx.fail(f"{what} must be an int (FLOPs are exact integers), got {type(value).__name__} {value!r}")
    return value


def _close(ctx: Context, got, want: float, what: str, rel: float = EXACT) -> None:
    if not isinstance(got, (int, float)) or not math.isclose(got, want, rel_tol=rel, abs_tol=0.0):
        ctx.fail(f"{what}: {got!r} != {want!r}", target=got, expected=want)


# --- matmul ---------------------------------------------------------------------------------------------


@st.composite
def _matmul_examples(draw) -> dict:
    dim = st.integers(1, 4096)
    return {"m": draw(dim), "n": draw(dim), "k": draw(dim), "batch": draw(st.integers(1, 8))}


def _check_matmul_counter(ctx: Context, p: dict) -> None:
    m, n, k, b = p["m"], p["n"], p["k"], p["batch"]
    got = _int(ctx, ctx.target(m, n, k), "matmul_flops")
    meta = torch.device("meta")
    a, w, bias = torch.empty(m, k, device=meta), torch.empty(k, n, device=meta), torch.empty(n, device=meta)
    with FlopCounterMode(display=False) as mm:
        torch.mm(a, w)
    with FlopCounterMode(display=False) as addmm:
        torch.addmm(bias, a, w)
    with FlopCounterMode(display=False) as bmm:
        torch.bmm(torch.empty(b, m, k, device=meta), torch.empty(b, k, n, device=meta))
    for name, counter, times in (("mm", mm, 1), ("addmm (bias not counted)", addmm, 1), (f"bmm x{b}", bmm, b)):
        if counter.get_total_flops() != times * got:
            ctx.fail(f"FlopCounterMode counts {counter.get_total_flops():,} for {name} of [{m}, {k}] x [{k}, {n}], "
                     f"target says {times} x {got:,}", measured=counter.get_total_flops(), target=got)


MATMUL_FLOPS = Component(
    name="matmul_flops",
    family="accounting",
    signature="matmul_flops(m: int, n: int, k: int) -> int",
    summary="FLOPs of an [m, k] x [k, n] matrix product: 2 m n k (a multiply and an add per term).",
    reference=ref.matmul_flops,
    dtypes=(),
    invariants=(
        Invariant(
            id="flops.matmul.counter",
            statement="2 m n k equals FlopCounterMode's count for torch.mm and torch.addmm (the bias add is not "
            "counted), and a batch of b products (torch.bmm) counts b times as much.",
            source="torch.utils.flop_counter (mm_flop, addmm_flop, bmm_flop), torch 2.13",
            kind="property",
            examples=_matmul_examples(),
            check=_check_matmul_counter,
        ),
    ),
)


# --- attention core -------------------------------------------------------------------------------------


@st.composite
def _attention_examples(draw) -> dict:
    hkv = draw(st.sampled_from([1, 2]))
    lq = draw(st.integers(1, 16))
    return {"batch": draw(st.integers(1, 2)), "heads": hkv * draw(st.sampled_from([1, 2, 3])), "kv_heads": hkv,
            "q_len": lq, "kv_len": lq + draw(st.integers(0, 16)), "head_dim": draw(st.integers(1, 64)),
            "value_dim": draw(st.integers(1, 64)), "is_causal": draw(st.booleans())}


#: measured shapes (FlopCounterMode over the reference attention is the slow part, so a fixed, diverse set is
#: measured once and cached): MHA, GQA, MQA; Lq = Lk, Lq < Lk, single-token decoding; E != Ev; causal or not.
ATTENTION_SHAPES = [
    {"batch": b, "heads": h, "kv_heads": g, "q_len": lq, "kv_len": lk, "head_dim": e, "value_dim": ev, "is_causal": c}
    for b, h, g, lq, lk, e, ev, c in (
        (1, 1, 1, 1, 1, 1, 1, False), (2, 4, 4, 8, 8, 16, 16, True), (1, 4, 2, 5, 9, 8, 8, True), (3, 6, 1, 1, 17, 4, 4, False),
        (2, 2, 2, 7, 7, 5, 3, True), (1, 8, 2, 3, 12, 64, 32, False), (2, 3, 3, 16, 16, 2, 7, True), (1, 2, 1, 4, 4, 128, 128, True),
        (4, 1, 1, 6, 10, 3, 9, False), (1, 6, 3, 9, 9, 12, 12, True), (2, 4, 1, 2, 30, 6, 6, True), (1, 1, 1, 13, 13, 32, 1, False),
    )
]


def _attention_args(p: dict) -> tuple:
    return (p["batch"], p["heads"], p["q_len"], p["kv_len"], p["head_dim"], p["value_dim"])


@functools.lru_cache(maxsize=1024)
def _reference_attention_flops(b: int, h: int, hkv: int, lq: int, lk: int, e: int, ev: int, causal: bool) -> int:
    meta = torch.device("meta")
    q, k, v = (torch.empty(b, h, lq, e, device=meta), torch.empty(b, hkv, lk, e, device=meta), torch.empty(b, hkv, lk, ev, device=meta))
    with FlopCounterMode(display=False) as counter:
        ref_attention.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    return counter.get_total_flops()


def _check_attention_counter(ctx: Context, p: dict) -> None:
    got = _int(ctx, ctx.target(*_attention_args(p), attention="dense"), "attention_flops")
    measured = _reference_attention_flops(p["batch"], p["heads"], p["kv_heads"], p["q_len"], p["kv_len"], p["head_dim"],
                                          p["value_dim"], p["is_causal"])
    if measured != got:
        ctx.fail(f"FlopCounterMode counts {measured:,} for the reference attention (QK^T and AV, {p['heads']} query heads), "
                 f"target says {got:,}", measured=measured, target=got)


def _check_attention_conventions(ctx: Context, p: dict) -> None:
    args = _attention_args(p)
    dense = _int(ctx, ctx.target(*args, attention="dense"), "dense count")
    half = _int(ctx, ctx.target(*args, attention="half"), "half count")
    exact = _int(ctx, ctx.target(*args, attention="exact"), "exact count")
    if 2 * half != dense:
        ctx.fail(f"attention='half' gives {half:,}, not half of the dense {dense:,}", dense=dense, half=half)
    visible = int(ref_attention.causal_mask(p["q_len"], p["kv_len"], "bottom_right").sum())
    want = 2 * p["batch"] * p["heads"] * (p["head_dim"] + p["value_dim"]) * visible
    if exact != want:
        ctx.fail(f"attention='exact' gives {exact:,}; the causal mask keeps {visible} of {p['q_len'] * p['kv_len']} "
                 f"(query, key) pairs: {want:,}", exact=exact, expected=want)


ATTENTION_FLOPS = Component(
    name="attention_flops",
    family="accounting",
    signature="attention_flops(batch, heads, q_len, kv_len, head_dim, value_dim=None, attention='dense') -> int",
    summary="FLOPs of QK^T and AV: 2 B H Lq Lk (E + Ev) dense; 'half' or 'exact' for a causal mask.",
    reference=ref.attention_flops,
    dtypes=(),
    invariants=(
        Invariant(
            id="flops.attention.counter_reference",
            statement="The dense count equals FlopCounterMode's count for the reference attention (explicit matmuls; "
            "GQA counted over query heads; the causal mask changes nothing: dense kernels compute every pair).",
            source="Vaswani et al. 2017, eq. 1; torch.utils.flop_counter bmm_flop / sdpa_flop_count (4 B H Lq Lk E for "
            "E = Ev). FlopCounterMode does not count the CPU's default fused SDPA kernel (0 FLOPs).",
            kind="property",
            examples=st.sampled_from(ATTENTION_SHAPES),
            check=_check_attention_counter,
        ),
        Invariant(
            id="flops.attention.causal_conventions",
            statement="'half' is exactly half the dense count (FlashAttention's benchmark convention); 'exact' counts "
            "the (query, key) pairs a bottom-right causal mask keeps, Lq (Lk - Lq) + Lq (Lq + 1) / 2.",
            source="Dao et al., flash-attention benchmarks/benchmark_flash_attention.py (flops / 2 if causal); "
            "Kaplan et al. 2020, Table 1 (2 n_layer n_ctx d_attn)",
            kind="property",
            examples=_attention_examples(),
            check=_check_attention_conventions,
        ),
    ),
)


# --- whole-model forward -------------------------------------------------------------------------------
#
# Each example checks every case of CASES (spec/accounting/models.py): all supported architectures, MHA / GQA
# / MQA, biases, tied and untied heads, MoE. The measurements are exact and cached, so the search is over the
# target's behaviour on a fixed, diverse set, and a counterexample names its case.


def _cases(only=None):
    return (GPT_CASES if only == "gpt2" else CASES).items()


def _forward(ctx: Context, case: dict, attention: str = "dense", config: dict | None = None) -> int:
    out = ctx.target(dict(config or case["config"]), case["seq_len"], case["batch"], attention=attention)
    return _int(ctx, out, "forward_flops")


def _check_forward_counter(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        got = _forward(ctx, case)
        want = measured_flops(case["config"], case["seq_len"], case["batch"])["forward"]
        if got != want:
            ctx.fail(f"{name}: forward FLOPs {got:,} != FlopCounterMode's {want:,} for the transformers model ({got - want:+,})",
                     case=name, target=got, measured=want)


def _check_forward_per_layer(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        layers = _layers(case["config"])
        per_layer = _forward(ctx, case, config=with_layers(case["config"], layers + 1)) - _forward(ctx, case)
        want = measured_flops(case["config"], case["seq_len"], case["batch"])["layer0"]
        if per_layer != want:
            ctx.fail(f"{name}: one more layer adds {per_layer:,} FLOPs; FlopCounterMode counts {want:,} in decoder layer 0",
                     case=name, target=per_layer, measured=want)


def _layers(config: dict) -> int:
    return config.get("n_layer", config.get("num_hidden_layers"))


def _check_forward_conventions(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        s = case["seq_len"]
        measured = measured_flops(case["config"], s, case["batch"])
        core = measured["forward_by_op"].get("bmm", 0)  # eager attention: QK^T and AV are the only batched matmuls
        pairs = ref.causal_pairs(s, s)
        for convention, want in (("half", measured["forward"] - core // 2),
                                 ("exact", measured["forward"] - core + core // (s * s) * pairs)):
            got = _forward(ctx, case, attention=convention)
            if got != want:
                ctx.fail(f"{name}, attention={convention!r}: {got:,} != measured dense forward {measured['forward']:,} with "
                         f"its attention core {core:,} rescaled ({want:,})", case=name, target=got, expected=want)


def _attention_term(config: dict, seq_len: int) -> int:
    """4 L S H d_head: QK^T and AV per token over S keys (dense), from the config's sizes."""
    arch = architecture(config)
    return 4 * arch.num_layers * seq_len * arch.num_heads * arch.head_dim


def _check_two_n_plus_attention(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        got = _forward(ctx, case)
        n = measured_flops(case["config"], case["seq_len"], case["batch"])["matmul_params"]
        tokens = case["batch"] * case["seq_len"]
        want = tokens * (2 * n + _attention_term(case["config"], case["seq_len"]))
        if got != want:
            ctx.fail(f"{name}: forward {got:,} != tokens x (2 N + 4 L S H d_head) = {want:,} with N = {n:,} weights multiplied "
                     "per token (read off the module)", case=name, target=got, expected=want)


def _check_kaplan(ctx: Context, p: dict) -> None:
    for name, case in _cases("gpt2"):
        c, s = case["config"], case["seq_len"]
        d = c["n_embd"]
        per_token = ref.kaplan_forward_flops_per_token(c["n_layer"], d, d, c.get("n_inner") or 4 * d, s)
        want = case["batch"] * s * (per_token + 2 * d * c["vocab_size"])
        got = _forward(ctx, case, attention="half")
        if got != want:
            ctx.fail(f"{name}: GPT-2 forward with causal halving {got:,} != tokens x (Kaplan's C_forward + de-embedding "
                     f"2 d V) = {want:,}", case=name, target=got, expected=want)


ALL_CASES = st.just({})

FORWARD_FLOPS = Component(
    name="forward_flops",
    family="accounting",
    signature="forward_flops(config: dict, seq_len: int, batch: int = 1, attention: str = 'dense') -> int",
    summary="Matmul FLOPs of one forward pass of a config.json model over batch x seq_len tokens.",
    reference=ref.forward_flops,
    dtypes=(),
    invariants=(
        Invariant(
            id="flops.forward.counter_model",
            statement="The dense count equals FlopCounterMode's count of the transformers model's forward pass (eager "
            "attention; MoE experts counted per routed token) for every supported architecture.",
            source="torch.utils.flop_counter.FlopCounterMode; transformers 5.23 (attn_implementation='eager', "
            "experts_implementation='eager')",
            kind="property",
            examples=ALL_CASES,
            check=_check_forward_counter,
        ),
        Invariant(
            id="flops.forward.per_layer",
            statement="One more decoder layer adds exactly the FLOPs FlopCounterMode attributes to decoder layer 0.",
            source="torch.utils.flop_counter.FlopCounterMode per-module counts",
            kind="property",
            examples=ALL_CASES,
            check=_check_forward_per_layer,
        ),
        Invariant(
            id="flops.forward.causal_conventions",
            statement="'half' and 'exact' rescale only the measured attention core (QK^T and AV), by 1/2 and by "
            "(S + 1) / (2 S); projections and the head are unchanged.",
            source="Dao et al. flash-attention benchmarks; Kaplan et al. 2020, Table 1",
            kind="property",
            examples=ALL_CASES,
            check=_check_forward_conventions,
        ),
        Invariant(
            id="flops.forward.two_n_plus_attention",
            statement="Forward FLOPs per token = 2 N + 4 L S H d_head, N the weights one token multiplies by (layer "
            "matrices incl. router and top-k experts, and the output head; not biases, norms or embedding lookups).",
            source="Kaplan et al. 2020, sec. 2.1 (C_forward ~ 2N + 2 n_layer n_ctx d_attn)",
            kind="property",
            examples=ALL_CASES,
            check=_check_two_n_plus_attention,
        ),
        Invariant(
            id="flops.forward.kaplan_table1",
            statement="For GPT-2, forward FLOPs with causal halving = tokens x (2N + 2 n_layer n_ctx d_attn + 2 d_model "
            "n_vocab): Kaplan's C_forward plus the de-embedding his table lists separately.",
            source="Kaplan et al. 2020, Table 1",
            kind="property",
            examples=ALL_CASES,
            check=_check_kaplan,
        ),
    ),
)


# --- training -------------------------------------------------------------------------------------------


def _training(ctx: Context, case: dict, recompute: str = "none") -> int:
    out = ctx.target(dict(case["config"]), case["seq_len"], case["batch"], recompute=recompute, attention="dense")
    return _int(ctx, out, "training_flops")


def _check_training_counter(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        got = _training(ctx, case)
        m = measured_flops(case["config"], case["seq_len"], case["batch"])
        if got != m["total"]:
            ctx.fail(f"{name}: training FLOPs {got:,} != FlopCounterMode's forward {m['forward']:,} + backward "
                     f"{m['backward']:,} = {m['total']:,}", case=name, target=got, measured=m["total"])


def _check_recompute_full(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        got = _training(ctx, case, "full")
        m = measured_flops(case["config"], case["seq_len"], case["batch"], checkpoint=True)
        if got != m["total"]:
            ctx.fail(f"{name}: training FLOPs with full recomputation {got:,} != {m['total']:,} counted with gradient "
                     f"checkpointing ({got - m['total']:+,})", case=name, target=got, measured=m["total"])


def _check_recompute_selective(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        extra = _training(ctx, case, "selective") - _training(ctx, case, "none")
        core = measured_flops(case["config"], case["seq_len"], case["batch"])["forward_by_op"].get("bmm", 0)
        if extra != core:
            ctx.fail(f"{name}: selective recomputation adds {extra:,} FLOPs; the attention core's forward (QK^T, AV) is "
                     f"{core:,}", case=name, target=extra, measured=core)


def _check_six_nd(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        got = _training(ctx, case)
        n = measured_flops(case["config"], case["seq_len"], case["batch"])["matmul_params"]
        tokens = case["batch"] * case["seq_len"]
        arch = architecture(case["config"])
        palm = ref.palm_model_flops_per_token(n, arch.num_layers, arch.num_heads, arch.head_dim, case["seq_len"]) * tokens
        attention = palm - 6 * n * tokens
        if got != palm:
            ctx.fail(f"{name}: training {got:,} != 6 N D + 12 L H Q T D = {6 * n * tokens:,} + {attention:,} "
                     f"(N = {n:,} matmul weights)", case=name, target=got, expected=6 * n * tokens + attention)


def _megatron_check(recompute: bool):
    def check(ctx: Context, p: dict) -> None:
        for name, case in _cases("gpt2"):
            c = case["config"]
            if c.get("n_inner"):
                continue  # Megatron's formula assumes d_ff = 4h
            got = _training(ctx, case, "full" if recompute else "none")
            want = ref.megatron_training_flops(case["batch"], case["seq_len"], c["n_layer"], c["n_embd"], c["vocab_size"], recompute)
            if got != want:
                form = "96 B s l h^2 (1 + s/6h + V/16lh)" if recompute else "72 B s l h^2 (1 + s/6h + V/12hl)"
                ctx.fail(f"{name}: GPT training FLOPs {got:,} != Megatron's {form} = {want:,}", case=name, target=got, expected=want)

    return check


TRAINING_FLOPS = Component(
    name="training_flops",
    family="accounting",
    signature="training_flops(config: dict, seq_len: int, batch: int = 1, recompute: str = 'none', attention: str = 'dense') -> int",
    summary="FLOPs of one training step (forward, backward = 2 x forward, and recomputation: none, selective, full).",
    reference=ref.training_flops,
    dtypes=(),
    invariants=(
        Invariant(
            id="flops.training.counter_model",
            statement="Without recomputation, training FLOPs equal FlopCounterMode's forward + backward count of the "
            "transformers model; the backward is exactly twice the forward (input and weight gradients of each matmul).",
            source="torch.utils.flop_counter.FlopCounterMode; Kaplan et al. 2020, sec. 2.1 (backward ~ 2 x forward)",
            kind="property",
            examples=ALL_CASES,
            check=_check_training_counter,
        ),
        Invariant(
            id="flops.training.recompute_full",
            statement="Full recomputation adds every decoder layer's forward once more (not the output head): the count "
            "with transformers' gradient checkpointing, torch's checkpoint early stop off.",
            source="Narayanan et al. 2021, sec. 5.1; Chen et al. 2016 (gradient checkpointing); "
            "torch.utils.checkpoint.set_checkpoint_early_stop",
            kind="property",
            examples=ALL_CASES,
            check=_check_recompute_full,
        ),
        Invariant(
            id="flops.training.recompute_selective",
            statement="Selective recomputation adds the forward FLOPs of the attention core (QK^T and AV) only.",
            source="Korthikanti et al. 2022, sec. 5 (selective activation recomputation)",
            kind="property",
            examples=ALL_CASES,
            check=_check_recompute_selective,
        ),
        Invariant(
            id="flops.training.six_nd_plus_attention",
            statement="Training FLOPs = 6 N D + 12 L H Q T D exactly (N matmul weights per token, D tokens, T the sequence "
            "length): 6 N D leaves out only the attention term, a relative 2 L H Q T / N.",
            source="Kaplan et al. 2020, sec. 2.1 (C ~ 6 N D); Chowdhery et al. 2022 (PaLM), appendix B (6N + 12 L H Q T)",
            kind="property",
            examples=ALL_CASES,
            check=_check_six_nd,
        ),
        Invariant(
            id="flops.training.megatron",
            statement="For GPT layers (d_ff = 4h) without recomputation: 72 B s l h^2 (1 + s/(6h) + V/(12 h l)).",
            source="Narayanan et al. 2021, sec. 5.1, eq. (3)",
            kind="property",
            examples=ALL_CASES,
            check=_megatron_check(False),
        ),
        Invariant(
            id="flops.training.megatron_recompute",
            statement="For GPT layers with full recomputation: 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) (the head is not "
            "recomputed).",
            source="Narayanan et al. 2021, appendix (FLOPs with activation recomputation)",
            kind="property",
            examples=ALL_CASES,
            check=_megatron_check(True),
        ),
    ),
)


# --- utilization and compute budgets --------------------------------------------------------------------


@st.composite
def _utilization_examples(draw) -> dict:
    return {"step_seconds": draw(st.floats(1e-3, 1e3)), "peak": draw(st.sampled_from([312e12, 989e12, 1.25e14])),
            "recompute": draw(st.sampled_from(["none", "full"]))}


def _utilization(ctx: Context, case: dict, p: dict, recompute: str) -> dict:
    out = ctx.target(dict(case["config"]), case["seq_len"], case["batch"], p["step_seconds"], p["peak"], recompute=recompute)
    if not isinstance(out, dict) or not {"mfu", "hfu"} <= set(out):
        ctx.fail(f"utilization must return {{'mfu': float, 'hfu': float}}, got {out!r}")
    return out


def _check_utilization_measured(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        out = _utilization(ctx, case, p, p["recompute"])
        budget = p["step_seconds"] * p["peak"]
        model_flops = measured_flops(case["config"], case["seq_len"], case["batch"])["total"]
        hardware = measured_flops(case["config"], case["seq_len"], case["batch"], checkpoint=p["recompute"] == "full")["total"]
        _close(ctx, out["mfu"], model_flops / budget, f"{name}: MFU vs measured model FLOPs / (step time x peak)")
        _close(ctx, out["hfu"], hardware / budget,
               f"{name}: HFU vs measured hardware FLOPs (recompute={p['recompute']}) / (step time x peak)")


def _check_hfu_at_least_mfu(ctx: Context, p: dict) -> None:
    for name, case in _cases():
        for recompute in ("none", "selective", "full"):
            out = _utilization(ctx, case, p, recompute)
            if recompute == "none" and out["hfu"] != out["mfu"]:
                ctx.fail(f"{name}: without recomputation HFU {out['hfu']!r} must equal MFU {out['mfu']!r}")
            if out["hfu"] < out["mfu"]:
                ctx.fail(f"{name}, recompute={recompute}: HFU {out['hfu']!r} < MFU {out['mfu']!r} (recomputation only adds "
                         "hardware FLOPs)")


UTILIZATION = Component(
    name="utilization",
    family="accounting",
    signature="utilization(config, seq_len, batch, step_seconds, peak_flops_per_s, recompute='none') -> {'mfu', 'hfu'}: float",
    summary="Model and hardware FLOPs utilization of a training step: FLOPs / (step time x dense peak FLOP/s).",
    reference=ref.utilization,
    dtypes=(),
    invariants=(
        Invariant(
            id="compute.utilization.measured",
            statement="MFU = model FLOPs (forward + backward, no recomputation) / (step time x peak); HFU counts the "
            "FLOPs executed, recomputation included; both against FlopCounterMode's counts of the model.",
            source="Chowdhery et al. 2022 (PaLM), appendix B",
            kind="property",
            examples=_utilization_examples(),
            check=_check_utilization_measured,
        ),
        Invariant(
            id="compute.utilization.hfu_at_least_mfu",
            statement="HFU >= MFU, with equality without recomputation.",
            source="Chowdhery et al. 2022 (PaLM), appendix B; Korthikanti et al. 2022, sec. 6",
            kind="property",
            examples=_utilization_examples(),
            check=_check_hfu_at_least_mfu,
        ),
    ),
)


def _check_pf_days_definition(ctx: Context, p: dict) -> None:
    flops = p["flops"]
    _close(ctx, ctx.target(flops), flops / (1e15 * 86400), f"petaflop_days({flops!r})")


def _check_pf_days_gpt3(ctx: Context, p: dict) -> None:
    got = ctx.target(3.14e23)
    if not isinstance(got, float) or abs(got - 3640.0) > 0.005 * 3640.0:
        ctx.fail(f"GPT-3 175B: 3.14e23 FLOP is 3,640 PF-days to the paper's rounding (3.64e3), got {got!r}", target=got)
    _close(ctx, ctx.target(float(6 * 175e9 * 300e9)), 6 * 175e9 * 300e9 / 8.64e19, "6 N D for N = 175B, D = 300B tokens")


PETAFLOP_DAYS = Component(
    name="petaflop_days",
    family="accounting",
    signature="petaflop_days(flops: float) -> float",
    summary="Compute in petaflop/s-days: FLOPs / (1e15 x 86,400) = FLOPs / 8.64e19.",
    reference=ref.petaflop_days,
    dtypes=(),
    invariants=(
        Invariant(
            id="compute.pf_days.definition",
            statement="One petaflop/s-day is 10^15 FLOP/s for a day: 8.64e19 FLOP.",
            source="Brown et al. 2020 (GPT-3), appendix D; Amodei & Hernandez 2018, AI and Compute",
            kind="property",
            examples=st.floats(1e10, 1e27).map(lambda f: {"flops": f}),
            check=_check_pf_days_definition,
        ),
        Invariant(
            id="compute.pf_days.gpt3",
            statement="GPT-3 175B: 3.14e23 training FLOP = 3.64e3 PF-days (and 6 N D = 3.15e23 for 300B tokens).",
            source="Brown et al. 2020 (GPT-3), Table D.1",
            kind="property",
            examples=st.just({}),
            check=_check_pf_days_gpt3,
        ),
    ),
)


def _optimal(ctx: Context, compute: float, ratio: float | None = None) -> tuple[float, float]:
    out = ctx.target(compute) if ratio is None else ctx.target(compute, tokens_per_param=ratio)
    if not (isinstance(out, tuple) and len(out) == 2):
        ctx.fail(f"chinchilla_optimal must return (params, tokens), got {out!r}")
    return out


def _check_chinchilla_budget(ctx: Context, p: dict) -> None:
    n, d = _optimal(ctx, p["compute"], p["ratio"])
    _close(ctx, 6 * n * d, p["compute"], "6 N D of the optimum vs the compute budget", rel=1e-9)
    _close(ctx, d / n, p["ratio"], "tokens per parameter", rel=1e-9)


def _check_chinchilla_published(ctx: Context, p: dict) -> None:
    n, d = _optimal(ctx, 6 * 70e9 * 1.4e12)
    _close(ctx, n, 70e9, "Chinchilla's parameters for 5.88e23 FLOP", rel=1e-9)
    _close(ctx, d, 1.4e12, "Chinchilla's tokens for 5.88e23 FLOP", rel=1e-9)


CHINCHILLA = Component(
    name="chinchilla_optimal",
    family="accounting",
    signature="chinchilla_optimal(compute: float, tokens_per_param: float = 20.0) -> (params, tokens)",
    summary="Compute-optimal model and data size for a FLOP budget under C = 6 N D and D = 20 N.",
    reference=ref.chinchilla_optimal,
    dtypes=(),
    invariants=(
        Invariant(
            id="compute.chinchilla.budget",
            statement="The optimum spends the budget, 6 N D = C, at D / N = tokens_per_param (20 by default).",
            source="Hoffmann et al. 2022 (Chinchilla), sec. 3 and Table 3 (~20 tokens per parameter)",
            kind="property",
            examples=st.fixed_dictionaries({"compute": st.floats(1e15, 1e27), "ratio": st.sampled_from([20.0, 10.0, 40.0])}),
            check=_check_chinchilla_budget,
        ),
        Invariant(
            id="compute.chinchilla.published",
            statement="Chinchilla itself: 70B parameters and 1.4T tokens for 5.88e23 FLOP.",
            source="Hoffmann et al. 2022 (Chinchilla), sec. 4.1",
            kind="property",
            examples=st.just({}),
            check=_check_chinchilla_published,
        ),
    ),
)


def _check_peaks_published(ctx: Context, p: dict) -> None:
    for device, dtype, tflops in (("A100", "bf16", 312.0), ("H100-SXM", "bf16", 989.0), ("H100-SXM", "fp8", 1979.0),
                                  ("A100", "tf32", 156.0)):
        _close(ctx, ctx.target(device, dtype), tflops * 1e12, f"dense peak FLOP/s of {device} {dtype}")


def _check_peaks_dense(ctx: Context, p: dict) -> None:
    for (device, dtype), (_, sparse, _) in ref.PEAK_TFLOPS.items():
        got = ctx.target(device, dtype)
        if not isinstance(got, float):
            ctx.fail(f"{device} {dtype}: expected FLOP/s as a float, got {got!r}")
        if sparse is not None and not math.isclose(2 * got, sparse * 1e12, rel_tol=1e-3):
            ctx.fail(f"{device} {dtype}: {got / 1e12:g} TFLOP/s is not half the datasheet's 'with sparsity' {sparse:g}: "
                     "MFU must divide by the dense peak", target=got)


DENSE_PEAK = Component(
    name="dense_peak_flops",
    family="accounting",
    signature="dense_peak_flops(device: str, dtype: str) -> float  (FLOP/s)",
    summary="Dense peak tensor throughput of an accelerator (A100 bf16 312 TFLOP/s, H100 SXM bf16 989 TFLOP/s, ...).",
    reference=ref.dense_peak_flops,
    dtypes=(),
    invariants=(
        Invariant(
            id="compute.peaks.published",
            statement="A100 bf16 312, A100 tf32 156, H100 SXM bf16 989 and fp8 1,979 dense TFLOP/s.",
            source="NVIDIA A100 and H100 datasheets",
            kind="property",
            examples=st.just({}),
            check=_check_peaks_published,
        ),
        Invariant(
            id="compute.peaks.dense_not_sparse",
            statement="Every peak is the dense figure: half the datasheet's 'with sparsity' number where one is printed "
            "(H100 SXM bf16 prints 1,979 with sparsity; MFU against it would be halved).",
            source="NVIDIA H100 datasheet footnote (2:4 structured sparsity); Chowdhery et al. 2022, appendix B",
            kind="property",
            examples=st.just({}),
            check=_check_peaks_dense,
        ),
    ),
)

COMPONENTS = (MATMUL_FLOPS, ATTENTION_FLOPS, FORWARD_FLOPS, TRAINING_FLOPS, UTILIZATION, PETAFLOP_DAYS, CHINCHILLA, DENSE_PEAK)
