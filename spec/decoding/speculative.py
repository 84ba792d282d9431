"""Speculative decoding: the accept / resample rule (exact), one verification step (statistical), and the whole
decoding loop (greedy equivalence, one target call per round when the draft is the target, sequence statistics)."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference.decoding import search as ref_search
from ...reference.decoding import speculative as ref
from ..checks import PROPERTY_ULPS, assert_equal, assert_matches, assert_within, expect_tensor, reference_pair, to64
from ..core import Component, Context, invariant
from ..statistics import chi_square_test
from ..strategies import TILE_EDGES, scaled, seeds
from .models import ALPHA, DRAWS, MODEL, REAL_VOCABS, Recorder, assert_sequence_distribution, expect_ids, greedy_chain, \
    model_examples, prompt, sequence_distribution, toy

LEVIATHAN = "Leviathan et al. 2023, Algorithm 1 and Theorem 3.5"
CHEN = "Chen et al. 2023, Algorithm 2"
HF_SPEC = "transformers 5.23 generation/utils.py:_speculative_sampling"
DECODE_DRAWS = 1000
PROB_DTYPES = (torch.float64, torch.float32)


def _probs(shape, seed: int, salt: int, peaked: bool = False) -> torch.Tensor:
    """Distributions with full support and every probability >= 1 / (8 V) (weights in [1, 8])."""
    gen = torch.Generator().manual_seed(seed * 7 + salt)
    w = torch.rand(shape, generator=gen, dtype=torch.float64) * 7 + 1
    if peaked:
        w = w ** 2
    return w / w.sum(dim=-1, keepdim=True)


# --- the rule ------------------------------------------------------------------------------------------------

RULE = Component(
    name="speculative_acceptance",
    signature="speculative_acceptance(target_probs: Float[B, V], draft_probs: Float[B, V]) -> "
              "(accept_probs: Float[B, V], residual: Float[B, V])",
    summary="The speculative rule: accept x ~ q with min(1, p(x) / q(x)); on rejection sample norm(max(0, p - q)).",
    reference=ref.speculative_acceptance,
    dtypes=PROB_DTYPES,
)


@st.composite
def _small_rule_examples(draw) -> dict:
    return {"B": draw(st.integers(1, 3)), "V": draw(st.integers(1, 6)), "seed": draw(seeds()),
            "peaked": draw(st.booleans())}


@st.composite
def _large_rule_examples(draw) -> dict:
    """Vocabularies at tile edges and real models' (the rule is elementwise plus one sum per row: cheap)."""
    return {"B": draw(st.integers(1, 2)), "V": draw(st.sampled_from(TILE_EDGES + tuple(v for v, _ in REAL_VOCABS))),
            "seed": draw(seeds()), "peaked": draw(st.booleans())}


def _rule_examples() -> st.SearchStrategy[dict]:
    return scaled(_small_rule_examples(), _large_rule_examples())


def _rule_inputs(ctx: Context, p: dict):
    p_t = _probs((p["B"], p["V"]), p["seed"], 1, p["peaked"]).to(ctx.dtype).to(ctx.device)
    q_d = _probs((p["B"], p["V"]), p["seed"], 2).to(ctx.dtype).to(ctx.device)
    return p_t, q_d


def _rule_call(ctx: Context, p_t, q_d):
    """(accept_probs, residual): a pair, so each is checked with expect_tensor rather than `call`."""
    out = ctx.target(p_t, q_d)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        ctx.fail(f"returned {type(out).__name__}, expected (accept_probs, residual)")
    shape = tuple(p_t.shape)
    return (expect_tensor(out[0], shape, ctx.dtype, ctx.device, "accept_probs"),
            expect_tensor(out[1], shape, ctx.dtype, ctx.device, "residual"))


@invariant("speculative_acceptance.exact.recovers_target", examples=_rule_examples(),
           statement="Enumerating every draft token of a tiny vocabulary, sum_x q(x) a(x) [y = x] + (1 - sum_x q(x) "
                     "a(x)) r(y) = p(y) exactly (to rounding): the rule produces the target distribution.",
           source=f"{LEVIATHAN}; {CHEN}")
