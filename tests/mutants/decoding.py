"""Broken decoders: each one plausible bug."""

import torch

from lmspec.reference.decoding import search as ref
from lmspec.reference.decoding import speculative, variants


# --- greedy and sampling -------------------------------------------------------------------------------------


def greedy_last_token_only(model, input_ids, max_new_tokens, eos_token_id=None, pad_token_id=None, min_new_tokens=0,
                           context_size=None):
    """Feeds the model only the last token (a bigram decoder)."""
    return ref.greedy_search(model, input_ids, max_new_tokens, eos_token_id, pad_token_id, min_new_tokens,
                             context_size=1)


def greedy_no_padding_after_eos(model, input_ids, max_new_tokens, eos_token_id=None, pad_token_id=None,
                                min_new_tokens=0, context_size=None):
    """Keeps decoding finished rows, and only stops at max_new_tokens."""
    ids = input_ids
    for step in range(max_new_tokens):
        logits = ref.next_logits(model, ids)
        if eos_token_id is not None and step < min_new_tokens:
            logits[:, eos_token_id] = float("-inf")
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], -1)
    return ids


def greedy_crop_off_by_one(model, input_ids, max_new_tokens, eos_token_id=None, pad_token_id=None, min_new_tokens=0,
                           context_size=None):
    crop = None if context_size is None else context_size + 1
    return ref.greedy_search(model, input_ids, max_new_tokens, eos_token_id, pad_token_id, min_new_tokens, crop)


def sample_argmax(model, input_ids, max_new_tokens, generator=None, eos_token_id=None, pad_token_id=None,
                  min_new_tokens=0):
    return ref.greedy_search(model, input_ids, max_new_tokens, eos_token_id, pad_token_id, min_new_tokens)


def sample_search_global_rng(model, input_ids, max_new_tokens, generator=None, eos_token_id=None, pad_token_id=None,
                             min_new_tokens=0):
    return ref.sample_search(model, input_ids, max_new_tokens, None, eos_token_id, pad_token_id, min_new_tokens)


# --- beam search ---------------------------------------------------------------------------------------------


def beam_length_over_total_length(model, input_ids, num_beams, max_new_tokens, **kw):
    """Normalizes by the whole sequence length, prompt included (transformers before 4.37)."""
    seqs, scores = ref.beam_search(model, input_ids, num_beams, max_new_tokens, **kw)
    alpha, length = kw.get("length_penalty", 1.0), input_ids.shape[-1]
    eos = kw.get("eos_token_id")
    generated = torch.tensor([_generated(s, length, eos) for s in seqs.tolist()], dtype=torch.float64)
    return seqs, torch.where(scores > -1e8, scores * generated**alpha / (generated + length) ** alpha, scores)


def _generated(seq, length, eos):
    gen = seq[length:]
    return gen.index(eos) + 1 if eos is not None and eos in gen else len(gen)


def beam_early_stopping_always(model, input_ids, num_beams, max_new_tokens, **kw):
    """Treats every early_stopping setting as True."""
    return ref.beam_search(model, input_ids, num_beams, max_new_tokens, **{**kw, "early_stopping": True})


def beam_greedy(model, input_ids, num_beams, max_new_tokens, **kw):
    """Ignores num_beams for the search (keeps the returned count)."""
    seqs, scores = ref.beam_search(model, input_ids, 1, max_new_tokens, **{**kw, "num_return_sequences": 1})
    r = kw.get("num_return_sequences", 1)
    return seqs.repeat_interleave(r, 0), scores.repeat_interleave(r, 0)


def beam_one_token_short(model, input_ids, num_beams, max_new_tokens, **kw):
    """An off-by-one in the length limit: one token fewer than max_new_tokens (when more than one is asked for)."""
    return ref.beam_search(model, input_ids, num_beams, max(1, max_new_tokens - 1), **kw)


def beam_eos_not_finalized(model, input_ids, num_beams, max_new_tokens, **kw):
    """Ignores EOS: hypotheses run on through it to max_new_tokens."""
    return ref.beam_search(model, input_ids, num_beams, max_new_tokens,
                           **{**kw, "eos_token_id": None, "pad_token_id": None})


