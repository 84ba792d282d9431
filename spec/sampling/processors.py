"""Logits processors: temperature, top-k, top-p, min-p, epsilon, typical. Penalties are in penalties.py; each
processor's neutral value (the identity) is checked in neutral.py.

A filter's output is judged exactly: a kept logit is the input logit bit for bit, a removed one is -inf. Where a
filter compares probability mass or ratios with a threshold, a target computing in a low-precision dtype may
decide a token within rounding of the threshold either way; such a token is "ambiguous" and either decision
conforms (the slack is stated at each check). Thresholds are chosen in the middle of the gaps between the
distribution's own masses, so the tested decisions are far from exact boundaries.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from ...reference import sampling as ref
from ..checks import PROPERTY_ULPS, assert_within, differential, expect_tensor, show, to64
from ..core import Component, Context, Option, invariant
from ..gradients import BACKWARD
from ..strategies import layouts, relayout, scaled, seeds, sizes
from .inputs import (HF, VLLM, eps, listed, logits, logits_examples, mass_slack, midgap, ratio_slack,
                     temperature_examples, threshold_examples, top_p_examples)

FILTER_SIGNATURE = "(logits: Float[B, V], {param}) -> Float[B, V]  (removed tokens -inf, kept logits unchanged)"


# --- judging a filter's output -------------------------------------------------------------------------------


def kept_set(ctx: Context, x: torch.Tensor, out, what: str = "output") -> torch.Tensor:
    """The kept mask of a filter's output, after checking shape, dtype, device, and that every entry is either
    the input logit unchanged or -inf."""
    out = expect_tensor(out, tuple(x.shape), ctx.dtype, ctx.device, what=what, finite=False)
    o, xi = out.detach().cpu(), x.detach().cpu()
    kept = o != float("-inf")
    changed = kept & ~(o == xi)
    if changed.any():
        idx = [int(i) for i in changed.nonzero()[0]]
        before, after = show(float(xi[tuple(idx)]), float(o[tuple(idx)]))
        ctx.fail(f"{what}: a kept logit was changed (index {idx}: input {before}, output {after}); a filter keeps "
                 "logits bit for bit or sets them to -inf", index=idx)
    empty = ~kept.any(dim=-1)
    if empty.any():
        ctx.fail(f"{what}: row {int(empty.nonzero()[0])} has every token removed (the kept set is never empty)")
    return kept


def judge(ctx: Context, x: torch.Tensor, kept: torch.Tensor, must_keep: torch.Tensor, must_remove: torch.Tensor,
          what: str, **details) -> None:
    """Fail if a token the spec keeps was removed, or one it removes was kept (ambiguous tokens go either way)."""
    x64 = to64(x)
    for wrong, verb in ((must_keep & ~kept, "removed"), (must_remove & kept, "kept")):
        if wrong.any():
            b, i = (int(v) for v in wrong.nonzero()[0])
            probs = x64[b].softmax(-1)
            ctx.fail(f"{what}: token {i} of row {b} (logit {float(x64[b, i]):.6g}, probability "
                     f"{float(probs[i]):.4g}) was {verb}; kept set {listed(kept[b])}",
                     row=b, token=i, **details)


def nucleus_bounds(q: torch.Tensor, p: float, slack: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest size the minimal set with mass >= p may have when masses are known to +-slack."""
    s = q.sort(dim=-1, descending=True).values.cumsum(dim=-1)
    v = q.shape[-1]
    lo = ((s < p - slack).sum(-1) + 1).clamp(1, v)
    hi = ((s < p + slack).sum(-1) + 1).clamp(1, v)
    return lo, hi


