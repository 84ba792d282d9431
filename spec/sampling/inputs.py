"""What the sampling checks draw and share: logits and token ids from small parameter dicts, the example strategies
used by more than one module, the rounding slack of masses and ratios in the target's dtype, and the sources."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ..core import Context
from ..strategies import layouts, materialize, patterns, seeds, sizes

HF = "transformers 5.23 generation/logits_process.py"
VLLM = "vLLM v1 (vllm/v1/sample)"


@st.composite
def logits_examples(draw, min_vocab: int = 1, max_vocab: int = 12, max_batch: int = 3) -> dict:
    return {
        "B": draw(sizes(1, max_batch)),
        "V": draw(sizes(min_vocab, max_vocab)),
        "seed": draw(seeds()),
        "pattern": draw(patterns()),
        "layout": draw(layouts()),
    }


def logits(ctx: Context, p: dict, pattern: str | None = None, salt: int = 0) -> torch.Tensor:
    return materialize((p["B"], p["V"]), p["seed"], ctx.dtype, ctx.device, pattern or p["pattern"], salt=salt,
                       layout=p["layout"])


def token_ids(p: dict, length: int, vocab: int, salt: int, device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(p["seed"] * 31 + salt)
    return torch.randint(0, vocab, (p["B"], length), generator=gen).to(device)


def penalty_ids(ctx: Context, p: dict, length: int | None = None) -> torch.Tensor:
    """The ids a penalty counts: p["L"] (or `length`) of them per row."""
    return token_ids(p, p["L"] if length is None else length, p["V"], 1, ctx.device)


# --- example strategies shared by the processors' own checks and the identity table (neutral.py) --------------


@st.composite
def temperature_examples(draw) -> dict:
    p = draw(logits_examples())
    p["t"] = draw(st.sampled_from([0.1, 0.5, 0.7, 1.0, 1.3, 2.0, 10.0]))
    return p


@st.composite
def top_p_examples(draw) -> dict:
    p = draw(logits_examples())
    p["p"] = draw(st.sampled_from(["midgap", "midgap", 0.25, 0.5, 0.9, 0.95]))
    p["gap"] = draw(st.integers(0, 11))
    return p


@st.composite
def threshold_examples(draw, literals: tuple) -> dict:
    p = draw(logits_examples())
    p["p"] = draw(st.sampled_from(("midgap", "midgap") + literals))
    p["gap"] = draw(st.integers(0, 11))
    return p


@st.composite
def penalty_examples(draw, penalties=(0.5, 0.8, 1.2, 1.5, 2.0)) -> dict:
    p = draw(logits_examples(max_vocab=10))
    p["L"] = draw(st.integers(1, 8))
    p["penalty"] = draw(st.sampled_from(penalties))
    return p


@st.composite
def presence_examples(draw) -> dict:
    p = draw(logits_examples(max_vocab=10))
    p["L"] = draw(st.integers(0, 8))
    p["presence"] = draw(st.sampled_from([0.0, 0.5, 1.5, -0.5]))
    p["frequency"] = draw(st.sampled_from([0.0, 0.3, 1.0, -0.3]))
    return p


# --- rounding slack and thresholds far from every boundary ---------------------------------------------------


def eps(ctx: Context) -> float:
    return torch.finfo(ctx.dtype).eps


def mass_slack(ctx: Context, vocab: int) -> float:
    """How far a cumulative mass computed in the target's dtype may be from the exact one: a sequential sum of
    V probabilities rounds at most (V - 1) / 2 eps, each probability carries ~1.5 eps, and 1 - p rounds once."""
    return (vocab / 2 + 3) * eps(ctx)


def ratio_slack(ctx: Context) -> float:
    """Relative error of a probability (or a ratio of two) computed by softmax in the target's dtype."""
    return 8 * eps(ctx)


def midgap(values: torch.Tensor, position: int) -> float:
    """The middle of one of the gaps between the distinct values of a 1-d sequence, chosen by position."""
    distinct = values.unique(sorted=True).flip(0)
    if distinct.numel() == 1:
        return float(distinct[0]) / 2
    j = position % (distinct.numel() - 1)
    return float(distinct[j] + distinct[j + 1]) / 2
