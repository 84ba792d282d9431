"""Samplers: `sample` and the fused `top_k_sample`, `top_p_sample`, `min_p_sample` (the shape of FlashInfer's
and vLLM's sampling kernels). Two kinds of check are kept apart:

- hard support: a filtered token is never drawn, every kept token is drawn (with a miss probability < e^-20);
- statistical frequency: Pearson's chi-square test (spec/statistics.py) of the draws against the filtered,
  renormalized float64 distribution, DRAWS draws per row, rejecting at false-alarm rate ALPHA per example.
  Cosine similarity is not used: a sampler that drops the lowest 5% of the mass still scores 0.998 on it, and
  fails this test.

Draws are made by one target call on DRAWS copies of each row, with a generator seeded from the example, so
every verdict is deterministic. The same generator state must give the same draws. Each check is one table with a
row per sampler; `param` names the sampler's filter parameter (None for `sample`).
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference import sampling as ref
from ..checks import to64
from ..core import Component, Context, invariant, row
from ..statistics import chi_square_test
from ..strategies import layouts, relayout, scaled, seeds, sizes
from .inputs import HF, VLLM, VOCABS, listed, mass_slack, ratio_slack
from .processors import prefix_judgement

DRAWS = 3000  # per distinct row; two distinct rows per call
ALPHA = 1e-6
ROWS = 2
FLASHINFER = "FlashInfer sampling.py (top_k_sampling_from_probs, top_p_sampling_from_probs, min_p_sampling_from_probs)"

SAMPLE = Component(
    name="sample",
    signature="sample(logits: Float[B, V], generator: torch.Generator) -> Int[B]",
    summary="One token per row drawn from softmax(logits).",
    reference=ref.sample,
)
TOP_K_SAMPLE = Component(
    name="top_k_sample",
    signature="top_k_sample(logits: Float[B, V], k: int, generator: torch.Generator) -> Int[B]",
    summary="One token per row drawn from the top-k distribution.",
    reference=ref.top_k_sample,
)
TOP_P_SAMPLE = Component(
    name="top_p_sample",
    signature="top_p_sample(logits: Float[B, V], p: float, generator: torch.Generator) -> Int[B]",
    summary="One token per row drawn from the top-p distribution.",
    reference=ref.top_p_sample,
)
MIN_P_SAMPLE = Component(
    name="min_p_sample",
    signature="min_p_sample(logits: Float[B, V], p: float, generator: torch.Generator) -> Int[B]",
    summary="One token per row drawn from the min-p distribution.",
    reference=ref.min_p_sample,
)


# --- inputs: logits = log(w) with w in [1, 8], so every kept token has renormalized probability >= 1 / (8 V) -----


@st.composite
def _sampler_examples(draw, param: str | None) -> dict:
    p = {"V": draw(sizes(2, 12)), "seed": draw(seeds()), "grid": draw(st.booleans()), "layout": draw(layouts()),
         "masked": draw(st.integers(0, 3)) if param is None else 0}
    if param is not None:
        p["gap"] = draw(st.integers(0, 11))
    return p


def _rows64(p: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(p["seed"])
    w = torch.rand(ROWS, p["V"], generator=gen, dtype=torch.float64) * 7 + 1
    if p["grid"]:
        w = w.floor()  # integer weights: many exact ties
    x = w.log()
    if p["masked"]:  # `sample`: some tokens already filtered (-inf), never the first
        masked = torch.rand(ROWS, p["V"], generator=gen) < p["masked"] / 4
        masked[:, 0] = False
        x = x.masked_fill(masked, float("-inf"))
    return x


def _parameter(ctx: Context, name: str, x64: torch.Tensor, p: dict):
    """The filter parameter, far from every boundary of every row: ties are never split, and a threshold is never
    within the target dtype's rounding of a token's mass or ratio (if no candidate is, the filter is disabled)."""
    if name == "k":
        return 1 + p["gap"] % p["V"]
    if name == "p_top":
        candidates = sorted({value for r in x64 for value in _block_ends(r)})
        safe = [c for c in candidates if all(_top_p_safe(r, c, 2 * mass_slack(ctx, p["V"])) for r in x64)]
        return safe[p["gap"] % len(safe)] if safe else 1.0
    if name == "p_min":
        logs = [(r - r.max()).unique(sorted=True) for r in x64]
        candidates = sorted({float(a + b) / 2 for lr in logs for a, b in zip(lr[:-1], lr[1:])})
        margin = 4 * ratio_slack(ctx)
        safe = [c for c in candidates if all(bool(((lr - c).abs() > margin).all()) for lr in logs)]
        return math.exp(safe[p["gap"] % len(safe)]) if safe else 0.0
    raise KeyError(name)


def _block_ends(x_row: torch.Tensor) -> list[float]:
    """Top-p thresholds halfway into the mass of the last token of each block of tied tokens."""
    q = x_row.softmax(-1).sort(descending=True).values
    return [float(q[:e].sum() + q[e] / 2) for e in range(q.numel())
            if e == q.numel() - 1 or q[e] > q[e + 1] * (1 + 1e-9)]


def _top_p_safe(x_row: torch.Tensor, p: float, margin: float) -> bool:
    """p is not within `margin` of a prefix mass of the row, and the boundary token is the last of its tie block."""
    q = x_row.softmax(-1).sort(descending=True).values
    masses = q.cumsum(0)
    if bool(((masses - p).abs() <= margin).any()):
        return False
    e = int((masses < p).sum())  # the boundary token: the first whose inclusive mass reaches p
    return e >= q.numel() - 1 or bool(q[e] > q[e + 1] * (1 + 1e-9))


def _kept_distribution(name: str, x64: torch.Tensor, value) -> torch.Tensor:
    filtered = {"k": ref.top_k, "p_top": ref.top_p, "p_min": ref.min_p, None: lambda x, _: x}[name](x64, value)
    return filtered.softmax(-1)


def _draws(ctx: Context, p: dict, name: str | None, seed_salt: int = 0):
    """(row logits in float64, the parameter, expected distribution [ROWS, V], draws [ROWS, DRAWS])."""
    x = relayout(_rows64(p).to(ctx.dtype).repeat_interleave(DRAWS, dim=0).to(ctx.device), p["layout"])
    x64 = to64(x)[::DRAWS]  # what the target sees, rounded to its dtype
    value = _parameter(ctx, name, x64, p) if name else None
    gen = torch.Generator(device=ctx.device).manual_seed(p["seed"] + seed_salt)
    out = ctx.target(x, generator=gen) if name is None else ctx.target(x, value, generator=gen)
    return x64, value, _kept_distribution(name, x64, value), _validate(ctx, out, x.shape[0], p["V"])


def _validate(ctx: Context, out, n: int, vocab: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.is_floating_point() or out.dtype == torch.bool:
        ctx.fail(f"sampler returned {type(out).__name__} {getattr(out, 'dtype', '')}, expected integer token ids")
    if tuple(out.shape) != (n,):
        ctx.fail(f"sampler returned shape {tuple(out.shape)}, expected ({n},): one token per row")
    if out.device.type != ctx.device.type:
        ctx.fail(f"sampler returned ids on {out.device}, expected {ctx.device}")
    ids = out.detach().cpu().to(torch.int64)
    if ((ids < 0) | (ids >= vocab)).any():
        ctx.fail(f"sampler returned an id outside [0, {vocab}): {int(ids[(ids < 0) | (ids >= vocab)][0])}")
    return ids.view(ROWS, -1)


def _describe(name, value) -> str:
    return "" if name is None else f" ({'k' if name == 'k' else 'p'} = {value:.6g})"


# --- the fields every row of a sampler shares: its filter parameter, examples, and sources --------------------

_SAMPLE = dict(param=None, examples=_sampler_examples(None),
               source=f"{HF} GenerationMixin._sample (torch.multinomial(softmax(scores), 1)); "
               f"{VLLM} Sampler.random_sample")
_TOP_K = dict(param="k", examples=_sampler_examples("k"),
              source=f"Fan et al. 2018; {FLASHINFER}; {VLLM} TopKTopPSampler")
_TOP_P = dict(param="p_top", examples=_sampler_examples("p_top"),
              source=f"Holtzman et al. 2020; {FLASHINFER}; {VLLM} TopKTopPSampler")
_MIN_P = dict(param="p_min", examples=_sampler_examples("p_min"),
              source=f"Nguyen et al. 2024; {FLASHINFER}; {VLLM} MinPLogitsProcessor")


@invariant(
    row("sample.support.filtered_never_drawn", **_SAMPLE,
        statement=f"The sampler never draws tokens with -inf logits ({ROWS} x {DRAWS} draws)."),
    row("top_k_sample.support.filtered_never_drawn", **_TOP_K,
        statement=f"The sampler never draws tokens the top-k filter removes ({ROWS} x {DRAWS} draws)."),
    row("top_p_sample.support.filtered_never_drawn", **_TOP_P,
        statement=f"The sampler never draws tokens the top-p filter removes ({ROWS} x {DRAWS} draws)."),
    row("min_p_sample.support.filtered_never_drawn", **_MIN_P,
        statement=f"The sampler never draws tokens the min-p filter removes ({ROWS} x {DRAWS} draws)."),
    kind="property",
)
def check_support(ctx: Context, p: dict, param: str | None) -> None:
    x64, value, q, ids = _draws(ctx, p, param)
    drawn = torch.zeros(ROWS, p["V"], dtype=torch.bool).scatter_(1, ids, True)
    bad = drawn & (q == 0)
    if bad.any():
        b, i = (int(v) for v in bad.nonzero()[0])
        ctx.fail(f"row {b}: drew token {i}, which the filter removes{_describe(param, value)}; kept set "
                 f"{listed(q[b] > 0)}", row=b, token=i)


@invariant(
    row("sample.support.kept_all_reachable", **_SAMPLE),
    row("top_k_sample.support.kept_all_reachable", **_TOP_K),
    row("top_p_sample.support.kept_all_reachable", **_TOP_P),
    row("min_p_sample.support.kept_all_reachable", **_MIN_P),
    kind="property",
    statement=f"Every kept token (renormalized probability >= 1/(8V)) is drawn at least once in {DRAWS} draws "
    "(miss probability < e^-20 per token).",
)
def check_reachable(ctx: Context, p: dict, param: str | None) -> None:
    x64, value, q, ids = _draws(ctx, p, param)
    drawn = torch.zeros(ROWS, p["V"], dtype=torch.bool).scatter_(1, ids, True)
    missed = (q > 0) & ~drawn
    if missed.any():
        b, i = (int(v) for v in missed.nonzero()[0])
        ctx.fail(f"row {b}: kept token {i} (probability {float(q[b, i]):.4g}) never drawn in {DRAWS} draws "
                 f"(chance {math.exp(DRAWS * math.log1p(-float(q[b, i]))):.2g}){_describe(param, value)}",
                 row=b, token=i)


@invariant(
    row("sample.frequency.chi_square", **_SAMPLE),
    row("top_k_sample.frequency.chi_square", **_TOP_K),
    row("top_p_sample.frequency.chi_square", **_TOP_P),
    row("min_p_sample.frequency.chi_square", **_MIN_P),
    kind="statistical",
    statement=f"Draw frequencies match the filtered, renormalized float64 distribution: Pearson chi-square over the "
    f"kept tokens, {DRAWS} draws per row, false-alarm rate {ALPHA:g} per example.",
)
def check_frequencies(ctx: Context, p: dict, param: str | None) -> None:
    x64, value, q, ids = _draws(ctx, p, param)
    for b in range(ROWS):
        support = q[b] > 0
        counts = torch.bincount(ids[b], minlength=p["V"])
        if (counts[~support] > 0).any():
            ctx.fail(f"row {b}: drew removed tokens {listed(~support & (counts > 0))}", row=b)
        statistic, df, pvalue = chi_square_test(counts[support], q[b][support])
        if pvalue < ALPHA / ROWS:
            ctx.fail(f"row {b}: frequencies {counts[support].tolist()} in {DRAWS} draws differ from the renormalized "
                     f"distribution {[round(float(v), 4) for v in q[b][support]]}{_describe(param, value)}: "
                     f"chi-square {statistic:.1f} with {df} df, p-value {pvalue:.2g} < {ALPHA / ROWS:g}",
                     row=b, statistic=statistic, pvalue=pvalue)


# --- kernel scale: vocabularies past a kernel's tile, sizes of the filtered set in the thousands -----------------
#
# DRAWS draws of a row of 151936 tokens would be a target input of gigabytes, and no per-token frequency can be
# checked with a few thousand draws over thousands of kept tokens. At kernel scale the rows are near-flat (weights
# in [1, 1.5]) with up to three heavy tokens (each ~ 0.05 V, at ids past 32767 and 65535 in real vocabularies);
# each row is drawn a number of times that keeps the input under LARGE_ELEMENTS elements, and the draws are judged
# in BINS bins of tokens: bins of equal mass by rank (a sampler drawing from a 1024-wide candidate buffer never
# reaches the last ones) and bins of equal mass by id (a sampler whose ids wrap past 32767 draws the wrong ones).
# A token whose fate is within the dtype's rounding (top-p, min-p) is neither surely kept nor surely removed: draws
# landing there are not counted, and the others are compared with the distribution conditioned on the surely kept
# tokens, which does not depend on that choice.

#: vocabularies past a 1024-wide candidate list and a 4096-wide block, and GPT-2's (ids past 32767); the other real
#: vocabularies at scale "production" (drawing a row of 151936 tokens 48 times costs seconds on a CPU).
LARGE_VOCABS = (1025, 4097, 50257)
PRODUCTION_VOCABS = VOCABS
LARGE_ELEMENTS = 2**19
MIN_LARGE_DRAWS = 24
BINS = 4
MIN_EXPECTED = 5.0  # bins are merged until each expects this many draws (the chi-square approximation's rule)
#: the filter parameter as a fraction f of the vocabulary: k = ceil(f V), top-p p = f, min-p the ratio of the
#: token at rank ceil(f V) (with f >= 0.25 the filtered set of a near-flat row holds thousands of tokens).
FRACTIONS = (0.25, 0.5, 0.75, 0.9)


@st.composite
def _large_examples(draw, param: str | None) -> dict:
    vocab = scaled(sizes(2, 12), st.sampled_from(LARGE_VOCABS), st.sampled_from(PRODUCTION_VOCABS))
    return {"V": draw(vocab), "heavy": draw(st.integers(0, 3)),
            "fraction": draw(st.sampled_from(FRACTIONS)), "seed": draw(seeds()), "layout": draw(layouts())}


def _large_rows64(p: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(p["seed"])
    vocab = p["V"]
    w = 1 + 0.5 * torch.rand(ROWS, vocab, generator=gen, dtype=torch.float64)
    heavy = sorted({vocab - 1, (vocab - 1) * 3 // 4, vocab // 3})[::-1][: p["heavy"]]
    w[:, heavy] = max(0.05 * vocab, 2.0)
    return w.log()


def large_draw_count(vocab: int) -> int:
    return max(MIN_LARGE_DRAWS, min(DRAWS, LARGE_ELEMENTS // (ROWS * vocab)))


def _large_parameter(name: str, x64: torch.Tensor, fraction: float):
    rank = max(1, math.ceil(fraction * x64.shape[-1]))
    if name == "k":
        return rank
    if name == "p_top":
        return fraction
    ratios = (x64[0] - x64[0].max()).exp().sort(descending=True).values
    below = float(ratios[rank]) if rank < ratios.numel() else 0.0
    return math.sqrt(float(ratios[rank - 1]) * below) if below > 0 else float(ratios[-1]) / 2


def _surely(ctx: Context, name: str | None, x64: torch.Tensor, value) -> tuple[torch.Tensor, torch.Tensor]:
    """(surely kept, surely removed) tokens of each row, from the float64 logits the target saw."""
    if name in (None, "k"):
        kept = _kept_distribution(name, x64, value) > 0
        return kept, ~kept
    if name == "p_top":
        return prefix_judgement(x64, x64.softmax(-1), value, mass_slack(ctx, x64.shape[-1]))
    ratio = (x64 - x64.amax(-1, keepdim=True)).exp()
    slack = ratio_slack(ctx)
    p_max = x64.softmax(-1).amax(-1, keepdim=True)
    underflow = (ratio * p_max < torch.finfo(ctx.dtype).tiny) & (value * p_max < torch.finfo(ctx.dtype).tiny)
    return ratio >= value * (1 + slack), (ratio < value * (1 - slack)) & ~underflow


def _binned_test(ids: torch.Tensor, weights: torch.Tensor, order: torch.Tensor) -> tuple[list, list, float, int, float]:
    """Pearson chi-square of the draws `ids` (all in the support of `weights`) over bins of consecutive tokens of
    `order` carrying equal mass, merged until each expects MIN_EXPECTED draws: (counts, expected, statistic, df,
    p-value)."""
    w = weights[order] / weights.sum()
    bin_of = torch.empty_like(order)
    bin_of[order] = ((w.cumsum(0) - w) * BINS).floor().clamp(max=BINS - 1).to(order.dtype)
    mass = torch.zeros(BINS, dtype=torch.float64).index_add_(0, bin_of, weights / weights.sum())
    counts = torch.bincount(bin_of[ids], minlength=BINS).to(torch.float64)
    n = float(ids.numel())
    groups, current = [], []
    for b in range(BINS):  # merge consecutive bins until each expects MIN_EXPECTED draws
        current.append(b)
        if float(mass[current].sum()) * n >= MIN_EXPECTED:
            groups.append(current)
            current = []
    if current and groups:
        groups[-1] += current
    merged_counts = torch.stack([counts[g].sum() for g in groups]) if groups else counts[:0]
    merged_mass = torch.stack([mass[g].sum() for g in groups]) if groups else mass[:0]
    if len(groups) < 2:
        return merged_counts.tolist(), (merged_mass * n).tolist(), 0.0, 0, 1.0
    statistic, df, pvalue = chi_square_test(merged_counts, merged_mass)
    return merged_counts.tolist(), (merged_mass * n).tolist(), statistic, df, pvalue


_LARGE = dict(kind="statistical", budget=0.5,
              statement=f"Over vocabularies past a kernel's tile (kernel scale: {', '.join(map(str, LARGE_VOCABS))} "
              f"tokens; production: {', '.join(map(str, PRODUCTION_VOCABS))}), near-flat rows with heavy tokens at "
              "ids past 32767 and 65535, filtered sets of thousands of tokens, each row drawn max(24, min(3000, "
              "2^19 / (2 V))) times, the sampler never draws a token its filter surely removes, and its draws among "
              f"the surely kept tokens fall in {BINS} bins of equal mass by rank and {BINS} by token id with the "
              f"frequencies of the renormalized distribution (Pearson chi-square, false-alarm rate {ALPHA:g} per "
              "example).")


@invariant(
    row("sample.large_vocab.binned_frequency", param=None, examples=_large_examples(None), source=_SAMPLE["source"],
        **_LARGE),
    row("top_k_sample.large_vocab.binned_frequency", param="k", examples=_large_examples("k"),
        source=f"{_TOP_K['source']}; vLLM PR 1416 (a top-k kernel limited to k <= 1024)", **_LARGE),
    row("top_p_sample.large_vocab.binned_frequency", param="p_top", examples=_large_examples("p_top"),
        source=f"{_TOP_P['source']}; FlashInfer's rejection sampling over the whole vocabulary", **_LARGE),
    row("min_p_sample.large_vocab.binned_frequency", param="p_min", examples=_large_examples("p_min"),
        source=_MIN_P["source"], **_LARGE),
)
def check_large_vocab(ctx: Context, p: dict, param: str | None) -> None:
    draws = large_draw_count(p["V"])
    x = relayout(_large_rows64(p).to(ctx.dtype).repeat_interleave(draws, dim=0).to(ctx.device), p["layout"])
    x64 = to64(x[::draws])
    value = _large_parameter(param, x64, p["fraction"]) if param else None
    gen = torch.Generator(device=ctx.device).manual_seed(p["seed"])
    out = ctx.target(x, generator=gen) if param is None else ctx.target(x, value, generator=gen)
    ids = _validate(ctx, out, x.shape[0], p["V"]).view(ROWS, draws)
    keep, remove = _surely(ctx, param, x64, value)
    probs = x64.softmax(-1)
    for b in range(ROWS):
        bad = remove[b, ids[b]]
        if bad.any():
            token = int(ids[b][bad][0])
            ctx.fail(f"row {b} of {p['V']} tokens: drew token {token} (probability {float(probs[b, token]):.3g}), "
                     f"which the filter removes{_describe(param, value)}; {int(keep[b].sum())} tokens are surely kept",
                     row=b, token=token)
        counted = ids[b][keep[b, ids[b]]]
        if counted.numel() == 0:  # nothing surely kept (every token within rounding of the threshold)
            continue
        weights = torch.where(keep[b], probs[b], torch.zeros_like(probs[b]))
        by_rank = torch.sort(-weights, stable=True).indices
        for what, order in (("rank", by_rank), ("token id", torch.arange(p["V"]))):
            counts, expected, statistic, df, pvalue = _binned_test(counted, weights, order)
            if pvalue < ALPHA / (2 * ROWS):
                ctx.fail(f"row {b} of {p['V']} tokens: {len(counted)} draws among the {int(keep[b].sum())} surely kept "
                         f"tokens fall in bins of equal mass by {what} as {[int(c) for c in counts]}, expected "
                         f"{[round(e, 1) for e in expected]}{_describe(param, value)}: chi-square {statistic:.1f} with "
                         f"{df} df, p-value {pvalue:.2g} < {ALPHA / (2 * ROWS):g}", row=b, statistic=statistic,
                         pvalue=pvalue)


@invariant(
    row("sample.generator.reproducible", **_SAMPLE),
    row("top_k_sample.generator.reproducible", **_TOP_K),
    row("top_p_sample.generator.reproducible", **_TOP_P),
    row("min_p_sample.generator.reproducible", **_MIN_P),
    kind="property",
    statement="Two calls with generators seeded alike return identical draws.",
)
def check_reproducible(ctx: Context, p: dict, param: str | None) -> None:
    first, second = _draws(ctx, p, param)[3], _draws(ctx, p, param)[3]
    if not torch.equal(first, second):
        ctx.fail("two calls with generators in the same state drew different tokens (draws must come from `generator`)")
