"""Decoding strategies: greedy (with context cropping), ancestral sampling, beam search, diverse beam search,
checked on the toy model of models.py."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ...reference.decoding import search as ref
from ..checks import assert_equal, assert_within
from ..core import Component, Context, invariant
from ..strategies import scaled
from .models import ALPHA, DRAWS, MODEL, REAL_VOCABS, TILE_VOCABS, Recorder, small_model_examples, \
    assert_sequence_distribution, eos_id, expect_ids, greedy_chain, large_vocab_examples, model_examples, pad_id, \
    pad_to, prompt, sequence_distribution, toy

HF_GEN = "transformers 5.23 generation/utils.py"
VIJAYAKUMAR = "Vijayakumar et al. 2018"
PLACEHOLDER = -1e8  # a returned hypothesis scored below this never finished (HF's -1e9 sentinel)
SCORE_RTOL = 1e-4  # beam scores: libraries accumulate log-probabilities in float32


# --- greedy --------------------------------------------------------------------------------------------------

GREEDY = Component(
    name="greedy_search",
    signature=f"greedy_search({MODEL}, input_ids: Int[B, L], max_new_tokens: int, eos_token_id: int | None = None, "
              "pad_token_id: int | None = None, min_new_tokens: int = 0, context_size: int | None = None) "
              "-> Int[B, L + n]",
    summary="Append the argmax token until max_new_tokens or every row has emitted EOS.",
    reference=ref.greedy_search,
    dtypes=(),
    features={"context_size": "cropping the model's input to the last context_size tokens"},
)


def _greedy_call(ctx: Context, p: dict, model, ids, **kw) -> torch.Tensor:
    out = ctx.target(model, ids, p["n"], **kw)
    return expect_ids(ctx, out, ids.shape[0], ids, ids.shape[-1] + p["n"])


@invariant("greedy_search.argmax_chain", examples=model_examples(eos=False, large_vocab=True),
           statement="Without EOS, each of the max_new_tokens new tokens is the argmax of the model's next-token "
                     "logits for the sequence so far.",
           source=f"{HF_GEN}: GenerationMixin._sample (do_sample=False)")
def check_greedy_chain(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    out = _greedy_call(ctx, p, model, ids)
    expected = greedy_chain(model, ids.cpu(), p["n"])
    assert_equal(ctx, out, expected, f"greedy output {out.tolist()} vs the argmax chain {expected.tolist()}")


@invariant("greedy_search.eos.padding_and_stop", examples=model_examples(large_vocab=True),
           statement="EOS is never chosen before min_new_tokens; a row that emitted EOS is padded with pad_token_id "
                     "(EOS when None); generation stops as soon as every row has emitted EOS.",
           source=f"{HF_GEN}: GenerationMixin._sample, MinNewTokensLengthLogitsProcessor")
def check_greedy_eos(ctx: Context, p: dict) -> None:
    with_eos = {**p, "eos": p["eos"] if p["eos"] is not None else -1}  # the model always has an EOS; the pad may not
    model, ids = toy(with_eos), prompt(ctx, p)
    eos, pad = eos_id(with_eos), pad_id(p)
    out = _greedy_call(ctx, p, model, ids, eos_token_id=eos, pad_token_id=pad, min_new_tokens=p["min_new"])
    expected = greedy_chain(model, ids.cpu(), p["n"], eos, pad, p["min_new"])
    assert_equal(ctx, out, expected, f"with eos_token_id={eos}, pad_token_id={pad}, min_new_tokens={p['min_new']}: "
                 f"output {out.tolist()} vs {expected.tolist()} (argmax chain; EOS forbidden before min_new_tokens; "
                 "rows that emitted EOS are padded; generation stops when every row has)")


@st.composite
def _context_examples(draw) -> dict:
    p = draw(model_examples(eos=False, max_new=6))
    p["context"] = draw(st.integers(1, p["L"] + p["n"] - 1)) if p["L"] + p["n"] > 2 else 1
    return p


@invariant("greedy_search.context.cropped", examples=_context_examples(), requires=("context_size",),
           statement="With context_size c the model is called once per new token on exactly the last c tokens, and "
                     "the output is the argmax chain over those windows.",
           source="Raschka, LLMs from Scratch ch. 4 generate_text_simple (idx[:, -context_size:]); nanoGPT generate")
def check_greedy_context(ctx: Context, p: dict) -> None:
    model, ids = Recorder(toy(p)), prompt(ctx, p)
    out = _greedy_call(ctx, p, model, ids, context_size=p["context"])
    c, length = p["context"], ids.shape[-1]
    assert_equal(ctx, len(model.calls), p["n"], f"model calls for {p['n']} new tokens")
    for step, seen in enumerate(model.calls):
        window = out[:, max(0, length + step - c) : length + step]
        assert_equal(ctx, seen.to(torch.int64), window,
                     f"step {step}: the model saw {seen.tolist()}, the last {c} tokens are {window.tolist()}")
    expected = greedy_chain(model.model, ids.cpu(), p["n"], context_size=c)
    assert_equal(ctx, out, expected, f"output {out.tolist()} vs the argmax chain over the cropped context "
                 f"{expected.tolist()}")


# --- ancestral sampling --------------------------------------------------------------------------------------

SAMPLE = Component(
    name="sample_search",
    signature=f"sample_search({MODEL}, input_ids: Int[B, L], max_new_tokens: int, generator: torch.Generator, "
              "eos_token_id: int | None = None, pad_token_id: int | None = None, min_new_tokens: int = 0) "
              "-> Int[B, L + n]",
    summary="Ancestral sampling: append tokens drawn from softmax(next-token logits).",
    reference=ref.sample_search,
    dtypes=(),
)


@st.composite
def _sample_examples(draw) -> dict:
    p = draw(model_examples(max_vocab=4, max_new=3))
    p["B"] = 1
    return p


def _sample_draws(ctx: Context, p: dict):
    """DRAWS rows of one prompt, sampled in one call."""
    model, ids = toy(p), prompt(ctx, p, 1)
    eos, pad = eos_id(p), pad_id(p)
    rows = ids.repeat(DRAWS, 1)
    gen = torch.Generator(device=ctx.device).manual_seed(p["seed"])
    out = ctx.target(model, rows, p["n"], generator=gen, eos_token_id=eos, pad_token_id=pad,
                     min_new_tokens=p["min_new"])
    out = expect_ids(ctx, out, DRAWS, rows, rows.shape[-1] + p["n"])
    return model, ids, out, eos, pad


def _eos_after(eos: int | None, min_new: int, vocab: int):
    """The min_new_tokens mask for sequence_distribution: EOS forbidden for the first min_new steps."""
    if eos is None or not min_new:
        return None

    def mask(prefix: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        allowed = torch.ones(prefix.shape[0], vocab, dtype=torch.bool)
        allowed[:, eos] = generated.shape[1] >= min_new
        return allowed
    return mask


@invariant("sample_search.distribution.chi_square", kind="statistical", examples=_sample_examples(), budget=0.5,
           statement=f"The generated continuations follow the model's exact sequence distribution (EOS, padding and "
                     f"min_new_tokens included): Pearson chi-square over every continuation, {DRAWS} draws, "
                     f"false-alarm rate {ALPHA:g}.",
           source=f"{HF_GEN}: GenerationMixin._sample (do_sample=True: torch.multinomial(softmax(scores), 1))")
def check_sample_distribution(ctx: Context, p: dict) -> None:
    model, ids, out, eos, pad = _sample_draws(ctx, p)
    fill = eos if pad is None else pad
    generated = pad_to(out[:, ids.shape[-1] :], p["n"], fill if fill is not None else -1)
    seqs, probs = sequence_distribution(model, ids[0], p["n"], eos, pad, _eos_after(eos, p["min_new"], p["V"]))
    assert_sequence_distribution(ctx, generated, seqs, probs, f"{DRAWS} sampled continuations of {p['n']} tokens")


@invariant("sample_search.generator.reproducible", examples=_sample_examples(), budget=0.5,
           statement="Two runs with generators seeded alike generate the same tokens.",
           source=f"{HF_GEN}: torch.manual_seed before generate")
def check_sample_reproducible(ctx: Context, p: dict) -> None:
    first, second = _sample_draws(ctx, p)[2], _sample_draws(ctx, p)[2]
    assert_equal(ctx, second, first, "a second run with a generator seeded alike (draws must come from `generator`)")


# --- beam search ---------------------------------------------------------------------------------------------

BEAM = Component(
    name="beam_search",
    signature=f"beam_search({MODEL}, input_ids: Int[B, L], num_beams: int, max_new_tokens: int, "
              "eos_token_id: int | None = None, pad_token_id: int | None = None, length_penalty: float = 1.0, "
              "early_stopping: bool | 'never' = False, min_new_tokens: int = 0, num_return_sequences: int = 1) "
              "-> (Int[B * R, L + n], Float[B * R])  (best first)",
    summary="Beam search with Hugging Face's length penalty, EOS handling and early stopping.",
    reference=ref.beam_search,
    dtypes=(),
)


def _beam_examples(eos_heavy: bool = False) -> st.SearchStrategy[dict]:
    """Tiny vocabularies at every scale; from scale "kernel" up also a real model's vocabulary with 2-3 beams, or
    beam widths at tile edges (31..129) over a vocabulary of a few hundred."""
    return scaled(_small_beam_examples(eos_heavy), _kernel_beam_examples(eos_heavy))


@st.composite
def _kernel_beam_examples(draw, eos_heavy: bool = False) -> dict:
    if draw(st.booleans()):
        p = draw(large_vocab_examples(max_batch=1, vocabs=REAL_VOCABS))
        k = draw(st.integers(2, 3))
        if eos_heavy:  # the model's own EOS id, made likely
            p.update(eos=dict(REAL_VOCABS + TILE_VOCABS)[p["V"]], eos_bias=8.0, n=3)
    else:
        k = draw(st.sampled_from((31, 32, 33, 63, 64, 65, 127, 128, 129)))
        p = draw(small_model_examples(max_new=3))
        p.update(V=draw(st.sampled_from([v for v in (40, 70, 135, 260) if v > k])), L=min(p["L"], 3))
        if eos_heavy:  # a bias of 8: EOS wins among hundreds of tokens
            p.update(eos=draw(st.sampled_from([0, -1])), eos_bias=8.0, B=2, n=3)
    p.update(num_beams=k, R=draw(st.integers(1, min(k, 3))),
             length_penalty=draw(st.sampled_from([1.0, 0.0, 0.5, 2.0, -1.0])),
             early_stopping=draw(st.sampled_from([False, True, "never"])))
    return p


@st.composite
def _small_beam_examples(draw, eos_heavy: bool = False) -> dict:
    # num_beams < V: every step has enough real candidates. With more beams than that, transformers' placeholder
    # beams (score -1e9 + log p, which float32 rounds to -1e9) can finish and end an early_stopping=True search.
    p = draw(small_model_examples(min_vocab=3, max_vocab=5, max_new=5))
    k = draw(st.integers(2, p["V"] - 1))
    p.update(num_beams=k, R=draw(st.integers(1, k)), length_penalty=draw(st.sampled_from([1.0, 0.0, 0.5, 2.0, -1.0])),
             early_stopping=draw(st.sampled_from([False, True, "never"])))
    if eos_heavy:
        p.update(eos=draw(st.sampled_from([0, -1])), eos_bias=draw(st.sampled_from([1.0, 2.0, 3.0])), B=2,
                 n=max(p["n"], 3))
    return p


def beam_args(p: dict) -> dict:
    return dict(eos_token_id=eos_id(p), pad_token_id=pad_id(p), length_penalty=p["length_penalty"],
                early_stopping=p["early_stopping"], min_new_tokens=p["min_new"], num_return_sequences=p["R"])


def beam_output(ctx: Context, out, rows: int, ids: torch.Tensor, max_new: int,
                what: str = "beam search") -> tuple[torch.Tensor, torch.Tensor]:
    """(sequences, scores) of `rows` hypotheses, on the CPU, scores in float64."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        ctx.fail(f"{what} returned {type(out).__name__}, expected (sequences, scores)")
    sequences = expect_ids(ctx, out[0], rows, ids, ids.shape[-1] + max_new, f"{what} sequences")
    scores = out[1]
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point() or tuple(scores.shape) != (rows,):
        ctx.fail(f"{what} scores are {type(scores).__name__} {tuple(getattr(scores, 'shape', ()))}, "
                 f"expected Float[{rows}]")
    return sequences, scores.detach().cpu().to(torch.float64)