def check_rule_exact(ctx: Context, p: dict) -> None:
    # enumerate every draft token x: emit x with q(x) a(x); otherwise (mass 1 - sum q a) emit from the residual.
    p_t, q_d = _rule_inputs(ctx, p)
    accept, residual = (to64(t) for t in _rule_call(ctx, p_t, q_d))
    if (accept < 0).any() or (accept > 1).any() or (residual < 0).any():
        ctx.fail(f"acceptance probabilities must lie in [0, 1] and the residual be non-negative: {accept.tolist()}, "
                 f"{residual.tolist()}")
    q64, p64 = to64(q_d), to64(p_t)
    rejected = 1 - (q64 * accept).sum(-1, keepdim=True)
    produced = q64 * accept + rejected * residual
    allowed = p["V"] * PROPERTY_ULPS * torch.finfo(ctx.dtype).eps
    b, y = (int(i) for i in torch.unravel_index((produced - p64).abs().argmax(), produced.shape))
    assert_within(ctx, float(produced[b, y]), float(p64[b, y]), allowed,
                  f"row {b}: the probability that the rule emits token {y} (enumerating the draft tokens) vs the "
                  "target's")
    sums = residual.sum(-1)
    for b in (rejected.squeeze(-1) > allowed).nonzero().flatten().tolist():
        assert_within(ctx, float(sums[b]), 1.0, allowed, f"row {b}: the residual's total, where rejection is possible")


@invariant("speculative_acceptance.equal_draft.accepts_all", examples=_rule_examples(),
           statement="With the draft distribution equal to the target, every token is accepted with probability 1.",
           source=LEVIATHAN)
def check_rule_equal(ctx: Context, p: dict) -> None:
    p_t, _ = _rule_inputs(ctx, p)
    accept, _ = _rule_call(ctx, p_t, p_t.clone())
    assert_equal(ctx, to64(accept), torch.ones(accept.shape, dtype=torch.float64),
                 "acceptance probabilities with the draft equal to the target")


@invariant("speculative_acceptance.reference.matches", kind="differential", examples=_rule_examples(),
           statement="accept = min(1, p / q) and residual = max(0, p - q) / sum max(0, p - q), within the tolerance "
                     "policy.",
           source=f"{LEVIATHAN}; {HF_SPEC}")
def check_rule_reference(ctx: Context, p: dict) -> None:
    p_t, q_d = _rule_inputs(ctx, p)
    accept, residual = _rule_call(ctx, p_t, q_d)
    (a64, r64), (a_low, r_low) = reference_pair(ref.speculative_acceptance, p_t, q_d)
    assert_matches(ctx, accept, a64, a_low, "accept_probs")
    assert_matches(ctx, residual, r64, r_low, "residual")


# --- one verification step -----------------------------------------------------------------------------------

STEP = Component(
    name="speculative_sampling",
    signature="speculative_sampling(draft_tokens: Int[B, K], draft_probs: Float[B, K, V], target_probs: "
              "Float[B, K + 1, V], generator: torch.Generator) -> Int[B, K + 1]  (accepted drafts, one sampled token, "
              "then -1)",
    summary="One verification step of speculative decoding per row.",
    reference=ref.speculative_sampling,
    dtypes=PROB_DTYPES,
)


@st.composite
def _step_examples(draw) -> dict:
    return {"V": draw(st.integers(2, 6)), "K": draw(st.integers(1, 3)), "seed": draw(seeds()),
            "peaked": draw(st.booleans())}


def _step(ctx: Context, p: dict, equal: bool = False):
    """Draft tokens drawn from q by the check, one (q, p) pair shared by all DRAWS rows; the target's emitted tokens."""
    k, v = p["K"], p["V"]
    p_t = _probs((1, k + 1, v), p["seed"], 1, p["peaked"]).to(ctx.dtype)
    q_d = p_t[:, :k].clone() if equal else _probs((1, k, v), p["seed"], 2).to(ctx.dtype)
    gen = torch.Generator().manual_seed(p["seed"] + 3)
    drafts = torch.multinomial(to64(q_d)[0].repeat(DRAWS, 1), 1, replacement=True, generator=gen).reshape(DRAWS, k)
    args = (drafts.to(ctx.device), q_d.expand(DRAWS, -1, -1).contiguous().to(ctx.device),
            p_t.expand(DRAWS, -1, -1).contiguous().to(ctx.device))
    out = ctx.target(*args, generator=torch.Generator(device=ctx.device).manual_seed(p["seed"]))
    if not isinstance(out, torch.Tensor) or out.is_floating_point() or tuple(out.shape) != (DRAWS, k + 1):
        ctx.fail(f"returned {type(out).__name__} {tuple(getattr(out, 'shape', ()))}, expected Int[{DRAWS}, {k + 1}]")
    return to64(p_t)[0], to64(q_d)[0], drafts, out.detach().cpu().to(torch.int64)


