"""What the sampling checks draw and share: logits and token ids from small parameter dicts, the example strategies
used by more than one module, the rounding slack of masses and ratios in the target's dtype, and the sources."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ..core import Context
from ..strategies import PATTERNS, layouts, materialize, patterns, scaled, seeds, sizes

HF = "transformers 5.23 generation/logits_process.py"
VLLM = "vLLM v1 (vllm/v1/sample)"

#: vocabularies at the edges of a sampling kernel's tiles: a 1024-wide candidate list, a 4096-wide block.
VOCAB_EDGES = (1023, 1024, 1025, 4095, 4096, 4097)
#: real models' vocabularies (Llama 2, GPT-2, Llama 3, Qwen2): their ids pass 32767 (int16) and 65535 (uint16).
VOCABS = (32000, 50257, 128256, 151936)
#: a kernel-scale example has a few rows: the vocabulary is the large dimension.
KERNEL_ROWS = 2
#: a production-scale example: a decoding batch over a real vocabulary.
PRODUCTION_ROWS = (8, 32)
#: at kernel scale logits may also be near-flat (normal draws x 0.05): a nucleus, a min-p set and a top-k set then
#: hold thousands of tokens, more than a 1024-wide candidate buffer.
FLAT = "flat"


@st.composite
def logits_examples(draw, min_vocab: int = 1, max_vocab: int = 12, max_batch: int = 3,
                    kernel_vocabs: tuple[int, ...] = VOCAB_EDGES + VOCABS) -> dict:
    """B rows over V tokens: small (B <= max_batch, V <= max_vocab), or at kernel scale 1-2 rows over a vocabulary
    at a tile edge or of a real model (near-flat logits among the patterns), or at production scale a batch of them."""
    small = st.tuples(sizes(1, max_batch), sizes(min_vocab, max_vocab), patterns())
    kernel = st.tuples(sizes(1, KERNEL_ROWS), st.sampled_from(kernel_vocabs), st.sampled_from((FLAT,) + PATTERNS))
    production = st.tuples(st.sampled_from(PRODUCTION_ROWS), st.sampled_from(VOCABS),
                           st.sampled_from((FLAT,) + PATTERNS))
    batch, vocab, pattern = draw(scaled(small, kernel, production))
    return {
        "B": batch,
        "V": vocab,
        "seed": draw(seeds()),
        "pattern": pattern,
        "layout": draw(layouts()),
    }


def logits(ctx: Context, p: dict, pattern: str | None = None, salt: int = 0) -> torch.Tensor:
    pattern = pattern or p["pattern"]
    flat = pattern == FLAT
    return materialize((p["B"], p["V"]), p["seed"], ctx.dtype, ctx.device, "normal" if flat else pattern, salt=salt,
                       layout=p["layout"], magnitude=0.05 if flat else 1.0)


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


def listed(ids: torch.Tensor, limit: int = 16) -> str:
    """Token ids (or a boolean mask's) for a message: all of a small set, the first `limit` of a large one."""
    values = (ids.nonzero().flatten() if ids.dtype == torch.bool else ids.flatten()).tolist()
    return str(values) if len(values) <= limit else f"[{', '.join(map(str, values[:limit]))}, ...] ({len(values)} ids)"
