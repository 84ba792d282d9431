"""FLOP counts, checked against `torch.utils.flop_counter.FlopCounterMode` on the reference attention and on
transformers models (eager attention; see spec/accounting/models.py for what FlopCounterMode counts)."""

from __future__ import annotations

import functools

import torch
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from ...reference import attention as ref_attention
from ...reference.accounting import flops as ref
from ...reference.accounting.params import architecture, with_layers
from ..checks import assert_equal, assert_within, show
from ..core import Component, Context, invariant, row
from ..strategies import TILE_EDGES, scaled
from .models import FLOP_EXAMPLES, flop_cases, measured_flops
from .relative import assert_relative


def _int(ctx: Context, value, what: str) -> int:
    if not isinstance(value, int):
        ctx.fail(f"{what} must be an int (FLOPs are exact integers), got {type(value).__name__} {value!r}")
    return value


# --- matmul ---------------------------------------------------------------------------------------------

MATMUL_FLOPS = Component(
    name="matmul_flops",
    signature="matmul_flops(m: int, n: int, k: int) -> int",
    summary="FLOPs of an [m, k] x [k, n] matrix product: 2 m n k (a multiply and an add per term).",
    reference=ref.matmul_flops,
    dtypes=(),
)


@st.composite
def _matmul_examples(draw) -> dict:
    dim = st.integers(1, 4096)
    return {"m": draw(dim), "n": draw(dim), "k": draw(dim), "batch": draw(st.integers(1, 8))}


@invariant("matmul_flops.counter", examples=_matmul_examples(),
           statement="2 m n k equals FlopCounterMode's count for torch.mm and torch.addmm (the bias add is not "
           "counted), and a batch of b products (torch.bmm) counts b times as much.",
           source="torch.utils.flop_counter (mm_flop, addmm_flop, bmm_flop), torch 2.13")
def check_matmul_counter(ctx: Context, p: dict) -> None:
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
        assert_equal(ctx, times * got, counter.get_total_flops(),
                     f"{times} x the target's count vs FlopCounterMode's for {name} of [{m}, {k}] x [{k}, {n}]")


# --- attention core -------------------------------------------------------------------------------------

ATTENTION_FLOPS = Component(
    name="attention_flops",
    signature="attention_flops(batch, heads, q_len, kv_len, head_dim, value_dim=None, attention='dense') -> int",
    summary="FLOPs of QK^T and AV: 2 B H Lq Lk (E + Ev) dense; 'half' or 'exact' for a causal mask.",
    reference=ref.attention_flops,
    dtypes=(),
)

#: measured shapes (FlopCounterMode over the reference attention is the slow part, so a fixed, diverse set is
#: measured once and cached): MHA, GQA, MQA; Lq = Lk, Lq < Lk, single-token decoding; E != Ev; causal or not.
ATTENTION_SHAPES = [
    {"batch": b, "heads": h, "kv_heads": g, "q_len": lq, "kv_len": lk, "head_dim": e, "value_dim": ev, "is_causal": c}
    for b, h, g, lq, lk, e, ev, c in (
        (1, 1, 1, 1, 1, 1, 1, False), (2, 4, 4, 8, 8, 16, 16, True), (1, 4, 2, 5, 9, 8, 8, True),
        (3, 6, 1, 1, 17, 4, 4, False), (2, 2, 2, 7, 7, 5, 3, True), (1, 8, 2, 3, 12, 64, 32, False),
        (2, 3, 3, 16, 16, 2, 7, True), (1, 2, 1, 4, 4, 128, 128, True), (4, 1, 1, 6, 10, 3, 9, False),
        (1, 6, 3, 9, 9, 12, 12, True), (2, 4, 1, 2, 30, 6, 6, True), (1, 1, 1, 13, 13, 32, 1, False),
    )
]


def _attention_args(p: dict) -> tuple:
    return (p["batch"], p["heads"], p["q_len"], p["kv_len"], p["head_dim"], p["value_dim"])