def _emitted_length(ctx: Context, out: torch.Tensor, v: int) -> torch.Tensor:
    valid = out >= 0
    n = valid.to(torch.int64).cumprod(-1).sum(-1)
    if (valid.sum(-1) != n).any() or (n < 1).any() or (out >= v).any():
        ctx.fail("each row must emit 1 to K + 1 tokens in [0, V) followed only by -1")
    return n


@invariant("speculative_sampling.distribution.chi_square", kind="statistical", examples=_step_examples(),
           statement="Among rows that reach position j, the emitted token is distributed as target_probs[j] (drafts "
                     f"drawn from draft_probs): Pearson chi-square per position, {DRAWS} rows, false-alarm rate "
                     f"{ALPHA:g} per example.",
           source=f"{LEVIATHAN}; {HF_SPEC}")
def check_step_distribution(ctx: Context, p: dict) -> None:
    p64, _, _, out = _step(ctx, p)
    n = _emitted_length(ctx, out, p["V"])
    for j in range(p["K"] + 1):  # among rows that reached position j, its token is distributed as p_j
        reached = n > j
        if int(reached.sum()) * float(p64[j].min()) < 5:
            continue
        counts = torch.bincount(out[reached, j], minlength=p["V"])
        statistic, df, pvalue = chi_square_test(counts, p64[j])
        if pvalue < ALPHA / (p["K"] + 1):
            ctx.fail(f"position {j}: the {int(reached.sum())} emitted tokens have frequencies {counts.tolist()}, the "
                     f"target distribution is {[round(float(x), 4) for x in p64[j]]}: chi-square {statistic:.1f}, "
                     f"{df} df, p-value {pvalue:.2g}", position=j, pvalue=pvalue)


@invariant("speculative_sampling.equal_draft.accepts_all", examples=_step_examples(),
           statement="With draft_probs equal to target_probs every draft token is accepted and a bonus token follows.",
           source=LEVIATHAN)
def check_step_equal(ctx: Context, p: dict) -> None:
    _, _, drafts, out = _step(ctx, p, equal=True)
    n = _emitted_length(ctx, out, p["V"])
    if (n != p["K"] + 1).any() or not torch.equal(out[:, : p["K"]], drafts):
        ctx.fail(f"with the draft equal to the target every draft token must be accepted (K + 1 = {p['K'] + 1} "
                 f"tokens per row); {int((n != p['K'] + 1).sum())} of {DRAWS} rows stopped early")


@invariant("speculative_sampling.output.accepted_prefix", examples=_step_examples(),
           statement="Each row emits its first drafts in order, then one token; after a rejection that token lies "
                     "where p > q (the residual's support), never where p <= q.",
           source=f"{LEVIATHAN}; {CHEN}")
def check_step_structure(ctx: Context, p: dict) -> None:
    p64, q64, drafts, out = _step(ctx, p)
    n = _emitted_length(ctx, out, p["V"])
    rows = torch.arange(DRAWS)
    accepted_prefix = (out[:, : p["K"]] == drafts) | (torch.arange(p["K"])[None] >= (n - 1)[:, None])
    if not accepted_prefix.all():
        ctx.fail("the emitted tokens before the last one must be the draft tokens, in order")
    last = out[rows, n - 1]
    rejected = n - 1 < p["K"]
    j = (n - 1).clamp(max=p["K"] - 1)
    outside = rejected & ~(p64[j, last] > q64[j, last])
    if outside.any():
        r = int(outside.nonzero()[0])
        ctx.fail(f"row {r}: after rejecting draft token {int(drafts[r, j[r]])} at position {int(j[r])} the target "
                 f"emitted {int(last[r])}, where p <= q: a rejection samples norm(max(0, p - q)), whose support is "
                 "p > q", row=r)


@invariant("speculative_sampling.generator.reproducible", examples=_step_examples(),
           statement="Generators seeded alike give the same tokens.", source=HF_SPEC)
def check_step_reproducible(ctx: Context, p: dict) -> None:
    first, second = _step(ctx, p)[3], _step(ctx, p)[3]
    assert_equal(ctx, second, first, "a second call with a generator seeded alike (draws must come from `generator`)")


# --- the decoding loop ---------------------------------------------------------------------------------------

