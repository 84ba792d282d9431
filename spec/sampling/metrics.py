"""Entropy, cross-entropy and perplexity, in nats: perplexity = exp(mean cross-entropy); uniform logits give log V."""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference import sampling as ref
from ..checks import PROPERTY_ULPS, assert_agree, assert_within, call, differential, show, to64
from ..core import Component, Context, invariant
from ..gradients import BACKWARD
from .inputs import VOCAB_EDGES, VOCABS, logits, logits_examples, token_ids

SHANNON = "Shannon 1948, A Mathematical Theory of Communication, sec. 6"
TORCH_CE = "torch.nn.functional.cross_entropy (reduction='mean')"
JELINEK = ("Jelinek et al. 1977, Perplexity - a measure of the difficulty of speech recognition tasks; "
           "Jurafsky & Martin, SLP3 ch. 3.3")


def _scalar_slack(ctx: Context, scale: float) -> float:
    """How far a scalar of magnitude `scale` may round: PROPERTY_ULPS eps of max(1, scale)."""
    return PROPERTY_ULPS * torch.finfo(ctx.dtype).eps * max(1.0, scale)


# --- entropy -------------------------------------------------------------------------------------------------

ENTROPY = Component(
    name="entropy",
    signature="entropy(logits: Float[*B, V]) -> Float[*B]  (nats, of softmax(logits); -inf logits have no mass)",
    summary="Shannon entropy of softmax(logits) in nats.",
    reference=ref.entropy,
    features=BACKWARD,
)


@st.composite
def _masked_examples(draw) -> dict:
    p = draw(logits_examples())
    p["masked"] = draw(st.integers(0, 3))
    return p


def _masked_logits(ctx: Context, p: dict) -> torch.Tensor:
    """Logits with some entries -inf (already filtered tokens), never a whole row."""
    x = logits(ctx, p)
    if p["masked"]:
        gen = torch.Generator().manual_seed(p["seed"] + 5)
        masked = torch.rand(x.shape, generator=gen) < p["masked"] / 5
        masked[:, 0] = False
        x = x.masked_fill(masked.to(x.device), float("-inf"))
    return x


@invariant("entropy.reference.matches", kind="differential", examples=_masked_examples(), source=SHANNON,
           statement="H = -sum p log p of softmax(logits), 0 log 0 = 0, within the tolerance policy.")
def check_entropy_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.entropy, _masked_logits(ctx, p))


@invariant("entropy.uniform.log_vocab", kind="property", examples=logits_examples(), source=SHANNON,
           statement="V equal logits (any value) give entropy log V nats.")
def check_entropy_uniform(ctx: Context, p: dict) -> None:
    log_v = math.log(p["V"])
    for value in (-3.0, 0.0, 2.5, 100.0):
        x = torch.full((p["B"], p["V"]), value, dtype=ctx.dtype, device=ctx.device)
        h = to64(call(ctx, (p["B"],), x))
        b = int((h - log_v).abs().argmax())
        assert_within(ctx, float(h[b]), log_v, _scalar_slack(ctx, log_v),
                      f"entropy of {p['V']} equal logits ({value}) vs log V")


@invariant("entropy.range.zero_to_log_support", kind="property", examples=_masked_examples(), source=SHANNON,
           statement="0 <= H <= log(number of finite logits), and tokens with -inf logits change nothing.")
def check_entropy_range(ctx: Context, p: dict) -> None:
    x = _masked_logits(ctx, p)
    h = to64(call(ctx, (p["B"],), x))
    support = torch.isfinite(to64(x)).sum(-1).to(torch.float64)
    slack = _scalar_slack(ctx, float(support.log().max()))
    if (h < -slack).any() or (h > support.log() + slack).any():
        b = int(((h < -slack) | (h > support.log() + slack)).nonzero()[0])
        ctx.fail(f"row {b}: entropy {show(float(h[b]))} outside [0, log {int(support[b])}] (tokens with -inf logits "
                 "have no mass)", row=b)
    finite_only = x[:1][torch.isfinite(x[:1])].reshape(1, -1)
    # a log-softmax rounds to eps of its logsumexp, not of the entropy: a peaked row's small entropy carries an
    # absolute error of eps per nat of log V (seen at V = 1023), so the allowance is relative to max(1, H)
    alone = float(to64(call(ctx, (1,), finite_only))[0])
    assert_within(ctx, float(h[0]), alone, _scalar_slack(ctx, abs(alone)) * max(1.0, math.log(p["V"])),
                  "entropy with -inf tokens vs entropy of the finite tokens alone")


# --- cross-entropy and perplexity ----------------------------------------------------------------------------

CROSS_ENTROPY = Component(
    name="cross_entropy",
    signature="cross_entropy(input: Float[N, V], target: Int[N]) -> Float[]  "
    "(torch.nn.functional.cross_entropy, mean over rows)",
    summary="Mean over rows of -log softmax(input)[target], in nats.",
    reference=ref.cross_entropy,
    features={**BACKWARD, "ignore_index": "targets equal to -100 (torch's default ignore_index) are left out of the "
              "loss"},
)


