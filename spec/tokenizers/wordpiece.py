"""WordPiece training (`wordpiece_train`) and encoding (`wordpiece_tokenizer`), and their invariants.

Words are BERT pre-tokens (reference/tokenizers/wordpiece.py `bert_pretokenize`: white space and punctuation), the
definition both components share.
"""

from __future__ import annotations

import functools
from collections import Counter
from fractions import Fraction

from hypothesis import strategies as st

from ...reference.tokenizers import wordpiece as ref
from .inputs import (TOKENIZER_PROTOCOL, TRICKY, build, clip, corpus, corpus_of, decode, encode, fail_sequences, record,
                     seeds)
from .training import assert_deterministic, assert_same_tokens, corpus_examples, train
from ..core import Component, Context, invariant

WORDPIECE_TRAIN = Component(
    name="wordpiece_train",
    signature="wordpiece_train(text_or_path: str | os.PathLike, vocab_size: int, special_tokens: list[str]) -> "
              "list[str]  (the vocabulary; continuation tokens start with '##')",
    summary="WordPiece training: merge the pair of highest freq(ab) / (freq(a) freq(b)) over BERT pre-tokens.",
    reference=ref.wordpiece_train,
    dtypes=(),
)

WORDPIECE_TOKENIZER = Component(
    name="wordpiece_tokenizer",
    signature=f"WordPiece(vocab: dict[str, int], unk_token: str, max_input_chars_per_word: int) -> tokenizer; "
              f"{TOKENIZER_PROTOCOL}  (BERT pre-tokens, no lower-casing; decode joins words with spaces)",
    summary="Greedy longest-match-first WordPiece encoding with [UNK] and a per-word character limit.",
    reference=ref.WordPiece,
    dtypes=(),
)

TRAIN_SOURCE = "Schuster & Nakajima 2012; Hugging Face course ch. 6.6 (score = freq(ab) / (freq(a) freq(b)))"
ENCODE_SOURCE = "google-research/bert tokenization.py WordpieceTokenizer; Hugging Face tokenizers models::wordpiece"
SPECIAL_SETS = (list(ref.BERT_SPECIAL_TOKENS), ["[UNK]"])
ABSENT = "\u2603"  # a character no generated corpus contains


def _alphabet(text: str) -> set[str]:
    words = ref.bert_pretokenize(text)
    return {w[0] for w in words} | {ref.PREFIX + c for w in words for c in w[1:]}


def _base(text: str, special_tokens) -> int:
    return len(set(special_tokens) | _alphabet(text))


def train_examples(max_extra: int = 40) -> st.SearchStrategy[dict]:
    return corpus_examples(10, 80, extra=st.integers(1, max_extra), special_tokens=st.sampled_from(SPECIAL_SETS))


def read_vocab(out) -> list[str]:
    if not isinstance(out, (list, tuple)) or not all(isinstance(t, str) for t in out):
        raise TypeError("expected a list of str tokens")
    return list(out)


def _train(ctx: Context, p: dict, extra: int | None = None) -> tuple[str, list[str], int]:
    text = corpus_of(p)
    size = _base(text, p["special_tokens"]) + (p["extra"] if extra is None else extra)
    return text, train(ctx, read_vocab, text, size, p["special_tokens"]), size


@invariant("wordpiece_train.vocab.size", examples=train_examples(200), source=TRAIN_SOURCE,
           statement="The vocabulary has exactly vocab_size tokens, or fewer only when every word of the corpus is "
                     "already one token.")
def check_size(ctx: Context, p: dict) -> None:
    text, vocab, size = _train(ctx, p)
    if len(vocab) > size:
        ctx.fail(f"{len(vocab)} tokens, more than the requested {size}")
    if len(vocab) < size:
        whole = [w for w in set(ref.bert_pretokenize(text)) if w not in vocab]
        if whole:
            ctx.fail(f"{len(vocab)} tokens, fewer than the requested {size}, although words are not yet single tokens, "
                     f"e.g. {whole[0]!r}")


@invariant("wordpiece_train.vocab.contents", examples=train_examples(), source=TRAIN_SOURCE,
           statement="Tokens are unique and include the special tokens and every first letter and '##'-continuation "
                     "letter of the corpus's words.")
