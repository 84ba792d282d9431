"""The neutral value of each processor parameter: the one a sampling step passes to turn that stage off
(`NEUTRAL`, used by pipeline.py), and one check, with a row per processor, that it really is the identity."""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import strategies as st

from ..checks import assert_equal, call
from ..core import Context, invariant, row
from . import penalties, processors  # noqa: F401  (they declare the components these rows belong to)
from .inputs import (HF, VLLM, logits, logits_examples, penalty_examples, penalty_ids, presence_examples,
                     temperature_examples, threshold_examples, top_p_examples)

#: sampling_pipeline's parameters at their neutral values; top_k = 0 is the pipeline's "off", which the top_k
#: filter itself (k >= 1) spells k >= V.
NEUTRAL = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, presence_penalty=0.0,
               frequency_penalty=0.0)


@st.composite
def _top_k_large_examples(draw) -> dict:
    p = draw(logits_examples())
    p["extra"] = draw(st.integers(0, 5))
    return p


def _k_at_least_vocab(p: dict) -> dict:
    return {"k": p["V"] + p["extra"]}


@invariant(
    row("temperature.identity.one", neutral={"t": NEUTRAL["temperature"]}, examples=temperature_examples(),
        statement="t = 1 returns the logits unchanged, bit for bit.", source=f"{HF}: TemperatureLogitsWarper"),
    row("top_k.identity.k_at_least_vocab", neutral=_k_at_least_vocab, examples=_top_k_large_examples(),
        statement="k >= V returns the logits unchanged.", source=f"{HF}: TopKLogitsWarper (k = min(k, V))"),
    # |logits| < ~5 ("normal"): no probability underflows, so p = 1 must keep every token
    row("top_p.identity.p_one", neutral={"p": NEUTRAL["top_p"]}, pattern="normal", examples=top_p_examples(),
        statement="p = 1 returns the logits unchanged when every probability is nonzero in the dtype.",
        source=f"{HF}: TopPLogitsWarper"),
    row("min_p.identity.zero", neutral={"p": NEUTRAL["min_p"]}, pattern="normal", examples=threshold_examples(()),
        statement="p = 0 returns the logits unchanged.", source=f"{HF}: MinPLogitsWarper"),
    row("repetition_penalty.identity.one", neutral={"penalty": NEUTRAL["repetition_penalty"]}, with_ids=True,
        examples=penalty_examples(), statement="penalty = 1 returns the logits unchanged.",
        source=f"{HF}: RepetitionPenaltyLogitsProcessor"),
    row("presence_frequency_penalty.identity.zero", with_ids=True, examples=presence_examples(),
        neutral={"presence": NEUTRAL["presence_penalty"], "frequency": NEUTRAL["frequency_penalty"]},
        statement="presence = frequency = 0 returns the logits unchanged.", source=f"{VLLM} apply_penalties"),
    kind="property",
)
def check_neutral_is_identity(ctx: Context, p: dict, neutral: dict[str, Any] | Callable[[dict], dict[str, Any]],
                              pattern: str | None = None, with_ids: bool = False) -> None:
    """target(logits[, ids], *neutral values) is the logits, bit for bit."""
    x = logits(ctx, p, pattern)
    values = neutral(p) if callable(neutral) else neutral
    ids = (penalty_ids(ctx, p),) if with_ids else ()
    out = call(ctx, x.shape, x, *ids, *values.values())
    setting = ", ".join(f"{name} = {value}" for name, value in values.items())
    assert_equal(ctx, out, x, f"output at {setting}, which must be the identity")
