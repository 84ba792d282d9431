"""Inputs and target calls shared by the tokenizer invariants (spec/tokenizers/).

Texts are drawn by Hypothesis; training corpora are generated from a seed (a Zipf-distributed lexicon of
syllables, multi-byte characters included), so every example is a small JSON dict that `--replay` reproduces.
A tokenizer target is called through `GuardedTarget` (time limit; any exception is the target's failure)
and its outputs are validated before use.
"""

from __future__ import annotations

import functools
import os
import random
import tempfile
from typing import Any, Sequence

from hypothesis import strategies as st

from ...reference.tokenizers import bpe as ref_bpe
from ...reference.tokenizers import gpt2 as ref_gpt2
from ...reference.tokenizers.pretokenize import valid_unicode
from ..checks import show
from ..core import Context
from ..guard import DEFAULT_TIMEOUT_S, GuardedTarget
from ..strategies import scaled

ENDOFTEXT = "<|endoftext|>"
#: what every tokenizer builder returns (the components' signatures say it)
TOKENIZER_PROTOCOL = "tokenizer = object with encode(text: str) -> list[int] and decode(ids: list[int]) -> str"

#: strings that break naive tokenizers: emoji (ZWJ sequences, skin tones, flags), combining marks alone and
#: stacked, NUL, BOM, zero-width space, CJK, right-to-left scripts, unusual white space, contractions, digits.
TRICKY = (
    "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u0301", "\u0301", "a\u0300\u0301\u0302", "\x00", "\x00\x00", "\ufeff", "\u200b",
    "日本語", "한국어", "مرحبا", "שָׁלוֹם", "\r\n", "\t", "  ", "\n\n", " \n ", "\u3000", "\xa0", "\x85", "'s", "'ll",
    "n't", "'re", "'", "123", "4.5", "Hello", " world", "!?", "<|", "|>", "<", "\U0010ffff", "\ufffd", "ß", "İ", "ǅ",
    "<|endoftext|>", "<s>", "</s>",  # special tokens where the tokenizer has them, plain text elsewhere
)
#: Python strings can hold surrogates that no UTF-8 text can: lone ones and high+low pairs.
SURROGATES = ("\ud800", "\udfff", "\ud83d", "\ude00", "\ud83d\ude00", "a\udc80b")


def unicode_text(max_parts: int = 8, extra: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Any valid Unicode text (no surrogates), biased towards TRICKY pieces."""
    part = st.one_of(st.text(max_size=6), st.sampled_from(TRICKY + tuple(extra)))
    return st.lists(part, max_size=max_parts).map("".join)


#: characters outside ASCII (two to four UTF-8 bytes), surrogates excluded.
NON_ASCII = st.characters(min_codepoint=0x80, exclude_categories=("Cs",))


def multibyte_text(max_parts: int = 8) -> st.SearchStrategy[str]:
    """Valid Unicode text holding at least one non-ASCII character (between two `unicode_text`s): text where a
    byte-level tokenizer splits characters across tokens whenever its vocabulary lacks them whole."""
    return st.tuples(unicode_text(max_parts // 2), st.text(NON_ASCII, min_size=1, max_size=4),
                     unicode_text(max_parts // 2)).map("".join)


def surrogate_text(max_parts: int = 8) -> st.SearchStrategy[str]:
    part = st.one_of(st.text(max_size=4), st.sampled_from(TRICKY), st.sampled_from(SURROGATES))
    return st.lists(part, min_size=1, max_size=max_parts).map("".join).filter(lambda s: s != valid_unicode(s))


# --- generated corpora -----------------------------------------------------------------------------------

SYLLABLES = ("th", "e", "an", "in", "er", "on", "re", "at", "st", "en", "ou", "a", "o", "i", "s", "t", "n", "k", "l",
             "é", "ß", "ça", "日本", "語", "😀", "ü")
SEPARATORS = (" ", " ", " ", " ", " ", " ", "\n", ", ", ". ", "  ", "'s ", " 12 ", "! ", "\t")


def syllable_words(seed: int, n_words: int) -> str:
    """`n_words` words of 1 to 4 syllables drawn uniformly (no lexicon, unlike `corpus`), with the corpora's
    separators: text where trained merges apply, with pairs in proportions unlike any training text's."""
    rng = random.Random(seed)
    return "".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) + rng.choice(SEPARATORS)
                   for _ in range(n_words))