def beam_min_new_ignored(model, input_ids, num_beams, max_new_tokens, **kw):
    return ref.beam_search(model, input_ids, num_beams, max_new_tokens, **{**kw, "min_new_tokens": 0})


def diverse_no_penalty(model, input_ids, num_beams, num_beam_groups, diversity_penalty, max_new_tokens, **kw):
    return ref.diverse_beam_search(model, input_ids, num_beams, num_beam_groups, 0.0, max_new_tokens, **kw)


def diverse_ignores_groups(model, input_ids, num_beams, num_beam_groups, diversity_penalty, max_new_tokens, **kw):
    """One beam search over all the beams."""
    return ref.beam_search(model, input_ids, num_beams, max_new_tokens, **kw)


def diverse_penalizes_own_group(model, input_ids, num_beams, num_beam_groups, diversity_penalty, max_new_tokens, **kw):
    """Penalizes the next token by its frequency in the last generated position of every beam, its own group's
    included."""
    def penalized(ids):
        logits = model(ids).clone()
        if ids.shape[-1] > input_ids.shape[-1]:
            counts = torch.bincount(ids[:, -1], minlength=logits.shape[-1]).to(logits.dtype)
            logits[:, -1] = logits[:, -1].log_softmax(-1) - diversity_penalty * counts
        return logits
    return ref.diverse_beam_search(penalized, input_ids, num_beams, num_beam_groups, diversity_penalty, max_new_tokens,
                                   **kw)


# --- speculative decoding ------------------------------------------------------------------------------------


def acceptance_no_residual(target_probs, draft_probs):
    """On rejection resamples from the target itself."""
    accept, _ = speculative.speculative_acceptance(target_probs, draft_probs)
    return accept, target_probs.clone()


def acceptance_unclamped(target_probs, draft_probs):
    _, residual = speculative.speculative_acceptance(target_probs, draft_probs)
    return target_probs / draft_probs, residual


def acceptance_target_probability(target_probs, draft_probs):
    """Accepts with probability p(x) instead of p(x) / q(x)."""
    _, residual = speculative.speculative_acceptance(target_probs, draft_probs)
    return target_probs.clone(), residual


def sampling_no_residual(draft_tokens, draft_probs, target_probs, generator=None):
    return _sampling_with_residual_p(draft_tokens, draft_probs, target_probs, generator)


def _sampling_with_residual_p(draft_tokens, draft_probs, target_probs, generator):
    """The accept rule, but a rejection samples from p instead of norm(max(0, p - q))."""
    b, k = draft_tokens.shape
    q = draft_probs.gather(-1, draft_tokens[..., None]).squeeze(-1)
    p = target_probs[:, :k].gather(-1, draft_tokens[..., None]).squeeze(-1)
    u = torch.rand(b, k, generator=generator, dtype=torch.float64)
    n = (u * q < p).to(torch.int64).cumprod(-1).sum(-1)
    rows = torch.arange(b)
    sampled = torch.multinomial(target_probs[rows, n].double(), 1, generator=generator).squeeze(-1)
    drafts_then_zero = torch.cat([draft_tokens, torch.zeros_like(n)[:, None]], -1)
    out = torch.where(torch.arange(k + 1)[None] < n[:, None], drafts_then_zero, -1)
    out[rows, n] = sampled
    return out


def sampling_accepts_by_target_prob(draft_tokens, draft_probs, target_probs, generator=None):
    """Accepts while u < p(x), ignoring q(x)."""
    ones = torch.ones_like(draft_probs)
    return speculative.speculative_sampling(draft_tokens, ones, target_probs, generator)


def sampling_global_rng(draft_tokens, draft_probs, target_probs, generator=None):
    return speculative.speculative_sampling(draft_tokens, draft_probs, target_probs, None)


def decode_greedy_accepts_drafts(target_model, draft_model, input_ids, max_new_tokens, num_draft_tokens, do_sample=True,
                                 generator=None):
    """Greedy mode keeps the draft tokens without checking them against the target."""
    if do_sample:
        return speculative.speculative_decode(target_model, draft_model, input_ids, max_new_tokens, num_draft_tokens,
                                              True, generator)
    return ref.greedy_search(draft_model, input_ids, max_new_tokens)


