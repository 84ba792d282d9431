"""Contrastive search, DoLa, and grammar-constrained sampling.

transformers 5 moved contrastive search and DoLa to Hub repositories (transformers-community/contrastive-search,
transformers-community/dola), which cannot be loaded here: these references stand alone, held by their invariants
and by the papers, and follow the transformers 4.x code the Hub versions were taken from.

- contrastive search: Su et al. 2022, "A Contrastive Framework for Neural Text Generation", eq. 5: among the top-k
  tokens v by model probability, choose argmax (1 - alpha) p(v | x) - alpha max_j cos(h_v, h_j), where h_v is the
  last-layer hidden state of the candidate and h_j those of every context token (prompt included); transformers
  4.x `_contrastive_search` / `_ranking_fast`. alpha = 0 is greedy decoding.
- DoLa: Chuang et al. 2024, "DoLa: Decoding by Contrasting Layers Improves Factuality", eqs. 2-4: the premature
  layer M is the candidate with the largest Jensen-Shannon divergence from the final layer's next-token
  distribution; the output is log q_N(x) - log q_M(x) on the tokens with q_N(x) >= relative_top * max q_N (the
  adaptive plausibility constraint), -inf elsewhere. transformers 4.x `_dola_select_contrast` chooses one layer for
  the whole batch (JSD averaged over rows); the paper chooses per sequence (option `layer_selection`).
- grammar-constrained sampling: a token-level deterministic finite automaton masks the tokens that would leave the
  language (as Outlines and llama.cpp grammars do; Willard & Louf 2023, "Efficient Guided Generation for Large
  Language Models", sec. 3); EOS is allowed only in an accepting state. transformers' `prefix_allowed_tokens_fn`
  (PrefixConstrainedLogitsProcessor) can express the same mask.
"""

from __future__ import annotations

from typing import Literal

import torch

from .._typing import Bool, Float, Int, Tensor, typechecked
from .search import Model

HiddenModel = Model  # ids [B, L] -> (logits [B, L, V], hidden [B, L, D])


# --- contrastive search --------------------------------------------------------------------------------------


@typechecked
def contrastive_search(model: HiddenModel, input_ids: Int[Tensor, "batch length"], top_k: int, penalty_alpha: float,
                       max_new_tokens: int) -> Int[Tensor, "batch total"]:
    """Each step: the top-k tokens by probability; the degeneration penalty of a candidate is the largest cosine
    similarity between its hidden state and any context hidden state; pick the best (1 - a) p - a penalty
    (the first, i.e. most probable, among ties)."""
    ids = input_ids
    for _ in range(max_new_tokens):
        logits, hidden = model(ids)
        probs = logits[:, -1].to(torch.float64).softmax(dim=-1)
        top_probs, top_tokens = probs.topk(top_k, dim=-1)  # [B, k], most probable first
        candidates = torch.cat([ids.repeat_interleave(top_k, dim=0), top_tokens.reshape(-1, 1)], dim=-1)
        candidate_hidden = model(candidates)[1][:, -1].to(torch.float64)  # [B * k, D]
        context = hidden.to(torch.float64).repeat_interleave(top_k, dim=0)  # [B * k, L, D]
        cosine = torch.nn.functional.cosine_similarity(context, candidate_hidden[:, None, :], dim=-1, eps=1e-12)
        penalty = cosine.amax(dim=-1).reshape(-1, top_k)
        score = (1 - penalty_alpha) * top_probs - penalty_alpha * penalty
        token = top_tokens.gather(-1, score.argmax(dim=-1, keepdim=True))
        ids = torch.cat([ids, token], dim=-1)
    return ids


# --- DoLa ----------------------------------------------------------------------------------------------------

LayerSelection = Literal["per_row", "batch_mean"]


@typechecked
def jensen_shannon(final_logits: Float[Tensor, "batch vocab"], premature_logits: Float[Tensor, "layers batch vocab"]
                   ) -> Float[Tensor, "layers batch"]:
    """JSD between softmax(final) and each layer's softmax, in nats (HF averages the terms over the vocabulary
    instead of summing them: a factor 1/V that changes no argmax)."""
    log_f = final_logits.log_softmax(dim=-1)[None]
    log_m = premature_logits.log_softmax(dim=-1)
    log_avg = torch.logaddexp(log_f, log_m) - torch.log(torch.tensor(2.0, dtype=log_f.dtype))
    kl = lambda log_a: (log_avg.exp() * (log_avg - log_a)).sum(dim=-1)  # noqa: E731  KL(avg || a)
    return 0.5 * (kl(log_f) + kl(log_m))


@typechecked
def dola_logits(final_logits: Float[Tensor, "batch vocab"], premature_logits: Float[Tensor, "layers batch vocab"],
                relative_top: float = 0.1, layer_selection: LayerSelection = "per_row") -> Float[Tensor, "batch vocab"]:
    """log softmax(final) - log softmax(premature layer M) on the plausible tokens, -inf elsewhere; M maximizes the
    JSD from the final layer (the first candidate among ties), per row or, as HF, once for the batch."""
    if premature_logits.shape[0] == 1:
        base = premature_logits[0]
    else:
        jsd = jensen_shannon(final_logits, premature_logits)
        chosen = jsd.argmax(dim=0) if layer_selection == "per_row" else jsd.mean(dim=-1).argmax().expand(jsd.shape[1])
        base = premature_logits[chosen, torch.arange(final_logits.shape[0], device=final_logits.device)]
    log_final, log_base = final_logits.log_softmax(dim=-1), base.log_softmax(dim=-1)
    threshold = log_final.amax(dim=-1, keepdim=True) + torch.log(torch.tensor(relative_top, dtype=log_final.dtype))
    return torch.where(log_final >= threshold, log_final - log_base, torch.full_like(log_final, float("-inf")))