@functools.lru_cache(maxsize=1024)
def _reference_attention_flops(b: int, h: int, hkv: int, lq: int, lk: int, e: int, ev: int, causal: bool) -> int:
    meta = torch.device("meta")
    q, k, v = (torch.empty(b, h, lq, e, device=meta), torch.empty(b, hkv, lk, e, device=meta),
               torch.empty(b, hkv, lk, ev, device=meta))
    # the causal mask as a mask: the reference then computes every pair, as a dense kernel does (with is_causal it
    # skips the keys no query of a chunk sees)
    mask = ref_attention.causal_mask(lq, lk, device=meta) if causal else None
    with FlopCounterMode(display=False) as counter:
        ref_attention.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    return counter.get_total_flops()


@invariant("attention_flops.counter_reference", examples=st.sampled_from(ATTENTION_SHAPES),
           statement="The dense count equals FlopCounterMode's count for the reference attention (explicit matmuls; "
           "GQA counted over query heads; a causal mask given as a mask changes nothing: dense kernels compute every "
           "pair).",
           source="Vaswani et al. 2017, eq. 1; torch.utils.flop_counter bmm_flop / sdpa_flop_count (4 B H Lq Lk E for "
           "E = Ev). FlopCounterMode does not count the CPU's default fused SDPA kernel (0 FLOPs).")
def check_attention_counter(ctx: Context, p: dict) -> None:
    got = _int(ctx, ctx.target(*_attention_args(p), attention="dense"), "attention_flops")
    measured = _reference_attention_flops(p["batch"], p["heads"], p["kv_heads"], p["q_len"], p["kv_len"],
                                          p["head_dim"], p["value_dim"], p["is_causal"])
    assert_equal(ctx, got, measured,
                 f"dense count vs FlopCounterMode's for the reference attention (QK^T and AV, {p['heads']} query "
                 "heads)")


@st.composite
def _small_attention_examples(draw) -> dict:
    hkv = draw(st.sampled_from([1, 2]))
    lq = draw(st.integers(1, 16))
    return {"batch": draw(st.integers(1, 2)), "heads": hkv * draw(st.sampled_from([1, 2, 3])), "kv_heads": hkv,
            "q_len": lq, "kv_len": lq + draw(st.integers(0, 16)), "head_dim": draw(st.integers(1, 64)),
            "value_dim": draw(st.integers(1, 64)), "is_causal": draw(st.booleans())}


@st.composite
def _large_attention_examples(draw) -> dict:
    """Real models' head counts and head dims, query lengths at tile edges up to 4097 (the check builds the
    Lq x Lk mask), batches up to 1024: counts past 2^31 and 2^53."""
    hkv = draw(st.sampled_from([1, 8]))
    lq = draw(st.sampled_from(TILE_EDGES + (4095, 4096, 4097)))
    e = draw(st.sampled_from([64, 80, 96, 128, 192, 256]))
    return {"batch": draw(st.sampled_from([1, 64, 1024])), "heads": hkv * draw(st.sampled_from([1, 8, 16])),
            "kv_heads": hkv, "q_len": lq, "kv_len": lq + draw(st.sampled_from([0, 1, 1024])), "head_dim": e,
            "value_dim": e, "is_causal": draw(st.booleans())}


def _attention_examples() -> st.SearchStrategy[dict]:
    return scaled(_small_attention_examples(), _large_attention_examples())


@invariant("attention_flops.causal_conventions", examples=_attention_examples(),
           statement="'half' is exactly half the dense count (FlashAttention's benchmark convention); 'exact' counts "
           "the (query, key) pairs a bottom-right causal mask keeps, Lq (Lk - Lq) + Lq (Lq + 1) / 2.",
           source="Dao et al., flash-attention benchmarks/benchmark_flash_attention.py (flops / 2 if causal); "
           "Kaplan et al. 2020, Table 1 (2 n_layer n_ctx d_attn)")
