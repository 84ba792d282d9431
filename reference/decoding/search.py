"""Decoding strategies over a next-token model: greedy (with context cropping), sampling, beam search, diverse
(group) beam search. Speculative decoding is in speculative.py; contrastive search, DoLa and grammar-constrained
sampling in variants.py.

A model is any callable `model(ids: Int[B, L]) -> Float[B, L, V]`: logits at every position, position i scoring
token i + 1 (a Hugging Face causal LM's `.logits`). Decoders read the last position. `ToyLM` is the tiny
deterministic model the spec checks decoders with.

Sources:
- greedy / sampling / EOS and padding / min_new_tokens: transformers 5.23 `GenerationMixin._sample` (finished rows
  get `pad_token_id`, which defaults to the EOS id; generation stops once every row has finished) and
  `MinNewTokensLengthLogitsProcessor` (EOS logit -inf until min_new_tokens tokens are generated).
- context cropping: Raschka, "Build a Large Language Model (From Scratch)", ch. 4 `generate_text_simple`
  (`idx_cond = idx[:, -context_size:]`); nanoGPT `generate` (`idx[:, -block_size:]`).
- beam search: transformers 5.23 `GenerationMixin._beam_search` and its helpers, reproduced step by step (top
  2 * num_beams candidates; finished hypotheses scored sum log p / generated_length ** length_penalty, counting the
  EOS token; only candidates ranked in the top num_beams may finish; `early_stopping` True / False / "never" as in
  `_check_early_stop_heuristic`).
- diverse beam search: Vijayakumar et al. 2018, "Diverse Beam Search", sec. 4 (Hamming diversity); transformers 4.x
  `_group_beam_search` + `HammingDiversityLogitsProcessor` (now the Hub repository
  transformers-community/group-beam-search, unreachable here): groups are decoded in order each step, and group g's
  log-probabilities are lowered by diversity_penalty x (times each token was chosen at this step by groups < g);
  the penalized scores accumulate. Each group is a beam search with the rules above, so one group is beam search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from .._typing import Float, Int, Tensor, typechecked

Model = Callable[[Tensor], Tensor]
EarlyStopping = bool | Literal["never"]
NEG = -1.0e9  # HF's sentinel for "cannot be chosen"


class ToyLM:
    """A deterministic next-token model over a tiny vocabulary (or a real model's, up to 151936 tokens) for checking
    decoders.

    Hidden state at position i: h_i = tanh(mean_{j <= i} E[j, ids_j]) (causal, position-aware, depends on every
    earlier token; E[j, t] = T[t] + P[j] above FACTORED_ABOVE tokens); logits_i = scale * h_i W + bias. Logits
    are rounded to float32 values (and returned in float64), so a library that casts them to float32, as
    transformers' generate does, sees them exactly.
    """

    #: above this vocabulary a [max_len, V, H] table would take hundreds of MB (V = 151936): token and position
    #: embeddings are drawn apart and summed instead (still causal, position-aware, dependent on every token).
    FACTORED_ABOVE = 4096

    def __init__(self, vocab: int, seed: int, hidden: int = 8, scale: float = 3.0, max_len: int = 40,
                 eos_token_id: int | None = None, eos_bias: float = 0.0):
        gen = torch.Generator().manual_seed(seed)
        self.vocab, self.seed = vocab, seed
        if vocab <= self.FACTORED_ABOVE:
            self.embed = torch.randn(max_len, vocab, hidden, generator=gen, dtype=torch.float64)
        else:
            self.embed = None
            self.token_embed = torch.randn(vocab, hidden, generator=gen, dtype=torch.float64)
            self.position_embed = torch.randn(max_len, hidden, generator=gen, dtype=torch.float64)
        self.head = torch.randn(hidden, vocab, generator=gen, dtype=torch.float64) * scale / math.sqrt(hidden) * 2
        self.bias = torch.zeros(vocab, dtype=torch.float64)
        if eos_token_id is not None:
            self.bias[eos_token_id] = eos_bias

    def hidden_states(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[-1], device=ids.device)
        if self.embed is not None:
            e = self.embed.to(ids.device)[positions, ids]  # [B, L, H]
        else:
            e = self.token_embed.to(ids.device)[ids] + self.position_embed.to(ids.device)[positions]
        return torch.tanh(e.cumsum(dim=1) / (positions + 1)[:, None].to(e.dtype))

    def __call__(self, ids: Tensor) -> Tensor:
        logits = self.hidden_states(ids) @ self.head.to(ids.device) + self.bias.to(ids.device)
        return logits.to(torch.float32).to(torch.float64)

    def with_hidden(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [B, L, V], last-layer hidden states [B, L, H]): what contrastive search reads."""
        return self(ids), self.hidden_states(ids)


def next_logits(model: Model, ids: Tensor) -> Tensor:
    """The logits of the next token, in float64: the model's last position."""
    return model(ids)[:, -1, :].to(torch.float64)


def _suppress_eos(logits: Tensor, step: int, eos_token_id: int | None, min_new_tokens: int) -> Tensor:
    if eos_token_id is not None and step < min_new_tokens:
        logits = logits.clone()
        logits[:, eos_token_id] = float("-inf")
    return logits


def _decode(model: Model, input_ids: Tensor, max_new_tokens: int, choose: Callable[[Tensor], Tensor],
            eos_token_id: int | None, pad_token_id: int | None, min_new_tokens: int,
            context_size: int | None) -> Tensor:
    """The loop HF's `_sample` runs: choose a token per row, pad finished rows, stop when every row has finished."""
    pad = eos_token_id if pad_token_id is None else pad_token_id
    ids = input_ids
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
    for step in range(max_new_tokens):
        visible = ids if context_size is None else ids[:, -context_size:]
        token = choose(_suppress_eos(next_logits(model, visible), step, eos_token_id, min_new_tokens))
        if eos_token_id is not None:
            token = torch.where(unfinished, token, torch.full_like(token, pad))
        ids = torch.cat([ids, token[:, None]], dim=-1)
        if eos_token_id is not None:
            unfinished &= token != eos_token_id
            if not unfinished.any():
                break
    return ids


@typechecked
def greedy_search(model: Model, input_ids: Int[Tensor, "batch length"], max_new_tokens: int,
                  eos_token_id: int | None = None, pad_token_id: int | None = None, min_new_tokens: int = 0,
                  context_size: int | None = None) -> Int[Tensor, "batch total"]:
    """Append argmax tokens (first index among ties, torch.argmax); with context_size the model sees only the
    last context_size tokens. Rows that emitted EOS are padded; generation stops when all rows have."""
    return _decode(model, input_ids, max_new_tokens, lambda logits: logits.argmax(dim=-1), eos_token_id, pad_token_id,
                   min_new_tokens, context_size)


@typechecked
def sample_search(model: Model, input_ids: Int[Tensor, "batch length"], max_new_tokens: int,
                  generator: torch.Generator | None = None, eos_token_id: int | None = None,
                  pad_token_id: int | None = None, min_new_tokens: int = 0) -> Int[Tensor, "batch total"]:
    """Append tokens drawn from softmax(next-token logits) with `generator` (ancestral sampling)."""
    draw = lambda logits: torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)  # noqa: E731
    return _decode(model, input_ids, max_new_tokens, draw, eos_token_id, pad_token_id, min_new_tokens, None)


