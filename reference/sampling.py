"""Logits processors, samplers and the distributions they define.

Canonical shapes: logits [B, V]. A filter sets a removed token's logit to -inf and leaves a kept token's logit
unchanged (bit for bit). Every function computes in the dtype of its input, as the libraries do.

Sources (library code read at transformers 5.23 and vLLM v1; see docs/sampling.md):
- temperature: Ackley, Hinton & Sejnowski 1985; Hinton et al. 2015, eq. 1. HF TemperatureLogitsWarper
  (`scores / temperature`).
- top-k: Fan et al. 2018, "Hierarchical Neural Story Generation", sec. 5.4. HF TopKLogitsWarper removes
  `scores < kth value`, so every token tied with the k-th value is kept.
- top-p (nucleus): Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration", eq. 3: the smallest set
  whose mass is >= p. HF TopPLogitsWarper and vLLM sort ascending and remove `cumsum <= 1 - p`, keeping the last.
- min-p: Nguyen et al. 2024, "Turning Up the Heat: Min-p Sampling". HF MinPLogitsWarper and vLLM remove
  `probs < min_p * max(probs)`.
- epsilon: Hewitt et al. 2022, "Truncation Sampling as Language Model Desmoothing", eq. 4; HF EpsilonLogitsWarper
  (the argmax is never removed).
- typical: Meister et al. 2023, "Locally Typical Sampling", eq. 5; HF TypicalLogitsWarper (written by the authors).
- repetition penalty: Keskar et al. 2019 (CTRL), sec. 4.1; HF RepetitionPenaltyLogitsProcessor: once per distinct
  token of `input_ids` (prompt included), `where(score < 0, score * penalty, score / penalty)`.
- presence / frequency penalty: OpenAI API "parameter details"; vLLM `apply_penalties`:
  `logits -= frequency * count; logits -= presence * (count > 0)`.
- no-repeat n-gram: fairseq `sequence_generator._no_repeat_ngram`; HF NoRepeatNGramLogitsProcessor.
- order of a full sampling step: HF `GenerationMixin._get_logits_processor` (penalties, then temperature, top-k,
  top-p, min-p); vLLM v1 `Sampler` (penalties, temperature, min-p, top-k, top-p).
"""

from __future__ import annotations

from typing import Literal

import torch

from ._typing import Float, Int, Tensor, typechecked
from .norms import opmath_dtype

NEG_INF = float("-inf")
Order = Literal["hf", "vllm"]
PenaltyScope = Literal["output", "prompt_and_output"]


# --- filters and transforms ---------------------------------------------------------------------------------


@typechecked
def temperature(logits: Float[Tensor, "*batch vocab"], t: float) -> Float[Tensor, "*batch vocab"]:
    """logits / t (t > 0). t = 1 is the identity; t -> 0 concentrates softmax on the argmax (greedy)."""
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {t} (temperature 0 is greedy decoding: take the argmax)")
    return logits / t


@typechecked
def top_k(logits: Float[Tensor, "batch vocab"], k: int) -> Float[Tensor, "batch vocab"]:
    """Keep every token whose logit is >= the k-th largest (ties at the k-th value kept); k >= V keeps all."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


@typechecked
def top_p(logits: Float[Tensor, "batch vocab"], p: float) -> Float[Tensor, "batch vocab"]:
    """Keep the smallest set of most probable tokens whose probability mass is >= p (the boundary token kept).

    HF's formulation: sort ascending, remove the tokens whose inclusive ascending cumulative mass is <= 1 - p,
    always keep the most probable. It is exact at p = 1 (nothing is removed while every probability is > 0).
    Ties at the boundary are resolved by the (stable) sort: the tied tokens with the highest ids are kept.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    ascending, order = logits.sort(dim=-1, descending=False, stable=True)
    remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - p
    remove[..., -1] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), NEG_INF)


@typechecked
def min_p(logits: Float[Tensor, "batch vocab"], p: float) -> Float[Tensor, "batch vocab"]:
    """Keep the tokens whose probability is >= p * (largest probability); the argmax is always kept."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    probs = logits.softmax(dim=-1)
    return logits.masked_fill(probs < p * probs.amax(dim=-1, keepdim=True), NEG_INF)


@typechecked
def epsilon_cutoff(logits: Float[Tensor, "batch vocab"], epsilon: float) -> Float[Tensor, "batch vocab"]:
    """Remove the tokens whose probability is < epsilon, except the argmax (and its ties), which is always kept."""
    if not 0.0 < epsilon < 1.0:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    probs = logits.softmax(dim=-1)
    remove = (probs < epsilon) & (logits < logits.amax(dim=-1, keepdim=True))
    return logits.masked_fill(remove, NEG_INF)


@typechecked
def typical_p(logits: Float[Tensor, "batch vocab"], p: float) -> Float[Tensor, "batch vocab"]:
    """Locally typical filtering: rank tokens by |-log p_i - H| (closest to the entropy first), find the smallest
    prefix of that ranking with mass >= p, and keep every token whose score is <= the boundary token's."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    logp = logits.log_softmax(dim=-1)
    probs = logp.exp()
    entropy = -(torch.where(probs > 0, logp * probs, torch.zeros_like(probs))).sum(dim=-1, keepdim=True)
    score = (-logp - entropy).abs()
    sorted_score, order = score.sort(dim=-1, stable=True)
    mass = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    boundary = (mass < p).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    remove_sorted = sorted_score > sorted_score.gather(-1, boundary)
    remove_sorted[..., 0] = False
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), NEG_INF)