def check_attention_causal_conventions(ctx: Context, p: dict) -> None:
    args = _attention_args(p)
    dense = _int(ctx, ctx.target(*args, attention="dense"), "dense count")
    half = _int(ctx, ctx.target(*args, attention="half"), "half count")
    exact = _int(ctx, ctx.target(*args, attention="exact"), "exact count")
    assert_equal(ctx, 2 * half, dense, "2 x the attention='half' count vs the dense count")
    visible = int(ref_attention.causal_mask(p["q_len"], p["kv_len"], "bottom_right").sum())
    want = 2 * p["batch"] * p["heads"] * (p["head_dim"] + p["value_dim"]) * visible
    assert_equal(ctx, exact, want, f"attention='exact' count vs 2 B H (E + Ev) x the {visible} of "
                 f"{p['q_len'] * p['kv_len']} (query, key) pairs the causal mask keeps")


# --- whole-model forward -------------------------------------------------------------------------------
#
# Each example checks every case of CASES (spec/accounting/models.py): all supported architectures, MHA / GQA
# / MQA, biases, tied and untied heads, MoE. The measurements are exact and cached, so the search is over the
# target's behaviour on a fixed, diverse set, and a counterexample names its case. From scale "kernel" up an
# example may also check PRODUCTION_CASES (405B width at 128k, vocabulary 151936, batches of 255 and 1000).

FORWARD_FLOPS = Component(
    name="forward_flops",
    signature="forward_flops(config: dict, seq_len: int, batch: int = 1, attention: str = 'dense') -> int",
    summary="Matmul FLOPs of one forward pass of a config.json model over batch x seq_len tokens.",
    reference=ref.forward_flops,
    dtypes=(),
)

ALL_CASES = FLOP_EXAMPLES


def _forward(ctx: Context, case: dict, attention: str = "dense", config: dict | None = None) -> int:
    out = ctx.target(dict(config or case["config"]), case["seq_len"], case["batch"], attention=attention)
    return _int(ctx, out, "forward_flops")


def _layers(config: dict) -> int:
    return config.get("n_layer", config.get("num_hidden_layers"))


@invariant("forward_flops.counter_model", examples=ALL_CASES,
           statement="The dense count equals FlopCounterMode's count of the transformers model's forward pass (eager "
           "attention; MoE experts counted per routed token) for every supported architecture.",
           source="torch.utils.flop_counter.FlopCounterMode; transformers 5.23 (attn_implementation='eager', "
           "experts_implementation='eager')")
