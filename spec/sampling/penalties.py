"""Logits processors that penalize repetition: repetition penalty (CTRL / HF), presence and frequency penalties
(OpenAI / vLLM), no-repeat n-gram. Checked numerically, negative logits included; each penalty's neutral value
(the identity) is checked in neutral.py."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference import sampling as ref
from ..checks import assert_agree, assert_equal, call, differential, expect_tensor, show, to64
from ..core import Component, Context, invariant
from .inputs import HF, VLLM, logits, logits_examples, penalty_examples, penalty_ids, presence_examples

# --- repetition penalty --------------------------------------------------------------------------------------

REPETITION = Component(
    name="repetition_penalty",
    signature="repetition_penalty(logits: Float[B, V], input_ids: Int[B, L], penalty: float > 0) -> Float[B, V]",
    summary="CTRL penalty on every token of input_ids (prompt included): negative logits * penalty, others / penalty.",
    reference=ref.repetition_penalty,
    bound="elementwise",  # processed logits / probabilities: every element is a value in its own right
)


@invariant("repetition_penalty.reference.matches", kind="differential", examples=penalty_examples(),
           statement="Seen tokens get where(x < 0, x * penalty, x / penalty), unseen are unchanged, within the "
           "tolerance policy.", source=f"Keskar et al. 2019, sec. 4.1; {HF}: RepetitionPenaltyLogitsProcessor")
def check_repetition_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.repetition_penalty, logits(ctx, p), penalty_ids(ctx, p), p["penalty"])


@invariant("repetition_penalty.sign.negative_multiplied", kind="property", examples=penalty_examples(),
           statement="A seen token's negative logit is multiplied by the penalty and a positive one divided (checked "
           "numerically, so penalty > 1 lowers both signs).", source=f"{HF}: RepetitionPenaltyLogitsProcessor")
def check_repetition_sign(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p), penalty_ids(ctx, p)
    out = to64(call(ctx, x.shape, x, ids, p["penalty"]))
    x64 = to64(x)
    seen = torch.zeros(x.shape, dtype=torch.bool).scatter_(-1, ids.cpu(), True)
    expected = torch.where(seen, torch.where(x64 < 0, x64 * p["penalty"], x64 / p["penalty"]), x64)
    wrong_sign = seen & (x64 != 0) & ((out - x64).sign() != (expected - x64).sign())
    if wrong_sign.any():
        b, i = (int(v) for v in wrong_sign.nonzero()[0])
        got, want = show(float(out[b, i]), float(expected[b, i]))
        ctx.fail(f"token {i} of row {b} appeared before: logit {float(x64[b, i]):.6g} with penalty {p['penalty']} "
                 f"became {got}, expected {want} (negative logits are multiplied, positive divided, so penalty > 1 "
                 "always lowers them)", row=b, token=i)
    assert_agree(ctx, out, expected, "repetition penalty vs where(x < 0, x * penalty, x / penalty) on seen tokens")


@invariant("repetition_penalty.count.once_per_token", kind="property", examples=penalty_examples(),
           statement="A token occurring several times in input_ids is penalized once.",
           source=f"{HF}: RepetitionPenaltyLogitsProcessor (gather / scatter of distinct ids)")
def check_repetition_once(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p), penalty_ids(ctx, p)
    once = call(ctx, x.shape, x, ids, p["penalty"])
    thrice = call(ctx, x.shape, x, torch.cat([ids, ids, ids], -1), p["penalty"])
    assert_equal(ctx, thrice, once, "input_ids repeated three times vs once (the penalty applies once per distinct "
                 "token, not per occurrence)")


# --- presence and frequency penalties ------------------------------------------------------------------------

PRESENCE_FREQUENCY = Component(
    name="presence_frequency_penalty",
    signature="presence_frequency_penalty(logits: Float[B, V], output_ids: Int[B, L], presence: float, "
    "frequency: float) -> Float[B, V]",
    summary="OpenAI / vLLM: logit - frequency * count - presence * [count > 0], counts over the ids given "
    "(the output).",
    reference=ref.presence_frequency_penalty,
    bound="elementwise",  # processed logits / probabilities: every element is a value in its own right
)


@invariant("presence_frequency_penalty.reference.matches", kind="differential", examples=presence_examples(),
           statement="logit - frequency * count - presence * [count > 0] within the tolerance policy (negative "
           "penalties too).", source=f"OpenAI API reference, parameter details; {VLLM} apply_penalties")
def check_presence_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.presence_frequency_penalty, logits(ctx, p), penalty_ids(ctx, p), p["presence"],
                 p["frequency"])


@invariant("presence_frequency_penalty.presence.once_per_token", kind="property", examples=presence_examples(),
           statement="The presence penalty is subtracted once for a token however often it occurs.",
           source="OpenAI API reference, parameter details")
def check_presence_once(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p), penalty_ids(ctx, p)
    once = call(ctx, x.shape, x, ids, p["presence"] or 0.5, 0.0)
    twice = call(ctx, x.shape, x, torch.cat([ids, ids], -1), p["presence"] or 0.5, 0.0)
    assert_equal(ctx, twice, once, "with frequency 0, output_ids repeated twice vs once (the presence penalty applies "
                 "once per token)")


@invariant("presence_frequency_penalty.frequency.per_occurrence", kind="property", examples=presence_examples(),
           statement="The frequency penalty is subtracted once per occurrence: doubling the ids equals doubling the "
           "penalty, and equals logit - frequency * count.", source="OpenAI API reference, parameter details")
def check_frequency_counts(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p, "ties"), penalty_ids(ctx, p)  # grid logits and f in {0.25, 0.5}: every value is exact
    f = 0.25 if p["frequency"] <= 0.3 else 0.5
    doubled = call(ctx, x.shape, x, torch.cat([ids, ids], -1), 0.0, f)
    scaled = call(ctx, x.shape, x, ids, 0.0, 2 * f)
    assert_agree(ctx, doubled, scaled, f"frequency {f} on output_ids twice vs frequency {2 * f} on output_ids once")
    counts = ref.token_counts(ids.cpu(), p["V"], torch.float64)
    assert_agree(ctx, scaled, to64(x) - 2 * f * counts, "frequency penalty vs logit - frequency * count")


# --- no-repeat n-gram ----------------------------------------------------------------------------------------

NO_REPEAT_NGRAM = Component(
    name="no_repeat_ngram",
    signature="no_repeat_ngram(logits: Float[B, V], input_ids: Int[B, L], n: int >= 1) -> Float[B, V]",
    summary="Ban (-inf) every token that would repeat an n-gram of input_ids (prompt included).",
    reference=ref.no_repeat_ngram,
)


@st.composite
def _ngram_examples(draw) -> dict:
    p = draw(logits_examples(min_vocab=2, max_vocab=5))
    p["L"] = draw(st.integers(0, 10))
    p["n"] = draw(st.integers(1, 4))
    return p


def _banned(ids: list[int], n: int) -> set[int]:
    """By brute force: tokens v such that ids[-(n-1):] + [v] occurs as n consecutive tokens of ids."""
    if len(ids) < n:
        return set()
    prefix = ids[len(ids) - n + 1 :] if n > 1 else []
    return {ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i : i + n - 1] == prefix}


@invariant("no_repeat_ngram.bans.completing_tokens", kind="property", examples=_ngram_examples(),
           statement="Token v is -inf iff (last n - 1 ids, v) occurs as n consecutive ids; every other logit is "
           "unchanged; fewer than n ids ban nothing.",
           source=f"fairseq sequence_generator; {HF}: NoRepeatNGramLogitsProcessor")
def check_ngram(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p), penalty_ids(ctx, p)
    out = expect_tensor(ctx.target(x, ids, p["n"]), tuple(x.shape), ctx.dtype, ctx.device, finite=False)
    o, x64 = to64(out), to64(x)
    for b, row in enumerate(ids.cpu().tolist()):
        banned = _banned(row, p["n"])
        expected = x64[b].index_fill(0, torch.tensor(sorted(banned), dtype=torch.int64), float("-inf"))
        assert_equal(ctx, o[b], expected, f"row {b} (ids {row}, n = {p['n']}, banned {sorted(banned)})")
