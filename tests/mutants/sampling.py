"""Broken logits processors, samplers and information measures: each one plausible bug."""

import math

import torch

from lmspec.reference import sampling as ref

from .gradients import detached_argument, drifting_backward, zero_backward

NEG_INF = float("-inf")


# --- processors ----------------------------------------------------------------------------------------------


def temperature_after_softmax(logits, t):
    """Divides the probabilities instead of the logits."""
    return logits.softmax(-1) / t


def temperature_multiplies(logits, t):
    return logits * t


def top_k_drops_ties(logits, k):
    """Keeps exactly k tokens (torch.topk indices), dropping tokens tied with the k-th."""
    k = min(k, logits.shape[-1])
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, NEG_INF)


def top_k_no_clamp(logits, k):
    """Forgets HF's `min(top_k, V)`: raises for k > V."""
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def _descending_mass(logits):
    probs = logits.softmax(-1)
    order = probs.argsort(dim=-1, descending=True, stable=True)
    return probs, order, probs.gather(-1, order).cumsum(-1)


def top_p_exclusive_boundary(logits, p):
    """Keeps tokens whose inclusive cumulative mass is <= p: the boundary token is dropped."""
    _, order, mass = _descending_mass(logits)
    keep_sorted = mass <= p
    keep_sorted[..., 0] = True
    return logits.masked_fill(~keep_sorted.scatter(-1, order, keep_sorted), NEG_INF)


def top_p_no_keep_one(logits, p):
    """HF's formulation without keeping the most probable token: a tiny p removes everything."""
    ascending, order = logits.sort(dim=-1)
    remove = ascending.softmax(-1).cumsum(-1) <= 1 - p
    return logits.masked_fill(remove.scatter(-1, order, remove), NEG_INF)


def top_p_returns_log_probs(logits, p):
    """Returns renormalized log-probabilities of the nucleus instead of the logits."""
    return ref.top_p(logits, p).log_softmax(-1)


def top_p_confuses_p(logits, p):
    """Keeps the smallest set whose mass reaches 1 - p."""
    return ref.top_p(logits, 1.0 - p)


def top_p_keeps_boundary_ties(logits, p):
    """Keeps every token tied with the least kept one: the set is no longer minimal."""
    kept = ref.top_p(logits, p)
    floor = torch.where(kept > NEG_INF, logits, torch.full_like(logits, math.inf)).amin(-1, keepdim=True)
    return logits.masked_fill(logits < floor, NEG_INF)


def min_p_absolute(logits, p):
    """Compares probabilities with p itself, not p * max probability."""
    return logits.masked_fill(logits.softmax(-1) < p, NEG_INF)


def min_p_returns_log_probs(logits, p):
    return ref.min_p(logits, p).log_softmax(-1)


def epsilon_removes_argmax(logits, epsilon):
    return logits.masked_fill(logits.softmax(-1) < epsilon, NEG_INF)


def epsilon_is_min_p(logits, epsilon):
    """Compares probabilities with epsilon * max probability (min-p) instead of epsilon."""
    return ref.min_p(logits, epsilon)


def typical_by_probability(logits, p):
    """Ranks tokens by probability (top-p) instead of closeness to the entropy."""
    return ref.top_p(logits, p)


def typical_drops_ties(logits, p):
    """Keeps exactly the prefix of the typicality ranking, not the tokens tied with its last one."""
    logp = logits.log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1, keepdim=True)
    order = (-logp - entropy).abs().argsort(dim=-1, stable=True)
    mass = logits.gather(-1, order).softmax(-1).cumsum(-1)
    keep_sorted = torch.arange(logits.shape[-1]) <= (mass < p).sum(-1, keepdim=True)
    return logits.masked_fill(~keep_sorted.scatter(-1, order, keep_sorted), NEG_INF)


def repetition_sign_error(logits, input_ids, penalty):
    """Divides every seen logit by the penalty: negative logits go up."""
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, input_ids, True)
    return torch.where(seen, logits / penalty, logits)


def repetition_per_occurrence(logits, input_ids, penalty):
    """Compounds the penalty once per occurrence."""
    counts = ref.token_counts(input_ids, logits.shape[-1], logits.dtype)
    factor = penalty**counts
    return torch.where(logits < 0, logits * factor, logits / factor)