def check_contents(ctx: Context, p: dict) -> None:
    text, vocab, _ = _train(ctx, p)
    repeated = [t for t, n in Counter(vocab).items() if n > 1]
    if repeated:
        ctx.fail(f"tokens appear more than once: {clip(repeated)}")
    missing = (set(p["special_tokens"]) | _alphabet(text)) - set(vocab)
    if missing:
        ctx.fail(f"the vocabulary lacks special tokens or alphabet units (first letters and ##continuations): "
                 f"{clip(sorted(missing))}")


def pair_scores(text: str) -> dict[tuple[str, str], Fraction]:
    """Every adjacent pair's score freq(ab) / (freq(a) freq(b)) over the corpus's character-split words."""
    counts = Counter(ref.bert_pretokenize(text))
    unit: Counter[str] = Counter()
    pair: Counter[tuple[str, str]] = Counter()
    for w, n in counts.items():
        units = [w[0]] + [ref.PREFIX + c for c in w[1:]]
        for u in units:
            unit[u] += n
        for q in zip(units, units[1:]):
            pair[q] += n
    return {q: Fraction(c, unit[q[0]] * unit[q[1]]) for q, c in pair.items()}


def _joined(a: str, b: str) -> str:
    return a + b[len(ref.PREFIX):] if b.startswith(ref.PREFIX) else a + b


@invariant("wordpiece_train.merge.max_score", examples=train_examples(), source=TRAIN_SOURCE,
           statement="The first merge joins a pair of maximal score freq(ab) / (freq(a) freq(b)), not of maximal "
                     "frequency.")
def check_max_score(ctx: Context, p: dict) -> None:
    text, vocab, _ = _train(ctx, p, extra=1)
    scores = pair_scores(text)
    if not scores:
        return
    new = [t for t in vocab if t not in set(p["special_tokens"]) | _alphabet(text)]
    best = max(scores.values())
    allowed = {_joined(*q) for q, s in scores.items() if s == best}
    if new != [] and not set(new) <= allowed:
        by_freq = max(scores, key=lambda q: scores[q])
        ctx.fail(f"with room for one merge the trainer added {clip(new)}; the pair(s) of maximal score "
                 f"freq(ab) / (freq(a) freq(b)) = {best} make {clip(sorted(allowed))} (e.g. {by_freq!r})",
                 added=clip(new))
    if not new:
        ctx.fail(f"with room for one merge the trainer added no token (expected one of {clip(sorted(allowed))})")


@invariant("wordpiece_train.deterministic", examples=train_examples(), source=TRAIN_SOURCE,
           statement="Two identical calls return the same vocabulary.")
def check_deterministic(ctx: Context, p: dict) -> None:
    assert_deterministic(ctx, lambda: _train(ctx, p)[1], "vocabularies")


@invariant("wordpiece_train.reference.matches", kind="differential", examples=train_examples(), source=TRAIN_SOURCE,
           statement="The vocabulary's tokens equal the reference trainer's (ties broken toward the lexicographically "
                     "greatest pair).")
def check_train_reference(ctx: Context, p: dict) -> None:
    text, vocab, size = _train(ctx, p)
    assert_same_tokens(ctx, set(vocab), set(ref.wordpiece_train(text, size, p["special_tokens"])), "tokens")


# --- encoding -----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def trained_vocab(seed: int, words: int, zipf: bool, extra: int) -> tuple[str, ...]:
    text = corpus(seed, words, (), zipf)
    return tuple(ref.wordpiece_train(text, _base(text, ref.BERT_SPECIAL_TOKENS) + extra, ref.BERT_SPECIAL_TOKENS))


