"""Samplers: `sample` and the fused `top_k_sample`, `top_p_sample`, `min_p_sample` (the shape of FlashInfer's
and vLLM's sampling kernels). Two kinds of check are kept apart:

- hard support: a filtered token is never drawn, every kept token is drawn (with a miss probability < e^-20);
- statistical frequency: Pearson's chi-square test of the draws against the filtered, renormalized float64
  distribution, DRAWS draws per row, rejecting at false-alarm rate ALPHA per example (the chi-square survival
  function is computed with torch.special.gammaincc, no scipy needed). Cosine similarity is not used: a sampler
  that drops the lowest 5% of the mass still scores 0.998 on it, and fails this test.

Draws are made by one target call on DRAWS copies of each row, with a generator seeded from the example, so
every verdict is deterministic. The same generator state must give the same draws.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference import sampling as ref
from ..checks import to64
from ..core import Component, Context, Invariant
from .processors import HF, VLLM, mass_slack, ratio_slack
from ..strategies import layouts, relayout, seeds, sizes

DRAWS = 3000  # per distinct row; two distinct rows per call
ALPHA = 1e-6
ROWS = 2
FLASHINFER = "FlashInfer sampling.py (top_k_sampling_from_probs, top_p_sampling_from_probs, min_p_sampling_from_probs)"


def chi_square_pvalue(statistic: float, df: int) -> float:
    """P(X >= statistic) for X ~ chi-square(df): the regularized upper incomplete gamma Q(df / 2, statistic / 2)."""
    if df <= 0:
        return 1.0
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(statistic / 2, dtype=torch.float64)))


def chi_square_test(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int, float]:
    """Pearson's statistic of observed counts against probabilities (both over the same support), its degrees of
    freedom and p-value. Expected counts must be >= 5 for the chi-square approximation (callers ensure >= 20)."""
    n = float(counts.sum())
    expected = probs.to(torch.float64) * n
    statistic = float(((counts.to(torch.float64) - expected) ** 2 / expected).sum())
    df = counts.numel() - 1
    return statistic, df, chi_square_pvalue(statistic, df)


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
        candidates = sorted({value for row in x64 for value in _block_ends(row)})
        safe = [c for c in candidates if all(_top_p_safe(row, c, 2 * mass_slack(ctx, p["V"])) for row in x64)]
        return safe[p["gap"] % len(safe)] if safe else 1.0
    if name == "p_min":
        logs = [(row - row.max()).unique(sorted=True) for row in x64]
        candidates = sorted({float(a + b) / 2 for lr in logs for a, b in zip(lr[:-1], lr[1:])})
        margin = 4 * ratio_slack(ctx)
        safe = [c for c in candidates if all(bool(((lr - c).abs() > margin).all()) for lr in logs)]
        return math.exp(safe[p["gap"] % len(safe)]) if safe else 0.0
    raise KeyError(name)


def _block_ends(row: torch.Tensor) -> list[float]:
    """Top-p thresholds halfway into the mass of the last token of each block of tied tokens."""
    q = row.softmax(-1).sort(descending=True).values
    return [float(q[:e].sum() + q[e] / 2) for e in range(q.numel()) if e == q.numel() - 1 or q[e] > q[e + 1] * (1 + 1e-9)]


def _top_p_safe(row: torch.Tensor, p: float, margin: float) -> bool:
    """p is not within `margin` of a prefix mass of the row, and the boundary token is the last of its tie block."""
    q = row.softmax(-1).sort(descending=True).values
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
    return ids.view(ROWS, DRAWS)


def _describe(name, value) -> str:
    return "" if name is None else f" ({'k' if name == 'k' else 'p'} = {value:.6g})"


def _check_support(name):
    def check(ctx: Context, p: dict) -> None:
        x64, value, q, ids = _draws(ctx, p, name)
        drawn = torch.zeros(ROWS, p["V"], dtype=torch.bool).scatter_(1, ids, True)
        bad = drawn & (q == 0)
        if bad.any():
            b, i = (int(v) for v in bad.nonzero()[0])
            ctx.fail(f"row {b}: drew token {i}, which the filter removes{_describe(name, value)}; kept set "
                     f"{(q[b] > 0).nonzero().flatten().tolist()}", row=b, token=i)
    return check


def _check_reachable(name):
    def check(ctx: Context, p: dict) -> None:
        x64, value, q, ids = _draws(ctx, p, name)
        drawn = torch.zeros(ROWS, p["V"], dtype=torch.bool).scatter_(1, ids, True)
        missed = (q > 0) & ~drawn
        if missed.any():
            b, i = (int(v) for v in missed.nonzero()[0])
            ctx.fail(f"row {b}: kept token {i} (probability {float(q[b, i]):.4g}) never drawn in {DRAWS} draws "
                     f"(chance {math.exp(DRAWS * math.log1p(-float(q[b, i]))):.2g}){_describe(name, value)}", row=b, token=i)
    return check


def _check_frequencies(name):
    def check(ctx: Context, p: dict) -> None:
        x64, value, q, ids = _draws(ctx, p, name)
        for b in range(ROWS):
            support = q[b] > 0
            counts = torch.bincount(ids[b], minlength=p["V"])
            if (counts[~support] > 0).any():
                ctx.fail(f"row {b}: drew removed tokens {(~support & (counts > 0)).nonzero().flatten().tolist()}", row=b)
            statistic, df, pvalue = chi_square_test(counts[support], q[b][support])
            if pvalue < ALPHA / ROWS:
                ctx.fail(f"row {b}: frequencies {counts[support].tolist()} in {DRAWS} draws differ from the renormalized "
                         f"distribution {[round(float(v), 4) for v in q[b][support]]}{_describe(name, value)}: chi-square "
                         f"{statistic:.1f} with {df} df, p-value {pvalue:.2g} < {ALPHA / ROWS:g}", row=b, statistic=statistic, pvalue=pvalue)
    return check


def _check_reproducible(name):
    def check(ctx: Context, p: dict) -> None:
        first, second = _draws(ctx, p, name)[3], _draws(ctx, p, name)[3]
        if not torch.equal(first, second):
            ctx.fail("two calls with generators in the same state drew different tokens (draws must come from `generator`)")
    return check


def _sampler(name: str, fn_name: str, param: str | None, filter_doc: str, source: str) -> Component:
    signature = (f"{fn_name}(logits: Float[B, V]" + ("" if param is None else f", {'k: int' if param == 'k' else 'p: float'}")
                 + ", generator: torch.Generator) -> Int[B]")
    support = "tokens with -inf logits" if param is None else f"tokens the {filter_doc} filter removes"
    inv = lambda suffix, statement, kind, check, budget=1.0: Invariant(  # noqa: E731
        f"{fn_name}.{suffix}", statement, source, kind, _sampler_examples(param), check, budget=budget)
    return Component(
        name=fn_name,
        family="sampling",
        signature=signature,
        summary=f"One token per row drawn from the {filter_doc} distribution." if param else "One token per row drawn from softmax(logits).",
        reference=getattr(ref, fn_name),
        invariants=(
            inv("support.filtered_never_drawn", f"The sampler never draws {support} ({ROWS} x {DRAWS} draws).", "property",
                _check_support(param)),
            inv("support.kept_all_reachable",
                f"Every kept token (renormalized probability >= 1/(8V)) is drawn at least once in {DRAWS} draws "
                "(miss probability < e^-20 per token).", "property", _check_reachable(param)),
            inv("frequency.chi_square",
                f"Draw frequencies match the filtered, renormalized float64 distribution: Pearson chi-square over the kept "
                f"tokens, {DRAWS} draws per row, false-alarm rate {ALPHA:g} per example.", "statistical", _check_frequencies(param)),
            inv("generator.reproducible", "Two calls with generators seeded alike return identical draws.", "property",
                _check_reproducible(param)),
        ),
    )


SAMPLE = _sampler("sample", "sample", None, "softmax", f"{HF} GenerationMixin._sample (torch.multinomial(softmax(scores), 1)); "
                  f"{VLLM} Sampler.random_sample")
TOP_K_SAMPLE = _sampler("top_k_sample", "top_k_sample", "k", "top-k", f"Fan et al. 2018; {FLASHINFER}; {VLLM} TopKTopPSampler")
TOP_P_SAMPLE = _sampler("top_p_sample", "top_p_sample", "p_top", "top-p", f"Holtzman et al. 2020; {FLASHINFER}; {VLLM} TopKTopPSampler")
MIN_P_SAMPLE = _sampler("min_p_sample", "min_p_sample", "p_min", "min-p", f"Nguyen et al. 2024; {FLASHINFER}; {VLLM} MinPLogitsProcessor")

COMPONENTS = (SAMPLE, TOP_K_SAMPLE, TOP_P_SAMPLE, MIN_P_SAMPLE)