@functools.lru_cache(maxsize=256)
def corpus(seed: int, n_words: int, special_tokens: Sequence[str] = (), zipf: bool = True, lexicon: int = 24) -> str:
    """Deterministic text: `n_words` words from a random lexicon (Zipf or uniform frequencies), varied
    separators, and a special token between "documents" of about 20 words."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(lexicon)]
    weights = [1.0 / (k + 1) if zipf else 1.0 for k in range(lexicon)]
    out = []
    for k, word in enumerate(rng.choices(words, weights, k=n_words)):
        out.append(word)
        if special_tokens and k % 20 == 19:
            out.append(rng.choice(list(special_tokens)))
        else:
            out.append(rng.choice(SEPARATORS))
    return "".join(out)


#: lengths in bytes of one long word, at and around the 1024-byte buffers tokenizers keep per word (and beyond)
LONG_WORD_BYTES = (1023, 1024, 1025, 2049, 4097)
#: syllables made of letters only (`\p{L}`), so a word of them is one GPT-2 pre-token however long
LETTER_SYLLABLES = tuple(s for s in SYLLABLES if s.isalpha())


def long_word(seed: int, n_bytes: int) -> str:
    """A word of letter syllables exactly `n_bytes` UTF-8 bytes long (one pre-token; merges apply inside it)."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_bytes - 4:
        parts.append(rng.choice(LETTER_SYLLABLES))
        size += len(parts[-1].encode())
    return "".join(parts) + "a" * (n_bytes - size)


def long_words() -> st.SearchStrategy[list | None]:
    """None at scale "small"; from scale "kernel" up also [seed, bytes] of a `long_word` past 1024 bytes."""
    return scaled(st.none(), st.tuples(seeds(), st.sampled_from(LONG_WORD_BYTES)).map(list))