def decode_one_call_per_token(target_model, draft_model, input_ids, max_new_tokens, num_draft_tokens, do_sample=True,
                              generator=None):
    """Verifies the draft with one target call per token."""
    return speculative.speculative_decode(target_model, draft_model, input_ids, max_new_tokens, 0, do_sample, generator)


def decode_no_residual(target_model, draft_model, input_ids, max_new_tokens, num_draft_tokens, do_sample=True,
                       generator=None):
    """Samples the draft, accepts with the right probability, but resamples rejections from the target."""
    original = speculative.speculative_sampling
    speculative.speculative_sampling = _sampling_with_residual_p
    try:
        return speculative.speculative_decode(target_model, draft_model, input_ids, max_new_tokens, num_draft_tokens,
                                              do_sample, generator)
    finally:
        speculative.speculative_sampling = original


# --- contrastive search, DoLa, grammar -----------------------------------------------------------------------


def contrastive_penalty_sign(model, input_ids, top_k, penalty_alpha, max_new_tokens):
    """Adds the degeneration penalty instead of subtracting it (rewards repeating the context)."""
    return _contrastive(model, input_ids, top_k, penalty_alpha, max_new_tokens, sign=+1.0)


def _contrastive(model, input_ids, top_k, alpha, steps, sign=-1.0, candidates=None):
    ids = input_ids
    for _ in range(steps):
        logits, hidden = model(ids)
        probs = logits[:, -1].double().softmax(-1)
        k = candidates or top_k
        top_probs, top_tokens = probs.topk(min(k, probs.shape[-1]), dim=-1)
        k = top_tokens.shape[-1]
        cand = torch.cat([ids.repeat_interleave(k, 0), top_tokens.reshape(-1, 1)], -1)
        h = model(cand)[1][:, -1].double()
        cos = torch.nn.functional.cosine_similarity(hidden.double().repeat_interleave(k, 0), h[:, None], dim=-1)
        score = (1 - alpha) * top_probs + sign * alpha * cos.amax(-1).reshape(-1, k)
        ids = torch.cat([ids, top_tokens.gather(-1, score.argmax(-1, keepdim=True))], -1)
    return ids


def contrastive_all_candidates(model, input_ids, top_k, penalty_alpha, max_new_tokens):
    """Ranks the whole vocabulary, not the top k."""
    return _contrastive(model, input_ids, top_k, penalty_alpha, max_new_tokens, candidates=10**6)


def contrastive_fixed_alpha(model, input_ids, top_k, penalty_alpha, max_new_tokens):
    return variants.contrastive_search(model, input_ids, top_k, 0.6, max_new_tokens)


def contrastive_k_plus_one(model, input_ids, top_k, penalty_alpha, max_new_tokens):
    return _contrastive(model, input_ids, top_k, penalty_alpha, max_new_tokens, candidates=top_k + 1)


def dola_min_jsd(final_logits, premature_logits, relative_top=0.1):
    """Contrasts with the closest layer instead of the farthest."""
    if premature_logits.shape[0] > 1:
        jsd = variants.jensen_shannon(final_logits, premature_logits)
        premature_logits = premature_logits[jsd.argmin(0), torch.arange(final_logits.shape[0])][None]
    return variants.dola_logits(final_logits, premature_logits, relative_top)


def dola_no_plausibility(final_logits, premature_logits, relative_top=0.1):
    return variants.dola_logits(final_logits, premature_logits, relative_top=1e-30)


def dola_no_contrast(final_logits, premature_logits, relative_top=0.1):
    out = variants.dola_logits(final_logits, premature_logits, relative_top)
    return torch.where(out > float("-inf"), final_logits.log_softmax(-1), out)


def grammar_eos_always_allowed(model, input_ids, transitions, accepting, eos_token_id, max_new_tokens, generator=None):
    return variants.grammar_constrained_sample(model, input_ids, transitions, torch.ones_like(accepting), eos_token_id,
                                               max_new_tokens, generator)


def grammar_state_not_advanced(model, input_ids, transitions, accepting, eos_token_id, max_new_tokens, generator=None):
    """Masks every step with the start state's allowed tokens."""
    frozen = transitions.clone()
    frozen[frozen >= 0] = 0
    return variants.grammar_constrained_sample(model, input_ids, frozen, accepting[:1].expand_as(accepting).clone(),
                                               eos_token_id, max_new_tokens, generator)