def assert_same_hypotheses(ctx: Context, got, expected, what: str) -> None:
    """Sequences equal and scores within SCORE_RTOL, on the hypotheses that finished (placeholders aside)."""
    (seq, score), (ref_seq, ref_score) = got, expected
    real = ref_score > PLACEHOLDER
    assert_equal(ctx, seq[real], ref_seq[real], f"{what}: sequences {seq[real].tolist()} vs "
                 f"{ref_seq[real].tolist()} (scores {ref_score[real].tolist()})")
    for i in real.nonzero().flatten().tolist():
        want = float(ref_score[i])
        assert_within(ctx, float(score[i]), want, SCORE_RTOL * max(1.0, abs(want)),
                      f"{what}: score of {seq[i].tolist()}")


@invariant("beam_search.reference.matches", kind="differential", examples=_beam_examples(),
           statement="Returned sequences and scores equal the reference (transformers 5.23 `_beam_search` semantics) "
                     "for any EOS, length penalty, early_stopping, min_new_tokens and num_return_sequences (scores "
                     f"within {SCORE_RTOL:g} relative).",
           source=f"{HF_GEN}: GenerationMixin._beam_search")
def check_beam_reference(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    out = ctx.target(model, ids, p["num_beams"], p["n"], **beam_args(p))
    got = beam_output(ctx, out, p["B"] * p["R"], ids, p["n"])
    expected = ref.beam_search(model, ids.cpu(), p["num_beams"], p["n"], **beam_args(p))
    assert_same_hypotheses(ctx, got, expected, f"beam search {beam_args(p)}")


@invariant("beam_search.early_stopping.modes", kind="differential", examples=_beam_examples(eos_heavy=True),
           statement="With EOS-heavy models, early_stopping True (stop once num_beams hypotheses finished), False "
                     "(stop when the best running beam at the current length cannot beat the worst finished one) and "
                     "'never' (bound at max length for length_penalty > 0) give the reference's hypotheses.",
           source=f"{HF_GEN}: _check_early_stop_heuristic, _beam_search_has_unfinished_sequences")
def check_beam_early_stopping(ctx: Context, p: dict) -> None:
    for mode in (False, True, "never"):  # each mode on the same EOS-heavy model: where they differ, each must match
        check_beam_reference(ctx, {**p, "early_stopping": mode})


@invariant("beam_search.width_one.greedy", examples=model_examples(eos=False, large_vocab=True),
           statement="num_beams = 1 without EOS returns greedy decoding.",
           source=f"{HF_GEN}: generation mode GREEDY when num_beams == 1")
def check_beam_width_one(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    seq, _ = beam_output(ctx, ctx.target(model, ids, 1, p["n"]), p["B"], ids, p["n"])
    expected = greedy_chain(model, ids.cpu(), p["n"])
    assert_equal(ctx, seq, expected, f"num_beams=1: {seq.tolist()} vs greedy decoding {expected.tolist()}")


@st.composite
def _exhaustive_examples(draw) -> dict:
    v = draw(st.integers(2, 3))
    n = draw(st.integers(1, 3))
    p = draw(model_examples(min_vocab=v, max_vocab=v, eos=False))
    p.update(n=n, num_beams=draw(st.integers(v ** (n - 1), v**n)) if n > 1 else draw(st.integers(1, v)),
             length_penalty=draw(st.sampled_from([1.0, 0.0, 2.0])))
    return p


@invariant("beam_search.exhaustive.exact_best", examples=_exhaustive_examples(),
           statement="With num_beams >= V^(steps - 1) (every prefix kept) and no EOS, the returned sequences are the "
                     "best by total log-probability, found by brute force over all V^steps continuations, in order.",
           source="Graves 2012, Sequence Transduction with RNNs, sec. 3.2 (beam search); brute force")
def check_beam_exhaustive(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    k = p["num_beams"]
    out = ctx.target(model, ids, k, p["n"], length_penalty=p["length_penalty"], num_return_sequences=k)
    seq, score = beam_output(ctx, out, p["B"] * k, ids, p["n"])
    for b in range(p["B"]):
        seqs, probs = sequence_distribution(model, ids[b], p["n"], None, None)
        best = probs.log().argsort(descending=True)[: min(k, seqs.shape[0])]
        got = seq[b * k : b * k + best.numel(), ids.shape[-1] :]
        assert_equal(ctx, got, seqs[best], f"row {b}: with {k} beams >= V^(steps - 1), beam search returned "
                     f"{got.tolist()}, the best continuations by brute force are {seqs[best].tolist()}")
        expected = probs[best].log() / p["n"] ** p["length_penalty"]
        for i, want in enumerate(expected.tolist()):
            assert_within(ctx, float(score[b * k + i]), want, SCORE_RTOL * max(1.0, abs(want)),
                          f"row {b}: score of {got[i].tolist()} vs brute force")


def sequence_log_prob(model, seq: torch.Tensor, length: int, generated: int) -> float:
    """Sum of log p(token | prefix) over the first `generated` tokens after the prompt."""
    ids = seq[None, : length + generated]
    return sum(float(ref.next_logits(model, ids[:, :t]).log_softmax(dim=-1)[0, ids[0, t]])
               for t in range(length, length + generated))


def generated_length(seq: torch.Tensor, length: int, eos: int | None) -> int:
    """Generated tokens up to and including the first EOS (all of them if there is none)."""
    gen = seq[length:].tolist()
    return gen.index(eos) + 1 if eos is not None and eos in gen else len(gen)


@invariant("beam_search.score.length_penalty", examples=_beam_examples(),
           statement="A finished hypothesis's score is its generated tokens' total log-probability (EOS included) "
                     "divided by (number of generated tokens) ** length_penalty; the prompt is not counted.",
           source=f"{HF_GEN}: _update_finished_beams (topk_log_probs / (cur_len + 1 - decoder_prompt_len) ** "
                  "length_penalty)")
def check_beam_scores(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    out = ctx.target(model, ids, p["num_beams"], p["n"], **beam_args(p))
    seq, score = beam_output(ctx, out, p["B"] * p["R"], ids, p["n"])
    length, alpha, eos = ids.shape[-1], p["length_penalty"], eos_id(p)
    for i in range(seq.shape[0]):
        if score[i] <= PLACEHOLDER:
            continue
        g = generated_length(seq[i], length, eos)
        expected = sequence_log_prob(model, seq[i], length, g) / g**alpha
        assert_within(ctx, float(score[i]), expected, SCORE_RTOL * max(1.0, abs(expected)),
                      f"hypothesis {seq[i].tolist()}: score vs sum log p / {g}^{alpha} (the length counts the "
                      "generated tokens, EOS included, not the prompt)")


@invariant("beam_search.eos.finished_hypotheses", examples=_beam_examples(eos_heavy=True),
           statement="A returned hypothesis shorter than max_new_tokens ends with EOS, is padded after it with "
                     "pad_token_id (EOS when None), and never ends before min_new_tokens.",
           source=f"{HF_GEN}: _beam_search (output_fill_value), MinNewTokensLengthLogitsProcessor")
def check_beam_eos(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    eos, pad = eos_id(p), pad_id(p)
    out = ctx.target(model, ids, p["num_beams"], p["n"], **beam_args(p))
    seq, score = beam_output(ctx, out, p["B"] * p["R"], ids, p["n"])
    fill = eos if pad is None else pad
    for i in range(seq.shape[0]):
        if score[i] <= PLACEHOLDER:
            continue
        gen = seq[i, ids.shape[-1] :].tolist()
        g = generated_length(seq[i], ids.shape[-1], eos)
        if g <= p["min_new"] and eos in gen[:g]:
            ctx.fail(f"hypothesis {seq[i].tolist()} ends with EOS after {g} tokens, before "
                     f"min_new_tokens={p['min_new']}")
        if g < len(gen) and any(t != fill for t in gen[g:]):
            ctx.fail(f"hypothesis {seq[i].tolist()}: tokens after EOS must all be the pad id {fill}")
        if g < p["n"] and (not gen or gen[g - 1] != eos):
            ctx.fail(f"hypothesis {seq[i].tolist()} stopped after {g} < max_new_tokens={p['n']} tokens without EOS")


# --- diverse (group) beam search -----------------------------------------------------------------------------

DIVERSE = Component(
    name="diverse_beam_search",
    signature=f"diverse_beam_search({MODEL}, input_ids: Int[B, L], num_beams: int, num_beam_groups: int, "
              "diversity_penalty: float, max_new_tokens: int, **beam_search options) "
              "-> (Int[B * R, L + n], Float[B * R])",
    summary="Group beam search with the Hamming diversity penalty between groups.",
    reference=ref.diverse_beam_search,
    dtypes=(),
)


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
    out = ctx.target(model, ids, p["num_beams"], groups, diversity, p["n"], **args)
    return beam_output(ctx, out, p["B"] * args["num_return_sequences"], ids, p["n"], "diverse beam search")


@invariant("diverse_beam_search.reference.matches", kind="differential", examples=_diverse_examples(),
           statement="Returned sequences and scores equal the reference: groups decoded in order, group g's "
                     "log-probabilities lowered by diversity_penalty x (times each token was chosen at this step by "
                     "earlier groups), penalized scores accumulated, each group a beam search, all hypotheses ranked "
                     "together.",
           source=f"{VIJAYAKUMAR}, sec. 4; transformers 4.x _group_beam_search + HammingDiversityLogitsProcessor "
                  "(now transformers-community/group-beam-search)")
def check_diverse_reference(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    got = _diverse_call(ctx, p, model, ids, p["groups"], p["diversity"])
    expected = ref.diverse_beam_search(model, ids.cpu(), p["num_beams"], p["groups"], p["diversity"], p["n"],
                                       **beam_args(p))
    assert_same_hypotheses(ctx, got, expected, f"diverse beam search ({p['groups']} groups, penalty {p['diversity']})")


@invariant("diverse_beam_search.one_group.is_beam_search", kind="differential", examples=_diverse_examples(),
           statement="num_beam_groups = 1 equals beam search with the same beams.",
           source=f"{VIJAYAKUMAR}, sec. 4 (G = 1)")
def check_diverse_one_group(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    got = _diverse_call(ctx, p, model, ids, 1, p["diversity"])
    expected = ref.beam_search(model, ids.cpu(), p["num_beams"], p["n"], **beam_args(p))
    assert_same_hypotheses(ctx, got, expected, "one group vs beam search")


@invariant("diverse_beam_search.zero_penalty.independent_groups", kind="differential",
           examples=_diverse_examples(min_groups=2),
           statement="diversity_penalty = 0 makes every group the same beam search of num_beams / num_beam_groups "
                     "beams: the num_beams returned hypotheses are that search's, each once per group, best first.",
           source=f"{VIJAYAKUMAR}, sec. 4 (lambda = 0)")
def check_diverse_zero(ctx: Context, p: dict) -> None:
    model, ids = toy(p), prompt(ctx, p)
    size = p["num_beams"] // p["groups"]
    got = _diverse_call(ctx, p, model, ids, p["groups"], 0.0, num_return_sequences=p["num_beams"])
    seq, score = ref.beam_search(model, ids.cpu(), size, p["n"], **{**beam_args(p), "num_return_sequences": size})

    def per_group(t: torch.Tensor) -> torch.Tensor:  # each row's hypotheses, each repeated once per group
        return t.reshape(p["B"], size, *t.shape[1:]).repeat_interleave(p["groups"], 1).flatten(0, 1)
    assert_same_hypotheses(ctx, got, (per_group(seq), per_group(score)), f"{p['groups']} groups without penalty vs "
                           f"each hypothesis of a beam search of {size} beams {p['groups']} times")


@st.composite
def _distinct_examples(draw) -> dict:
    p = draw(model_examples(min_vocab=3, max_vocab=5, eos=False, max_new=3))
    p.update(groups=draw(st.integers(2, p["V"])), length_penalty=1.0, early_stopping=False, min_new=0)
    p.update(num_beams=p["groups"], R=p["groups"])
    return p


@invariant("diverse_beam_search.penalty.distinct_first_tokens", examples=_distinct_examples(),
           statement="With groups of one beam and a very large penalty no group repeats a token an earlier group "
                     "chose at the same step: the hypotheses start with distinct tokens.",
           source=f"{VIJAYAKUMAR}, eq. 4 (Hamming diversity)")
def check_diverse_distinct(ctx: Context, p: dict) -> None:
    # groups of one beam and a penalty far above any log-probability gap: group g never repeats a first token of
    # the groups before it, so the returned hypotheses (one per group) start with distinct tokens.
    model, ids = toy(p), prompt(ctx, p)
    seq, _ = _diverse_call(ctx, p, model, ids, p["groups"], 1e3)
    for b in range(p["B"]):
        firsts = seq[b * p["R"] : (b + 1) * p["R"], ids.shape[-1]].tolist()
        if len(set(firsts)) != len(firsts):
            ctx.fail(f"row {b}: with {p['groups']} groups of one beam and diversity_penalty 1000 the hypotheses start "
                     f"with {firsts}; the penalty must stop a group repeating a token chosen by an earlier group",
                     row=b)
