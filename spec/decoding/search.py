"""Decoding strategies: greedy (with context cropping), ancestral sampling, beam search, diverse beam search.

Decoders are checked on `ToyLM` (reference/decoding/search.py), a tiny deterministic model whose logits depend on every
earlier token and position, passed as `model(ids: Int[B, L]) -> Float[B, L, V]` (a Hugging Face causal LM's
`.logits`). Many invariants need only the model: the greedy chain, brute force over every sequence of a tiny
vocabulary, the score of a returned sequence. Statistical checks compare the distribution of whole generated
sequences, drawn as DRAWS rows of one call, with the exact distribution enumerated from the model.
"""

from __future__ import annotations

import itertools

import torch
from hypothesis import strategies as st

from ...reference.decoding import search as ref
from ..core import Component, Context, Invariant
from ..sampling.samplers import chi_square_test
from ..strategies import seeds

HF_GEN = "transformers 5.23 generation/utils.py"
DRAWS = 2000
ALPHA = 1e-6
PLACEHOLDER = -1e8  # a returned hypothesis scored below this never finished (HF's -1e9 sentinel)
SCORE_RTOL = 1e-4  # beam scores: libraries accumulate log-probabilities in float32
MODEL = "model: Callable[[Int[B, L]], Float[B, L, V]]"


# --- models, inputs, and what the model alone says -----------------------------------------------------------


@st.composite
def model_examples(draw, min_vocab: int = 2, max_vocab: int = 5, eos: bool = True, max_batch: int = 2, max_new: int = 6) -> dict:
    v = draw(st.integers(min_vocab, max_vocab))
    return {"V": v, "seed": draw(seeds()), "B": draw(st.integers(1, max_batch)), "L": draw(st.integers(1, 4)),
            "n": draw(st.integers(1, max_new)), "eos": draw(st.sampled_from([None, 0, -1])) if eos else None,
            "eos_bias": draw(st.sampled_from([0.0, 1.0, 2.5])), "pad": draw(st.booleans()), "min_new": draw(st.integers(0, 2))}


def eos_id(p: dict) -> int | None:
    return None if p["eos"] is None else p["eos"] % p["V"]


def pad_id(p: dict) -> int | None:
    """A pad id different from EOS (never 0: see docs/conventions.md, HF beam search treats pad 0 as absent)."""
    eos = eos_id(p)
    if eos is None or not p["pad"] or p["V"] < 3:
        return None
    return next(t for t in range(1, p["V"]) if t != eos)


def toy(p: dict, salt: int = 0) -> ref.ToyLM:
    return ref.ToyLM(p["V"], p["seed"] + salt, eos_token_id=eos_id(p), eos_bias=p["eos_bias"], scale=p.get("model_scale", 3.0))


