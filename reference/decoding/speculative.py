"""Speculative decoding: a draft model proposes tokens, the target model verifies them, and the accept / resample
rule makes every emitted token distributed exactly as the target model would sample it.

Sources: Leviathan, Kalman & Matias 2023, "Fast Inference from Transformers via Speculative Decoding", Algorithm 1
and Theorem 3.5 (accept x ~ q with probability min(1, p(x) / q(x)); on rejection sample from
norm(max(0, p - q))); Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling",
Algorithm 2. transformers 5.23 `generation/utils.py:_speculative_sampling` (accepts while `rand <= p_i / q_i`, then
samples the residual, or the target's next distribution when every draft token was accepted) and
`AssistedCandidateGenerator` (a round drafts min(num_assistant_tokens, max_length - cur_len - 1) tokens).
"""

from __future__ import annotations

import torch

from .._typing import Float, Int, Tensor, typechecked
from .search import Model


@typechecked
def speculative_acceptance(target_probs: Float[Tensor, "batch vocab"], draft_probs: Float[Tensor, "batch vocab"]
                           ) -> tuple[Float[Tensor, "batch vocab"], Float[Tensor, "batch vocab"]]:
    """The rule itself: (probability of accepting a drafted token x = min(1, p(x) / q(x)), the residual
    distribution norm(max(0, p - q)) a rejection samples from). Where p = q there is no rejection and the
    residual is p (any distribution would do: it is sampled with probability 0)."""
    accept = torch.where(draft_probs > 0, (target_probs / draft_probs).clamp(max=1.0), torch.ones_like(draft_probs))
    excess = (target_probs - draft_probs).clamp(min=0.0)
    total = excess.sum(dim=-1, keepdim=True)
    residual = torch.where(total > 0, excess / torch.where(total > 0, total, torch.ones_like(total)), target_probs)
    return accept, residual


@typechecked
def speculative_sampling(draft_tokens: Int[Tensor, "batch k"], draft_probs: Float[Tensor, "batch k vocab"],
                         target_probs: Float[Tensor, "batch k_plus_1 vocab"], generator: torch.Generator | None = None
                         ) -> Int[Tensor, "batch k_plus_1"]:
    """One verification step for each row: accept drafted tokens in order while u < p(x) / q(x); at the first
    rejection emit a token from the residual, or, if all k were accepted, a bonus token from target_probs[k].
    Returns the emitted tokens (accepted drafts, then the one sampled token), -1 after them."""
    b, k = draft_tokens.shape
    q = draft_probs.gather(-1, draft_tokens[..., None]).squeeze(-1)
    p = target_probs[:, :k].gather(-1, draft_tokens[..., None]).squeeze(-1)
    u = torch.rand(b, k, generator=generator, dtype=torch.float64, device=draft_tokens.device)
    accepted = u * q.to(torch.float64) < p.to(torch.float64)
    n = accepted.to(torch.int64).cumprod(dim=-1).sum(dim=-1)  # leading accepted drafts
    v = target_probs.shape[-1]
    _, residual = speculative_acceptance(target_probs[:, :k].reshape(b * k, v), draft_probs.reshape(b * k, v))
    choices = torch.cat([residual.reshape(b, k, v), target_probs[:, k:]], dim=1)  # [B, k + 1, V]
    rows = torch.arange(b, device=draft_tokens.device)
    sampled = torch.multinomial(choices[rows, n].to(torch.float64), 1, generator=generator).squeeze(-1)
    position = torch.arange(k + 1, device=draft_tokens.device)[None, :]
    emitted = torch.where(position < n[:, None], torch.cat([draft_tokens, torch.zeros_like(n)[:, None]], dim=-1), -1)
    emitted[rows, n] = sampled
    return emitted


def _draft(model: Model, ids: Tensor, k: int, do_sample: bool, generator) -> tuple[Tensor, Tensor]:
    """k tokens from the draft model for every row, and the distributions they were drawn from [B, k, V]."""
    probs = []
    for _ in range(k):
        q = model(ids)[:, -1].to(torch.float64).softmax(dim=-1)
        token = torch.multinomial(q, 1, generator=generator) if do_sample else q.argmax(dim=-1, keepdim=True)
        probs.append(q)
        ids = torch.cat([ids, token], dim=-1)
    if not probs:
        return ids, torch.zeros(ids.shape[0], 0, 0, dtype=torch.float64, device=ids.device)
    return ids, torch.stack(probs, dim=1)


def _round(target_model: Model, draft_model: Model, ids: Tensor, k: int, do_sample: bool, generator) -> list[Tensor]:
    """One round for rows of equal length: draft k tokens, one target call, the tokens each row emits."""
    start = ids.shape[-1]
    drafted, q = _draft(draft_model, ids, k, do_sample, generator)
    p = target_model(drafted)[:, start - 1 :].to(torch.float64).softmax(dim=-1)  # [B, k + 1, V]
    if do_sample:
        emitted = speculative_sampling(drafted[:, start:], q.reshape(ids.shape[0], k, p.shape[-1]), p, generator)
        return [row[row >= 0] for row in emitted]
    best = p.argmax(dim=-1)
    n = (drafted[:, start:] == best[:, :k]).to(torch.int64).cumprod(dim=-1).sum(dim=-1)
    return [torch.cat([drafted[b, start : start + int(n[b])], best[b, int(n[b]) : int(n[b]) + 1]])
            for b in range(ids.shape[0])]


@typechecked
def speculative_decode(target_model: Model, draft_model: Model, input_ids: Int[Tensor, "batch length"],
                       max_new_tokens: int, num_draft_tokens: int, do_sample: bool = True,
                       generator: torch.Generator | None = None) -> Int[Tensor, "batch total"]:
    """Leviathan et al. Algorithm 1 for each row: a round drafts min(num_draft_tokens, remaining - 1) tokens, runs
    the target model once on them, and keeps the verified ones. Rows advance at their own pace; rows of equal
    length share the model calls of a round. Greedy (do_sample=False) accepts a draft token while it is the
    target's argmax and then appends the target's argmax: the output is greedy decoding's."""
    rows = list(input_ids)
    total = input_ids.shape[-1] + max_new_tokens
    while True:
        lengths = torch.tensor([row.shape[-1] for row in rows])
        if bool((lengths >= total).all()):
            return torch.stack(rows)
        length = int(lengths[lengths < total].min())  # advance the shortest unfinished rows together
        group = (lengths == length).nonzero().flatten().tolist()
        k = min(num_draft_tokens, total - length - 1)
        emitted = _round(target_model, draft_model, torch.stack([rows[b] for b in group]), k, do_sample, generator)
        for b, tokens in zip(group, emitted):
            rows[b] = torch.cat([rows[b], tokens])
