"""What every decoding check stands on: the toy model decoders are checked on, its inputs, the generated ids a
decoder must return, and what the model alone says (the argmax chain, the exact distribution of sequences).

Decoders are checked on `ToyLM` (reference/decoding/search.py), a tiny deterministic model whose logits depend on
every earlier token and position, passed as `model(ids: Int[B, L]) -> Float[B, L, V]` (a Hugging Face causal LM's
`.logits`). Many invariants need only the model: the greedy chain, brute force over every sequence of a tiny
vocabulary, the score of a returned sequence. Statistical checks compare the distribution of whole generated
sequences, drawn as DRAWS rows of one call, with the exact distribution enumerated from the model.
"""

from __future__ import annotations

import itertools

import torch
from hypothesis import strategies as st

from ...reference.decoding import search as ref
from ..core import Context
from ..statistics import chi_square_test
from ..strategies import scaled, seeds

MODEL = "model: Callable[[Int[B, L]], Float[B, L, V]]"
#: rows of one call whose sequences a statistical check counts, and its false-alarm rate per example.
DRAWS = 2000
ALPHA = 1e-6


#: real models' vocabularies and EOS ids (Llama-2 </s>, GPT-2 <|endoftext|>, Llama-3 <|end_of_text|>, Qwen2
#: <|endoftext|>): ids above 32767 and 65535, which an int16 or uint16 id buffer wraps.
REAL_VOCABS = ((32000, 2), (50257, 50256), (128256, 128001), (151936, 151643))
#: vocabularies at the 1024-wide tile edge of argmax / top-k kernels (EOS the last id).
TILE_VOCABS = ((1023, 1022), (1024, 1023), (1025, 1024))


@st.composite
def small_model_examples(draw, min_vocab: int = 2, max_vocab: int = 5, eos: bool = True, max_batch: int = 2,
                          max_new: int = 6) -> dict:
    v = draw(st.integers(min_vocab, max_vocab))
    return {"V": v, "seed": draw(seeds()), "B": draw(st.integers(1, max_batch)), "L": draw(st.integers(1, 4)),
            "n": draw(st.integers(1, max_new)), "eos": draw(st.sampled_from([None, 0, -1])) if eos else None,
            "eos_bias": draw(st.sampled_from([0.0, 1.0, 2.5])), "pad": draw(st.booleans()),
            "min_new": draw(st.integers(0, 2))}


@st.composite
def large_vocab_examples(draw, eos: bool = True, max_batch: int = 2, max_new: int = 3,
                         vocabs: tuple = REAL_VOCABS + TILE_VOCABS) -> dict:
    """A real model's vocabulary (or one at the 1024 tile edge) with its EOS id, few rows, short sequences (a
    model call costs B x L x V): a bias of 8 makes EOS the argmax often enough to end rows."""
    v, eos_token = draw(st.sampled_from(vocabs))
    return {"V": v, "seed": draw(seeds()), "B": draw(st.integers(1, max_batch)), "L": draw(st.integers(1, 3)),
            "n": draw(st.integers(1, max_new)), "eos": draw(st.sampled_from([None, eos_token])) if eos else None,
            "eos_bias": draw(st.sampled_from([0.0, 8.0])), "pad": draw(st.booleans()),
            "min_new": draw(st.integers(0, 2))}


def model_examples(min_vocab: int = 2, max_vocab: int = 5, eos: bool = True, max_batch: int = 2, max_new: int = 6,
                   large_vocab: bool = False) -> st.SearchStrategy[dict]:
    """A toy model and its inputs: a tiny vocabulary at every scale; with `large_vocab`, from scale "kernel" up
    also a real model's vocabulary (`large_vocab_examples`; only for checks that do not enumerate V^n sequences)."""
    small = small_model_examples(min_vocab, max_vocab, eos, max_batch, max_new)
    return scaled(small, large_vocab_examples(eos, max_batch, min(3, max_new))) if large_vocab else small


def eos_id(p: dict) -> int | None:
    return None if p["eos"] is None else p["eos"] % p["V"]


def pad_id(p: dict) -> int | None:
    """A pad id different from EOS (never 0: see docs/conventions.md, HF beam search treats pad 0 as absent)."""
    eos = eos_id(p)
    if eos is None or not p["pad"] or p["V"] < 3:
        return None
    return next(t for t in range(1, p["V"]) if t != eos)


def toy(p: dict, salt: int = 0) -> ref.ToyLM:
    return ref.ToyLM(p["V"], p["seed"] + salt, eos_token_id=eos_id(p), eos_bias=p["eos_bias"],
                     scale=p.get("model_scale", 3.0))