def repetition_returns_log_probs(logits, input_ids, penalty):
    return ref.repetition_penalty(logits, input_ids, penalty).log_softmax(-1)


def presence_per_occurrence(logits, output_ids, presence, frequency):
    counts = ref.token_counts(output_ids, logits.shape[-1], logits.dtype)
    return logits - frequency * counts - presence * counts


def frequency_once(logits, output_ids, presence, frequency):
    seen = (ref.token_counts(output_ids, logits.shape[-1], logits.dtype) > 0).to(logits.dtype)
    return logits - frequency * seen - presence * seen


def presence_frequency_log_probs(logits, output_ids, presence, frequency):
    return ref.presence_frequency_penalty(logits, output_ids, presence, frequency).log_softmax(-1)


def ngram_window_off_by_one(logits, input_ids, n):
    """Matches the last n tokens instead of the last n - 1 (bans (n + 1)-gram completions)."""
    return ref.no_repeat_ngram(logits, input_ids, n + 1)


# --- the sampling step ---------------------------------------------------------------------------------------


def pipeline_min_p_first(logits, prompt_ids, output_ids, **params):
    """vLLM's order where HF's is expected (or the other way round)."""
    return ref.sampling_pipeline(logits, prompt_ids, output_ids, **params, order="vllm")


def pipeline_truncation_before_temperature(logits, prompt_ids, output_ids, temperature=1.0, **params):
    x = ref.sampling_pipeline(logits, prompt_ids, output_ids, temperature=1.0, **params)
    return x / temperature


def pipeline_temperature_after_softmax(logits, prompt_ids, output_ids, temperature=1.0, **params):
    """Divides the probabilities by the temperature, which renormalization undoes."""
    x = ref.sampling_pipeline(logits, prompt_ids, output_ids, temperature=1.0, **params)
    return (x.softmax(-1) / temperature).log()


def pipeline_repetition_output_only(logits, prompt_ids, output_ids, **params):
    return ref.sampling_pipeline(logits, prompt_ids[:, :0], output_ids, **params)


def pipeline_presence_over_prompt(logits, prompt_ids, output_ids, **params):
    return ref.sampling_pipeline(logits, prompt_ids, output_ids, **params, penalty_scope="prompt_and_output")


# --- samplers ------------------------------------------------------------------------------------------------


def sample_drops_lowest_mass(logits, generator=None):
    """Drops the least probable tokens carrying 5% of the mass (cosine similarity of frequencies stays ~0.998)."""
    probs = logits.double().softmax(-1)
    ascending, order = probs.sort(-1)
    drop = ascending.cumsum(-1) <= 0.05
    probs = probs.masked_fill(drop.scatter(-1, order, drop), 0.0)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def sample_unmasks_filtered(logits, generator=None):
    """Replaces -inf by 0 before the softmax, so filtered tokens come back."""
    return ref.sample(logits.nan_to_num(neginf=0.0), generator)


def sample_global_rng(logits, generator=None):
    return ref.sample(logits, None)


def top_k_sample_keeps_k_minus_one(logits, k, generator=None):
    return ref.sample(ref.top_k(logits, max(k - 1, 1)), generator)


def top_k_sample_tempered(logits, k, generator=None):
    """Samples from softmax(logits / 2) over the kept tokens."""
    return ref.sample(ref.top_k(logits, k) / 2, generator)


def top_k_sample_keeps_one_more(logits, k, generator=None):
    return ref.sample(ref.top_k(logits, k + 1), generator)


def top_k_sample_global_rng(logits, k, generator=None):
    return ref.sample(ref.top_k(logits, k), None)


def top_p_sample_exclusive(logits, p, generator=None):
    return ref.sample(top_p_exclusive_boundary(logits, p), generator)


def top_p_sample_keeps_one_more(logits, p, generator=None):
    """Keeps the token after the boundary too."""
    _, order, mass = _descending_mass(logits)
    keep_sorted = (mass - logits.softmax(-1).gather(-1, order)) < p
    keep_sorted = keep_sorted | torch.cat([torch.ones_like(keep_sorted[..., :1]), keep_sorted[..., :-1]], -1)
    return ref.sample(logits.masked_fill(~keep_sorted.scatter(-1, order, keep_sorted), NEG_INF), generator)


