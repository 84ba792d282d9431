"""Unigram training (`unigram_train`) and segmentation (`unigram_tokenizer`), and their invariants.

Segmentations of short strings are enumerated by brute force, so Viterbi optimality and the sampling
distribution are checked against exact values, not against the reference. Scores for the optimality check
are multiples of 1/16, so every path score is exact in float32 and float64 alike.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter

from hypothesis import strategies as st

from ...reference.tokenizers import unigram as ref
from .inputs import (TOKENIZER_PROTOCOL, build, call_method, clip, corpus, decode, encode, fail_sequences, ids_of,
                     seeds)
from .training import assert_deterministic, assert_same_tokens, corpus_examples, train
from ..checks import assert_equal, assert_within, show
from ..core import Component, Context, invariant

UNIGRAM_TRAIN = Component(
    name="unigram_train",
    signature="unigram_train(text_or_path: str | os.PathLike, vocab_size: int, special_tokens: list[str]) -> "
              "list[tuple[str, float]]  (pieces with log-probability scores; ' ' is written '\u2581')",
    summary="Unigram LM training: EM from a seed vocabulary, pruning the pieces whose removal costs least.",
    reference=ref.unigram_train,
    dtypes=(),
)

UNIGRAM_TOKENIZER = Component(
    name="unigram_tokenizer",
    signature=f"Unigram(pieces: list[tuple[str, float]], unk_id: int) -> tokenizer; {TOKENIZER_PROTOCOL}; optional "
              f"sample_encode(text: str, alpha: float, seed: int) -> list[int]  (' ' <-> '\u2581', no dummy prefix)",
    summary="Unigram LM segmentation: Viterbi (maximum score) and sampling proportional to exp(alpha x score).",
    reference=ref.Unigram,
    dtypes=(),
    features={"sampling": "the tokenizer has sample_encode(text, alpha, seed), deterministic given seed"},
)

SP = ref.SPACE
TRAIN_SOURCE = "Kudo 2018, Subword Regularization, sec. 3.2 (EM, pruning by loss, characters kept)"
VITERBI_SOURCE = "Kudo 2018, sec. 3.1 (Viterbi); sentencepiece src/unigram_model.cc"
SAMPLING_SOURCE = ("Kudo 2018, sec. 2.2 and 3.1 (P(x) ** alpha, forward-filtering backward-sampling); "
                   "sentencepiece Lattice::Sample")
ALPHABETS = ("ab", "ab" + SP, "abc" + SP, "日本" + SP)
UNCOVERED = "xyz"
SAMPLING_DRAWS = 1000
SAMPLING_Z = 6.0


def piece_examples(max_len: int, uncovered: bool = False, min_len: int = 1, min_pieces: int = 0, lattice: bool = False,
                   **fields) -> st.SearchStrategy[dict]:
    """Pieces (alphabet, seed, n_pieces: see `pieces_of`) and a text over the alphabet. With `lattice`, some of
    the longer pieces are substrings of the text ("text_pieces" of them), as a Unigram model's pieces are
    substrings of its training text: pieces then overlap and compete all along the text, so its segmentations
    differ in score (random pieces over the alphabet seldom occur in a short random text)."""

    @st.composite
    def draw(draw_) -> dict:
        alphabet = draw_(st.sampled_from(ALPHABETS))
        chars = alphabet.replace(SP, " ") + (UNCOVERED if uncovered else "")
        p = {
            "alphabet": alphabet,
            "seed": draw_(seeds()),
            "n_pieces": draw_(st.integers(min_pieces, 24)),
            "text": draw_(st.text(alphabet=chars, min_size=min_len, max_size=max_len)),
        }
        if lattice:
            p["text_pieces"] = draw_(st.integers(0, p["n_pieces"]).map(lambda k: p["n_pieces"] - k))
        return {**p, **{k: draw_(v) for k, v in fields.items()}}

    return draw()


def pieces_of(p: dict, dyadic: bool) -> list[tuple[str, float]]:
    """<unk> at id 0, every alphabet character, then up to n_pieces longer pieces (the first text_pieces of them
    substrings of the text, the others random strings over the alphabet), with scores that are multiples of 1/16
    (dyadic) or float32 values drawn uniformly from [-12, -1]."""
    rng = random.Random(p["seed"])

    def score() -> float:
        return -rng.randint(1, 160) / 16 if dyadic else float(_f32(-rng.uniform(1.0, 12.0)))

    chars = sorted(p["alphabet"])
    text = p["text"].replace(" ", SP)
    longer: set[str] = set()
    for _ in range(4 * p["n_pieces"]):
        if len(longer) >= p["n_pieces"]:
            break
        n = rng.randint(2, 5)
        if len(longer) < p.get("text_pieces", 0) and len(text) >= 2:
            start = rng.randrange(len(text) - 1)
            piece = text[start:start + n]
        else:
            piece = "".join(rng.choice(chars) for _ in range(n))
        if set(piece) <= set(chars):  # not an uncovered character
            longer.add(piece)
    return [("<unk>", 0.0)] + [(c, score()) for c in chars] + [(s, score()) for s in sorted(longer)]


def _f32(x: float) -> float:
    import struct

    return struct.unpack("f", struct.pack("f", x))[0]


def segmentations(text: str, scores: dict[str, float]) -> list[tuple[tuple[str, ...], float]]:
    """Every way to write `text` as a sequence of pieces, with its total score."""
    @functools.lru_cache(maxsize=None)
    def rest(i: int) -> list[tuple[tuple[str, ...], float]]:
        if i == len(text):
            return [((), 0.0)]
        out = []
        for j in range(i + 1, len(text) + 1):
            if text[i:j] in scores:
                out += [((text[i:j],) + seg, scores[text[i:j]] + s) for seg, s in rest(j)]
        return out

    return rest(0)


def _pieces_from_ids(ctx: Context, ids: list[int], pieces: list[tuple[str, float]], text: str) -> tuple[str, ...]:
    if any(not 0 < i < len(pieces) for i in ids):
        ctx.fail(f"encode({text!r}) emitted ids outside 1..{len(pieces) - 1} (0 is <unk>, and every character is "
                 f"covered): {ids}")
    segs = tuple(pieces[i][0] for i in ids)
    if "".join(segs) != text.replace(" ", SP):
        ctx.fail(f"encode({text!r}) gave pieces {clip(segs)}, which do not spell the text (spaces as {SP!r})")
    return segs


@invariant("unigram_tokenizer.viterbi.max_likelihood", source=VITERBI_SOURCE,
           examples=piece_examples(10, min_len=6, min_pieces=8, lattice=True),
           statement="encode returns a segmentation of maximal total score (checked against every segmentation of "
                     "strings up to 10 characters).")
def check_max_likelihood(ctx: Context, p: dict) -> None:
    pieces = pieces_of(p, dyadic=True)
    tok = build(ctx, list(pieces), 0)
    segs = _pieces_from_ids(ctx, encode(ctx, tok, p["text"]), pieces, p["text"])
    scores = dict(pieces[1:])
    best_seg, best = max(segmentations(p["text"].replace(" ", SP), scores), key=lambda t: t[1])
    # scores are multiples of 1/16: path scores are exact, so the best score is matched exactly
    assert_equal(ctx, sum(scores[s] for s in segs), best,
                 f"the score of encode({p['text']!r}) = {clip(segs)} (the best segmentation is {clip(best_seg)})")


@invariant("unigram_tokenizer.viterbi.matches_reference", kind="differential",
           examples=piece_examples(40, uncovered=True), source=VITERBI_SOURCE,
           statement="The ids equal the reference's Viterbi segmentation, uncovered characters included (each run is "
                     "one <unk>).")
def check_viterbi_reference(ctx: Context, p: dict) -> None:
    pieces = pieces_of(p, dyadic=False)
    ids = encode(ctx, build(ctx, list(pieces), 0), p["text"])
    expected = ref.Unigram(pieces, 0).encode(p["text"])
    if ids != expected:
        fail_sequences(ctx, f"encode({p['text']!r}) differs from the reference's Viterbi segmentation (unknown "
                            f"characters: one <unk> per run)", ids, expected)


@invariant("unigram_tokenizer.roundtrip", examples=piece_examples(40), source=VITERBI_SOURCE,
           statement="decode(encode(s)) == s when every character of s is a piece (' ' is written '\u2581').")
def check_roundtrip(ctx: Context, p: dict) -> None:
    tok = build(ctx, pieces_of(p, dyadic=False), 0)
    back = decode(ctx, tok, encode(ctx, tok, p["text"]))
    if back != p["text"]:
        ctx.fail(f"decode(encode(s)) != s: s = {p['text']!r}, got {back!r}")


@invariant("unigram_tokenizer.sampling.distribution", kind="statistical", requires=("sampling",), budget=0.5,
           examples=piece_examples(6, min_len=3, min_pieces=6, alpha=st.sampled_from([0.1, 0.25, 0.5])),
           source=SAMPLING_SOURCE,
           statement=f"sample_encode(s, alpha, seed) draws each segmentation with probability proportional to "
                     f"exp(alpha x score), at the drawn alpha and at alpha = 2: {SAMPLING_DRAWS} draws each, every "
                     f"segmentation (rare ones pooled) within {SAMPLING_Z:g} standard deviations of its expected "
                     f"count, a false-alarm rate below 2e-6 per example.")
def check_sampling(ctx: Context, p: dict) -> None:
    pieces = pieces_of(p, dyadic=False)
    tok = build(ctx, list(pieces), 0)
    for alpha in (p["alpha"], 2.0):  # a sharp alpha too: a target must follow alpha, not one fixed temperature
        _check_sampling_at(ctx, p, pieces, tok, alpha)


def _check_sampling_at(ctx: Context, p: dict, pieces, tok, alpha: float) -> None:
    text = p["text"]
    segs = segmentations(text.replace(" ", SP), dict(pieces[1:]))
    logits = [alpha * s for _, s in segs]
    z = max(logits) + math.log(sum(math.exp(l - max(logits)) for l in logits))
    prob = {seg: math.exp(l - z) for (seg, _), l in zip(segs, logits)}
    seen: Counter = Counter()
    for k in range(SAMPLING_DRAWS):
        ids = ids_of(ctx, call_method(ctx, tok, "sample_encode", text, alpha, p["seed"] * 7919 + k), "sample_encode")
        seen[_pieces_from_ids(ctx, ids, pieces, text)] += 1
    n = SAMPLING_DRAWS
    groups = [[seg] for seg in prob if n * prob[seg] >= 10]
    rare = [seg for seg in prob if n * prob[seg] < 10]
    if rare and n * sum(prob[s] for s in rare) >= 10:
        groups.append(rare)
    for group in groups:
        expected = sum(prob[s] for s in group)
        observed = sum(seen[s] for s in group)
        sd = math.sqrt(n * expected * (1 - expected)) or 1.0
        what = clip(group[0]) if len(group) == 1 else f"{len(group)} rare segmentations"
        assert_within(ctx, observed, n * expected, SAMPLING_Z * sd,
                      f"times {what} was sampled in {n} draws (sd {sd:.1f}; P proportional to exp({alpha} x score))")


# --- training -----------------------------------------------------------------------------------------------


def train_examples() -> st.SearchStrategy[dict]:
    return corpus_examples(4, 16, extra=st.integers(1, 12))


def _corpus(p: dict) -> str:
    return corpus(p["seed"], p["words"], (), p["zipf"], lexicon=6)


def _size(p: dict) -> int:
    return 1 + len(set(_corpus(p).replace(" ", SP))) + p["extra"]


def read_pieces(out) -> list[tuple[str, float]]:
    try:
        return [(str(a), float(b)) for a, b in out]
    except (TypeError, ValueError):
        raise TypeError("expected a list of (piece, score)") from None


def _train(ctx: Context, p: dict) -> list[tuple[str, float]]:
    return train(ctx, read_pieces, _corpus(p), _size(p), ["<unk>"])


def _normal(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    return [(a, b) for a, b in pieces if a != "<unk>"]


@invariant("unigram_train.vocab.size", examples=train_examples(), source=TRAIN_SOURCE,
           statement="Exactly vocab_size unique pieces, the special tokens included.")
def check_train_size(ctx: Context, p: dict) -> None:
    pieces = _train(ctx, p)
    names = [a for a, _ in pieces]
    if len(set(names)) != len(names):
        ctx.fail(f"pieces repeat: {clip([a for a, n in Counter(names).items() if n > 1])}")
    if "<unk>" not in names:
        ctx.fail("the special token <unk> is missing")
    if len(pieces) != _size(p):
        ctx.fail(f"{len(pieces)} pieces, expected vocab_size = {_size(p)}")


@invariant("unigram_train.vocab.keeps_characters", examples=train_examples(), source=TRAIN_SOURCE,
           statement="Every character of the corpus (' ' as '\u2581') is a piece.")
def check_keeps_characters(ctx: Context, p: dict) -> None:
    names = {a for a, _ in _train(ctx, p)}
    missing = set(_corpus(p).replace(" ", SP)) - names
    if missing:
        ctx.fail(f"characters of the corpus are not pieces: {clip(sorted(missing))}")


@invariant("unigram_train.scores.log_probabilities", examples=train_examples(), source=TRAIN_SOURCE,
           statement="Scores of the non-special pieces are log-probabilities: <= 0, and their probabilities sum to 1.")
def check_log_probabilities(ctx: Context, p: dict) -> None:
    scores = [b for _, b in _normal(_train(ctx, p))]
    if not all(math.isfinite(s) and s <= 0 for s in scores):
        ctx.fail(f"scores must be finite log-probabilities <= 0: {clip(scores)}")
    assert_within(ctx, math.log(sum(math.exp(s) for s in scores)), 0.0, 1e-9 * len(scores),
                  "log of the sum of the pieces' probabilities")


def viterbi_loss(pieces: list[tuple[str, float]], text: str) -> float:
    model = ref.Unigram([("<unk>", 0.0)] + pieces, 0)
    words = ref._words(text)
    return -sum(n * sum(model.scores[i] for i in model.viterbi(w)) for w, n in words.items())


@invariant("unigram_train.loss.beats_characters", examples=train_examples(), source=TRAIN_SOURCE,
           statement="The trained pieces give the training corpus a lower Viterbi loss than the maximum-likelihood "
                     "character-only model.")
def check_beats_characters(ctx: Context, p: dict) -> None:
    text = _corpus(p)
    loss = viterbi_loss(_normal(_train(ctx, p)), text)
    chars = Counter(text.replace(" ", SP))
    total = sum(chars.values())
    char_loss = -sum(n * math.log(n / total) for n in chars.values())
    if not loss < char_loss:
        got, chars_only = show(loss, char_loss)
        ctx.fail(f"the trained pieces give the corpus a Viterbi loss of {got} nats, no better than the character-only "
                 f"unigram model's {chars_only}", loss=loss, char_loss=char_loss)


@invariant("unigram_train.deterministic", examples=train_examples(), source=TRAIN_SOURCE,
           statement="Two identical calls return the same pieces and scores.")
def check_train_deterministic(ctx: Context, p: dict) -> None:
    assert_deterministic(ctx, lambda: _train(ctx, p), "pieces")


@invariant("unigram_train.reference.matches", kind="differential", examples=train_examples(), source=TRAIN_SOURCE,
           statement="The pieces equal the reference trainer's, and the scores agree within 1e-9.")
def check_train_reference(ctx: Context, p: dict) -> None:
    got = dict(_train(ctx, p))
    expected = dict(ref.unigram_train(_corpus(p), _size(p), ["<unk>"]))
    assert_same_tokens(ctx, set(got), set(expected), "pieces")
    worst = max(got, key=lambda k: abs(got[k] - expected[k]))
    assert_within(ctx, got[worst], expected[worst], 1e-9, f"the score of {worst!r} (the furthest from the reference's)")