def grammar_mask_after_sampling(model, input_ids, transitions, accepting, eos_token_id, max_new_tokens, generator=None):
    """Samples unconstrained, then replaces a disallowed token by the most probable allowed one."""
    ids = input_ids
    state = torch.zeros(ids.shape[0], dtype=torch.int64)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        logits = ref.next_logits(model, ids)
        token = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
        allowed = variants.allowed_tokens(transitions, accepting, state, eos_token_id)
        best = logits.masked_fill(~allowed, float("-inf")).argmax(-1)
        token = torch.where(allowed.gather(-1, token[:, None]).squeeze(-1), token, best)
        token = torch.where(done, torch.full_like(token, eos_token_id), token)
        state = torch.where(~done & (token != eos_token_id), transitions[state, token], state)
        done |= token == eos_token_id
        ids = torch.cat([ids, token[:, None]], -1)
        if done.all():
            break
    return ids


def grammar_uniform_over_allowed(model, input_ids, transitions, accepting, eos_token_id, max_new_tokens,
                                 generator=None):
    """Ignores the model: uniform over the allowed tokens."""
    flat = lambda ids: torch.zeros_like(model(ids))  # noqa: E731
    return variants.grammar_constrained_sample(flat, input_ids, transitions, accepting, eos_token_id, max_new_tokens,
                                               generator)


# --- exact with a tiny vocabulary, wrong with a real one (drawn from scale "kernel" up) ----------------------


def greedy_ids_int16(model, input_ids, max_new_tokens, eos_token_id=None, pad_token_id=None, min_new_tokens=0,
                     context_size=None):
    """Keeps the ids in an int16 buffer: ids above 32767 wrap negative (a real model's vocabulary has 32000 to
    151936 tokens; urvashik/knnlm#6, int16 token ids with Wikitext-103's vocabulary)."""
    out = ref.greedy_search(model, input_ids, max_new_tokens, eos_token_id, pad_token_id, min_new_tokens,
                            context_size)
    return out.to(torch.int16)


def _argmax_tile_local(logits, tile=1024):
    """An argmax over the vocabulary in tiles of 1024: each tile's maximum, then the best tile, but the index
    returned is the one within that tile (the tile's offset is never added)."""
    v = logits.shape[-1]
    padded = torch.nn.functional.pad(logits, (0, -v % tile), value=float("-inf"))
    best, local = padded.reshape(*logits.shape[:-1], -1, tile).max(dim=-1)
    return local.gather(-1, best.argmax(-1, keepdim=True)).squeeze(-1)


def greedy_argmax_tile_offset(model, input_ids, max_new_tokens, eos_token_id=None, pad_token_id=None,
                              min_new_tokens=0, context_size=None):
    """A tiled argmax that forgets the tile's offset: exact below 1024 tokens, wrong whenever the best token lies
    past the first tile."""
    return ref._decode(model, input_ids, max_new_tokens, _argmax_tile_local, eos_token_id, pad_token_id,
                       min_new_tokens, context_size)


def beam_ids_int16(model, input_ids, num_beams, max_new_tokens, **kw):
    """Beam search whose sequence buffer is int16: ids above 32767 (prompt and generated) wrap negative."""
    seqs, scores = ref.beam_search(model, input_ids, num_beams, max_new_tokens, **kw)
    return seqs.to(torch.int16), scores