def prefix_judgement(order_key: torch.Tensor, q: torch.Tensor, p: float, slack: float, key_slack: float = 0.0):
    """Tokens ranked by `order_key` (higher first; keys known to +-key_slack); the boundary is where the mass of
    the ranking first reaches p (masses known to +-slack). A token is surely kept when every token that may rank
    before it carries less than p - slack; surely removed when tokens surely ranked before it carry p + slack.

    O(V log V): the mass of the tokens whose key is above a value is read off the keys sorted once."""
    keys, order = order_key.sort(dim=-1)
    keys = keys.contiguous()
    mass = torch.cat([torch.zeros_like(q[..., :1]), q.gather(-1, order).cumsum(-1)], -1)  # mass of the lowest m keys

    def mass_from(bound: torch.Tensor, right: bool) -> torch.Tensor:
        """Mass of the tokens whose key is >= bound (right=False) or > bound (right=True)."""
        return mass[..., -1:] - mass.gather(-1, torch.searchsorted(keys, bound.contiguous(), right=right))

    may_precede = mass_from(order_key - 2 * key_slack, right=False) - q  # key_j >= key_i - 2 key_slack, j != i
    surely_precede = mass_from(order_key + 2 * key_slack, right=True)  # key_j > key_i + 2 key_slack
    return may_precede < p - slack, surely_precede >= p + slack


# --- temperature ---------------------------------------------------------------------------------------------

TEMPERATURE = Component(
    name="temperature",
    signature="temperature(logits: Float[B, V], t: float > 0) -> Float[B, V]  (logits / t)",
    summary="logits / t: t < 1 sharpens, t > 1 flattens, t -> 0 is greedy.",
    reference=ref.temperature,
    features=BACKWARD,
    bound="elementwise",  # processed logits / probabilities: every element is a value in its own right
)


@invariant("temperature.reference.matches", kind="differential", examples=temperature_examples(),
           statement="temperature(logits, t) = logits / t within the tolerance policy.",
           source=f"Hinton et al. 2015, eq. 1; {HF}: TemperatureLogitsWarper")
def check_temperature_reference(ctx: Context, p: dict) -> None:
    differential(ctx, ref.temperature, logits(ctx, p), p["t"])


@invariant("temperature.limit.zero_is_greedy", kind="property", examples=temperature_examples(),
           statement="Every t > 0 keeps the argmax, and as t -> 0 softmax(temperature(x, t)) tends to the greedy "
           "one-hot (uniform over argmax ties); checked at t = 1e-3 on logits whose gaps are >= 0.5.",
           source="Hinton et al. 2015, eq. 1 (limit); vLLM treats temperature < 1e-5 as greedy")
def check_temperature_zero_limit(ctx: Context, p: dict) -> None:
    # grid logits (gaps >= 0.5) at t = 1e-3: softmax(x / t) puts < exp(-500) on every non-maximal token, and the
    # argmax of the tempered logits is the argmax of the logits for every t > 0.
    x = logits(ctx, p, "ties")
    x64 = to64(x)
    is_max = x64 == x64.amax(-1, keepdim=True)
    for t in (1e-3, p["t"]):
        out = to64(expect_tensor(ctx.target(x, t), tuple(x.shape), ctx.dtype, ctx.device, finite=False))
        if not torch.equal(out == out.amax(-1, keepdim=True), is_max):
            ctx.fail(f"temperature {t:g} changed which tokens are the argmax (greedy must be unchanged)", t=t)
    probs = to64(expect_tensor(ctx.target(x, 1e-3), tuple(x.shape), ctx.dtype, ctx.device, finite=False)).softmax(-1)
    expected = is_max.to(torch.float64) / is_max.sum(-1, keepdim=True)
    worst = [int(i) for i in torch.unravel_index((probs - expected).abs().nan_to_num(nan=1.0).argmax(), probs.shape)]
    assert_within(ctx, float(probs[tuple(worst)]), float(expected[tuple(worst)]), PROPERTY_ULPS * eps(ctx),
                  f"at t = 1e-3, softmax(temperature(x, t)) vs the greedy one-hot (uniform over argmax ties) at "
                  f"{worst}")


# --- top-k ---------------------------------------------------------------------------------------------------

TOP_K = Component(
    name="top_k",
    signature="top_k" + FILTER_SIGNATURE.format(param="k: int >= 1"),
    summary="Keep the k largest logits and every token tied with the k-th.",
    reference=ref.top_k,
)


#: k at kernel scale: small, around a 1024-wide candidate buffer, and thousands (clipped to V).
KERNEL_KS = (1, 50, 1023, 1024, 1025, 2048, 4096)