def prompt(ctx: Context, p: dict, rows: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(p["seed"] + 17)
    return torch.randint(0, p["V"], (rows or p["B"], p["L"]), generator=gen).to(ctx.device)


def expect_ids(ctx: Context, out, rows: int, prompt_ids: torch.Tensor, max_total: int,
               what: str = "output") -> torch.Tensor:
    """Integer ids [rows, T] with L <= T <= max_total whose first L columns are the prompt; returned on the CPU."""
    if not isinstance(out, torch.Tensor) or out.is_floating_point() or out.dtype == torch.bool or out.dim() != 2:
        ctx.fail(f"{what} is {type(out).__name__} {getattr(out, 'dtype', '')} {tuple(getattr(out, 'shape', ()))}, "
                 "expected integer ids [B, T]")
    length = prompt_ids.shape[-1]
    if out.shape[0] != rows or not length <= out.shape[1] <= max_total:
        ctx.fail(f"{what} has shape {tuple(out.shape)}, expected ({rows}, T) with {length} <= T <= {max_total}")
    ids = out.detach().cpu().to(torch.int64)
    if not torch.equal(ids[:, :length], prompt_ids.cpu().repeat_interleave(rows // prompt_ids.shape[0], 0)):
        ctx.fail(f"{what} does not start with the prompt")
    return ids


def pad_to(ids: torch.Tensor, total: int, fill: int) -> torch.Tensor:
    return torch.cat([ids, torch.full((ids.shape[0], total - ids.shape[1]), fill, dtype=ids.dtype)], dim=-1)


def greedy_chain(model, ids: torch.Tensor, steps: int, eos: int | None = None, pad: int | None = None,
                 min_new: int = 0, context_size: int | None = None) -> torch.Tensor:
    """The definition, step by step: argmax of the model's next-token logits (EOS forbidden before min_new)."""
    return ref.greedy_search(model, ids, steps, eos, pad, min_new, context_size)


class Recorder:
    """A model that records every input it is called with."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, ids):
        self.calls.append(ids.detach().cpu().clone())
        return self.model(ids)


def sequence_distribution(model, prompt_row: torch.Tensor, steps: int, eos: int | None, pad: int | None,
                          mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every continuation of `steps` tokens and its exact probability under ancestral sampling: after EOS only pad
    follows (probability 1); `mask(prefix_ids, generated) -> Bool[S, V]` restricts and renormalizes each step."""
    vocab = model(prompt_row[None].cpu()).shape[-1]
    fill = (eos if pad is None else pad) if eos is not None else -1
    seqs = torch.tensor(list(itertools.product(range(vocab), repeat=steps)), dtype=torch.int64).reshape(-1, steps)
    probs = torch.ones(seqs.shape[0], dtype=torch.float64)
    done = torch.zeros(seqs.shape[0], dtype=torch.bool)
    base = prompt_row.cpu()[None].expand(seqs.shape[0], -1)
    for t in range(steps):
        ids = torch.cat([base, seqs[:, :t]], dim=-1)
        logits = ref.next_logits(model, ids)
        if mask is not None:
            logits = logits.masked_fill(~mask(ids, seqs[:, :t]), float("-inf"))
        q = logits.softmax(dim=-1).gather(-1, seqs[:, t : t + 1]).squeeze(-1)
        probs *= torch.where(done, (seqs[:, t] == fill).to(torch.float64), q)
        if eos is not None:
            done |= seqs[:, t] == eos
    return seqs, probs


def assert_sequence_distribution(ctx: Context, generated: torch.Tensor, seqs: torch.Tensor, probs: torch.Tensor,
                                 what: str) -> None:
    """Generated rows (padded to the enumerated length) against the exact distribution: impossible sequences are
    violations outright; frequencies by Pearson's chi-square with cells of expected count < 5 merged."""
    vocab = int(seqs.max()) + 1 if seqs.numel() else 1
    if ((generated < 0) | (generated >= vocab)).any():
        row = generated[((generated < 0) | (generated >= vocab)).any(-1)][0].tolist()
        ctx.fail(f"{what}: generated {row}, which holds an id outside [0, {vocab})", sequence=row)
    # seqs enumerate every continuation in base-V order, so a continuation's index is its base-V number
    codes = (generated * vocab ** torch.arange(generated.shape[1] - 1, -1, -1)).sum(-1)
    impossible = probs[codes] == 0
    if impossible.any():
        row = generated[impossible][0].tolist()
        ctx.fail(f"{what}: generated {row}, a continuation of probability 0", sequence=row)
    counts = torch.bincount(codes, minlength=seqs.shape[0]).to(torch.float64)
    n = counts.sum()
    small = probs * n < 5
    if small.any():  # merge rare cells into one
        counts = torch.cat([counts[~small], counts[small].sum()[None]])
        probs = torch.cat([probs[~small], probs[small].sum()[None]])
    keep = probs > 0
    statistic, df, pvalue = chi_square_test(counts[keep], probs[keep] / probs[keep].sum())
    if pvalue < ALPHA:
        ctx.fail(f"{what}: frequencies of the {int(n)} generated continuations differ from the exact distribution: "
                 f"chi-square {statistic:.1f} with {df} df, p-value {pvalue:.2g} < {ALPHA:g}", statistic=statistic,
                 pvalue=pvalue)