def acceptance_residual_first_tile(target_probs, draft_probs):
    """Normalizes the residual by a one-block reduction over the first 1024 tokens only (the loop over further
    blocks is missing): exact up to 1024 tokens, a residual that does not sum to 1 past them."""
    accept, _ = speculative.speculative_acceptance(target_probs, draft_probs)
    excess = (target_probs - draft_probs).clamp(min=0.0)
    total = excess[:, :1024].sum(-1, keepdim=True)
    residual = torch.where(total > 0, excess / torch.where(total > 0, total, torch.ones_like(total)), target_probs)
    return accept, residual


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("greedy_search", "greedy_last_token_only", {"greedy_search.argmax_chain"}),
    ("greedy_search", "greedy_no_padding_after_eos", {"greedy_search.eos.padding_and_stop"}),
    ("greedy_search", "greedy_crop_off_by_one", {"greedy_search.context.cropped"}),
    ("greedy_search", "greedy_ids_int16", {"greedy_search.argmax_chain", "greedy_search.eos.padding_and_stop"}),
    ("greedy_search", "greedy_argmax_tile_offset",
     {"greedy_search.argmax_chain", "greedy_search.eos.padding_and_stop"}),
    ("sample_search", "sample_argmax", {"sample_search.distribution.chi_square"}),
    ("sample_search", "sample_search_global_rng", {"sample_search.generator.reproducible"}),
    ("beam_search", "beam_length_over_total_length",
     {"beam_search.reference.matches", "beam_search.score.length_penalty"}),
    ("beam_search", "beam_early_stopping_always", {"beam_search.early_stopping.modes"}),
    ("beam_search", "beam_greedy", {"beam_search.exhaustive.exact_best"}),
    ("beam_search", "beam_one_token_short", {"beam_search.width_one.greedy"}),
    ("beam_search", "beam_eos_not_finalized", {"beam_search.eos.finished_hypotheses"}),
    ("beam_search", "beam_min_new_ignored", {"beam_search.eos.finished_hypotheses"}),
    ("beam_search", "beam_ids_int16", {"beam_search.reference.matches", "beam_search.width_one.greedy"}),
    ("diverse_beam_search", "diverse_no_penalty",
     {"diverse_beam_search.penalty.distinct_first_tokens", "diverse_beam_search.reference.matches"}),
    ("diverse_beam_search", "diverse_ignores_groups", {"diverse_beam_search.zero_penalty.independent_groups"}),
    ("diverse_beam_search", "diverse_penalizes_own_group", {"diverse_beam_search.one_group.is_beam_search"}),
    ("speculative_acceptance", "acceptance_no_residual", {"speculative_acceptance.exact.recovers_target"}),
    ("speculative_acceptance", "acceptance_unclamped",
     {"speculative_acceptance.exact.recovers_target", "speculative_acceptance.reference.matches"}),
    ("speculative_acceptance", "acceptance_target_probability", {"speculative_acceptance.equal_draft.accepts_all"}),
    ("speculative_acceptance", "acceptance_residual_first_tile", {"speculative_acceptance.reference.matches"}),
    ("speculative_sampling", "sampling_no_residual",
     {"speculative_sampling.distribution.chi_square", "speculative_sampling.output.accepted_prefix"}),
    ("speculative_sampling", "sampling_accepts_by_target_prob", {"speculative_sampling.equal_draft.accepts_all"}),
    ("speculative_sampling", "sampling_global_rng", {"speculative_sampling.generator.reproducible"}),
    ("speculative_decode", "decode_greedy_accepts_drafts", {"speculative_decode.greedy.equals_greedy"}),
    ("speculative_decode", "decode_one_call_per_token", {"speculative_decode.equal_draft.one_call_per_round"}),
    ("speculative_decode", "decode_no_residual", {"speculative_decode.distribution.chi_square"}),
    ("contrastive_search", "contrastive_penalty_sign", {"contrastive_search.reference.matches"}),
    ("contrastive_search", "contrastive_all_candidates", {"contrastive_search.candidates.top_k"}),
    ("contrastive_search", "contrastive_fixed_alpha", {"contrastive_search.alpha_zero.greedy"}),
    ("contrastive_search", "contrastive_k_plus_one", {"contrastive_search.top_k_one.greedy"}),
    ("dola_logits", "dola_min_jsd", {"dola_logits.layer_selection.max_jsd", "dola_logits.reference.matches"}),
    ("dola_logits", "dola_no_plausibility", {"dola_logits.plausibility.relative_top"}),
    ("dola_logits", "dola_no_contrast", {"dola_logits.contrast.identical_layer_zero"}),
    ("grammar_constrained_sample", "grammar_eos_always_allowed", {"grammar_constrained_sample.text.accepted"}),
    ("grammar_constrained_sample", "grammar_state_not_advanced", {"grammar_constrained_sample.text.accepted"}),
    ("grammar_constrained_sample", "grammar_mask_after_sampling",
     {"grammar_constrained_sample.distribution.renormalized"}),
    ("grammar_constrained_sample", "grammar_uniform_over_allowed",
     {"grammar_constrained_sample.permissive.equals_unconstrained"}),
]