# --- beam search ---------------------------------------------------------------------------------------------


class _Beams:
    """One beam search over a batch (HF 5.23 `_beam_search` state): running beams, finished hypotheses, and the
    early-stopping state. `step` takes the log-probabilities of the next token for every running beam."""

    def __init__(self, ids: Tensor, num_beams: int, max_length: int, fill: int, eos_token_id: int | None,
                 length_penalty: float, early_stopping: EarlyStopping):
        b, length = ids.shape
        self.k, self.prompt, self.max_length = num_beams, length, max_length
        self.eos, self.length_penalty, self.early_stopping = eos_token_id, length_penalty, early_stopping
        self.keep = max(2, 1 + (eos_token_id is not None)) * num_beams
        self.top_mask = torch.arange(self.keep, device=ids.device) < num_beams
        self.running = torch.full((b, num_beams, max_length), fill, dtype=torch.int64, device=ids.device)
        self.running[:, :, :length] = ids[:, None, :]
        self.running_scores = torch.full((b, num_beams), NEG, dtype=torch.float64, device=ids.device)
        self.running_scores[:, 0] = 0.0  # only the first beam is live at the start
        self.finished = self.running.clone()
        self.finished_scores = torch.full((b, num_beams), NEG, dtype=torch.float64, device=ids.device)
        self.finished_lengths = torch.zeros((b, num_beams), dtype=torch.int64, device=ids.device)
        self.is_finished = torch.zeros((b, num_beams), dtype=torch.bool, device=ids.device)
        self.improvable = torch.ones((b, 1), dtype=torch.bool, device=ids.device)
        self.all_hit = False

    def step(self, log_probs: Tensor, cur: int) -> None:
        """log_probs [B, K, V] for the running beams, whose sequences have length cur."""
        b, k, v = log_probs.shape
        accumulated = (log_probs + self.running_scores[..., None]).reshape(b, k * v)
        top_scores, top_index = accumulated.topk(self.keep, dim=-1)
        source, token = top_index // v, top_index % v
        candidates = self.running.gather(1, source[..., None].expand(-1, -1, self.max_length)).clone()
        candidates[:, :, cur] = token
        hits = torch.full_like(token, cur + 1 >= self.max_length, dtype=torch.bool)
        if self.eos is not None:
            hits |= token == self.eos
        self.all_hit = bool(hits.all())
        # running beams: the best num_beams candidates that did not finish
        running_scores = top_scores + hits.to(torch.float64) * NEG
        chosen = running_scores.topk(k, dim=-1).indices
        self.running = candidates.gather(1, chosen[..., None].expand(-1, -1, self.max_length))
        self.running_scores = running_scores.gather(1, chosen)
        # finished hypotheses: candidates in the top num_beams that finished, scored with the length penalty
        generated = cur + 1 - self.prompt
        finishing = hits & self.top_mask[None, :]
        scores = top_scores / generated**self.length_penalty
        full = self.is_finished.all(dim=-1, keepdim=True) & (self.early_stopping is True)
        scores = scores + full * NEG + (~self.improvable) * NEG + (~finishing) * NEG
        merged_scores = torch.cat([self.finished_scores, scores], dim=1)
        best = merged_scores.topk(k, dim=-1).indices
        self.finished = torch.cat([self.finished, candidates], 1).gather(
            1, best[..., None].expand(-1, -1, self.max_length))
        self.finished_scores = merged_scores.gather(1, best)
        self.finished_lengths = torch.cat([self.finished_lengths, torch.full_like(token, generated)], 1).gather(1, best)
        self.is_finished = torch.cat([self.is_finished, finishing], 1).gather(1, best)
        # can a running beam still beat the worst finished hypothesis? (HF `_check_early_stop_heuristic`)
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            best_length = self.max_length - self.prompt
        else:
            best_length = cur + 1 - self.prompt
        best_running = self.running_scores[:, :1] / best_length**self.length_penalty
        worst = torch.where(self.is_finished, self.finished_scores.min(dim=1, keepdim=True).values,
                            torch.full_like(self.finished_scores, NEG))
        self.improvable = self.improvable & (best_running > worst).any(dim=-1, keepdim=True)

    def wants_more(self) -> bool:
        open_beam = not (bool(self.is_finished.all()) and self.early_stopping is True)
        return bool(self.improvable.any()) and open_beam and not self.all_hit