@st.composite
def _top_k_examples(draw) -> dict:
    p = draw(logits_examples())
    large = [k for k in KERNEL_KS if k < p["V"]] + [p["V"] // 2, p["V"]]
    p["k"] = draw(st.integers(1, p["V"]) if p["V"] <= 12 else st.sampled_from(large))
    return p


def _judge_top_k(ctx: Context, x: torch.Tensor, k: int) -> None:
    kept = kept_set(ctx, x, ctx.target(x, k))
    x64 = to64(x)
    kth = x64.sort(dim=-1, descending=True).values[:, k - 1 : k]
    expected = x64 >= kth
    if not torch.equal(kept, expected):
        b = int((kept != expected).any(-1).nonzero()[0])
        dropped_ties = bool((expected[b] & ~kept[b]).any())
        ctx.fail(f"row {b}: kept {listed(kept[b])}, expected every token >= the {k}-th largest "
                 f"value {float(kth[b]):.6g}: {listed(expected[b])}"
                 + (" (tokens tied with the k-th value were dropped)" if dropped_ties else ""), row=b, k=k)


@invariant("top_k.keeps.k_largest_and_ties", kind="property", examples=_top_k_examples(),
           statement="Exactly the tokens whose logit is >= the k-th largest logit are kept (all ties at the k-th value "
           "kept), unchanged; the others are -inf.",
           source=f"Fan et al. 2018, sec. 5.4; {HF}: TopKLogitsWarper (`scores < topk(scores, k)[..., -1]` removed); "
           f"{VLLM} apply_top_k_only")
def check_top_k(ctx: Context, p: dict) -> None:
    _judge_top_k(ctx, logits(ctx, p), p["k"])
    # and a k that cuts through a tie: on grid logits (exact ties), a k whose k-th largest value in some row
    # equals the (k+1)-th, so "k tokens" and "every token >= the k-th value" differ (chosen among such k by p["k"]).
    x = logits(ctx, p, "ties")
    top = to64(x).sort(dim=-1, descending=True).values
    cuts = sorted({j + 1 for j in (top[:, :-1] == top[:, 1:]).any(0).nonzero().flatten().tolist()})
    if cuts:
        _judge_top_k(ctx, x, cuts[p["k"] % len(cuts)])


# --- top-p ---------------------------------------------------------------------------------------------------

TOP_P_TIES = Option(
    name="top_p_ties",
    default="any",
    choices=("any", "lowest_index", "highest_index"),
    doc="which of several tokens tied at the top-p boundary are kept: any choice that keeps the set minimal "
    "(default; HF and vLLM resolve ties by their sort order, which torch does not fix), or the declared rule: the "
    "lowest token ids (a stable descending sort) or the highest (a stable ascending sort, as lmspec's reference)",
)

TOP_P = Component(
    name="top_p",
    signature="top_p" + FILTER_SIGNATURE.format(param="p: float in [0, 1]"),
    summary="Nucleus filtering: keep the smallest set of most probable tokens whose mass is >= p.",
    reference=ref.top_p,
    options=(TOP_P_TIES,),
)


def _nucleus_p(x64_row: torch.Tensor, p: dict, key: str = "p", gap: str = "gap") -> float:
    """A literal p, or one in the middle of a gap between two prefix masses of row 0 (far from every boundary)."""
    if p[key] != "midgap":
        return float(p[key])
    q = x64_row.softmax(-1).sort(descending=True).values
    return midgap(torch.cat([torch.zeros(1, dtype=q.dtype), q.cumsum(0)]), p[gap])


def judge_top_p(ctx: Context, x: torch.Tensor, kept: torch.Tensor, top_p: float, what: str) -> None:
    x64 = to64(x)
    q = x64.softmax(-1)
    slack = mass_slack(ctx, x.shape[-1])
    must_keep, must_remove = prefix_judgement(x64, q, top_p, slack)
    judge(ctx, x, kept, must_keep, must_remove, f"{what} (p = {top_p:.6g}, mass slack {slack:.2g})", p=top_p)
    lo, hi = nucleus_bounds(q, top_p, slack)
    count = kept.sum(-1)
    bad = (count < lo) | (count > hi)
    if bad.any():
        b = int(bad.nonzero()[0])
        ctx.fail(f"{what}: row {b} keeps {int(count[b])} tokens; the smallest set with mass >= p = {top_p:.6g} has "
                 f"{int(lo[b])}" + (f" to {int(hi[b])} (within rounding)" if hi[b] != lo[b] else "") + " tokens",
                 row=b, p=top_p)
    floor_kept = torch.where(kept, x64, torch.full_like(x64, float("inf"))).amin(-1)
    ceil_removed = torch.where(kept, torch.full_like(x64, float("-inf")), x64).amax(-1)
    if (ceil_removed > floor_kept).any():
        b = int((ceil_removed > floor_kept).nonzero()[0])
        removed, kept_logit = show(float(ceil_removed[b]), float(floor_kept[b]))
        ctx.fail(f"{what}: row {b} removed a token with logit {removed} but kept one with {kept_logit} (the kept set "
                 "must be the most probable tokens)", row=b)


@invariant("top_p.keeps.smallest_set", kind="property", examples=top_p_examples(),
           statement="The kept tokens are the most probable ones and the smallest such set whose probability mass is "
           ">= p, the boundary token included; a token within (V/2 + 3) eps of the mass threshold may go either way.",
           source=f"Holtzman et al. 2020, eq. 3; {HF}: TopPLogitsWarper (ascending cumsum <= 1 - p removed); "
           f"{VLLM} apply_top_k_top_p")
def check_top_p(ctx: Context, p: dict) -> None:
    x = logits(ctx, p)
    top_p = _nucleus_p(to64(x)[0], p)
    judge_top_p(ctx, x, kept_set(ctx, x, ctx.target(x, top_p)), top_p, "top-p")


@invariant("top_p.nonempty.tiny_p", kind="property", examples=top_p_examples(),
           statement="A tiny p (1e-9) keeps exactly one token, a most probable one: the kept set is never empty.",
           source=f"{HF}: TopPLogitsWarper (min_tokens_to_keep = 1); vLLM keeps the last sorted token")
def check_top_p_tiny(ctx: Context, p: dict) -> None:
    x = logits(ctx, p)
    kept = kept_set(ctx, x, ctx.target(x, 1e-9))
    x64 = to64(x)
    is_max = x64 == x64.amax(-1, keepdim=True)
    wrong = (kept.sum(-1) != 1) | (kept & ~is_max).any(-1)
    if wrong.any():
        b = int(wrong.nonzero()[0])
        ctx.fail(f"p = 1e-9: row {b} keeps {listed(kept[b])}; exactly one most probable token "
                 "must remain", row=b)


@st.composite
def _top_p_pair_examples(draw) -> dict:
    p = draw(logits_examples(min_vocab=2))
    p["gap"], p["gap2"] = sorted(draw(st.lists(st.integers(0, 10), min_size=2, max_size=2, unique=True)), reverse=True)
    p["p"] = p["p2"] = "midgap"
    return p


@invariant("top_p.monotone.in_p", kind="property", examples=_top_p_pair_examples(),
           statement="For p1 < p2 every token kept at p1 is kept at p2, or is tied with p2's least kept token.",
           source="Holtzman et al. 2020, eq. 3 (the nucleus grows with p)")
def check_top_p_monotone(ctx: Context, p: dict) -> None:
    x = logits(ctx, p)
    x64 = to64(x)
    p1, p2 = sorted((_nucleus_p(x64[0], p), _nucleus_p(x64[0], p, "p2", "gap2")))
    s1, s2 = show(p1, p2)
    k1 = kept_set(ctx, x, ctx.target(x, p1), f"top-p at p = {s1}")
    k2 = kept_set(ctx, x, ctx.target(x, p2), f"top-p at p = {s2}")
    floor2 = torch.where(k2, x64, torch.full_like(x64, float("inf"))).amin(-1, keepdim=True)
    extra = k1 & ~k2 & (x64 != floor2)  # kept at the smaller p, not at the larger, and not a tie of the boundary
    if (k1.sum(-1) > k2.sum(-1)).any() or extra.any():
        b = int(((k1.sum(-1) > k2.sum(-1)) | extra.any(-1)).nonzero()[0])
        ctx.fail(f"row {b}: p = {s1} keeps {listed(k1[b])}, the larger p = {s2} keeps "
                 f"{listed(k2[b])} (the kept set must grow with p)", row=b, p1=p1, p2=p2)


@st.composite
def _top_p_tie_examples(draw) -> dict:
    # at kernel scale the tied block spans a 1024-wide candidate buffer, and a long tail follows it
    tied, below = draw(scaled(st.tuples(st.integers(2, 5), st.integers(0, 3)),
                              st.tuples(st.sampled_from((1023, 1025, 4097)), st.sampled_from((0, 3, 30000)))))
    return {"B": draw(sizes(1, 2)), "above": draw(st.integers(0, 2)), "tied": tied, "below": below,
            "keep": draw(st.integers(1, tied - 1)), "seed": draw(seeds()), "layout": draw(layouts())}


@invariant("top_p.ties.minimal_any_choice", kind="property", examples=_top_p_tie_examples(),
           statement="When the boundary falls inside a block of tied tokens the kept set is still minimal, and any "
           "choice among the tied tokens conforms unless the option top_p_ties declares a rule, which is then checked.",
           source=f"Holtzman et al. 2020, eq. 3; {HF} and {VLLM} resolve ties by sort order")
def check_top_p_ties(ctx: Context, p: dict) -> None:
    # logits 2 (above), 1 (tied), 0 (below), exactly representable; p puts the boundary inside the tied block,
    # half a token's mass past `keep - 1` of them: the minimal set is the `above` tokens and `keep` tied ones.
    values = torch.tensor([2.0] * p["above"] + [1.0] * p["tied"] + [0.0] * p["below"], dtype=torch.float64)
    gen = torch.Generator().manual_seed(p["seed"])
    rows = torch.stack([values[torch.randperm(values.numel(), generator=gen)] for _ in range(p["B"])])
    x = relayout(rows.to(ctx.dtype).to(ctx.device), p["layout"])
    q = values.softmax(0)
    top_p = float(q[: p["above"]].sum() + (p["keep"] - 0.5) * q[p["above"]])
    kept = kept_set(ctx, x, ctx.target(x, top_p))
    judge_top_p(ctx, x, kept, top_p, "top-p with ties at the boundary")
    rule = ctx.options.get("top_p_ties", "any")
    if rule == "any":
        return
    x64 = to64(x)
    for b in range(p["B"]):
        tied = (x64[b] == 1.0).nonzero().flatten()
        chosen = tied[: p["keep"]] if rule == "lowest_index" else tied[len(tied) - p["keep"] :]
        got = tied[kept[b, tied]]
        if not torch.equal(got, chosen):
            ctx.fail(f"row {b}: of the tied tokens {listed(tied)} the target kept {listed(got)}; top_p_ties={rule} "
                     f"keeps {listed(chosen)}", row=b)


# --- min-p and epsilon ---------------------------------------------------------------------------------------

MIN_P = Component(
    name="min_p",
    signature="min_p" + FILTER_SIGNATURE.format(param="p: float in [0, 1]"),
    summary="Keep the tokens whose probability is >= p times the largest probability.",
    reference=ref.min_p,
)


def _min_p_threshold(x64_row: torch.Tensor, p: dict) -> float:
    """A literal p, or the geometric middle of a gap between two distinct ratios p_i / p_max of row 0."""
    if p["p"] != "midgap":
        return float(p["p"])
    return math.exp(midgap(x64_row - x64_row.max(), p["gap"])) if x64_row.unique().numel() > 1 else 0.5


@invariant("min_p.keeps.relative_threshold", kind="property",
           examples=threshold_examples((0.05, 0.1, 0.3, 0.5, 0.9, 1.0)),
           statement="A token is kept iff its probability is >= p * max probability (within 8 eps relative; not "
           "judged where both are below the dtype's smallest normal number); the argmax is always kept.",
           source=f"Nguyen et al. 2024, sec. 3; {HF}: MinPLogitsWarper (`probs < min_p * probs.amax()` removed); "
           f"{VLLM} MinPLogitsProcessor")
def check_min_p(ctx: Context, p: dict) -> None:
    x = logits(ctx, p)
    x64 = to64(x)
    threshold = min(_min_p_threshold(x64[0], p), 1.0)
    kept = kept_set(ctx, x, ctx.target(x, threshold))
    ratio = (x64 - x64.amax(-1, keepdim=True)).exp()  # p_i / p_max, exactly, from the rounded logits
    slack = ratio_slack(ctx)
    must_keep = ratio >= threshold * (1 + slack)
    must_remove = ratio < threshold * (1 - slack)
    # below the dtype's smallest normal number, probabilities computed in that dtype (as HF and vLLM do) flush to 0:
    # when p * max probability is that small, the tokens under it are not judged.
    p_max = x64.softmax(-1).amax(-1, keepdim=True)
    tiny = torch.finfo(ctx.dtype).tiny
    must_remove &= ~((ratio * p_max < tiny) & (threshold * p_max < tiny))
    judge(ctx, x, kept, must_keep, must_remove,
          f"min-p (p = {threshold:.6g}: keep probability >= p * max probability)", p=threshold)


EPSILON = Component(
    name="epsilon_cutoff",
    signature="epsilon_cutoff" + FILTER_SIGNATURE.format(param="epsilon: float in (0, 1)"),
    summary="Remove the tokens whose probability is < epsilon, never the argmax.",
    reference=ref.epsilon_cutoff,
)


def _epsilon_threshold(x64_row: torch.Tensor, p: dict) -> float:
    if p["p"] != "midgap":
        return float(p["p"])
    probs = x64_row.softmax(-1).sort(descending=True).values
    value = float(torch.tensor(midgap(probs.log(), p["gap"])).exp()) if probs.numel() > 1 else 0.5
    return min(max(value, 1e-6), 0.999)


@invariant("epsilon_cutoff.keeps.above_epsilon", kind="property", examples=threshold_examples((1e-3, 0.02, 0.1, 0.3)),
           statement="A token is removed iff its probability is < epsilon (within 8 eps relative) and it is not an "
           "argmax.", source=f"Hewitt et al. 2022, eq. 4; {HF}: EpsilonLogitsWarper")
def check_epsilon(ctx: Context, p: dict) -> None:
    x = logits(ctx, p)
    x64 = to64(x)
    epsilon = _epsilon_threshold(x64[0], p)
    kept = kept_set(ctx, x, ctx.target(x, epsilon))
    q = x64.softmax(-1)
    is_max = x64 == x64.amax(-1, keepdim=True)
    slack = ratio_slack(ctx)
    must_keep = is_max | (q >= epsilon * (1 + slack))
    must_remove = ~is_max & (q < epsilon * (1 - slack))
    judge(ctx, x, kept, must_keep, must_remove, f"epsilon cutoff (epsilon = {epsilon:.6g})", epsilon=epsilon)


@invariant("epsilon_cutoff.keeps.argmax_always", kind="property", examples=logits_examples(),
           statement="With epsilon above every probability exactly the argmax (and tokens tied with it) remains.",
           source=f"{HF}: EpsilonLogitsWarper (`scores < topk(scores, min_tokens_to_keep)` guard)")
def check_epsilon_argmax(ctx: Context, p: dict) -> None:
    x = logits(ctx, p)
    kept = kept_set(ctx, x, ctx.target(x, 0.999))
    x64 = to64(x)
    q = x64.softmax(-1)
    is_max = x64 == x64.amax(-1, keepdim=True)
    expected = is_max | (q >= 0.999 * (1 + ratio_slack(ctx)))
    if not torch.equal(kept, expected):
        b = int((kept != expected).any(-1).nonzero()[0])
        ctx.fail(f"epsilon = 0.999: row {b} keeps {listed(kept[b])}, expected the argmax (and "
                 f"its ties) {listed(expected[b])}: epsilon never removes the most probable token",
                 row=b)


# --- typical -------------------------------------------------------------------------------------------------

TYPICAL = Component(
    name="typical_p",
    signature="typical_p" + FILTER_SIGNATURE.format(param="p: float in (0, 1)"),
    summary="Locally typical filtering: keep the tokens whose -log p is closest to the entropy, up to mass p.",
    reference=ref.typical_p,
)


def _typicality(x64: torch.Tensor) -> torch.Tensor:
    logq = x64.log_softmax(-1)
    q = logq.exp()
    entropy = -(torch.where(q > 0, q * logq, torch.zeros_like(q))).sum(-1, keepdim=True)
    return (-logq - entropy).abs()


def _typical_mass(x64_row: torch.Tensor, p: dict) -> float:
    """A literal mass, or the middle of a gap between prefix masses of row 0's typicality ranking."""
    if p["p"] != "midgap":
        return float(p["p"])
    order = _typicality(x64_row[None])[0].argsort()
    s = torch.cat([torch.zeros(1, dtype=torch.float64), x64_row.softmax(-1)[order].cumsum(0)])
    return min(max(midgap(s, p["gap"]), 1e-3), 0.999)


@invariant("typical_p.keeps.most_typical_set", kind="property", examples=threshold_examples((0.2, 0.5, 0.9, 0.95)),
           statement="Ranking tokens by |-log p_i - H|, the kept set is the ranking's prefix up to the first token "
           "where the mass reaches p, plus tokens tied with it (scores within rounding and masses within (V/2 + 3) eps "
           "go either way).", source=f"Meister et al. 2023, eq. 5; {HF}: TypicalLogitsWarper")
def check_typical(ctx: Context, p: dict) -> None:
    _check_typical_on(ctx, p, logits(ctx, p))
    if p["V"] >= 3:
        # one token at probability 0.35 over a flat rest: the flat tokens are the typical ones (|-log p - H| is
        # a L for the top token and (1 - a) L for the rest, a = 0.35), so typical and top-p disagree here.
        n = p["V"] - 1
        x = torch.zeros(p["B"], p["V"], dtype=torch.float64)
        x[:, p["seed"] % p["V"]] = math.log(0.35 * n / 0.65)
        _check_typical_on(ctx, p, x.to(ctx.dtype).to(ctx.device))


def _check_typical_on(ctx: Context, p: dict, x: torch.Tensor) -> None:
    x64 = to64(x)
    mass = _typical_mass(x64[0], p)
    kept = kept_set(ctx, x, ctx.target(x, mass))
    score = _typicality(x64)
    finite_logq = x64.log_softmax(-1).abs()
    key_slack = 8 * eps(ctx) * (1 + float(finite_logq.max())) + x.shape[-1] * eps(ctx) * (1 + float(score.max()))
    must_keep, must_remove = prefix_judgement(-score, x64.softmax(-1), mass, mass_slack(ctx, x.shape[-1]), key_slack)
    judge(ctx, x, kept, must_keep, must_remove, f"typical (mass {mass:.6g}, ranking |-log p - H|)", mass=mass)
    # the kept set is a prefix of the ranking: nothing removed ranks clearly before something kept (compared at
    # the least typical kept token and the most typical removed one of each row)
    least_typical_kept = torch.where(kept, score, torch.full_like(score, -math.inf)).max(-1)
    most_typical_removed = torch.where(kept, torch.full_like(score, math.inf), score).min(-1)
    inverted = most_typical_removed.values < least_typical_kept.values - 2 * key_slack
    if inverted.any():
        b = int(inverted.nonzero()[0])
        i, j = int(least_typical_kept.indices[b]), int(most_typical_removed.indices[b])
        kept_score, removed_score = show(float(score[b, i]), float(score[b, j]))
        ctx.fail(f"typical: row {b} kept token {i} (|-log p - H| = {kept_score}) but removed the more typical "
                 f"token {j} ({removed_score})", row=b)


@invariant("typical_p.ties.kept", kind="property", examples=logits_examples(),
           statement="Tokens tied in typicality with the boundary token are kept: a uniform distribution is kept "
           "whole.",
           source=f"{HF}: TypicalLogitsWarper (`sorted_scores > boundary score` removed)")
def check_typical_ties(ctx: Context, p: dict) -> None:
    # equal logits: every token is exactly as typical as the boundary token, so all are kept for any mass.
    x = torch.full((p["B"], p["V"]), 0.5, dtype=ctx.dtype, device=ctx.device)
    for mass in (0.1, 0.5, 0.9):
        kept = kept_set(ctx, x, ctx.target(x, mass))
        if not kept.all():
            ctx.fail(f"typical (mass {mass}) on a uniform distribution kept only "
                     f"{listed(kept[0])}; tokens tied in typicality with the boundary token are "
                     "kept", mass=mass)