@st.composite
def _ce_examples(draw, kernel_vocabs: tuple[int, ...] = VOCAB_EDGES + VOCABS) -> dict:
    p = draw(logits_examples(max_batch=8, kernel_vocabs=kernel_vocabs))
    p["split"] = draw(st.integers(1, 7))
    return p


#: a perplexity near V over a real vocabulary (> 65504) overflows float16: perplexity draws the tile edges only.
_ppl_examples = _ce_examples(VOCAB_EDGES)


def _targets(ctx: Context, p: dict, rows: int | None = None) -> torch.Tensor:
    return token_ids({**p, "B": 1}, rows or p["B"], p["V"], 3, ctx.device)[0]


def _check_uniform(ctx: Context, p: dict, expected: float, what: str) -> None:
    for value in (-2.0, 0.0, 50.0):
        x = torch.full((p["B"], p["V"]), value, dtype=ctx.dtype, device=ctx.device)
        got = float(to64(call(ctx, (), x, _targets(ctx, p))))
        assert_within(ctx, got, expected, _scalar_slack(ctx, expected),
                      f"{what} of uniform logits ({value}) over V = {p['V']}")


def _split(ctx: Context, p: dict):
    """Logits and targets of n rows, and the same split into a first part of `split` rows and the rest."""
    n = max(p["B"], 2)
    x = logits(ctx, {**p, "B": n})
    t = _targets(ctx, p, n)
    k = 1 + (p["split"] - 1) % (n - 1)
    return x, t, k, n


def _whole_and_parts(ctx: Context, x: torch.Tensor, t: torch.Tensor, k: int):
    return (to64(call(ctx, (), a, b)) for a, b in ((x, t), (x[:k], t[:k]), (x[k:], t[k:])))


@invariant("cross_entropy.reference.matches", kind="differential", examples=_ce_examples(), source=TORCH_CE,
           statement="mean(-log softmax(input)[target]) within the tolerance policy.")
def check_ce_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.cross_entropy, logits(ctx, p), _targets(ctx, p))


@invariant("cross_entropy.uniform.log_vocab", kind="property", examples=_ce_examples(), source=TORCH_CE,
           statement="Uniform logits give log V nats whatever the targets.")
def check_ce_uniform(ctx: Context, p: dict) -> None:
    _check_uniform(ctx, p, math.log(p["V"]), "cross-entropy (nats)")


@invariant("cross_entropy.reduction.mean_over_rows", kind="property", examples=_ce_examples(), source=TORCH_CE,
           statement="The loss of n rows is the mean of the per-row losses: the row-weighted mean of the losses of "
           "any split.")
def check_ce_mean(ctx: Context, p: dict) -> None:
    x, t, k, n = _split(ctx, p)
    whole, first, rest = _whole_and_parts(ctx, x, t, k)
    assert_agree(ctx, whole, (k * first + (n - k) * rest) / n,
                 f"cross-entropy of {n} rows vs the row-weighted mean of its parts ({k} + {n - k})")


PERPLEXITY = Component(
    name="perplexity",
    signature="perplexity(logits: Float[N, V], target: Int[N]) -> Float[]",
    summary="exp(mean cross-entropy): the exponential of the mean, not the mean of exponentials.",
    reference=ref.perplexity,
    features=BACKWARD,
)


@invariant("perplexity.reference.matches", kind="differential", examples=_ppl_examples, source=JELINEK,
           statement="perplexity = exp(mean cross-entropy in nats) within the tolerance policy.")
def check_ppl_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.perplexity, logits(ctx, p, "normal"), _targets(ctx, p))


@invariant("perplexity.uniform.vocab", kind="property", examples=_ppl_examples, source=JELINEK,
           statement="Uniform logits give perplexity V.")
def check_ppl_uniform(ctx: Context, p: dict) -> None:
    _check_uniform(ctx, p, float(p["V"]), "perplexity")


@invariant("perplexity.geometric_mean", kind="property", examples=_ppl_examples, source=JELINEK,
           statement="The perplexity of n rows is the row-weighted geometric mean of the perplexities of any split "
           "(exp of a mean, not a mean of exps).")
def check_ppl_geometric(ctx: Context, p: dict) -> None:
    x, t, k, n = _split(ctx, p)
    x = logits(ctx, {**p, "B": n}, "normal")
    whole, first, rest = _whole_and_parts(ctx, x, t, k)
    expected = first ** (k / n) * rest ** ((n - k) / n)
    assert_agree(ctx, whole, expected, f"perplexity of {n} rows vs the weighted geometric mean of its parts "
                 f"({k} + {n - k})", ulps=PROPERTY_ULPS * 4)