def top_p_sample_global_rng(logits, p, generator=None):
    return ref.sample(ref.top_p(logits, p), None)


def min_p_sample_absolute(logits, p, generator=None):
    probs = logits.softmax(-1)
    keep = (probs >= p) | (probs == probs.amax(-1, keepdim=True))
    return ref.sample(logits.masked_fill(~keep, NEG_INF), generator)


def min_p_sample_unfiltered(logits, p, generator=None):
    return ref.sample(logits, generator)


def min_p_sample_global_rng(logits, p, generator=None):
    return ref.sample(ref.min_p(logits, p), None)


# --- information measures ------------------------------------------------------------------------------------


def entropy_in_bits(logits):
    return ref.entropy(logits) / math.log(2)


def entropy_nan_on_masked(logits):
    """-(p * log p).sum() without the 0 log 0 = 0 convention: NaN where a logit is -inf."""
    p = logits.softmax(-1)
    return -(p * p.log()).sum(-1)


def ce_sum_reduction(input, target):
    return -input.log_softmax(-1).gather(-1, target[:, None]).sum()


def ce_base2(input, target):
    return ref.cross_entropy(input, target) / math.log(2)


def perplexity_mean_of_exp(logits, target):
    return (-logits.log_softmax(-1).gather(-1, target[:, None])).exp().mean()


def perplexity_base2(logits, target):
    return 2 ** ref.cross_entropy(logits, target)


# --- backward passes (issue 15): forward unchanged, a broken gradient in the logits ---------------------------

ce_zero_backward = zero_backward(torch.nn.functional.cross_entropy)
ce_drifting_backward = drifting_backward(torch.nn.functional.cross_entropy)
ce_detached = detached_argument(torch.nn.functional.cross_entropy, 0)
perplexity_zero_backward = zero_backward(ref.perplexity)
perplexity_drifting_backward = drifting_backward(ref.perplexity)
perplexity_detached = detached_argument(ref.perplexity, 0)
entropy_zero_backward = zero_backward(ref.entropy)
entropy_drifting_backward = drifting_backward(ref.entropy)
entropy_detached = detached_argument(ref.entropy, 0)
temperature_zero_backward = zero_backward(ref.temperature)
temperature_drifting_backward = drifting_backward(ref.temperature)
temperature_detached = detached_argument(ref.temperature, 0)

IGNORE_INDEX = -100


def _ce_gradient(input, target, mean=True, honour_ignore=True):
    """(softmax(input) - onehot(target)) per row, divided by the number of kept rows when `mean`; rows whose target
    is ignore_index zeroed when `honour_ignore`."""
    kept = target != IGNORE_INDEX
    safe = target.masked_fill(~kept, 0)
    grad = input.softmax(-1)
    grad = grad - torch.nn.functional.one_hot(safe, input.shape[-1]).to(grad.dtype)
    if honour_ignore:
        grad = grad * kept[:, None].to(grad.dtype)
    return grad / kept.sum().clamp(min=1) if mean else grad


class _HandWrittenCE(torch.autograd.Function):
    """A fused cross-entropy with its own backward (torch's forward, so only the gradient can be wrong)."""

    @staticmethod
    def forward(ctx, input, target, mean, honour_ignore, in_place):
        loss = torch.nn.functional.cross_entropy(input, target)
        grad = _ce_gradient(input, target, mean, honour_ignore)
        if in_place:  # Liger-style: the gradient overwrites the logits, saving a V-wide buffer per row
            input.copy_(grad)
            ctx.save_for_backward(input)
        else:
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return grad * g, None, None, None, None


class _TargetTermOnly(torch.autograd.Function):
    """A cross-entropy backward that keeps only the target's term, -onehot(t) / N, and drops softmax(x) / N (what
    torch's CPU float16 kernel returns past 65504 near-equal logits, where its log-softmax is -inf)."""

    @staticmethod
    def forward(ctx, input, target):
        ctx.save_for_backward(input, target)
        return torch.nn.functional.cross_entropy(input, target)

    @staticmethod
    def backward(ctx, g):
        input, target = ctx.saved_tensors
        onehot = torch.nn.functional.one_hot(target, input.shape[-1]).to(input.dtype)
        return -onehot * g / input.shape[0], None