def prompt(ctx: Context, p: dict, rows: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(p["seed"] + 17)
    return torch.randint(0, p["V"], (rows or p["B"], p["L"]), generator=gen).to(ctx.device)


def next_log_probs(model, ids: torch.Tensor) -> torch.Tensor:
    return ref.next_logits(model, ids).log_softmax(dim=-1)


def expect_ids(ctx: Context, out, rows: int, prompt_ids: torch.Tensor, max_total: int, what: str = "output") -> torch.Tensor:
    """Integer ids [rows, T] with L <= T <= max_total whose first L columns are the prompt; returned on the CPU."""
    if not isinstance(out, torch.Tensor) or out.is_floating_point() or out.dtype == torch.bool or out.dim() != 2:
        ctx.fail(f"{what} is {type(out).__name__} {getattr(out, 'dtype', '')} {tuple(getattr(out, 'shape', ()))}, expected integer ids [B, T]")
    length = prompt_ids.shape[-1]
    if out.shape[0] != rows or not length <= out.shape[1] <= max_total:
        ctx.fail(f"{what} has shape {tuple(out.shape)}, expected ({rows}, T) with {length} <= T <= {max_total}")
    ids = out.detach().cpu().to(torch.int64)
    if not torch.equal(ids[:, :length], prompt_ids.cpu().repeat_interleave(rows // prompt_ids.shape[0], 0)):
        ctx.fail(f"{what} does not start with the prompt")
    return ids


def greedy_chain(model, ids: torch.Tensor, steps: int, eos: int | None = None, pad: int | None = None, min_new: int = 0,
                 context_size: int | None = None) -> torch.Tensor:
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


def assert_sequence_distribution(ctx: Context, generated: torch.Tensor, seqs: torch.Tensor, probs: torch.Tensor, what: str) -> None:
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
        ctx.fail(f"{what}: frequencies of the {int(n)} generated continuations differ from the exact distribution: chi-square "
                 f"{statistic:.1f} with {df} df, p-value {pvalue:.2g} < {ALPHA:g}", statistic=statistic, pvalue=pvalue)


def pad_to(ids: torch.Tensor, total: int, fill: int) -> torch.Tensor:
    return torch.cat([ids, torch.full((ids.shape[0], total - ids.shape[1]), fill, dtype=ids.dtype)], dim=-1)


# --- greedy --------------------------------------------------------------------------------------------------


def _greedy_call(ctx: Context, p: dict, model, ids, **kw) -> torch.Tensor:
    out = ctx.target(model, ids, p["n"], **kw)
    return expect_ids(ctx, out, ids.shape[0], ids, ids.shape[-1] + p["n"])


def _check_greedy_chain(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    out = _greedy_call(ctx, p, model, ids)
    expected = greedy_chain(model, ids.cpu(), p["n"])
    if not torch.equal(out, expected):
        ctx.fail(f"greedy output {out.tolist()} is not the argmax chain {expected.tolist()}")


def _check_greedy_eos(ctx: Context, p: dict) -> None:
    model, ids = toy({**p, "eos": p["eos"] if p["eos"] is not None else -1}), prompt(ctx, p)
    eos, pad = eos_id({**p, "eos": p["eos"] if p["eos"] is not None else -1}), pad_id(p)
    out = _greedy_call(ctx, p, model, ids, eos_token_id=eos, pad_token_id=pad, min_new_tokens=p["min_new"])
    expected = greedy_chain(model, ids.cpu(), p["n"], eos, pad, p["min_new"])
    if not torch.equal(out, expected):
        ctx.fail(f"with eos_token_id={eos}, pad_token_id={pad}, min_new_tokens={p['min_new']}: output {out.tolist()}, expected "
                 f"{expected.tolist()} (argmax chain; EOS forbidden before min_new_tokens; rows that emitted EOS are "
                 "padded; generation stops when every row has)")


@st.composite
def _context_examples(draw) -> dict:
    p = draw(model_examples(eos=False, max_new=6))
    p["context"] = draw(st.integers(1, p["L"] + p["n"] - 1)) if p["L"] + p["n"] > 2 else 1
    return p


def _check_greedy_context(ctx: Context, p: dict) -> None:
    model, ids = Recorder(toy(p)), prompt(ctx, p)
    out = _greedy_call(ctx, p, model, ids, context_size=p["context"])
    c, length = p["context"], ids.shape[-1]
    if len(model.calls) != p["n"]:
        ctx.fail(f"the model was called {len(model.calls)} times for {p['n']} new tokens")
    for step, seen in enumerate(model.calls):
        window = out[:, max(0, length + step - c) : length + step]
        if not torch.equal(seen, window):
            ctx.fail(f"step {step}: the model saw {seen.tolist()}, expected the last {c} tokens {window.tolist()}", step=step)
    expected = greedy_chain(model.model, ids.cpu(), p["n"], context_size=c)
    if not torch.equal(out, expected):
        ctx.fail(f"output {out.tolist()} is not the argmax chain over the cropped context {expected.tolist()}")


GREEDY = Component(
    name="greedy_search",
    family="decoding",
    signature=f"greedy_search({MODEL}, input_ids: Int[B, L], max_new_tokens: int, eos_token_id: int | None = None, "
              "pad_token_id: int | None = None, min_new_tokens: int = 0, context_size: int | None = None) -> Int[B, L + n]",
    summary="Append the argmax token until max_new_tokens or every row has emitted EOS.",
    reference=ref.greedy_search,
    dtypes=(),
    features={"context_size": "cropping the model's input to the last context_size tokens"},
    invariants=(
        Invariant("greedy_search.argmax_chain", "Without EOS, each of the max_new_tokens new tokens is the argmax of the model's "
             "next-token logits for the sequence so far.", f"{HF_GEN}: GenerationMixin._sample (do_sample=False)", "property",
             model_examples(eos=False), _check_greedy_chain),
        Invariant("greedy_search.eos.padding_and_stop",
             "EOS is never chosen before min_new_tokens; a row that emitted EOS is padded with pad_token_id (EOS when None); "
             "generation stops as soon as every row has emitted EOS.",
             f"{HF_GEN}: GenerationMixin._sample, MinNewTokensLengthLogitsProcessor", "property", model_examples(), _check_greedy_eos),
        Invariant("greedy_search.context.cropped",
             "With context_size c the model is called once per new token on exactly the last c tokens, and the output is "
             "the argmax chain over those windows.",
             "Raschka, LLMs from Scratch ch. 4 generate_text_simple (idx[:, -context_size:]); nanoGPT generate", "property",
             _context_examples(), _check_greedy_context, requires=("context_size",)),
    ),
)


# --- ancestral sampling --------------------------------------------------------------------------------------


@st.composite
def _sample_examples(draw) -> dict:
    p = draw(model_examples(max_vocab=4, max_new=3))
    p["B"] = 1
    return p


def _sample_draws(ctx: Context, p: dict, salt: int = 0):
    model, ids = toy(p), prompt(ctx, p, 1)
    eos, pad = eos_id(p), pad_id(p)
    rows = ids.repeat(DRAWS, 1)
    gen = torch.Generator(device=ctx.device).manual_seed(p["seed"] + salt)
    out = ctx.target(model, rows, p["n"], generator=gen, eos_token_id=eos, pad_token_id=pad, min_new_tokens=p["min_new"])
    out = expect_ids(ctx, out, DRAWS, rows, rows.shape[-1] + p["n"])
    return model, ids, out, eos, pad


def _check_sample_distribution(ctx: Context, p: dict) -> None:
    model, ids, out, eos, pad = _sample_draws(ctx, p)
    generated = out[:, ids.shape[-1] :]
    fill = eos if pad is None else pad
    generated = pad_to(generated, p["n"], fill if fill is not None else -1)
    seqs, probs = sequence_distribution(model, ids[0], p["n"], eos, pad, _eos_after(eos, p["min_new"], p["V"]))
    assert_sequence_distribution(ctx, generated, seqs, probs, f"{DRAWS} sampled continuations of {p['n']} tokens")


def _eos_after(eos: int | None, min_new: int, vocab: int):
    """The min_new_tokens mask for sequence_distribution: EOS forbidden for the first min_new steps."""
    if eos is None or not min_new:
        return None

    def mask(prefix: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        allowed = torch.ones(prefix.shape[0], vocab, dtype=torch.bool)
        allowed[:, eos] = generated.shape[1] >= min_new
        return allowed
    return mask


def _check_sample_reproducible(ctx: Context, p: dict) -> None:
    first, second = _sample_draws(ctx, p)[2], _sample_draws(ctx, p)[2]
    if not torch.equal(first, second):
        ctx.fail("two runs with generators seeded alike generated different tokens (draws must come from `generator`)")


SAMPLE = Component(
    name="sample_search",
    family="decoding",
    signature=f"sample_search({MODEL}, input_ids: Int[B, L], max_new_tokens: int, generator: torch.Generator, "
              "eos_token_id: int | None = None, pad_token_id: int | None = None, min_new_tokens: int = 0) -> Int[B, L + n]",
    summary="Ancestral sampling: append tokens drawn from softmax(next-token logits).",
    reference=ref.sample_search,
    dtypes=(),
    invariants=(
        Invariant("sample_search.distribution.chi_square",
             f"The generated continuations follow the model's exact sequence distribution (EOS, padding and min_new_tokens "
             f"included): Pearson chi-square over every continuation, {DRAWS} draws, false-alarm rate {ALPHA:g}.",
             f"{HF_GEN}: GenerationMixin._sample (do_sample=True: torch.multinomial(softmax(scores), 1))", "statistical",
             _sample_examples(), _check_sample_distribution, budget=0.5),
        Invariant("sample_search.generator.reproducible", "Two runs with generators seeded alike generate the same tokens.",
             f"{HF_GEN}: torch.manual_seed before generate", "property", _sample_examples(), _check_sample_reproducible, budget=0.5),
    ),
)


# --- beam search ---------------------------------------------------------------------------------------------


@st.composite
def _beam_examples(draw, eos_heavy: bool = False) -> dict:
    # num_beams < V: every step has enough real candidates. With more beams than that, transformers' placeholder
    # beams (score -1e9 + log p, which float32 rounds to -1e9) can finish and end an early_stopping=True search.
    p = draw(model_examples(min_vocab=3, max_vocab=5, max_new=5))
    k = draw(st.integers(2, p["V"] - 1))
    p.update(num_beams=k, R=draw(st.integers(1, k)), length_penalty=draw(st.sampled_from([1.0, 0.0, 0.5, 2.0, -1.0])),
             early_stopping=draw(st.sampled_from([False, True, "never"])))
    if eos_heavy:
        p.update(eos=draw(st.sampled_from([0, -1])), eos_bias=draw(st.sampled_from([1.0, 2.0, 3.0])), B=2, n=max(p["n"], 3))
    return p


def beam_args(p: dict) -> dict:
    return dict(eos_token_id=eos_id(p), pad_token_id=pad_id(p), length_penalty=p["length_penalty"],
                early_stopping=p["early_stopping"], min_new_tokens=p["min_new"], num_return_sequences=p["R"])


def beam_output(ctx: Context, out, rows: int, ids: torch.Tensor, max_new: int, what: str = "beam search") -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        ctx.fail(f"{what} returned {type(out).__name__}, expected (sequences, scores)")
    sequences = expect_ids(ctx, out[0], rows, ids, ids.shape[-1] + max_new, f"{what} sequences")
    scores = out[1]
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point() or tuple(scores.shape) != (rows,):
        ctx.fail(f"{what} scores are {type(scores).__name__} {tuple(getattr(scores, 'shape', ()))}, expected Float[{rows}]")
    return sequences, scores.detach().cpu().to(torch.float64)


def assert_same_hypotheses(ctx: Context, got, expected, what: str) -> None:
    """Sequences equal and scores within SCORE_RTOL, on the hypotheses that finished (placeholders aside)."""
    (seq, score), (ref_seq, ref_score) = got, expected
    real = ref_score > PLACEHOLDER
    width = max(seq.shape[1], ref_seq.shape[1])
    fill = lambda s: pad_to(s, width, -2)  # noqa: E731
    if seq.shape[1] != ref_seq.shape[1] or not torch.equal(fill(seq)[real], fill(ref_seq)[real]):
        ctx.fail(f"{what}: sequences {seq[real].tolist()}, expected {ref_seq[real].tolist()} (scores {ref_score[real].tolist()})")
    err = (score[real] - ref_score[real]).abs() / ref_score[real].abs().clamp(min=1.0)
    if err.numel() and float(err.max()) > SCORE_RTOL:
        ctx.fail(f"{what}: scores {score[real].tolist()}, expected {ref_score[real].tolist()}", max_rel=float(err.max()))


def _check_beam_reference(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    got = beam_output(ctx, ctx.target(model, ids, p["num_beams"], p["n"], **beam_args(p)), p["B"] * p["R"], ids, p["n"])
    expected = ref.beam_search(model, ids.cpu(), p["num_beams"], p["n"], **beam_args(p))
    assert_same_hypotheses(ctx, got, expected, f"beam search {beam_args(p)}")


def _check_beam_early_stopping(ctx: Context, p: dict) -> None:
    for mode in (False, True, "never"):  # each mode on the same EOS-heavy model: where they differ, each must match
        _check_beam_reference(ctx, {**p, "early_stopping": mode})


def _check_beam_width_one(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    seq, _ = beam_output(ctx, ctx.target(model, ids, 1, p["n"]), p["B"], ids, p["n"])
    expected = greedy_chain(model, ids.cpu(), p["n"])
    if not torch.equal(seq, expected):
        ctx.fail(f"num_beams=1 gave {seq.tolist()}, greedy decoding gives {expected.tolist()}")


@st.composite
def _exhaustive_examples(draw) -> dict:
    v = draw(st.integers(2, 3))
    n = draw(st.integers(1, 3))
    p = draw(model_examples(min_vocab=v, max_vocab=v, eos=False))
    p.update(n=n, num_beams=draw(st.integers(v ** (n - 1), v**n)) if n > 1 else draw(st.integers(1, v)),
             length_penalty=draw(st.sampled_from([1.0, 0.0, 2.0])))
    return p


def _check_beam_exhaustive(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    k = p["num_beams"]
    seq, score = beam_output(ctx, ctx.target(model, ids, k, p["n"], length_penalty=p["length_penalty"], num_return_sequences=k),
                             p["B"] * k, ids, p["n"])
    for b in range(p["B"]):
        seqs, probs = sequence_distribution(model, ids[b], p["n"], None, None)
        best = probs.log().argsort(descending=True)[: min(k, seqs.shape[0])]
        got = seq[b * k : b * k + best.numel(), ids.shape[-1] :]
        if not torch.equal(got, seqs[best]):
            ctx.fail(f"row {b}: with {k} beams >= V^(steps - 1) the best continuations by brute force are {seqs[best].tolist()}, "
                     f"beam search returned {got.tolist()}", row=b)
        expected = probs[best].log() / p["n"] ** p["length_penalty"]
        err = float(((score[b * k : b * k + best.numel()] - expected).abs() / expected.abs().clamp(min=1)).max())
        if err > SCORE_RTOL:
            ctx.fail(f"row {b}: scores {score[b * k : b * k + best.numel()].tolist()}, brute force {expected.tolist()}", row=b)


def sequence_log_prob(model, seq: torch.Tensor, length: int, generated: int) -> float:
    """Sum of log p(token | prefix) over the first `generated` tokens after the prompt."""
    ids = seq[None, : length + generated]
    total = 0.0
    for t in range(length, length + generated):
        total += float(next_log_probs(model, ids[:, :t])[0, ids[0, t]])
    return total


def generated_length(seq: torch.Tensor, length: int, eos: int | None) -> int:
    """Generated tokens up to and including the first EOS (all of them if there is none)."""
    gen = seq[length:].tolist()
    return gen.index(eos) + 1 if eos is not None and eos in gen else len(gen)


def _check_beam_scores(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    seq, score = beam_output(ctx, ctx.target(model, ids, p["num_beams"], p["n"], **beam_args(p)), p["B"] * p["R"], ids, p["n"])
    length, alpha, eos = ids.shape[-1], p["length_penalty"], eos_id(p)
    for i in range(seq.shape[0]):
        if score[i] <= PLACEHOLDER:
            continue
        g = generated_length(seq[i], length, eos)
        expected = sequence_log_prob(model, seq[i], length, g) / g**alpha
        if abs(float(score[i]) - expected) > SCORE_RTOL * max(1.0, abs(expected)):
            ctx.fail(f"hypothesis {seq[i].tolist()}: score {float(score[i]):.6g}, expected sum log p / {g}^{alpha} = {expected:.6g} "
                     f"(the length counts the generated tokens, EOS included, not the prompt)", hypothesis=i)


def _check_beam_eos(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    eos, pad = eos_id(p), pad_id(p)
    seq, score = beam_output(ctx, ctx.target(model, ids, p["num_beams"], p["n"], **beam_args(p)), p["B"] * p["R"], ids, p["n"])
    fill = eos if pad is None else pad
    for i in range(seq.shape[0]):
        if score[i] <= PLACEHOLDER:
            continue
        gen = seq[i, ids.shape[-1] :].tolist()
        g = generated_length(seq[i], ids.shape[-1], eos)
        if g <= p["min_new"] and eos in gen[:g]:
            ctx.fail(f"hypothesis {seq[i].tolist()} ends with EOS after {g} tokens, before min_new_tokens={p['min_new']}")
        if g < len(gen) and any(t != fill for t in gen[g:]):
            ctx.fail(f"hypothesis {seq[i].tolist()}: tokens after EOS must all be the pad id {fill}")
        if g < p["n"] and (not gen or gen[g - 1] != eos):
            ctx.fail(f"hypothesis {seq[i].tolist()} stopped after {g} < max_new_tokens={p['n']} tokens without EOS")


BEAM = Component(
    name="beam_search",
    family="decoding",
    signature=f"beam_search({MODEL}, input_ids: Int[B, L], num_beams: int, max_new_tokens: int, eos_token_id: int | None = None, "
              "pad_token_id: int | None = None, length_penalty: float = 1.0, early_stopping: bool | 'never' = False, "
              "min_new_tokens: int = 0, num_return_sequences: int = 1) -> (Int[B * R, L + n], Float[B * R])  (best first)",
    summary="Beam search with Hugging Face's length penalty, EOS handling and early stopping.",
    reference=ref.beam_search,
    dtypes=(),
    invariants=(
        Invariant("beam_search.reference.matches",
             "Returned sequences and scores equal the reference (transformers 5.23 `_beam_search` semantics) for any EOS, "
             f"length penalty, early_stopping, min_new_tokens and num_return_sequences (scores within {SCORE_RTOL:g} relative).",
             f"{HF_GEN}: GenerationMixin._beam_search", "differential", _beam_examples(), _check_beam_reference),
        Invariant("beam_search.early_stopping.modes",
             "With EOS-heavy models, early_stopping True (stop once num_beams hypotheses finished), False (stop when the best "
             "running beam at the current length cannot beat the worst finished one) and 'never' (bound at max length for "
             "length_penalty > 0) give the reference's hypotheses.",
             f"{HF_GEN}: _check_early_stop_heuristic, _beam_search_has_unfinished_sequences", "differential",
             _beam_examples(eos_heavy=True), _check_beam_early_stopping),
        Invariant("beam_search.width_one.greedy", "num_beams = 1 without EOS returns greedy decoding.",
             f"{HF_GEN}: generation mode GREEDY when num_beams == 1", "property", model_examples(eos=False), _check_beam_width_one),
        Invariant("beam_search.exhaustive.exact_best",
             "With num_beams >= V^(steps - 1) (every prefix kept) and no EOS, the returned sequences are the best by total "
             "log-probability, found by brute force over all V^steps continuations, in order.",
             "Graves 2012, Sequence Transduction with RNNs, sec. 3.2 (beam search); brute force", "property",
             _exhaustive_examples(), _check_beam_exhaustive),
        Invariant("beam_search.score.length_penalty",
             "A finished hypothesis's score is its generated tokens' total log-probability (EOS included) divided by "
             "(number of generated tokens) ** length_penalty; the prompt is not counted.",
             f"{HF_GEN}: _update_finished_beams (topk_log_probs / (cur_len + 1 - decoder_prompt_len) ** length_penalty)",
             "property", _beam_examples(), _check_beam_scores),
        Invariant("beam_search.eos.finished_hypotheses",
             "A returned hypothesis shorter than max_new_tokens ends with EOS, is padded after it with pad_token_id (EOS "
             "when None), and never ends before min_new_tokens.",
             f"{HF_GEN}: _beam_search (output_fill_value), MinNewTokensLengthLogitsProcessor", "property",
             _beam_examples(eos_heavy=True), _check_beam_eos),
    ),
)


# --- diverse (group) beam search -----------------------------------------------------------------------------


@st.composite
def _diverse_examples(draw, min_groups: int = 1) -> dict:
    p = draw(_beam_examples())
    groups = draw(st.integers(min_groups, 3))
    size = draw(st.integers(1, 2))
    p.update(num_beams=groups * size, groups=groups, R=draw(st.integers(1, groups * size)),
             diversity=draw(st.sampled_from([0.0, 0.5, 2.0])))
    return p


def _diverse_call(ctx: Context, p: dict, model, ids, groups: int, diversity: float, **over):
    args = {**beam_args(p), **over}
    r = args["num_return_sequences"]
    return beam_output(ctx, ctx.target(model, ids, p["num_beams"], groups, diversity, p["n"], **args), p["B"] * r, ids, p["n"],
                       "diverse beam search")


def _check_diverse_reference(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    got = _diverse_call(ctx, p, model, ids, p["groups"], p["diversity"])
    expected = ref.diverse_beam_search(model, ids.cpu(), p["num_beams"], p["groups"], p["diversity"], p["n"], **beam_args(p))
    assert_same_hypotheses(ctx, got, expected, f"diverse beam search ({p['groups']} groups, penalty {p['diversity']})")


def _check_diverse_one_group(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    got = _diverse_call(ctx, p, model, ids, 1, p["diversity"])
    expected = ref.beam_search(model, ids.cpu(), p["num_beams"], p["n"], **beam_args(p))
    assert_same_hypotheses(ctx, got, expected, "one group vs beam search")


@st.composite
def _distinct_examples(draw) -> dict:
    p = draw(model_examples(min_vocab=3, max_vocab=5, eos=False, max_new=3))
    p.update(groups=draw(st.integers(2, p["V"])), length_penalty=1.0, early_stopping=False, min_new=0)
    p.update(num_beams=p["groups"], R=p["groups"])
    return p


def _check_diverse_distinct(ctx: Context, p: dict) -> None:
    # groups of one beam and a penalty far above any log-probability gap: group g never repeats a first token of
    # the groups before it, so the returned hypotheses (one per group) start with distinct tokens.
    model, ids = toy(p), prompt(ctx, p)
    seq, _ = _diverse_call(ctx, p, model, ids, p["groups"], 1e3)
    for b in range(p["B"]):
        firsts = seq[b * p["R"] : (b + 1) * p["R"], ids.shape[-1]].tolist()
        if len(set(firsts)) != len(firsts):
            ctx.fail(f"row {b}: with {p['groups']} groups of one beam and diversity_penalty 1000 the hypotheses start with "
                     f"{firsts}; the penalty must stop a group repeating a token chosen by an earlier group", row=b)


def _check_diverse_zero(ctx: Context, p: dict) -> None:
    # without a penalty every group is the same beam search of num_beams / groups beams: all num_beams returned
    # hypotheses are that search's, each once per group, best first.
    model, ids = toy(p), prompt(ctx, p)
    size = p["num_beams"] // p["groups"]
    got = _diverse_call(ctx, p, model, ids, p["groups"], 0.0, num_return_sequences=p["num_beams"])
    seq, score = ref.beam_search(model, ids.cpu(), size, p["n"], **{**beam_args(p), "num_return_sequences": size})
    per_row = lambda t: t.reshape(p["B"], size, *t.shape[1:]).repeat_interleave(p["groups"], 1).flatten(0, 1)  # noqa: E731
    assert_same_hypotheses(ctx, got, (per_row(seq), per_row(score)),
                           f"{p['groups']} groups without penalty vs each hypothesis of a beam search of {size} beams {p['groups']} times")


DIVERSE = Component(
    name="diverse_beam_search",
    family="decoding",
    signature=f"diverse_beam_search({MODEL}, input_ids: Int[B, L], num_beams: int, num_beam_groups: int, "
              "diversity_penalty: float, max_new_tokens: int, **beam_search options) -> (Int[B * R, L + n], Float[B * R])",
    summary="Group beam search with the Hamming diversity penalty between groups.",
    reference=ref.diverse_beam_search,
    dtypes=(),
    invariants=(
        Invariant("diverse_beam_search.reference.matches",
             "Returned sequences and scores equal the reference: groups decoded in order, group g's log-probabilities lowered "
             "by diversity_penalty x (times each token was chosen at this step by earlier groups), penalized scores "
             "accumulated, each group a beam search, all hypotheses ranked together.",
             "Vijayakumar et al. 2018, sec. 4; transformers 4.x _group_beam_search + HammingDiversityLogitsProcessor "
             "(now transformers-community/group-beam-search)", "differential", _diverse_examples(), _check_diverse_reference),
        Invariant("diverse_beam_search.one_group.is_beam_search", "num_beam_groups = 1 equals beam search with the same beams.",
             "Vijayakumar et al. 2018, sec. 4 (G = 1)", "differential", _diverse_examples(), _check_diverse_one_group),
        Invariant("diverse_beam_search.zero_penalty.independent_groups",
             "diversity_penalty = 0 makes every group the same beam search of num_beams / num_beam_groups beams: the "
             "num_beams returned hypotheses are that search's, each once per group, best first.",
             "Vijayakumar et al. 2018, sec. 4 (lambda = 0)", "differential", _diverse_examples(min_groups=2), _check_diverse_zero),
        Invariant("diverse_beam_search.penalty.distinct_first_tokens",
             "With groups of one beam and a very large penalty no group repeats a token an earlier group chose at the same "
             "step: the hypotheses start with distinct tokens.", "Vijayakumar et al. 2018, eq. 4 (Hamming diversity)",
             "property", _distinct_examples(), _check_diverse_distinct),
    ),
)

COMPONENTS = (GREEDY, SAMPLE, BEAM, DIVERSE)