@typechecked
def dola_logits_batch_mean(final_logits: Float[Tensor, "batch vocab"],
                           premature_logits: Float[Tensor, "layers batch vocab"],
                           relative_top: float = 0.1) -> Float[Tensor, "batch vocab"]:
    """dola_logits with transformers 4.x's layer choice (one layer for the batch): a target for the option."""
    return dola_logits(final_logits, premature_logits, relative_top, layer_selection="batch_mean")


def dola_candidate_layers(num_layers: int, dola_layers: str | list[int], tie_word_embeddings: bool) -> list[int]:
    """transformers 4.x `_dola_decoding`'s candidate premature layers (hidden_states index; 0 = embeddings):
    'low' = range(start, N // 2, 2), 'high' = range(N // 2, N, 2) for N <= 40 layers, else range(start, 20, 2) and
    range(N - 20, N, 2); start skips the embedding layer when the head is tied to it (start 2, or 1 for N = 2)."""
    start = 0 if not tie_word_embeddings else (2 if num_layers > 2 else 1 if num_layers == 2 else 0)
    if isinstance(dola_layers, list):
        return [i for i in dola_layers if i < num_layers]
    if dola_layers == "low":
        if start == num_layers // 2:
            return [start]
        return list(range(start, num_layers // 2, 2)) if num_layers <= 40 else list(range(start, 20, 2))
    if dola_layers == "high":
        if num_layers <= 40:
            return list(range(num_layers // 2, num_layers, 2))
        return list(range(num_layers - 20, num_layers, 2))
    raise ValueError(f"dola_layers must be 'low', 'high' or a list, got {dola_layers!r}")


# --- grammar-constrained sampling ----------------------------------------------------------------------------


@typechecked
def lift_automaton(char_transitions: Int[Tensor, "states alphabet"], char_accepting: Bool[Tensor, " states"],
                   tokens: list[list[int]]) -> tuple[Int[Tensor, "states vocab"], Bool[Tensor, " states"]]:
    """A character automaton (start state 0, -1 = dead) lifted to tokens, each a list of character ids: token v
    leads from s to the state its characters reach, -1 if any step dies, and into states from which no accepting
    state is reachable (trimmed, so generation can always finish). An empty token (EOS) gets -1: EOS is allowed
    by the acceptance of the current state, not by a transition."""
    states = char_transitions.shape[0]
    table = torch.full((states, len(tokens)), -1, dtype=torch.int64)
    for s in range(states):
        for v, chars in enumerate(tokens):
            state = s
            for c in chars:
                state = int(char_transitions[state, c]) if state >= 0 else -1
            table[s, v] = state if chars else -1
    alive = char_accepting.clone()
    while True:  # states that can reach an accepting state
        grown = alive | ((table >= 0) & alive[table.clamp(min=0)]).any(dim=-1)
        if torch.equal(grown, alive):
            break
        alive = grown
    table = torch.where((table >= 0) & alive[table.clamp(min=0)], table, torch.full_like(table, -1))
    return table, char_accepting & alive


def allowed_tokens(transitions: Tensor, accepting: Tensor, state: Tensor, eos_token_id: int) -> Tensor:
    """[B, V] mask of the tokens the automaton allows from each row's state; EOS iff the state accepts."""
    allowed = transitions[state] >= 0
    allowed[:, eos_token_id] = accepting[state]
    return allowed


@typechecked
def grammar_constrained_sample(model: Model, input_ids: Int[Tensor, "batch length"],
                               transitions: Int[Tensor, "states vocab"], accepting: Bool[Tensor, " states"],
                               eos_token_id: int, max_new_tokens: int,
                               generator: torch.Generator | None = None) -> Int[Tensor, "batch total"]:
    """Sampling where each step masks (-inf) the tokens the automaton does not allow from the state reached by
    the generated tokens (start state 0); rows that emitted EOS are padded with EOS; stop when all have."""
    ids = input_ids
    state = torch.zeros(ids.shape[0], dtype=torch.int64, device=ids.device)
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits = model(ids)[:, -1].to(torch.float64)
        masked = logits.masked_fill(~allowed_tokens(transitions, accepting, state, eos_token_id), float("-inf"))
        token = torch.multinomial(masked.softmax(dim=-1), 1, generator=generator).squeeze(-1)
        token = torch.where(unfinished, token, torch.full_like(token, eos_token_id))
        moves = unfinished & (token != eos_token_id)
        state = torch.where(moves, transitions[state, token], state)
        ids = torch.cat([ids, token[:, None]], dim=-1)
        unfinished &= token != eos_token_id
        if not unfinished.any():
            break
    return ids