def check_forward_counter(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        want = measured_flops(case["config"], case["seq_len"], case["batch"])["forward"]
        assert_equal(ctx, _forward(ctx, case), want, f"{name}: forward FLOPs vs FlopCounterMode's count for the "
                     "transformers model")


@invariant("forward_flops.per_layer", examples=ALL_CASES,
           statement="One more decoder layer adds exactly the FLOPs FlopCounterMode attributes to decoder layer 0.",
           source="torch.utils.flop_counter.FlopCounterMode per-module counts")
def check_forward_per_layer(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        layers = _layers(case["config"])
        per_layer = _forward(ctx, case, config=with_layers(case["config"], layers + 1)) - _forward(ctx, case)
        want = measured_flops(case["config"], case["seq_len"], case["batch"])["layer0"]
        assert_equal(ctx, per_layer, want, f"{name}: FLOPs one more layer adds vs FlopCounterMode's count in decoder "
                     "layer 0")


@invariant("forward_flops.causal_conventions", examples=ALL_CASES,
           statement="'half' and 'exact' rescale only the measured attention core (QK^T and AV), by 1/2 and by "
           "(S + 1) / (2 S); projections and the head are unchanged.",
           source="Dao et al. flash-attention benchmarks; Kaplan et al. 2020, Table 1")
def check_forward_causal_conventions(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        s = case["seq_len"]
        measured = measured_flops(case["config"], s, case["batch"])
        core = measured["forward_by_op"].get("bmm", 0)  # eager attention: QK^T and AV are the only batched matmuls
        pairs = ref.causal_pairs(s, s)
        for convention, want in (("half", measured["forward"] - core // 2),
                                 ("exact", measured["forward"] - core + core // (s * s) * pairs)):
            assert_equal(ctx, _forward(ctx, case, attention=convention), want,
                         f"{name}, attention={convention!r}: forward vs the measured dense forward "
                         f"{measured['forward']:,} with its attention core {core:,} rescaled")


def _attention_term(config: dict, seq_len: int) -> int:
    """4 L S H d_head: QK^T and AV per token over S keys (dense), from the config's sizes."""
    arch = architecture(config)
    return 4 * arch.num_layers * seq_len * arch.num_heads * arch.head_dim


@invariant("forward_flops.two_n_plus_attention", examples=ALL_CASES,
           statement="Forward FLOPs per token = 2 N + 4 L S H d_head, N the weights one token multiplies by (layer "
           "matrices incl. router and top-k experts, and the output head; not biases, norms or embedding lookups).",
           source="Kaplan et al. 2020, sec. 2.1 (C_forward ~ 2N + 2 n_layer n_ctx d_attn)")
def check_forward_two_n_plus_attention(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        n = measured_flops(case["config"], case["seq_len"], case["batch"])["matmul_params"]
        tokens = case["batch"] * case["seq_len"]
        want = tokens * (2 * n + _attention_term(case["config"], case["seq_len"]))
        assert_equal(ctx, _forward(ctx, case), want, f"{name}: forward vs tokens x (2 N + 4 L S H d_head) with "
                     f"N = {n:,} weights multiplied per token (read off the module)")


@invariant("forward_flops.kaplan_table1", examples=ALL_CASES,
           statement="For GPT-2, forward FLOPs with causal halving = tokens x (2N + 2 n_layer n_ctx d_attn + 2 d_model "
           "n_vocab): Kaplan's C_forward plus the de-embedding his table lists separately.",
           source="Kaplan et al. 2020, Table 1")
def check_forward_kaplan_table1(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p, "gpt2"):
        c, s = case["config"], case["seq_len"]
        d = c["n_embd"]
        per_token = ref.kaplan_forward_flops_per_token(c["n_layer"], d, d, c.get("n_inner") or 4 * d, s)
        want = case["batch"] * s * (per_token + 2 * d * c["vocab_size"])
        assert_equal(ctx, _forward(ctx, case, attention="half"), want, f"{name}: GPT-2 forward with causal halving "
                     "vs tokens x (Kaplan's C_forward + de-embedding 2 d V)")


# --- training -------------------------------------------------------------------------------------------

TRAINING_FLOPS = Component(
    name="training_flops",
    signature="training_flops(config: dict, seq_len: int, batch: int = 1, recompute: str = 'none', "
    "attention: str = 'dense') -> int",
    summary="FLOPs of one training step (forward, backward = 2 x forward, and recomputation: none, selective, full).",
    reference=ref.training_flops,
    dtypes=(),
)


def _training(ctx: Context, case: dict, recompute: str = "none") -> int:
    out = ctx.target(dict(case["config"]), case["seq_len"], case["batch"], recompute=recompute, attention="dense")
    return _int(ctx, out, "training_flops")


@invariant("training_flops.counter_model", examples=ALL_CASES,
           statement="Without recomputation, training FLOPs equal FlopCounterMode's forward + backward count of the "
           "transformers model; the backward is exactly twice the forward (input and weight gradients of each matmul).",
           source="torch.utils.flop_counter.FlopCounterMode; Kaplan et al. 2020, sec. 2.1 (backward ~ 2 x forward)")
def check_training_counter(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        m = measured_flops(case["config"], case["seq_len"], case["batch"])
        assert_equal(ctx, _training(ctx, case), m["total"], f"{name}: training FLOPs vs FlopCounterMode's forward "
                     f"{m['forward']:,} + backward {m['backward']:,}")


@invariant("training_flops.recompute_full", examples=ALL_CASES,
           statement="Full recomputation adds every decoder layer's forward once more (not the output head): the count "
           "with transformers' gradient checkpointing, torch's checkpoint early stop off.",
           source="Narayanan et al. 2021, sec. 5.1; Chen et al. 2016 (gradient checkpointing); "
           "torch.utils.checkpoint.set_checkpoint_early_stop")
def check_training_recompute_full(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        m = measured_flops(case["config"], case["seq_len"], case["batch"], checkpoint=True)
        assert_equal(ctx, _training(ctx, case, "full"), m["total"], f"{name}: training FLOPs with full recomputation "
                     "vs the count with gradient checkpointing")


@invariant("training_flops.recompute_selective", examples=ALL_CASES,
           statement="Selective recomputation adds the forward FLOPs of the attention core (QK^T and AV) only.",
           source="Korthikanti et al. 2022, sec. 5 (selective activation recomputation)")
def check_training_recompute_selective(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        extra = _training(ctx, case, "selective") - _training(ctx, case, "none")
        core = measured_flops(case["config"], case["seq_len"], case["batch"])["forward_by_op"].get("bmm", 0)
        assert_equal(ctx, extra, core, f"{name}: FLOPs selective recomputation adds vs the attention core's forward "
                     "(QK^T, AV)")


@invariant("training_flops.six_nd_plus_attention", examples=ALL_CASES,
           statement="Training FLOPs = 6 N D + 12 L H Q T D exactly (N matmul weights per token, D tokens, T the "
           "sequence length): 6 N D leaves out only the attention term, a relative 2 L H Q T / N.",
           source="Kaplan et al. 2020, sec. 2.1 (C ~ 6 N D); Chowdhery et al. 2022 (PaLM), appendix B "
           "(6N + 12 L H Q T)")
def check_training_six_nd(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        n = measured_flops(case["config"], case["seq_len"], case["batch"])["matmul_params"]
        tokens = case["batch"] * case["seq_len"]
        arch = architecture(case["config"])
        per_token = ref.palm_model_flops_per_token(n, arch.num_layers, arch.num_heads, arch.head_dim, case["seq_len"])
        palm = per_token * tokens
        assert_equal(ctx, _training(ctx, case), palm, f"{name}: training vs 6 N D + 12 L H Q T D = {6 * n * tokens:,} "
                     f"+ {palm - 6 * n * tokens:,} (N = {n:,} matmul weights)")


@invariant(
    row("training_flops.megatron", recompute=False,
        statement="For GPT layers (d_ff = 4h) without recomputation: 72 B s l h^2 (1 + s/(6h) + V/(12 h l)).",
        source="Narayanan et al. 2021, sec. 5.1, eq. (3)"),
    row("training_flops.megatron_recompute", recompute=True,
        statement="For GPT layers with full recomputation: 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) (the head is not "
        "recomputed).",
        source="Narayanan et al. 2021, appendix (FLOPs with activation recomputation)"),
    examples=ALL_CASES)
def check_training_megatron(ctx: Context, p: dict, recompute: bool) -> None:
    for name, case in flop_cases(p, "gpt2"):
        c = case["config"]
        if c.get("n_inner"):
            continue  # Megatron's formula assumes d_ff = 4h
        got = _training(ctx, case, "full" if recompute else "none")
        want = ref.megatron_training_flops(case["batch"], case["seq_len"], c["n_layer"], c["n_embd"], c["vocab_size"],
                                           recompute)
        form = "96 B s l h^2 (1 + s/6h + V/16lh)" if recompute else "72 B s l h^2 (1 + s/6h + V/12hl)"
        assert_equal(ctx, got, want, f"{name}: GPT training FLOPs vs Megatron's {form}")


# --- utilization and compute budgets --------------------------------------------------------------------

UTILIZATION = Component(
    name="utilization",
    signature="utilization(config, seq_len, batch, step_seconds, peak_flops_per_s, recompute='none') -> "
    "{'mfu', 'hfu'}: float",
    summary="Model and hardware FLOPs utilization of a training step: FLOPs / (step time x dense peak FLOP/s).",
    reference=ref.utilization,
    dtypes=(),
)


@st.composite
def _utilization_examples(draw) -> dict:
    return {"step_seconds": draw(st.floats(1e-3, 1e3)), "peak": draw(st.sampled_from([312e12, 989e12, 1.25e14])),
            "recompute": draw(st.sampled_from(["none", "full"]))}


def _utilization(ctx: Context, case: dict, p: dict, recompute: str) -> dict:
    out = ctx.target(dict(case["config"]), case["seq_len"], case["batch"], p["step_seconds"], p["peak"],
                     recompute=recompute)
    if not isinstance(out, dict) or not {"mfu", "hfu"} <= set(out):
        ctx.fail(f"utilization must return {{'mfu': float, 'hfu': float}}, got {out!r}")
    return out


@invariant("utilization.measured", examples=_utilization_examples(),
           statement="MFU = model FLOPs (forward + backward, no recomputation) / (step time x peak); HFU counts the "
           "FLOPs executed, recomputation included; both against FlopCounterMode's counts of the model.",
           source="Chowdhery et al. 2022 (PaLM), appendix B")
def check_utilization_measured(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        out = _utilization(ctx, case, p, p["recompute"])
        budget = p["step_seconds"] * p["peak"]
        model_flops = measured_flops(case["config"], case["seq_len"], case["batch"])["total"]
        hardware = measured_flops(case["config"], case["seq_len"], case["batch"],
                                  checkpoint=p["recompute"] == "full")["total"]
        assert_relative(ctx, out["mfu"], model_flops / budget,
                        f"{name}: MFU vs measured model FLOPs / (step time x peak)")
        assert_relative(ctx, out["hfu"], hardware / budget,
                        f"{name}: HFU vs measured hardware FLOPs (recompute={p['recompute']}) / (step time x peak)")


@invariant("utilization.hfu_at_least_mfu", examples=_utilization_examples(),
           statement="HFU >= MFU, with equality without recomputation.",
           source="Chowdhery et al. 2022 (PaLM), appendix B; Korthikanti et al. 2022, sec. 6")
def check_utilization_hfu_at_least_mfu(ctx: Context, p: dict) -> None:
    for name, case in flop_cases(p):
        for recompute in ("none", "selective", "full"):
            out = _utilization(ctx, case, p, recompute)
            if recompute == "none":
                assert_equal(ctx, out["hfu"], out["mfu"], f"{name}: HFU vs MFU without recomputation")
            if out["hfu"] < out["mfu"]:
                hfu, mfu = show(out["hfu"], out["mfu"])
                ctx.fail(f"{name}, recompute={recompute}: HFU {hfu} < MFU {mfu} (recomputation only adds hardware "
                         "FLOPs)")


PETAFLOP_DAYS = Component(
    name="petaflop_days",
    signature="petaflop_days(flops: float) -> float",
    summary="Compute in petaflop/s-days: FLOPs / (1e15 x 86,400) = FLOPs / 8.64e19.",
    reference=ref.petaflop_days,
    dtypes=(),
)


@invariant("petaflop_days.definition", examples=st.floats(1e10, 1e27).map(lambda f: {"flops": f}),
           statement="One petaflop/s-day is 10^15 FLOP/s for a day: 8.64e19 FLOP.",
           source="Brown et al. 2020 (GPT-3), appendix D; Amodei & Hernandez 2018, AI and Compute")
def check_petaflop_days_definition(ctx: Context, p: dict) -> None:
    flops = p["flops"]
    assert_relative(ctx, ctx.target(flops), flops / (1e15 * 86400), f"petaflop_days({flops!r}) vs FLOPs / 8.64e19")


@invariant("petaflop_days.gpt3", examples=st.just({}),
           statement="GPT-3 175B: 3.14e23 training FLOP = 3.64e3 PF-days (and 6 N D = 3.15e23 for 300B tokens).",
           source="Brown et al. 2020 (GPT-3), Table D.1")
def check_petaflop_days_gpt3(ctx: Context, p: dict) -> None:
    got = ctx.target(3.14e23)
    if not isinstance(got, float):
        ctx.fail(f"petaflop_days must return a float, got {got!r}")
    assert_within(ctx, got, 3640.0, 0.005 * 3640.0, "GPT-3 175B: 3.14e23 FLOP in PF-days (3,640 to the paper's "
                  "rounding, 3.64e3)")
    assert_relative(ctx, ctx.target(float(6 * 175e9 * 300e9)), 6 * 175e9 * 300e9 / 8.64e19,
                    "6 N D for N = 175B, D = 300B tokens, in PF-days")


CHINCHILLA = Component(
    name="chinchilla_optimal",
    signature="chinchilla_optimal(compute: float, tokens_per_param: float = 20.0) -> (params, tokens)",
    summary="Compute-optimal model and data size for a FLOP budget under C = 6 N D and D = 20 N.",
    reference=ref.chinchilla_optimal,
    dtypes=(),
)


def _optimal(ctx: Context, compute: float, ratio: float | None = None) -> tuple[float, float]:
    out = ctx.target(compute) if ratio is None else ctx.target(compute, tokens_per_param=ratio)
    if not (isinstance(out, tuple) and len(out) == 2):
        ctx.fail(f"chinchilla_optimal must return (params, tokens), got {out!r}")
    return out


@invariant("chinchilla_optimal.budget",
           examples=st.fixed_dictionaries({"compute": st.floats(1e15, 1e27),
                                           "ratio": st.sampled_from([20.0, 10.0, 40.0])}),
           statement="The optimum spends the budget, 6 N D = C, at D / N = tokens_per_param (20 by default).",
           source="Hoffmann et al. 2022 (Chinchilla), sec. 3 and Table 3 (~20 tokens per parameter)")
def check_chinchilla_budget(ctx: Context, p: dict) -> None:
    n, d = _optimal(ctx, p["compute"], p["ratio"])
    assert_relative(ctx, 6 * n * d, p["compute"], "6 N D of the optimum vs the compute budget", rel=1e-9)
    assert_relative(ctx, d / n, p["ratio"], "tokens per parameter", rel=1e-9)


@invariant("chinchilla_optimal.published", examples=st.just({}),
           statement="Chinchilla itself: 70B parameters and 1.4T tokens for 5.88e23 FLOP.",
           source="Hoffmann et al. 2022 (Chinchilla), sec. 4.1")
def check_chinchilla_published(ctx: Context, p: dict) -> None:
    n, d = _optimal(ctx, 6 * 70e9 * 1.4e12)
    assert_relative(ctx, n, 70e9, "Chinchilla's parameters for 5.88e23 FLOP", rel=1e-9)
    assert_relative(ctx, d, 1.4e12, "Chinchilla's tokens for 5.88e23 FLOP", rel=1e-9)


DENSE_PEAK = Component(
    name="dense_peak_flops",
    signature="dense_peak_flops(device: str, dtype: str) -> float  (FLOP/s)",
    summary="Dense peak tensor throughput of an accelerator (A100 bf16 312 TFLOP/s, H100 SXM bf16 989 TFLOP/s, ...).",
    reference=ref.dense_peak_flops,
    dtypes=(),
)


@invariant("dense_peak_flops.published", examples=st.just({}),
           statement="A100 bf16 312, A100 tf32 156, H100 SXM bf16 989 and fp8 1,979 dense TFLOP/s.",
           source="NVIDIA A100 and H100 datasheets")
def check_peaks_published(ctx: Context, p: dict) -> None:
    for device, dtype, tflops in (("A100", "bf16", 312.0), ("H100-SXM", "bf16", 989.0), ("H100-SXM", "fp8", 1979.0),
                                  ("A100", "tf32", 156.0)):
        assert_relative(ctx, ctx.target(device, dtype), tflops * 1e12, f"dense peak FLOP/s of {device} {dtype}")


@invariant("dense_peak_flops.dense_not_sparse", examples=st.just({}),
           statement="Every peak is the dense figure: half the datasheet's 'with sparsity' number where one is printed "
           "(H100 SXM bf16 prints 1,979 with sparsity; MFU against it would be halved).",
           source="NVIDIA H100 datasheet footnote (2:4 structured sparsity); Chowdhery et al. 2022, appendix B")
def check_peaks_dense_not_sparse(ctx: Context, p: dict) -> None:
    for (device, dtype), (_, sparse, _) in ref.PEAK_TFLOPS.items():
        got = ctx.target(device, dtype)
        if not isinstance(got, float):
            ctx.fail(f"{device} {dtype}: expected FLOP/s as a float, got {got!r}")
        if sparse is not None:
            assert_relative(ctx, 2 * got, sparse * 1e12, f"{device} {dtype}: twice the peak vs the datasheet's 'with "
                            "sparsity' figure (MFU must divide by the dense peak)", rel=1e-3)