def _log_probs(model: Model, beams: list[_Beams], cur: int, eos_token_id: int | None, min_new_tokens: int) -> Tensor:
    """Next-token log-probabilities [B, G * K, V] of every running beam of every group, in one model call."""
    running = torch.cat([g.running[:, :, :cur] for g in beams], dim=1)
    b, n, _ = running.shape
    logits = next_logits(model, running.reshape(b * n, cur))
    log_probs = logits.log_softmax(dim=-1)  # HF applies the logits processors to the log-probabilities
    log_probs = _suppress_eos(log_probs, cur - beams[0].prompt, eos_token_id, min_new_tokens)
    return log_probs.reshape(b, n, -1)


def _finalize(beams: list[_Beams], num_return_sequences: int) -> tuple[Tensor, Tensor]:
    """The best hypotheses of all groups by score, cropped to the longest returned one (HF's output length)."""
    sequences = torch.cat([g.finished for g in beams], dim=1)
    scores = torch.cat([g.finished_scores for g in beams], dim=1)
    lengths = torch.cat([g.finished_lengths for g in beams], dim=1)
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :num_return_sequences]
    sequences = sequences.gather(1, order[..., None].expand(-1, -1, sequences.shape[-1]))
    scores, lengths = scores.gather(1, order), lengths.gather(1, order)
    total = beams[0].prompt + int(lengths.max())
    return sequences[:, :, :total].reshape(-1, total), scores.reshape(-1)