def ce_backward_drops_softmax_term(input, target):
    return _TargetTermOnly.apply(input, target)


def perplexity_backward_drops_softmax_term(logits, target):
    return ce_backward_drops_softmax_term(logits, target).exp()


class _EntropyWithoutMean(torch.autograd.Function):
    """An entropy backward that returns -p log p, forgetting the -p H that the normalisation of p contributes (the
    full gradient is -p (log p + H))."""

    @staticmethod
    def forward(ctx, logits):
        ctx.save_for_backward(logits)
        return ref.entropy(logits)

    @staticmethod
    def backward(ctx, g):
        (logits,) = ctx.saved_tensors
        logp = logits.log_softmax(-1)
        return -logp.exp() * logp.nan_to_num(neginf=0.0) * g[..., None]


def entropy_backward_without_mean(logits):
    return _EntropyWithoutMean.apply(logits)


def ce_backward_sum_for_mean(input, target):
    """The gradient of the summed loss returned for the mean: N times too large for N rows."""
    return _HandWrittenCE.apply(input, target, False, True, False)


def ce_backward_ignores_ignore_index(input, target):
    """The forward leaves ignore_index rows out; the backward gives them softmax - onehot(0) anyway."""
    return _HandWrittenCE.apply(input, target, True, False, False)


def ce_writes_gradient_into_logits(input, target):
    """Liger-Kernel's trick: when the logits require grad, the forward writes their gradient into them in place."""
    return _HandWrittenCE.apply(input, target, True, True, input.requires_grad)


# --- kernel scale: exact within one tile, wrong past it -------------------------------------------------------
# Each passes `lmspec check ... --scale small` (every example fits in one tile) and fails at the default scale.

BUFFER = 1024  # a fixed candidate list (vLLM PR 1416: "the current top-k operation supports a maximum of 1024")
BLOCK = 4096  # one program instance's block of the vocabulary


def _wrap_int16(ids, vocab):
    """Token ids stored in int16: past 32767 they wrap negative, and a flat `row * V + id` offset then lands on
    another token (modelled within the row)."""
    return ids.to(torch.int16).to(torch.int64) % vocab


def top_k_buffer_1024(logits, k):
    """Selects candidates into a 1024-wide buffer (vLLM PR 1416's kernel, FlashInfer's fixed top-k list): k > 1024
    keeps 1024."""
    return ref.top_k(logits, min(k, BUFFER))


def top_p_buffer_1024(logits, p):
    """Finds the nucleus among the 1024 most probable tokens only: a nucleus of thousands of tokens is cut at 1024."""
    candidates = logits.topk(min(BUFFER, logits.shape[-1]), dim=-1).indices
    inside = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, candidates, True)
    return ref.top_p(logits, p).masked_fill(~inside, NEG_INF)


def top_p_sorts_first_block(logits, p):
    """Sorts only the first block of 1024 tokens; the later blocks follow unsorted, in id order."""
    head = logits[..., :BUFFER].argsort(dim=-1, descending=True, stable=True)
    tail = torch.arange(head.shape[-1], logits.shape[-1], device=logits.device).expand(logits.shape[0], -1)
    order = torch.cat([head, tail], dim=-1)
    probs = logits.softmax(-1).gather(-1, order)
    keep_sorted = probs.cumsum(-1) - probs < p
    keep_sorted[..., 0] = True
    return logits.masked_fill(~keep_sorted.scatter(-1, order, keep_sorted), NEG_INF)


def top_k_sample_buffer_1024(logits, k, generator=None):
    return ref.sample(top_k_buffer_1024(logits, k), generator)


def top_p_sample_buffer_1024(logits, p, generator=None):
    return ref.sample(top_p_buffer_1024(logits, p), generator)