def record(**fields: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """A dict drawing each field in turn. It is one Hypothesis argument, so a failure's explain phase varies
    the example as a whole: `st.fixed_dictionaries` (and `st.tuples`) would have every key varied on its own,
    about 100 more runs per key when a broken target fails whatever the key is."""

    @st.composite
    def draw(data) -> dict:
        return {name: data(strategy) for name, strategy in fields.items()}

    return draw()


def seeds() -> st.SearchStrategy[int]:
    """Corpus and draw seeds: a small range, so a failing example shrinks in a few steps."""
    return st.integers(0, 255)


def corpus_of(p: dict, special_tokens: Sequence[str] = ()) -> str:
    return corpus(p["seed"], p["words"], tuple(special_tokens), p.get("zipf", True))


@functools.lru_cache(maxsize=128)
def trained_bpe(seed: int, words: int, zipf: bool, merges: int, special_tokens: tuple[str, ...]) -> tuple[dict, list]:
    """Reference-trained (vocab, merges): the vocabulary every bpe_tokenizer check builds its target from
    (`bpe_train_fast`, equal to the readable `bpe_train` and faster)."""
    text = corpus(seed, words, special_tokens, zipf)
    return ref_bpe.bpe_train_fast(text, 256 + len(special_tokens) + merges, special_tokens)


# --- GPT-2 files: the real ones when present, else synthetic ones in the same format ----------------------

FIXTURE_CORPORA = ("corpus.en", "german.txt", "address.txt", "tinystories_sample.txt")
GENERATED_CORPORA = ("generated-0", "generated-1")


def gpt2_file_choices() -> tuple[str, ...]:
    return ("gpt2", "synthetic") if ref_gpt2.gpt2_dir() else ("synthetic",)


def corpus_choices() -> tuple[str, ...]:
    return (FIXTURE_CORPORA if ref_gpt2.gpt2_dir() else ()) + GENERATED_CORPORA


@functools.lru_cache(maxsize=None)
def corpus_text(name: str) -> str:
    if name.startswith("generated-"):
        return corpus(int(name.split("-")[1]), 2000, (ENDOFTEXT,))
    directory = ref_gpt2.gpt2_dir()
    if directory is None:
        raise FileNotFoundError(f"fixture corpus {name} needs ../shared/fixtures or $LMSPEC_GPT2_DIR")
    return (directory / name).read_text(encoding="utf-8")


_SYNTHETIC_DIR: list[tempfile.TemporaryDirectory] = []


@functools.lru_cache(maxsize=None)
def synthetic_gpt2_files() -> tuple[str, str]:
    """GPT-2-format files of a reference-trained BPE (400 merges), with GPT-2's id layout: the 256 bytes in
    `bytes_to_unicode` order, then the merges, then <|endoftext|> (what tiktoken's loader checks)."""
    vocab, merges = ref_bpe.bpe_train_fast(corpus(2019, 6000, (ENDOFTEXT,), lexicon=300), 256 + 1 + 400, (ENDOFTEXT,))
    table = ref_gpt2.bytes_to_unicode()
    order = sorted(range(256), key=lambda b: table[b])  # GPT-2's order: printable bytes, then the others
    layout = {k: bytes([b]) for k, b in enumerate(order)}
    layout.update({256 + r: a + b for r, (a, b) in enumerate(merges)})
    layout[len(layout)] = ENDOFTEXT.encode()
    _SYNTHETIC_DIR.append(tempfile.TemporaryDirectory(prefix="lmspec-gpt2-format-"))
    directory = _SYNTHETIC_DIR[-1].name
    paths = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
    ref_gpt2.write_gpt2_files(layout, merges, *paths, special_tokens=(ENDOFTEXT,))
    return paths


def gpt2_files(which: str) -> tuple[str, str]:
    if which == "synthetic":
        return synthetic_gpt2_files()
    directory = ref_gpt2.gpt2_dir()
    if directory is None:
        raise FileNotFoundError("this example needs GPT-2's files: ../shared/fixtures or $LMSPEC_GPT2_DIR")
    return str(directory / ref_gpt2.VOCAB_FILE), str(directory / ref_gpt2.MERGES_FILE)


# --- calling a tokenizer target safely ---------------------------------------------------------------------


def build(ctx: Context, *args: Any) -> Any:
    """The tokenizer the target builds from `args`; it must have callable encode and decode."""
    tok = ctx.target(*args)
    for method in ("encode", "decode"):
        if not callable(getattr(tok, method, None)):
            ctx.fail(f"the target built a {type(tok).__name__} without a callable {method}()")
    return tok


def call_method(ctx: Context, tok: Any, method: str, *args: Any) -> Any:
    """`tok.method(*args)`, guarded like the target itself (time limit; an exception is the target's failure)."""
    fn = getattr(tok, method, None)
    if not callable(fn):
        ctx.fail(f"the tokenizer ({type(tok).__name__}) has no callable {method}()")
    timeout = getattr(ctx.target, "timeout_s", DEFAULT_TIMEOUT_S)
    return GuardedTarget(fn, timeout_s=timeout, name=f"{getattr(ctx.target, 'name', 'target')}(...).{method}")(*args)


def ids_of(ctx: Context, out: Any, what: str = "encode") -> list[int]:
    """A list of ints from a target's output (any iterable of integers), else a violation."""
    try:
        ids = list(out)
    except TypeError:
        ctx.fail(f"{what} returned {type(out).__name__}, expected a list of ints")
    bad = [i for i in ids if isinstance(i, bool) or not hasattr(i, "__index__")]
    if bad:
        ctx.fail(f"{what} returned non-integer ids, e.g. {bad[0]!r}")
    return [int(i) for i in ids]


def encode(ctx: Context, tok: Any, text: str) -> list[int]:
    return ids_of(ctx, call_method(ctx, tok, "encode", text))


def decode(ctx: Context, tok: Any, ids: list[int]) -> str:
    out = call_method(ctx, tok, "decode", list(ids))
    if not isinstance(out, str):
        ctx.fail(f"decode returned {type(out).__name__}, expected str")
    return out


def clip(value: Any, limit: int = 160) -> str:
    """`show(value)`, cut to `limit` characters: texts and id lists in messages stay readable."""
    text = show(value)
    return text if len(text) <= limit else text[:limit] + "..."


def first_difference(a: Sequence, b: Sequence) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def fail_sequences(ctx: Context, what: str, got: Sequence, expected: Sequence, **details: Any) -> None:
    """Report two sequences that should be equal (ids, merges, tokens) by their first difference."""
    i = first_difference(got, expected)
    ctx.fail(f"{what}: differs at position {i} of {len(expected)}: got {clip(list(got[i:i + 6]))}, "
             f"expected {clip(list(expected[i:i + 6]))}",
             position=i, got=clip(list(got)), expected=clip(list(expected)), **details)
