"""A full sampling step: penalties, temperature and truncation composed in a library's order.

Hugging Face and vLLM disagree on where min-p goes (HF: top-k, top-p, min-p; vLLM: min-p, top-k, top-p) and on
which ids presence / frequency penalties count; both are options (`order`, `penalty_scope`). Both libraries apply
penalties first and temperature before every truncation filter. An example whose kept set changes within the
target dtype's rounding (a threshold within rounding of a mass, a top-k tie created by rounding) is not judged
on that set: the reference is run at the thresholds moved by the rounding slack, on logits moved by a few eps,
and in the target's dtype, and the example is judged only when all of these agree.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference import sampling as ref
from ..checks import assert_matches, expect_tensor, reference_pair, to64
from ..core import Component, Context, Option, invariant, row
from .inputs import HF, VLLM, VOCAB_EDGES, listed, logits, logits_examples, mass_slack, midgap, ratio_slack, token_ids
from .neutral import NEUTRAL

ORDER = Option(
    name="order",
    default="hf",
    choices=("hf", "vllm"),
    doc="truncation order after temperature: hf = top-k, top-p, min-p (transformers "
    "GenerationMixin._get_logits_processor); vllm = min-p, top-k, top-p (vLLM v1 Sampler: min-p is an "
    "argmax-invariant logits processor applied before top-k/top-p)",
)
PENALTY_SCOPE = Option(
    name="penalty_scope",
    default="output",
    choices=("output", "prompt_and_output"),
    doc="which ids presence / frequency penalties count: the generated output (vLLM, OpenAI) or the whole context "
    "(a llama.cpp-style penalty window over prompt and output). Repetition penalty counts prompt and output in both "
    "HF (its input_ids) and vLLM (prompt_mask | output_mask).",
)

PIPELINE = Component(
    name="sampling_pipeline",
    signature="sampling_pipeline(logits: Float[B, V], prompt_ids: Int[B, Lp], output_ids: Int[B, Lo], *, "
    "temperature: float > 0, top_k: int (0 = off), top_p: float (1 = off), min_p: float (0 = off), "
    "repetition_penalty: float (1 = off), presence_penalty: float, frequency_penalty: float) -> Float[B, V]  "
    "(the logits sampled from; removed tokens -inf)",
    summary="One sampling step: penalties, temperature, then top-k / top-p / min-p in the library's order.",
    reference=ref.sampling_pipeline,
    bound="elementwise",  # processed logits / probabilities: every element is a value in its own right
    dtypes=(torch.float64, torch.float32),
    options=(ORDER, PENALTY_SCOPE),
    features={"presence_frequency": "presence and frequency penalties (transformers has none)"},
)


def _reference(ctx: Context):
    order, scope = ctx.options.get("order", "hf"), ctx.options.get("penalty_scope", "output")

    def run(x, prompt, output, **params):
        return ref.sampling_pipeline(x, prompt, output, **params, order=order, penalty_scope=scope)

    return run


def settled_kept_set(ctx: Context, x: torch.Tensor, prompt: torch.Tensor, output: torch.Tensor,
                     params: dict) -> torch.Tensor | None:
    """The kept set, or None when it depends on rounding (see the module docstring)."""
    run = _reference(ctx)
    x64, prompt, output = to64(x), prompt.cpu(), output.cpu()
    kept = lambda xx, **over: run(xx, prompt, output, **{**params, **over}) != float("-inf")  # noqa: E731
    slack, rel = mass_slack(ctx, x.shape[-1]), ratio_slack(ctx)
    variants = [kept(x64), kept(x.detach().cpu())]
    if params["top_p"] < 1.0:
        variants += [kept(x64, top_p=min(1.0, params["top_p"] + slack)),
                     kept(x64, top_p=max(0.0, params["top_p"] - slack))]
    if params["min_p"] > 0.0:
        variants += [kept(x64, min_p=min(1.0, params["min_p"] * (1 + rel))),
                     kept(x64, min_p=params["min_p"] * (1 - rel))]
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        noise = (torch.rand(x64.shape, generator=gen, dtype=torch.float64) * 2 - 1) * 4 * torch.finfo(ctx.dtype).eps
        variants.append(kept(x64 * (1 + noise)))
    return variants[0] if all(torch.equal(v, variants[0]) for v in variants) else None


def check_against_reference(ctx: Context, x, prompt, output, params: dict, what: str) -> None:
    out = expect_tensor(ctx.target(x, prompt, output, **params), tuple(x.shape), ctx.dtype, ctx.device, finite=False)
    settled = settled_kept_set(ctx, x, prompt, output, params)
    if settled is None:
        return  # within rounding of a decision boundary: either kept set conforms
    kept = out.detach().cpu() != float("-inf")
    if not torch.equal(kept, settled):
        b = int((kept != settled).any(-1).nonzero()[0])
        ctx.fail(f"{what}: row {b} keeps {listed(kept[b])}, the spec "
                 f"(order={ctx.options.get('order', 'hf')}, penalty_scope={ctx.options.get('penalty_scope', 'output')})"
                 f" keeps {listed(settled[b])}; parameters {params}", row=b, params=params)
    run = _reference(ctx)
    ref64, ref_lowp = reference_pair(lambda xx, pr, ou: run(xx, pr, ou, **params).softmax(-1), x, prompt, output)
    assert_matches(ctx, out.softmax(-1), ref64, ref_lowp, what=f"{what}: softmax of the processed logits")


def _inputs(ctx: Context, p: dict):
    x = logits(ctx, p)
    return x, token_ids(p, p["Lp"], p["V"], 1, ctx.device), token_ids(p, p["Lo"], p["V"], 2, ctx.device)


@st.composite
def _pipeline_examples(draw) -> dict:
    p = draw(logits_examples(min_vocab=2, max_vocab=10, max_batch=2, kernel_vocabs=VOCAB_EDGES))
    p.update(Lp=draw(st.integers(0, 5)), Lo=draw(st.integers(0, 5)),
             temperature=draw(st.sampled_from([0.5, 0.7, 1.0, 1.5])),
             top_k=draw(st.sampled_from([0, 0, 1, 2, 3, 5, 8])),
             top_p=draw(st.sampled_from([1.0, 1.0, 0.5, 0.8, 0.9, 0.95])),
             min_p=draw(st.sampled_from([0.0, 0.0, 0.05, 0.1, 0.3])),
             repetition_penalty=draw(st.sampled_from([1.0, 1.0, 1.3, 0.8])))
    return p


@invariant("sampling_pipeline.reference.matches", kind="differential", examples=_pipeline_examples(),
           statement="The kept set and the kept tokens' probabilities equal the reference composition in the chosen "
           "order (repetition penalty, temperature, top-k, top-p, min-p), unless the kept set is within rounding of a "
           "boundary.", source=f"{HF}: GenerationMixin._get_logits_processor; {VLLM} Sampler.sample")
def check_reference(ctx: Context, p: dict) -> None:
    x, prompt, output = _inputs(ctx, p)
    params = {**NEUTRAL, **{k: p[k] for k in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")}}
    check_against_reference(ctx, x, prompt, output, params, "sampling step")


@st.composite
def _temperature_order_examples(draw) -> dict:
    p = draw(logits_examples(min_vocab=3, max_vocab=10, max_batch=2, kernel_vocabs=VOCAB_EDGES))
    p.update(Lp=0, Lo=0, temperature=draw(st.sampled_from([0.3, 0.5, 2.0, 3.0])),
             filter=draw(st.sampled_from(["top_p", "min_p"])), gap=draw(st.integers(0, 9)))
    return p


#: thresholds tried per filter: every gap of a small vocabulary, the gaps of the most probable tokens of a large one.
CANDIDATES = 12


def _thresholds(x64_row: torch.Tensor, name: str) -> list[float]:
    """Candidate top-p (prefix masses) or min-p (ratios) thresholds in the middle of the first CANDIDATES gaps of
    row 0."""
    count = min(x64_row.numel(), CANDIDATES)
    if name == "top_p":
        descending = x64_row.softmax(-1).sort(descending=True).values
        masses = torch.cat([torch.zeros(1, dtype=torch.float64), descending.cumsum(0)])
        if x64_row.numel() > CANDIDATES:  # nuclei of the 1 to CANDIDATES most probable tokens
            return [float(masses[j] + masses[j + 1]) / 2 for j in range(count)]
        return [midgap(masses, j) for j in range(count)]
    logs = x64_row - x64_row.max()
    return [float(torch.tensor(midgap(logs, j)).exp()) for j in range(count)]


@invariant("sampling_pipeline.order.temperature_before_truncation", kind="property",
           examples=_temperature_order_examples(),
           statement="Temperature is applied before truncation (HF and vLLM): top-p and min-p act on softmax(x / T), "
           "and the kept set changes with T where that order says it does.",
           source=f"{HF}: TemperatureLogitsWarper precedes TopK/TopP/MinP; {VLLM} apply_temperature precedes min-p "
           "and top-k/top-p")
def check_temperature_order(ctx: Context, p: dict) -> None:
    # the threshold is taken from the tempered distribution, preferring one where filtering before temperature
    # would keep a different set: there the order is visible in the output.
    x, prompt, output = _inputs(ctx, p)
    x64 = to64(x)
    candidates = _thresholds(x64[0] / p["temperature"], p["filter"])
    rotated = candidates[p["gap"] % len(candidates):] + candidates[: p["gap"] % len(candidates)]
    run = lambda xx, **over: ref.sampling_pipeline(xx, prompt.cpu(), output.cpu(), **{**NEUTRAL, **over})  # noqa: E731
    chosen = rotated[0]
    for value in rotated:
        tempered_first = run(x64, temperature=p["temperature"], **{p["filter"]: value}) != float("-inf")
        filtered_first = run(x64, **{p["filter"]: value}) != float("-inf")
        if not torch.equal(tempered_first, filtered_first):
            chosen = value
            break
    params = {**NEUTRAL, "temperature": p["temperature"], p["filter"]: min(chosen, 1.0)}
    check_against_reference(ctx, x, prompt, output, params, f"temperature {p['temperature']} then {p['filter']}")


@st.composite
def _min_p_order_examples(draw) -> dict:
    p = draw(logits_examples(min_vocab=3, max_vocab=10, max_batch=2, kernel_vocabs=VOCAB_EDGES))
    p.update(Lp=0, Lo=0, gap=draw(st.integers(0, 9)))
    return p


@invariant("sampling_pipeline.order.min_p_placement", kind="property", examples=_min_p_order_examples(),
           statement="With top-p and min-p both active the kept set follows the option `order`: hf applies min-p "
           "after top-p, vllm before it (so top-p sees the mass renormalized over the min-p set).",
           source=f"{HF}: _get_logits_processor appends MinPLogitsWarper after TopPLogitsWarper; {VLLM} "
           "MinPLogitsProcessor (argmax-invariant) runs before TopKTopPSampler")
def check_min_p_order(ctx: Context, p: dict) -> None:
    # (top_p, min_p) pairs where HF's order (top-p, then min-p) and vLLM's (min-p, then top-p) keep different sets.
    x, prompt, output = _inputs(ctx, p)
    x64 = to64(x)

    def kept(order, **over):
        out = ref.sampling_pipeline(x64, prompt.cpu(), output.cpu(), **{**NEUTRAL, **over}, order=order)
        return out != float("-inf")

    pairs = [(tp, mp) for mp in _thresholds(x64[0], "min_p") for tp in _thresholds(x64[0], "top_p")
             if 0 < mp < 1 and 0 < tp < 1]
    differing = [(tp, mp) for tp, mp in pairs
                 if not torch.equal(kept("hf", top_p=tp, min_p=mp), kept("vllm", top_p=tp, min_p=mp))]
    choices = differing or pairs or [(0.9, 0.1)]
    chosen = choices[p["gap"] % len(choices)]
    params = {**NEUTRAL, "top_p": chosen[0], "min_p": chosen[1]}
    check_against_reference(ctx, x, prompt, output, params, "top-p and min-p together")


@st.composite
def _penalty_examples(draw, presence: bool) -> dict:
    p = draw(logits_examples(min_vocab=2, max_vocab=10, max_batch=2, kernel_vocabs=VOCAB_EDGES))
    p.update(Lp=draw(st.integers(1, 5)), Lo=draw(st.integers(0 if presence else 1, 5)),
             repetition_penalty=draw(st.sampled_from([1.0, 1.5, 2.0] if presence else [1.5, 2.0, 0.7])),
             presence_penalty=draw(st.sampled_from([0.5, 1.0, -0.5])) if presence else 0.0,
             frequency_penalty=draw(st.sampled_from([0.0, 0.4, 1.0])) if presence else 0.0)
    return p


@invariant(
    row("sampling_pipeline.penalties.repetition_over_context", examples=_penalty_examples(presence=False),
        statement="The repetition penalty counts every distinct token of prompt and output.",
        source=f"{HF}: RepetitionPenaltyLogitsProcessor sees input_ids = prompt + output; {VLLM} apply_penalties "
        "(prompt_mask | output_mask)"),
    row("sampling_pipeline.penalties.presence_frequency_scope", examples=_penalty_examples(presence=True),
        requires={"presence_frequency"},
        statement="Presence and frequency penalties count the ids the option `penalty_scope` names (output by "
        "default) and are applied after the repetition penalty.",
        source=f"OpenAI API reference; {VLLM} apply_penalties (output_bin_counts)"),
    kind="differential",
)
def check_penalties(ctx: Context, p: dict) -> None:
    x, prompt, output = _inputs(ctx, p)
    params = {**NEUTRAL, **{k: p[k] for k in ("repetition_penalty", "presence_penalty", "frequency_penalty")}}
    check_against_reference(ctx, x, prompt, output, params, "penalties")