DECODE = Component(
    name="speculative_decode",
    signature=f"speculative_decode(target_{MODEL}, draft_model, input_ids: Int[B, L], max_new_tokens: int, "
              "num_draft_tokens: int, do_sample: bool = True, generator: torch.Generator | None = None) "
              "-> Int[B, L + n]",
    summary="Draft num_draft_tokens tokens, verify them with one target call, keep the accepted ones; repeat.",
    reference=ref.speculative_decode,
    dtypes=(),
)


@st.composite
def _decode_examples(draw) -> dict:
    p = draw(model_examples(eos=False, max_batch=1, max_new=6))
    p["K"] = draw(st.integers(1, 3))
    return p


def _decode(ctx: Context, p: dict, target, draft, ids, do_sample: bool) -> torch.Tensor:
    out = ctx.target(target, draft, ids, p["n"], p["K"], do_sample=do_sample,
                     generator=torch.Generator(device=ctx.device).manual_seed(p["seed"]))
    return expect_ids(ctx, out, ids.shape[0], ids, ids.shape[-1] + p["n"])


@invariant("speculative_decode.greedy.equals_greedy", examples=_decode_examples(),
           statement="With do_sample=False the output is greedy decoding of the target model, whatever the draft "
                     "model.",
           source=f"{LEVIATHAN} (temperature 0); transformers assisted generation")
def check_decode_greedy(ctx: Context, p: dict) -> None:
    target, ids = toy(p), prompt(ctx, p)
    out = _decode(ctx, p, target, toy(p, salt=100), ids, do_sample=False)
    expected = greedy_chain(target, ids.cpu(), p["n"])
    assert_equal(ctx, out, expected, f"greedy speculative decoding {out.tolist()} vs greedy decoding of the target "
                 f"{expected.tolist()}")


@invariant("speculative_decode.equal_draft.one_call_per_round", examples=_decode_examples(),
           statement="With the draft model equal to the target every draft token is accepted: n new tokens take "
                     "ceil(n / (K + 1)) target calls (greedy and sampling), plus at most one call on the prompt or a "
                     "prefix of it (a KV-cache prefill).",
           source=f"{LEVIATHAN}, sec. 3.3 (expected tokens per iteration)")
def check_decode_calls(ctx: Context, p: dict) -> None:
    for do_sample in (False, True):
        model = toy(p)
        target, ids = Recorder(model), prompt(ctx, p)
        out = _decode(ctx, p, target, Recorder(model), ids, do_sample=do_sample)
        assert_equal(ctx, out.shape[-1] - ids.shape[-1], p["n"], f"tokens generated (do_sample={do_sample})")
        rounds = math.ceil(p["n"] / (p["K"] + 1))
        on_prompt = [c for c in target.calls
                     if c.shape[-1] <= ids.shape[-1] and torch.equal(c, ids.cpu()[:, : c.shape[-1]])]
        prefill = min(1, len(on_prompt))  # a KV-cache prefill of (a prefix of) the prompt
        if len(target.calls) > rounds + prefill:
            ctx.fail(f"with the draft equal to the target (do_sample={do_sample}) every draft token is accepted, so "
                     f"{p['n']} tokens take {rounds} target calls of K + 1 = {p['K'] + 1} tokens (plus at most one "
                     f"prefill of the prompt or a prefix of it); the target was called {len(target.calls)} times",
                     calls=len(target.calls))


@st.composite
def _decode_stat_examples(draw) -> dict:
    p = draw(model_examples(min_vocab=2, max_vocab=3, eos=False, max_batch=1, max_new=2))
    p.update(K=draw(st.integers(1, 2)), n=2)
    return p


@invariant("speculative_decode.distribution.chi_square", kind="statistical", examples=_decode_stat_examples(),
           budget=0.5,
           statement="Sampled continuations follow the target model's exact sequence distribution: Pearson chi-square "
                     f"over every continuation of 2 tokens, {DECODE_DRAWS} draws, false-alarm rate {ALPHA:g}.",
           source=f"{LEVIATHAN}, Theorem 3.5")
def check_decode_distribution(ctx: Context, p: dict) -> None:
    target, ids = toy(p), prompt(ctx, p)
    rows = ids.repeat(DECODE_DRAWS, 1)
    draft = ref_search.ToyLM(p["V"], p["seed"] + 100, scale=6.0)  # confident where the target is not: many rejections
    out = _decode(ctx, p, target, draft, rows, do_sample=True)
    seqs, probs = sequence_distribution(target, ids[0], p["n"], None, None)
    assert_sequence_distribution(ctx, out[:, ids.shape[-1] :], seqs, probs,
                                 f"{DECODE_DRAWS} speculative continuations")