def sample_int16_ids(logits, generator=None):
    """Writes the drawn ids into an int16 buffer: ids past 32767 come back negative."""
    return ref.sample(logits, generator).to(torch.int16)


def sample_first_block(logits, generator=None):
    """Draws within the first block of 1024 tokens only (the other blocks' offsets never added)."""
    return ref.sample(logits[..., :BUFFER], generator)


def repetition_penalty_int16_ids(logits, input_ids, penalty):
    """Indexes the logits with int16 token ids: ids past 32767 penalize another token."""
    return ref.repetition_penalty(logits, _wrap_int16(input_ids, logits.shape[-1]), penalty)


def presence_frequency_int16_ids(logits, output_ids, presence, frequency):
    """Counts occurrences into bins indexed by int16 ids."""
    return ref.presence_frequency_penalty(logits, _wrap_int16(output_ids, logits.shape[-1]), presence, frequency)


def ce_blockwise_lse_4096(input, target):
    """Computes logsumexp per block of 4096 tokens and never combines the blocks: each row's loss uses the block
    holding its target (the online-softmax reduction across program instances left out; Liger-Kernel-style fused
    cross-entropy kernels carry it across blocks, and numerics at large vocabularies are a known trouble spot,
    NVIDIA/Megatron-LM PR 2206)."""
    x = input.double()
    starts = (target // BLOCK) * BLOCK
    cols = torch.arange(x.shape[-1], device=x.device)
    in_block = (cols >= starts[:, None]) & (cols < starts[:, None] + BLOCK)
    lse = x.masked_fill(~in_block, NEG_INF).logsumexp(-1)
    return (lse - x.gather(-1, target[:, None])[:, 0]).mean().to(input.dtype)


def ce_int16_targets(input, target):
    """Gathers the target logit with an int16 index: targets past 32767 read another token's logit."""
    return ref.cross_entropy(input, _wrap_int16(target, input.shape[-1]))


def temperature_shifted(logits, t):
    """Divides the max-subtracted logits and adds max / t back: every element errs by ~eps * |max / t|, within the
    norm-wise bound (8 eps of the largest element) but far beyond the element-wise one on logits near 0."""
    m = logits.amax(-1, keepdim=True)
    return (logits - m) / t + m / t


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("temperature", "temperature_after_softmax", {"temperature.identity.one", "temperature.reference.matches"}),
    ("temperature", "temperature_multiplies", {"temperature.limit.zero_is_greedy", "temperature.reference.matches"}),
    ("top_k", "top_k_drops_ties", {"top_k.keeps.k_largest_and_ties"}),
    ("top_k", "top_k_no_clamp", {"top_k.identity.k_at_least_vocab"}),
    ("top_p", "top_p_exclusive_boundary", {"top_p.keeps.smallest_set"}),
    ("top_p", "top_p_no_keep_one", {"top_p.nonempty.tiny_p"}),
    ("top_p", "top_p_returns_log_probs", {"top_p.identity.p_one", "top_p.keeps.smallest_set"}),
    ("top_p", "top_p_confuses_p", {"top_p.keeps.smallest_set", "top_p.monotone.in_p"}),
    ("top_p", "top_p_keeps_boundary_ties", {"top_p.ties.minimal_any_choice"}),
    ("top_p", "lmspec.reference.sampling:top_p", {"top_p.ties.minimal_any_choice"}, {"top_p_ties": "lowest_index"}),
    ("min_p", "min_p_absolute", {"min_p.keeps.relative_threshold"}),
    ("min_p", "min_p_returns_log_probs", {"min_p.identity.zero", "min_p.keeps.relative_threshold"}),
    ("epsilon_cutoff", "epsilon_removes_argmax", {"epsilon_cutoff.keeps.argmax_always"}),
    ("epsilon_cutoff", "epsilon_is_min_p", {"epsilon_cutoff.keeps.above_epsilon"}),
    ("typical_p", "typical_by_probability", {"typical_p.keeps.most_typical_set", "typical_p.ties.kept"}),
    ("typical_p", "typical_drops_ties", {"typical_p.ties.kept"}),
    ("repetition_penalty", "repetition_sign_error",
     {"repetition_penalty.reference.matches", "repetition_penalty.sign.negative_multiplied"}),
    ("repetition_penalty", "repetition_per_occurrence", {"repetition_penalty.count.once_per_token"}),
    ("repetition_penalty", "repetition_returns_log_probs", {"repetition_penalty.identity.one"}),
    ("presence_frequency_penalty", "presence_per_occurrence",
     {"presence_frequency_penalty.presence.once_per_token", "presence_frequency_penalty.reference.matches"}),
    ("presence_frequency_penalty", "frequency_once",
     {"presence_frequency_penalty.frequency.per_occurrence", "presence_frequency_penalty.reference.matches"}),
    ("presence_frequency_penalty", "presence_frequency_log_probs", {"presence_frequency_penalty.identity.zero"}),
    ("no_repeat_ngram", "ngram_window_off_by_one", {"no_repeat_ngram.bans.completing_tokens"}),
    ("sampling_pipeline", "pipeline_min_p_first", {"sampling_pipeline.order.min_p_placement"}),
    ("sampling_pipeline", "lmspec.reference.sampling:sampling_pipeline",
     {"sampling_pipeline.order.min_p_placement"}, {"order": "vllm"}),
    ("sampling_pipeline", "pipeline_truncation_before_temperature",
     {"sampling_pipeline.order.temperature_before_truncation"}),
    ("sampling_pipeline", "pipeline_temperature_after_softmax",
     {"sampling_pipeline.order.temperature_before_truncation", "sampling_pipeline.reference.matches"}),
    ("sampling_pipeline", "pipeline_repetition_output_only", {"sampling_pipeline.penalties.repetition_over_context"}),
    ("sampling_pipeline", "pipeline_presence_over_prompt", {"sampling_pipeline.penalties.presence_frequency_scope"}),
    ("sample", "sample_drops_lowest_mass", {"sample.frequency.chi_square", "sample.support.kept_all_reachable"}),
    ("sample", "sample_unmasks_filtered", {"sample.frequency.chi_square", "sample.support.filtered_never_drawn"}),
    ("sample", "sample_global_rng", {"sample.generator.reproducible"}),
    ("top_k_sample", "top_k_sample_keeps_k_minus_one", {"top_k_sample.support.kept_all_reachable"}),
    ("top_k_sample", "top_k_sample_tempered", {"top_k_sample.frequency.chi_square"}),
    ("top_k_sample", "top_k_sample_keeps_one_more", {"top_k_sample.support.filtered_never_drawn"}),
    ("top_k_sample", "top_k_sample_global_rng", {"top_k_sample.generator.reproducible"}),
    ("top_p_sample", "top_p_sample_exclusive",
     {"top_p_sample.frequency.chi_square", "top_p_sample.support.kept_all_reachable"}),
    ("top_p_sample", "top_p_sample_keeps_one_more", {"top_p_sample.support.filtered_never_drawn"}),
    ("top_p_sample", "top_p_sample_global_rng", {"top_p_sample.generator.reproducible"}),
    ("min_p_sample", "min_p_sample_absolute",
     {"min_p_sample.frequency.chi_square", "min_p_sample.support.kept_all_reachable"}),
    ("min_p_sample", "min_p_sample_unfiltered", {"min_p_sample.support.filtered_never_drawn"}),
    ("min_p_sample", "min_p_sample_global_rng", {"min_p_sample.generator.reproducible"}),
    ("entropy", "entropy_in_bits", {"entropy.reference.matches", "entropy.uniform.log_vocab"}),
    ("entropy", "entropy_nan_on_masked", {"entropy.range.zero_to_log_support"}),
    ("cross_entropy", "ce_sum_reduction",
     {"cross_entropy.reduction.mean_over_rows", "cross_entropy.reference.matches"}),
    ("cross_entropy", "ce_base2", {"cross_entropy.uniform.log_vocab"}),
    ("perplexity", "perplexity_mean_of_exp", {"perplexity.geometric_mean", "perplexity.reference.matches"}),
    ("perplexity", "perplexity_base2", {"perplexity.uniform.vocab"}),
    # kernel scale: exact within one tile, wrong past it
    ("top_k", "top_k_buffer_1024", {"top_k.keeps.k_largest_and_ties", "top_k.identity.k_at_least_vocab"}),
    ("top_p", "top_p_buffer_1024", {"top_p.identity.p_one", "top_p.keeps.smallest_set"}),
    ("top_p", "top_p_sorts_first_block", {"top_p.keeps.smallest_set"}),
    ("top_k_sample", "top_k_sample_buffer_1024", {"top_k_sample.large_vocab.binned_frequency"}),
    ("top_p_sample", "top_p_sample_buffer_1024", {"top_p_sample.large_vocab.binned_frequency"}),
    ("sample", "sample_int16_ids", {"sample.large_vocab.binned_frequency"}),
    ("sample", "sample_first_block", {"sample.large_vocab.binned_frequency"}),
    ("min_p_sample", "min_p_sample_unfiltered", {"min_p_sample.large_vocab.binned_frequency"}),
    ("repetition_penalty", "repetition_penalty_int16_ids", {"repetition_penalty.reference.matches"}),
    ("cross_entropy", "ce_blockwise_lse_4096", {"cross_entropy.reference.matches", "cross_entropy.uniform.log_vocab"}),
    ("cross_entropy", "ce_int16_targets", {"cross_entropy.reference.matches"}),
    # the element-wise bound
    ("temperature", "temperature_shifted", {"temperature.reference.matches"}),
    # backward passes (issue 15): finite differences run in float64 only
    ("cross_entropy", "ce_zero_backward", {"cross_entropy.backward.matches_reference"}),
    ("cross_entropy", "ce_zero_backward", {"cross_entropy.backward.finite_differences"}, {}, ("float64",)),
    ("cross_entropy", "ce_drifting_backward", {"cross_entropy.backward.repeatable"}),
    ("cross_entropy", "ce_detached", {"cross_entropy.backward.complete"}),
    ("cross_entropy", "ce_backward_sum_for_mean", {"cross_entropy.backward.matches_reference"}),
    ("cross_entropy", "ce_backward_sum_for_mean", {"cross_entropy.backward.finite_differences"}, {}, ("float64",)),
    ("cross_entropy", "ce_backward_ignores_ignore_index", {"cross_entropy.backward.ignored_targets_zero"}),
    ("cross_entropy", "ce_writes_gradient_into_logits",
     {"cross_entropy.backward.matches_reference", "cross_entropy.backward.complete",
      "cross_entropy.backward.ignored_targets_zero"}),
    ("cross_entropy", "ce_backward_drops_softmax_term",
     {"cross_entropy.backward.matches_reference", "cross_entropy.backward.rows_sum_to_zero"}),
    ("perplexity", "perplexity_zero_backward", {"perplexity.backward.matches_reference"}),
    ("perplexity", "perplexity_zero_backward", {"perplexity.backward.finite_differences"}, {}, ("float64",)),
    ("perplexity", "perplexity_backward_drops_softmax_term", {"perplexity.backward.rows_sum_to_zero"}),
    ("entropy", "entropy_backward_without_mean",
     {"entropy.backward.rows_sum_to_zero", "entropy.backward.matches_reference"}),
    ("perplexity", "perplexity_drifting_backward", {"perplexity.backward.repeatable"}),
    ("perplexity", "perplexity_detached", {"perplexity.backward.complete"}),
    ("entropy", "entropy_zero_backward", {"entropy.backward.matches_reference"}),
    ("entropy", "entropy_zero_backward", {"entropy.backward.finite_differences"}, {}, ("float64",)),
    ("entropy", "entropy_drifting_backward", {"entropy.backward.repeatable"}),
    ("entropy", "entropy_detached", {"entropy.backward.complete"}),
    ("temperature", "temperature_zero_backward", {"temperature.backward.matches_reference"}),
    ("temperature", "temperature_zero_backward", {"temperature.backward.finite_differences"}, {}, ("float64",)),
    ("temperature", "temperature_drifting_backward", {"temperature.backward.repeatable"}),
    ("temperature", "temperature_detached", {"temperature.backward.complete"}),
]

# mutants whose bug shows as an exception on a valid input (tests/test_mutants.py expects cause "raised")
RAISES = {"top_k_no_clamp"}