@typechecked
def repetition_penalty(
    logits: Float[Tensor, "batch vocab"], input_ids: Int[Tensor, "batch length"], penalty: float
) -> Float[Tensor, "batch vocab"]:
    """CTRL / HF: for each distinct token of input_ids, a negative logit is multiplied by the penalty and a
    non-negative one divided by it (so penalty > 1 always lowers it); other tokens are unchanged."""
    if not penalty > 0:
        raise ValueError(f"penalty must be > 0, got {penalty}")
    seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device).scatter_(-1, input_ids, True)
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


@typechecked
def token_counts(ids: Int[Tensor, "batch length"], vocab: int, dtype: torch.dtype) -> Float[Tensor, "batch {vocab}"]:
    """How many times each token occurs in each row of ids."""
    counts = torch.zeros(ids.shape[0], vocab, dtype=dtype, device=ids.device)
    return counts.scatter_add_(-1, ids, torch.ones(ids.shape, dtype=dtype, device=ids.device))


@typechecked
def presence_frequency_penalty(
    logits: Float[Tensor, "batch vocab"], output_ids: Int[Tensor, "batch length"], presence: float, frequency: float
) -> Float[Tensor, "batch vocab"]:
    """OpenAI / vLLM: logit - frequency * count - presence * [count > 0], counts over output_ids."""
    counts = token_counts(output_ids, logits.shape[-1], logits.dtype)
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


@typechecked
def no_repeat_ngram(
    logits: Float[Tensor, "batch vocab"], input_ids: Int[Tensor, "batch length"], n: int
) -> Float[Tensor, "batch vocab"]:
    """Ban (-inf) every token that would complete an n-gram already present in input_ids (prompt included):
    token v is banned when (ids[-n+1:], v) occurs as n consecutive tokens of ids. Identity while len < n."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    length = input_ids.shape[-1]
    if length < n:
        return logits.clone()
    windows = input_ids.unfold(-1, n, 1)  # [B, L - n + 1, n]
    prefix = input_ids[:, length - n + 1 :]  # the last n - 1 tokens
    matches = (windows[..., :-1] == prefix[:, None, :]).all(dim=-1)  # [B, L - n + 1]
    banned = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    rows = torch.arange(logits.shape[0], device=logits.device)[:, None].expand_as(matches)
    banned[rows[matches], windows[..., -1][matches]] = True
    return logits.masked_fill(banned, NEG_INF)


# --- a full sampling step: penalties, temperature, truncation ----------------------------------------------

# the pipeline's parameters are named after the stages; these names keep the stages reachable inside it.
_temperature, _top_k, _top_p, _min_p, _repetition_penalty = temperature, top_k, top_p, min_p, repetition_penalty


@typechecked
def sampling_pipeline(
    logits: Float[Tensor, "batch vocab"],
    prompt_ids: Int[Tensor, "batch prompt"],
    output_ids: Int[Tensor, "batch output"],
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
    order: Order = "hf",
    penalty_scope: PenaltyScope = "output",
) -> Float[Tensor, "batch vocab"]:
    """The logits one sampling step draws from. top_k = 0, top_p = 1, min_p = 0 and neutral penalties disable a stage.

    Penalties first: repetition over prompt + output (HF's input_ids; vLLM's prompt_mask | output_mask), then
    presence / frequency over the output (vLLM, OpenAI) or over prompt + output (penalty_scope). Then temperature,
    then truncation: order "hf" = top-k, top-p, min-p (GenerationMixin._get_logits_processor); order "vllm" = min-p,
    top-k, top-p (vLLM v1 Sampler). Top-k and min-p commute; top-p sees the mass renormalized by the filters before it.
    """
    x = logits
    if repetition_penalty != 1.0:
        x = _repetition_penalty(x, torch.cat([prompt_ids, output_ids], dim=-1), repetition_penalty)
    if presence_penalty or frequency_penalty:
        counted = output_ids if penalty_scope == "output" else torch.cat([prompt_ids, output_ids], dim=-1)
        x = presence_frequency_penalty(x, counted, presence_penalty, frequency_penalty)
    x = _temperature(x, temperature)
    stages = {"top_k": (top_k > 0, lambda y: _top_k(y, top_k)),
              "top_p": (top_p < 1.0, lambda y: _top_p(y, top_p)),
              "min_p": (min_p > 0.0, lambda y: _min_p(y, min_p))}
    names = ("top_k", "top_p", "min_p") if order == "hf" else ("min_p", "top_k", "top_p")
    for name in names:
        active, stage = stages[name]
        if active:
            x = stage(x)
    return x


@typechecked
def sampling_pipeline_vllm(
    logits: Float[Tensor, "batch vocab"],
    prompt_ids: Int[Tensor, "batch prompt"],
    output_ids: Int[Tensor, "batch output"],
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
) -> Float[Tensor, "batch vocab"]:
    """sampling_pipeline in vLLM's order (min-p before top-k and top-p): a target for `--option order=vllm`."""
    return sampling_pipeline(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, repetition_penalty,
                             presence_penalty, frequency_penalty, order="vllm")