@typechecked
def beam_search(model: Model, input_ids: Int[Tensor, "batch length"], num_beams: int, max_new_tokens: int,
                eos_token_id: int | None = None, pad_token_id: int | None = None, length_penalty: float = 1.0,
                early_stopping: EarlyStopping = False, min_new_tokens: int = 0,
                num_return_sequences: int = 1) -> tuple[Int[Tensor, "rows total"], Float[Tensor, " rows"]]:
    """Beam search as transformers 5.23 `_beam_search`; returns (sequences [B * R, L + n], scores [B * R]), the
    best first; a finished hypothesis's score is sum log p / generated_length ** length_penalty (EOS counted).
    It is diverse beam search with one group (and so no diversity penalty)."""
    return diverse_beam_search(model, input_ids, num_beams, 1, 0.0, max_new_tokens, eos_token_id, pad_token_id,
                               length_penalty, early_stopping, min_new_tokens, num_return_sequences)


@typechecked
def diverse_beam_search(model: Model, input_ids: Int[Tensor, "batch length"], num_beams: int, num_beam_groups: int,
                        diversity_penalty: float, max_new_tokens: int, eos_token_id: int | None = None,
                        pad_token_id: int | None = None, length_penalty: float = 1.0,
                        early_stopping: EarlyStopping = False, min_new_tokens: int = 0,
                        num_return_sequences: int = 1) -> tuple[Int[Tensor, "rows total"], Float[Tensor, " rows"]]:
    """Group beam search (Hamming diversity); returns (sequences [B * R, L + n], scores [B * R]), best first."""
    if num_beams % num_beam_groups or not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"num_beams ({num_beams}) must split into {num_beam_groups} groups and hold "
                         f"{num_return_sequences} returns")
    size = num_beams // num_beam_groups
    # HF fills unused positions with the pad id (the EOS id if there is none); with no EOS nothing finishes early
    # and only never-finished placeholder hypotheses (score -1e9) show the fill, -1.
    fill = -1 if eos_token_id is None else (eos_token_id if pad_token_id is None else pad_token_id)
    max_length = input_ids.shape[-1] + max_new_tokens
    groups = [_Beams(input_ids, size, max_length, fill, eos_token_id, length_penalty, early_stopping)
              for _ in range(num_beam_groups)]
    cur = input_ids.shape[-1]
    while True:
        log_probs = _log_probs(model, groups, cur, eos_token_id, min_new_tokens)
        chosen = torch.zeros(log_probs.shape[0], log_probs.shape[-1], dtype=torch.float64, device=log_probs.device)
        for g, group in enumerate(groups):
            group.step(log_probs[:, g * size : (g + 1) * size] - diversity_penalty * chosen[:, None, :], cur)
            ones = torch.ones(chosen.shape[0], size, dtype=torch.float64, device=chosen.device)
            chosen.scatter_add_(1, group.running[:, :, cur], ones)
        cur += 1
        if not any(group.wants_more() for group in groups):
            break
    return _finalize(groups, num_return_sequences)