#: the vocabularies wordpiece_tokenizer is checked with: (corpus seed, words, Zipf frequencies, merges beyond
#: the alphabet), indexed by the example's "vocab", trained once per process.
WORDPIECE_VOCABS = tuple((k, (30, 80, 150)[k % 3], k % 2 == 0, (0, 5, 30, 80)[k // 4]) for k in range(16))


def encode_examples() -> st.SearchStrategy[dict]:
    return record(vocab=st.integers(0, len(WORDPIECE_VOCABS) - 1), text_seed=seeds(), text_words=st.integers(0, 30),
                  noise=st.lists(st.sampled_from(TRICKY), max_size=3), max_chars=st.integers(4, 30))


def _vocab(p: dict) -> dict[str, int]:
    return {t: i for i, t in enumerate(trained_vocab(*WORDPIECE_VOCABS[p["vocab"]]))}


def _tokenizer(ctx: Context, p: dict):
    return build(ctx, _vocab(p), "[UNK]", p["max_chars"])


def _text(p: dict, noise: bool = True) -> str:
    text = corpus(p["text_seed"], p["text_words"])
    return text + " " + " ".join(p["noise"]) if noise and p["noise"] else text


@invariant("wordpiece_tokenizer.encode.greedy_longest_match", kind="differential", examples=encode_examples(),
           source=ENCODE_SOURCE,
           statement="Each word is split greedily: the longest vocabulary prefix, then the longest '##' continuation, "
                     "and so on (the reference's ids).")
def check_encode_reference(ctx: Context, p: dict) -> None:
    vocab, text = _vocab(p), _text(p)
    ids = encode(ctx, _tokenizer(ctx, p), text)
    expected = ref.WordPiece(vocab, "[UNK]", p["max_chars"]).encode(text)
    if ids != expected:
        fail_sequences(ctx, f"encode({clip(text)}) is not the greedy longest-match-first segmentation", ids, expected)


@invariant("wordpiece_tokenizer.encode.unknown_word", examples=encode_examples(), source=ENCODE_SOURCE,
           statement="A word that cannot be covered is exactly one [UNK], and the words around it encode as they do "
                     "alone.")
def check_unknown_word(ctx: Context, p: dict) -> None:
    vocab, tok = _vocab(p), _tokenizer(ctx, p)
    left, right = _text(p, noise=False), corpus(p["text_seed"] + 1, 3)
    known = [w for w in ref.bert_pretokenize(left + " " + right) if not any(map(ref.is_punctuation, w))] or ["a"]
    bad = known[0][: p["max_chars"] // 2] + ABSENT + known[-1][: p["max_chars"] // 2 - 1]
    ids = encode(ctx, tok, f"{left} {bad} {right}")
    expected = encode(ctx, tok, left) + [vocab["[UNK]"]] + encode(ctx, tok, right)
    if ids != expected:
        fail_sequences(ctx, f"the word {bad!r} (holding {ABSENT!r}, which no token covers) must be one [UNK] and leave "
                            f"its neighbours' tokens alone", ids, expected)


@invariant("wordpiece_tokenizer.encode.max_chars", examples=encode_examples(), source=ENCODE_SOURCE,
           statement="A word longer than max_input_chars_per_word characters is [UNK]; a coverable word of exactly "
                     "that length is not.")
def check_max_chars(ctx: Context, p: dict) -> None:
    vocab, tok = _vocab(p), _tokenizer(ctx, p)
    chars = [t for t in vocab if len(t) == 1 and ref.PREFIX + t in vocab and not ref.is_punctuation(t)]
    if not chars:
        return
    c, n = chars[p["text_seed"] % len(chars)], p["max_chars"]
    at_limit, over = encode(ctx, tok, c * n), encode(ctx, tok, c * (n + 1))
    if over != [vocab["[UNK]"]]:
        ctx.fail(f"a word of {n + 1} characters ({c!r} repeated) with max_input_chars_per_word={n} encodes to "
                 f"{clip(over)}, expected [UNK]")
    if at_limit == [vocab["[UNK]"]]:
        ctx.fail(f"a coverable word of exactly max_input_chars_per_word={n} characters became [UNK]")


def _coverable(p: dict, words: list[str]) -> list[str]:
    reference = ref.WordPiece(_vocab(p), "[UNK]", p["max_chars"])
    return [w for w in words if "[UNK]" not in reference.encode_word(w)]


@invariant("wordpiece_tokenizer.decode.joins_words", examples=encode_examples(), source=ENCODE_SOURCE,
           statement="For coverable text, decode(encode(s)) is the words of s joined by single spaces ('##' "
                     "continuations glued to the token before).")
def check_decode(ctx: Context, p: dict) -> None:
    tok = _tokenizer(ctx, p)
    words = _coverable(p, ref.bert_pretokenize(_text(p, noise=False)))
    text = " ".join(words)
    back = decode(ctx, tok, encode(ctx, tok, text))
    if back != text:
        ctx.fail(f"decode(encode(s)) = {clip(back)}, expected the words joined by spaces: {clip(text)}")