# --- samplers ------------------------------------------------------------------------------------------------


@typechecked
def sample(logits: Float[Tensor, "batch vocab"], generator: torch.Generator | None = None) -> Int[Tensor, " batch"]:
    """One token per row drawn from softmax(logits) with `generator` (HF generate: torch.multinomial(probs, 1)).

    The draw is made from float64 probabilities so the distribution is the one the logits define, in any dtype."""
    probs = logits.to(torch.float64).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@typechecked
def top_k_sample(
    logits: Float[Tensor, "batch vocab"], k: int, generator: torch.Generator | None = None
) -> Int[Tensor, " batch"]:
    return sample(top_k(logits, k), generator)


@typechecked
def top_p_sample(
    logits: Float[Tensor, "batch vocab"], p: float, generator: torch.Generator | None = None
) -> Int[Tensor, " batch"]:
    return sample(top_p(logits, p), generator)


@typechecked
def min_p_sample(
    logits: Float[Tensor, "batch vocab"], p: float, generator: torch.Generator | None = None
) -> Int[Tensor, " batch"]:
    return sample(min_p(logits, p), generator)


# --- information measures ------------------------------------------------------------------------------------


@typechecked
def entropy(logits: Float[Tensor, "*batch vocab"]) -> Float[Tensor, "*batch"]:
    """Shannon entropy of softmax(logits) in nats; -inf logits contribute 0 (0 log 0 = 0).

    Computed in the opmath type (float32 for float16/bfloat16) and rounded once, as torch's reductions accumulate:
    a float16 sum of V >= 65536 exponentials overflows (torch's CPU log_softmax in float16 does)."""
    logp = logits.to(opmath_dtype(logits.dtype)).log_softmax(dim=-1)
    # log p is replaced by 0 where p = 0 before the product, so the gradient there is 0 (0 x -inf would be nan)
    safe = torch.where(logp > NEG_INF, logp, torch.zeros_like(logp))
    return -(logp.exp() * safe).sum(dim=-1).to(logits.dtype)


def _log_probs(input: Tensor) -> Tensor:
    """log softmax(input) in the input's dtype, as torch's log_softmax computes it, but for float16 / bfloat16 the
    logsumexp is accumulated in float32 (torch's CPU kernel keeps the sum of exponentials in float16, which
    overflows past 65504 equal logits) and rounded to the dtype before x - logsumexp(x)."""
    if input.dtype not in (torch.float16, torch.bfloat16):
        return input.log_softmax(dim=-1)
    return input - input.to(opmath_dtype(input.dtype)).logsumexp(dim=-1, keepdim=True).to(input.dtype)


def _mean_nll(input: Tensor, target: Tensor, ignore_index: int | None = None) -> Tensor:
    """Mean over rows of -log softmax(input)[target], in the opmath type (float32 for float16/bfloat16); rows whose
    target is `ignore_index` are left out of the sum and of the count (and get exactly zero gradient)."""
    kept = target != ignore_index if ignore_index is not None else None
    if kept is None or bool(kept.all()):
        return -_log_probs(input).gather(-1, target[:, None]).to(opmath_dtype(input.dtype)).mean()
    picked = _log_probs(input).gather(-1, target.masked_fill(~kept, 0)[:, None])[:, 0].to(opmath_dtype(input.dtype))
    return -picked.masked_fill(~kept, 0).sum() / kept.sum()


@typechecked
def cross_entropy(input: Float[Tensor, "n vocab"], target: Int[Tensor, " n"], ignore_index: int = -100
                  ) -> Float[Tensor, ""]:
    """Mean over rows of -log softmax(input)[target] in nats (torch.nn.functional.cross_entropy, reduction='mean');
    rows whose target is ignore_index (torch's default -100) are left out of the mean."""
    return _mean_nll(input, target, ignore_index).to(input.dtype)


@typechecked
def perplexity(logits: Float[Tensor, "n vocab"], target: Int[Tensor, " n"]) -> Float[Tensor, ""]:
    """exp(mean cross-entropy): the exponential of the mean, not the mean of per-token exponentials."""
    return _mean_nll(logits, target).exp().to(logits.dtype)
