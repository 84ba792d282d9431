"""Logits processors that penalize repetition: repetition penalty (CTRL / HF), presence and frequency penalties
(OpenAI / vLLM), no-repeat n-gram. Checked numerically, negative logits included."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference import sampling as ref
from ..checks import assert_agree, differential, to64
from ..core import Component, Context, Invariant
from ..guard import expect_tensor
from .processors import HF, VLLM, logits, logits_examples, token_ids

# --- penalties -----------------------------------------------------------------------------------------------


@st.composite
def _penalty_examples(draw, penalties=(0.5, 0.8, 1.2, 1.5, 2.0)) -> dict:
    p = draw(logits_examples(max_vocab=10))
    p["L"] = draw(st.integers(1, 8))
    p["penalty"] = draw(st.sampled_from(penalties))
    return p


def _ids(ctx: Context, p: dict, salt: int = 1, length: int | None = None) -> torch.Tensor:
    return token_ids(p, p["L"] if length is None else length, p["V"], salt, ctx.device)


def _check_repetition_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.repetition_penalty, logits(ctx, p), _ids(ctx, p), p["penalty"])


def _check_repetition_sign(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p), _ids(ctx, p)
    out = to64(expect_tensor(ctx.target(x, ids, p["penalty"]), tuple(x.shape), ctx.dtype, ctx.device))
    x64 = to64(x)
    seen = torch.zeros(x.shape, dtype=torch.bool).scatter_(-1, ids.cpu(), True)
    expected = torch.where(seen, torch.where(x64 < 0, x64 * p["penalty"], x64 / p["penalty"]), x64)
    wrong_sign = seen & (x64 != 0) & ((out - x64).sign() != (expected - x64).sign())
    if wrong_sign.any():
        b, i = (int(v) for v in wrong_sign.nonzero()[0])
        ctx.fail(f"token {i} of row {b} appeared before: logit {float(x64[b, i]):.6g} with penalty {p['penalty']} became "
                 f"{float(out[b, i]):.6g}, expected {float(expected[b, i]):.6g} (negative logits are multiplied, positive "
                 "divided, so penalty > 1 always lowers them)", row=b, token=i)
    assert_agree(ctx, out, expected, "repetition penalty vs where(x < 0, x * penalty, x / penalty) on seen tokens")


def _check_repetition_once(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p), _ids(ctx, p)
    once = expect_tensor(ctx.target(x, ids, p["penalty"]), tuple(x.shape), ctx.dtype, ctx.device)
    thrice = expect_tensor(ctx.target(x, torch.cat([ids, ids, ids], -1), p["penalty"]), tuple(x.shape), ctx.dtype, ctx.device)
    if not torch.equal(once.cpu(), thrice.cpu()):
        ctx.fail("repeating input_ids changed the result: the penalty applies once per distinct token, not per occurrence")


def _check_repetition_one(ctx: Context, p: dict) -> None:
    x = logits(ctx, p)
    out = expect_tensor(ctx.target(x, _ids(ctx, p), 1.0), tuple(x.shape), ctx.dtype, ctx.device)
    if not torch.equal(out.cpu(), x.cpu()):
        ctx.fail("penalty 1 changed the logits (it is the identity)")


REPETITION = Component(
    name="repetition_penalty",
    family="sampling",
    signature="repetition_penalty(logits: Float[B, V], input_ids: Int[B, L], penalty: float > 0) -> Float[B, V]",
    summary="CTRL penalty on every token of input_ids (prompt included): negative logits * penalty, others / penalty.",
    reference=ref.repetition_penalty,
    invariants=(
        Invariant("repetition_penalty.reference.matches",
             "Seen tokens get where(x < 0, x * penalty, x / penalty), unseen are unchanged, within the tolerance policy.",
             f"Keskar et al. 2019, sec. 4.1; {HF}: RepetitionPenaltyLogitsProcessor", "differential", _penalty_examples(),
             _check_repetition_reference),
        Invariant("repetition_penalty.sign.negative_multiplied",
             "A seen token's negative logit is multiplied by the penalty and a positive one divided (checked numerically, "
             "so penalty > 1 lowers both signs).", f"{HF}: RepetitionPenaltyLogitsProcessor", "property",
             _penalty_examples(), _check_repetition_sign),
        Invariant("repetition_penalty.count.once_per_token", "A token occurring several times in input_ids is penalized once.",
             f"{HF}: RepetitionPenaltyLogitsProcessor (gather / scatter of distinct ids)", "property", _penalty_examples(),
             _check_repetition_once),
        Invariant("repetition_penalty.identity.one", "penalty = 1 returns the logits unchanged.", f"{HF}: RepetitionPenaltyLogitsProcessor",
             "property", _penalty_examples(), _check_repetition_one),
    ),
)


@st.composite
def _presence_examples(draw) -> dict:
    p = draw(logits_examples(max_vocab=10))
    p["L"] = draw(st.integers(0, 8))
    p["presence"] = draw(st.sampled_from([0.0, 0.5, 1.5, -0.5]))
    p["frequency"] = draw(st.sampled_from([0.0, 0.3, 1.0, -0.3]))
    return p


def _check_presence_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.presence_frequency_penalty, logits(ctx, p), _ids(ctx, p), p["presence"], p["frequency"])


def _check_presence_once(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p), _ids(ctx, p)
    once = expect_tensor(ctx.target(x, ids, p["presence"] or 0.5, 0.0), tuple(x.shape), ctx.dtype, ctx.device)
    twice = expect_tensor(ctx.target(x, torch.cat([ids, ids], -1), p["presence"] or 0.5, 0.0), tuple(x.shape), ctx.dtype, ctx.device)
    if not torch.equal(once.cpu(), twice.cpu()):
        ctx.fail("with frequency 0, repeating output_ids changed the result: the presence penalty applies once per token")


def _check_frequency_counts(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p, "ties"), _ids(ctx, p)  # grid logits and f in {0.25, 0.5}: every value is exact
    f = 0.25 if p["frequency"] <= 0.3 else 0.5
    doubled = expect_tensor(ctx.target(x, torch.cat([ids, ids], -1), 0.0, f), tuple(x.shape), ctx.dtype, ctx.device)
    scaled = expect_tensor(ctx.target(x, ids, 0.0, 2 * f), tuple(x.shape), ctx.dtype, ctx.device)
    assert_agree(ctx, doubled, scaled, f"frequency {f} on output_ids twice vs frequency {2 * f} on output_ids once")
    counts = ref.token_counts(ids.cpu(), p["V"], torch.float64)
    assert_agree(ctx, scaled, to64(x) - 2 * f * counts, "frequency penalty vs logit - frequency * count")


def _check_presence_zero(ctx: Context, p: dict) -> None:
    x = logits(ctx, p)
    out = expect_tensor(ctx.target(x, _ids(ctx, p), 0.0, 0.0), tuple(x.shape), ctx.dtype, ctx.device)
    if not torch.equal(out.cpu(), x.cpu()):
        ctx.fail("presence = frequency = 0 changed the logits (it is the identity)")


PRESENCE_FREQUENCY = Component(
    name="presence_frequency_penalty",
    family="sampling",
    signature="presence_frequency_penalty(logits: Float[B, V], output_ids: Int[B, L], presence: float, frequency: float) -> Float[B, V]",
    summary="OpenAI / vLLM: logit - frequency * count - presence * [count > 0], counts over the ids given (the output).",
    reference=ref.presence_frequency_penalty,
    invariants=(
        Invariant("presence_frequency.reference.matches",
             "logit - frequency * count - presence * [count > 0] within the tolerance policy (negative penalties too).",
             f"OpenAI API reference, parameter details; {VLLM} apply_penalties", "differential", _presence_examples(),
             _check_presence_reference),
        Invariant("presence_frequency.presence.once_per_token", "The presence penalty is subtracted once for a token however often it occurs.",
             "OpenAI API reference, parameter details", "property", _presence_examples(), _check_presence_once),
        Invariant("presence_frequency.frequency.per_occurrence",
             "The frequency penalty is subtracted once per occurrence: doubling the ids equals doubling the penalty, and "
             "equals logit - frequency * count.", "OpenAI API reference, parameter details", "property",
             _presence_examples(), _check_frequency_counts),
        Invariant("presence_frequency.identity.zero", "presence = frequency = 0 returns the logits unchanged.", f"{VLLM} apply_penalties",
             "property", _presence_examples(), _check_presence_zero),
    ),
)


@st.composite
def _ngram_examples(draw) -> dict:
    p = draw(logits_examples(min_vocab=2, max_vocab=5))
    p["L"] = draw(st.integers(0, 10))
    p["n"] = draw(st.integers(1, 4))
    return p


def _banned(ids: list[int], n: int, vocab: int) -> set[int]:
    """By brute force: tokens v such that ids[-(n-1):] + [v] occurs as n consecutive tokens of ids."""
    if len(ids) < n:
        return set()
    prefix = ids[len(ids) - n + 1 :] if n > 1 else []
    return {ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i : i + n - 1] == prefix}


def _check_ngram(ctx: Context, p: dict) -> None:
    x, ids = logits(ctx, p), _ids(ctx, p)
    out = expect_tensor(ctx.target(x, ids, p["n"]), tuple(x.shape), ctx.dtype, ctx.device, finite=False)
    o, x64 = to64(out), to64(x)
    for b, row in enumerate(ids.cpu().tolist()):
        banned = _banned(row, p["n"], p["V"])
        expected = torch.tensor([float("-inf") if v in banned else float(x64[b, v]) for v in range(p["V"])], dtype=torch.float64)
        if not torch.equal(o[b], expected):
            ctx.fail(f"row {b} ids {row}, n = {p['n']}: banned {sorted(banned)} expected; output {o[b].tolist()}", row=b)


NO_REPEAT_NGRAM = Component(
    name="no_repeat_ngram",
    family="sampling",
    signature="no_repeat_ngram(logits: Float[B, V], input_ids: Int[B, L], n: int >= 1) -> Float[B, V]",
    summary="Ban (-inf) every token that would repeat an n-gram of input_ids (prompt included).",
    reference=ref.no_repeat_ngram,
    invariants=(
        Invariant("no_repeat_ngram.bans.completing_tokens",
             "Token v is -inf iff (last n - 1 ids, v) occurs as n consecutive ids; every other logit is unchanged; fewer "
             "than n ids ban nothing.", f"fairseq sequence_generator; {HF}: NoRepeatNGramLogitsProcessor", "property",
             _ngram_examples(), _check_ngram),
    ),
)

COMPONENTS = (REPETITION, PRESENCE_FREQUENCY, NO_REPEAT_NGRAM)
