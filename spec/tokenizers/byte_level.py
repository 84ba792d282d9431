"""Byte-level BPE tokenizers and their invariants: `bpe_tokenizer` (built from vocab and merges) and `gpt2_tokenizer`
(built from GPT-2-format files). They share most checks: each is one function with a row per component, whose
`tk` argument (`BPE` or `GPT2`) builds that component's tokenizer and draws its examples.

Pre-token boundaries are those of the GPT-2 pattern (reference/tokenizers/pretokenize.py, the definition the spec
uses); expected values are computed from the target's own outputs wherever that suffices.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, Callable

import regex
from hypothesis import strategies as st

from ...reference.tokenizers import bpe as ref_bpe
from ...reference.tokenizers import gpt2 as ref_gpt2
from ...reference.tokenizers.pretokenize import Splitter, valid_unicode
from .inputs import (ENDOFTEXT, TOKENIZER_PROTOCOL, build, call_method, clip, corpus, corpus_choices, corpus_text,
                     decode, encode, fail_sequences, gpt2_file_choices, gpt2_files, ids_of, long_word, long_words,
                     multibyte_text, record, seeds, surrogate_text, syllable_words, trained_bpe, unicode_text)
from ..core import Component, Context, invariant, row
from ..strategies import scaled

BYTE_LEVEL_FEATURES = {
    "lone_surrogates": "encode accepts a str holding surrogates and makes it valid as tiktoken does",
    "overlapping_special_tokens": "special tokens that are prefixes of one another are matched leftmost-longest",
    "streaming": "the tokenizer has encode_iterable(chunks: Iterable[str]) -> Iterator[int]",
}

BPE_TOKENIZER = Component(
    name="bpe_tokenizer",
    signature=f"Tokenizer(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str]) -> "
              f"tokenizer; {TOKENIZER_PROTOCOL}; optional encode_iterable(Iterable[str]) -> Iterator[int]",
    summary="Byte-level BPE encoding (merges in rank order inside GPT-2 pre-tokens), decoding, special tokens, "
            "streams.",
    reference=ref_bpe.Tokenizer,
    dtypes=(),
    features=BYTE_LEVEL_FEATURES,
)

GPT2_TOKENIZER = Component(
    name="gpt2_tokenizer",
    signature=f"from_files(vocab_json: str, merges_txt: str, special_tokens: list[str]) -> tokenizer (GPT-2's file "
              f"format: tokens through bytes_to_unicode); {TOKENIZER_PROTOCOL}",
    summary="GPT-2's tokenizer loaded from vocab.json + merges.txt, encoding exactly as GPT-2.",
    reference=ref_gpt2.from_gpt2_files,
    dtypes=(),
    features={"lone_surrogates": BYTE_LEVEL_FEATURES["lone_surrogates"]},
)

BPE_SOURCE = "Sennrich et al. 2016; Radford et al. 2019 (GPT-2 encoder.py); CS336 (2025) assignment 1, Tokenizer"
GPT2_SOURCE = "openai/gpt-2 src/encoder.py; " + BPE_SOURCE
SPECIAL_PIECES = ("<|", "|>", "endoftext", "<|endoftext", "<s", "s>")
SAMPLE = st.lists(st.integers(0, 10**6), min_size=3, max_size=3)  # [which corpus, start, length] of sample text


@dataclass
class Case:
    tok: Any  # the target's tokenizer
    reference: Any  # the reference tokenizer built from the same inputs
    vocab: dict[int, bytes]  # every id the tokenizer may emit, special tokens included
    special_ids: dict[str, int]
    rebuild: Callable[[], Any]  # a fresh target tokenizer from the same inputs


@dataclass(frozen=True)
class ByteLevel:
    """How the shared checks build one component's tokenizer (`setup`) and draw its examples: `fields(special_sets)`
    gives the strategies of what `setup` reads, `sample(p, [which, start, length])` a slice of text like the
    tokenizer's training text, where its merges apply."""

    name: str
    setup: Callable[[Context, dict], Case]
    fields: Callable[[tuple | None], dict[str, st.SearchStrategy]]
    sample: Callable[[dict, list], str]

    def __repr__(self) -> str:
        return self.name

    def examples(self, special_sets: tuple | None = None, **fields: st.SearchStrategy) -> st.SearchStrategy[dict]:
        """The setup's fields, then `fields`; an example with a "text" also gets an optional "sample"."""
        if "text" in fields and "sample" not in fields:
            fields["sample"] = st.one_of(st.none(), SAMPLE)
        return record(**self.fields(special_sets), **fields)

    def text(self, p: dict) -> str:
        """The drawn Unicode text, then " " and a `long_word(seed, bytes)` when the example has "long", then
        `syllable_words(seed, count)` when it has "words" [seed, count], then the sample when it has one."""
        long = " " + long_word(*p["long"]) + " " if p.get("long") else ""
        words = syllable_words(*p["words"]) if p.get("words") else ""
        return p["text"] + long + words + (self.sample(p, p["sample"]) if p.get("sample") else "")


def _slice(text: str, start: int, length: int) -> str:
    start = start % max(1, len(text))
    return text[start:start + length]


# --- bpe_tokenizer: built from (vocab, merges, special_tokens) ------------------------------------------------

BPE_SPECIAL_SETS = ([ENDOFTEXT], [ENDOFTEXT, "<|pad|>"], ["<s>", "</s>"])
OVERLAPPING_SETS = ([ENDOFTEXT, ENDOFTEXT + ENDOFTEXT], ["<s>", "<s><s>", "</s>"])

#: the vocabularies bpe_tokenizer is checked with: (corpus seed, words, Zipf frequencies, merges), indexed by
#: the example's "vocab"; few and fixed, so they are trained once per process and a failure shrinks fast.
BPE_VOCABS = tuple((k, (40, 120, 200, 300)[k % 4], k % 3 != 0, (5, 30, 80, 150)[k // 4]) for k in range(16))


#: where the first id after the 256 bytes goes (special tokens, then merges, keep their order): 256 is the
#: trained layout; from scale "kernel" up the same vocabulary is also laid out across 32767 / 65535 (int16 and
#: uint16 id buffers wrap there) or at the top of Qwen2's 151936 ids, as real vocabularies' ids are.
ID_BASES = (32766, 65534, 151936 - 400)


def bpe_fields(special_sets=None) -> dict[str, st.SearchStrategy]:
    return dict(vocab=st.integers(0, len(BPE_VOCABS) - 1),
                special_tokens=st.sampled_from(special_sets or ([],) + BPE_SPECIAL_SETS),
                id_base=scaled(st.just(256), st.sampled_from(ID_BASES)))


def high_ids(vocab: dict[int, bytes], base: int) -> dict[int, bytes]:
    """The vocabulary with every id from 256 on moved to start at `base` (order kept: merges rank as before)."""
    return {(i if i < 256 else i - 256 + base): token for i, token in vocab.items()}


def bpe_sample(p: dict, sample: list) -> str:
    """A slice of the tokenizer's own training corpus."""
    seed, words, zipf, _ = BPE_VOCABS[p["vocab"]]
    return _slice(corpus(seed, words, tuple(p["special_tokens"]), zipf), sample[1], 1 + sample[2] % 300)


def bpe_setup(ctx: Context, p: dict) -> Case:
    specials = tuple(p["special_tokens"])
    vocab, merges = trained_bpe(*BPE_VOCABS[p["vocab"]], specials)
    vocab = high_ids(vocab, p.get("id_base", 256))
    ids = {token: i for i, token in vocab.items()}

    def rebuild():
        return build(ctx, dict(vocab), list(merges), list(specials))

    return Case(rebuild(), ref_bpe.Tokenizer(vocab, merges, specials), dict(vocab),
                {s: ids[s.encode()] for s in specials}, rebuild)


BPE = ByteLevel("BPE", bpe_setup, bpe_fields, bpe_sample)

# --- gpt2_tokenizer: built from GPT-2-format files ------------------------------------------------------------


def gpt2_fields(special_sets=None) -> dict[str, st.SearchStrategy]:
    return dict(files=st.sampled_from(gpt2_file_choices()))  # always <|endoftext|>, GPT-2's one special token


def gpt2_sample(p: dict, sample: list) -> str:
    """A slice of a fixture corpus (of generated text where GPT-2's files are absent)."""
    names = corpus_choices()
    return _slice(corpus_text(names[sample[0] % len(names)]), sample[1], 1 + sample[2] % 300)


@functools.lru_cache(maxsize=4)
def _gpt2_reference(vocab_path: str, merges_path: str) -> tuple[ref_bpe.Tokenizer, dict[int, bytes]]:
    vocab, _ = ref_gpt2.read_gpt2_files(vocab_path, merges_path, (ENDOFTEXT,))
    return ref_gpt2.from_gpt2_files(vocab_path, merges_path, (ENDOFTEXT,)), vocab


def gpt2_setup(ctx: Context, p: dict) -> Case:
    paths = gpt2_files(p["files"])
    reference, vocab = _gpt2_reference(*paths)

    def rebuild():
        return build(ctx, *paths, [ENDOFTEXT])

    return Case(rebuild(), reference, vocab, dict(reference.special_ids), rebuild)


GPT2 = ByteLevel("GPT2", gpt2_setup, gpt2_fields, gpt2_sample)

# --- inputs of the checks -------------------------------------------------------------------------------------

#: [seed, count] of `syllable_words`: merge order shows where pairs that share a byte occur in other proportions
#: than in the text the merges were learned from
WORDS = st.tuples(seeds(), st.integers(80, 160)).map(list)
#: WORDS, and from scale "kernel" up texts of thousands of words (tens of thousands of characters)
LONG_WORDS_TEXT = scaled(WORDS, st.tuples(seeds(), st.sampled_from([1000, 3000])).map(list))
#: one word past 1024 bytes, from scale "kernel" up
LONG = long_words()
#: where to insert special tokens into a text: [position (modulo len + 1), which special token (modulo their number)]
SPECIAL_INSERTS = st.lists(st.lists(st.integers(0, 10**6), min_size=2, max_size=2), min_size=1, max_size=3)
TEXT = unicode_text()
#: text segments between special tokens, and which special token follows each
PARTS = st.lists(unicode_text(3, SPECIAL_PIECES), min_size=2, max_size=4)
WHICH = st.lists(st.integers(0, 7), min_size=4, max_size=4)


def with_specials(text: str, special_tokens: list[str], inserts) -> str:
    """`text` with special tokens inserted at the drawn positions (unchanged for a tokenizer without any)."""
    for position, k in inserts if special_tokens else ():
        i = position % (len(text) + 1)
        text = text[:i] + special_tokens[k % len(special_tokens)] + text[i:]
    return text


def id_draw(vocab: dict[int, bytes], seed: int, length: int) -> list[int]:
    """`length` draws of ids, each one of: any id, a single-byte id, or the single-byte ids of one non-ASCII
    character's UTF-8 bytes, sometimes cut short (at least two bytes): characters split across tokens."""
    rng = random.Random(seed)
    ids_all = sorted(vocab)
    singles = [i for i in ids_all if len(vocab[i]) == 1]
    byte_id = {vocab[i][0]: i for i in singles}
    ids: list[int] = []
    for _ in range(length):
        kind = rng.randrange(3)
        if kind < 2:
            ids.append(rng.choice(singles if kind else ids_all))
            continue
        width = rng.randint(2, 4)
        low, high = {2: (0x80, 0x7FF), 3: (0x800, 0xFFFF), 4: (0x10000, 0x10FFFF)}[width]
        code = rng.randint(low, high)
        if 0xD800 <= code <= 0xDFFF:
            code -= 0x800  # not a surrogate
        raw = chr(code).encode("utf-8")
        ids += [byte_id[b] for b in raw[:rng.randint(2, len(raw))] if b in byte_id]
    return ids


def _pieces(splitter: Splitter, text: str) -> list[str]:
    return [x for pieces, special in splitter.split(text) for x in pieces + ([special] if special else [])]


def pretoken_boundaries(text: str, special_tokens) -> list[int]:
    """Positions k where text[:k] and text[k:] pre-tokenize into exactly the pieces of text (stable cuts)."""
    splitter = Splitter(special_tokens)
    whole = _pieces(splitter, text)
    cuts, k = [], 0
    for piece in whole[:-1]:
        k += len(piece)
        if _pieces(splitter, text[:k]) + _pieces(splitter, text[k:]) == whole:
            cuts.append(k)
    return cuts


def split_at_specials(text: str, special_tokens) -> list[tuple[str, str | None]]:
    """(text segment, special token after it or None), matching special tokens leftmost-longest."""
    ordered = sorted(special_tokens, key=len, reverse=True)
    pattern = regex.compile("|".join(regex.escape(s) for s in ordered))
    out, start = [], 0
    for match in pattern.finditer(text):
        out.append((text[start:match.start()], match.group()))
        start = match.end()
    return out + [(text[start:], None)]


def _special_text(case: Case, p: dict) -> tuple[str, list]:
    """The drawn parts joined by the tokenizer's special tokens, and the (segment, special token) list."""
    specials = list(case.special_ids)
    segments = [(part, specials[k % len(specials)] if i < len(p["parts"]) - 1 else None)
                for i, (part, k) in enumerate(zip(p["parts"], p["which"]))]
    return "".join(seg + (s or "") for seg, s in segments), segments


def _expected_with_specials(ctx: Context, case: Case, segments) -> list[int]:
    """encode(segment) + [special id] + ...: special tokens as document boundaries."""
    expected: list[int] = []
    for segment, special in segments:
        expected += encode(ctx, case.tok, segment)
        if special is not None:
            expected.append(case.special_ids[special])
    return expected


# --- invariants -----------------------------------------------------------------------------------------------


@invariant(row("bpe_tokenizer.roundtrip.unicode", tk=BPE,
               examples=BPE.examples(text=st.one_of(TEXT, multibyte_text()), long=LONG)),
           row("gpt2_tokenizer.roundtrip.unicode", tk=GPT2, source=GPT2_SOURCE,
               examples=GPT2.examples(text=st.one_of(TEXT, multibyte_text()), long=LONG)),
           source=BPE_SOURCE,
           statement="decode(encode(s)) == s for every valid Unicode string: emoji, combining marks, NUL, CJK, "
                     "right-to-left scripts, unusual white space.")
def check_roundtrip(ctx: Context, p: dict, tk: ByteLevel) -> None:
    case, text = tk.setup(ctx, p), tk.text(p)
    ids = encode(ctx, case.tok, text)
    back = decode(ctx, case.tok, ids)
    if back != text:
        ctx.fail(f"decode(encode(s)) != s: s = {clip(text)}, got {clip(back)}", ids=clip(ids))


@invariant(row("bpe_tokenizer.roundtrip.lone_surrogates", tk=BPE, examples=BPE.examples(text=surrogate_text())),
           row("gpt2_tokenizer.roundtrip.lone_surrogates", tk=GPT2, source=GPT2_SOURCE,
               examples=GPT2.examples(text=surrogate_text())),
           source=BPE_SOURCE, requires=("lone_surrogates",),
           statement="A str holding surrogates round-trips to the str made valid as tiktoken does: a high+low pair "
                     "becomes its character, any other surrogate U+FFFD.")
def check_surrogates(ctx: Context, p: dict, tk: ByteLevel) -> None:
    case, text = tk.setup(ctx, p), tk.text(p)
    expected = valid_unicode(text)
    back = decode(ctx, case.tok, encode(ctx, case.tok, text))
    if back != expected:
        ctx.fail(f"decode(encode(s)) = {clip(back)}; with surrogates made valid as tiktoken does it should be "
                 f"{clip(expected)}")


@invariant(row("bpe_tokenizer.special_tokens.atomic", tk=BPE,
               examples=BPE.examples(BPE_SPECIAL_SETS, parts=PARTS, which=WHICH)),
           row("gpt2_tokenizer.special_tokens.atomic", tk=GPT2, source=GPT2_SOURCE,
               examples=GPT2.examples(parts=PARTS, which=WHICH)),
           source=BPE_SOURCE,
           statement="Each special token encodes to its one id wherever it appears: text around it is encoded as if "
                     "the special token were a document boundary, and the whole round-trips.")
def check_special_atomic(ctx: Context, p: dict, tk: ByteLevel) -> None:
    case = tk.setup(ctx, p)
    for token, tid in case.special_ids.items():
        alone = encode(ctx, case.tok, token)
        if alone != [tid]:
            ctx.fail(f"special token {token!r} encodes to {alone}, expected its single id [{tid}]", token=token)
    text, segments = _special_text(case, p)
    ids = encode(ctx, case.tok, text)
    expected = _expected_with_specials(ctx, case, segments)
    if ids != expected:
        fail_sequences(ctx, f"text with special tokens {clip(text)} is not encode(segment) + [special id] + ...",
                       ids, expected)
    back = decode(ctx, case.tok, ids)
    if back != text:
        ctx.fail(f"decode(encode(s)) != s for s with special tokens: s = {clip(text)}, got {clip(back)}")


@invariant("bpe_tokenizer.special_tokens.longest_match", source=BPE_SOURCE, requires=("overlapping_special_tokens",),
           examples=BPE.examples(OVERLAPPING_SETS, parts=PARTS, which=WHICH),
           statement="Overlapping special tokens are matched leftmost-longest (Hugging Face's added-vocabulary rule): "
                     "'<|endoftext|><|endoftext|>' is one token when it is one.")
def check_longest_match(ctx: Context, p: dict) -> None:
    case = BPE.setup(ctx, p)
    text, _ = _special_text(case, p)
    ids = encode(ctx, case.tok, text)
    expected = _expected_with_specials(ctx, case, split_at_specials(text, list(case.special_ids)))
    if ids != expected:
        fail_sequences(ctx, f"overlapping special tokens in {clip(text)} are not matched leftmost-longest",
                       ids, expected)


@invariant(row("bpe_tokenizer.encode.deterministic", tk=BPE, examples=BPE.examples(text=TEXT)),
           row("gpt2_tokenizer.encode.deterministic", tk=GPT2, source=GPT2_SOURCE, examples=GPT2.examples(text=TEXT)),
           source=BPE_SOURCE,
           statement="Encoding the same text twice, or with a freshly built tokenizer, gives the same ids.")
def check_deterministic(ctx: Context, p: dict, tk: ByteLevel) -> None:
    case, text = tk.setup(ctx, p), tk.text(p)
    first, second = encode(ctx, case.tok, text), encode(ctx, case.tok, text)
    fresh = encode(ctx, case.rebuild(), text)
    if not first == second == fresh:
        ctx.fail(f"encoding {clip(text)} three times (the third with a fresh tokenizer) gave {clip(first)}, "
                 f"{clip(second)}, {clip(fresh)}")


@invariant(row("bpe_tokenizer.encode.ids_in_vocab", tk=BPE,
               examples=BPE.examples(text=TEXT, specials=SPECIAL_INSERTS, long=LONG)),
           row("gpt2_tokenizer.encode.ids_in_vocab", tk=GPT2, source=GPT2_SOURCE,
               examples=GPT2.examples(text=TEXT, specials=SPECIAL_INSERTS, long=LONG)),
           source=BPE_SOURCE,
           statement="Every id encode emits is in the vocabulary, special tokens' ids included (the text holds the "
                     "tokenizer's special tokens at drawn places).")
def check_ids_in_vocab(ctx: Context, p: dict, tk: ByteLevel) -> None:
    case = tk.setup(ctx, p)
    text = with_specials(tk.text(p), list(case.special_ids), p.get("specials", ()))
    ids = encode(ctx, case.tok, text)
    outside = [i for i in ids if i not in case.vocab]
    if outside:
        ctx.fail(f"encode({clip(text)}) emitted ids outside the vocabulary: {clip(outside)}")


@invariant(row("bpe_tokenizer.encode.concatenation", tk=BPE, examples=BPE.examples(text=TEXT, cut=st.integers(0, 64))),
           row("gpt2_tokenizer.encode.concatenation", tk=GPT2, source=GPT2_SOURCE,
               examples=GPT2.examples(text=TEXT, cut=st.integers(0, 64))),
           source=BPE_SOURCE,
           statement="encode(a + b) == encode(a) + encode(b) when a|b is a pre-token boundary.")
def check_concatenation(ctx: Context, p: dict, tk: ByteLevel) -> None:
    case, text = tk.setup(ctx, p), tk.text(p)
    cuts = pretoken_boundaries(text, list(case.special_ids)) or [0]
    k = cuts[p["cut"] % len(cuts)]
    whole = encode(ctx, case.tok, text)
    parts = encode(ctx, case.tok, text[:k]) + encode(ctx, case.tok, text[k:])
    if whole != parts:
        fail_sequences(ctx, f"encode(a + b) != encode(a) + encode(b) at the pre-token boundary a = {clip(text[:k])}, "
                            f"b = {clip(text[k:])}", whole, parts)


@invariant(row("bpe_tokenizer.encode.matches_reference", tk=BPE,
               examples=BPE.examples(text=unicode_text(3), long=LONG, words=LONG_WORDS_TEXT, sample=SAMPLE)),
           row("gpt2_tokenizer.encode.matches_reference", tk=GPT2, source=GPT2_SOURCE,
               examples=GPT2.examples(text=unicode_text(3), long=LONG, words=LONG_WORDS_TEXT, sample=SAMPLE)),
           source=BPE_SOURCE, kind="differential",
           statement="The ids equal the reference's: merges applied in rank order inside each pre-token.")
def check_reference(ctx: Context, p: dict, tk: ByteLevel) -> None:
    case, text = tk.setup(ctx, p), tk.text(p)
    ids = encode(ctx, case.tok, text)
    expected = case.reference.encode(text)
    if ids != expected:
        fail_sequences(ctx, f"encode({clip(text)}) differs from the reference (merges in rank order)", ids, expected)


@invariant(row("bpe_tokenizer.decode.bytes", tk=BPE, examples=BPE.examples(draw=seeds(), length=st.integers(0, 24))),
           row("gpt2_tokenizer.decode.bytes", tk=GPT2, source=GPT2_SOURCE,
               examples=GPT2.examples(draw=seeds(), length=st.integers(0, 24))),
           source=BPE_SOURCE,
           statement="decode(ids) is the tokens' bytes, concatenated, decoded as UTF-8 with U+FFFD replacing invalid "
                     "bytes (so ids that split a character do not raise).")
def check_decode_bytes(ctx: Context, p: dict, tk: ByteLevel) -> None:
    case = tk.setup(ctx, p)
    ids = id_draw(case.vocab, p["draw"], p["length"])
    expected = b"".join(case.vocab[i] for i in ids).decode("utf-8", errors="replace")
    got = decode(ctx, case.tok, ids)
    if got != expected:
        ctx.fail(f"decode({ids}) = {clip(got)}; the tokens' bytes, joined and decoded as UTF-8 with U+FFFD for "
                 f"invalid bytes, are {clip(expected)}")


@invariant("bpe_tokenizer.stream.equals_encode", source=BPE_SOURCE, requires=("streaming",),
           examples=BPE.examples(BPE_SPECIAL_SETS, text=unicode_text(6, SPECIAL_PIECES + (ENDOFTEXT,)), sample=SAMPLE,
                                 lines=st.booleans(), cuts=st.lists(st.integers(0, 400), min_size=2, max_size=8)),
           statement="encode_iterable(chunks) yields exactly encode(''.join(chunks)), for lines and for arbitrary "
                     "chunk boundaries (inside pre-tokens or special tokens).")
def check_stream(ctx: Context, p: dict) -> None:
    case, text = BPE.setup(ctx, p), BPE.text(p)
    if p["lines"]:
        chunks = text.splitlines(keepends=True)
    else:
        cuts = sorted({c % (len(text) + 1) for c in p["cuts"]})
        chunks = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
    streamed = ids_of(ctx, call_method(ctx, case.tok, "encode_iterable", iter(chunks)), "encode_iterable")
    whole = encode(ctx, case.tok, text)
    if streamed != whole:
        fail_sequences(ctx, f"encode_iterable({clip(chunks)}) != encode of their concatenation", streamed, whole)


@invariant("gpt2_tokenizer.corpora.match_reference", kind="differential",
           examples=record(files=st.sampled_from(gpt2_file_choices()), corpus=st.sampled_from(corpus_choices()),
                           start=st.integers(0, 10**6), length=st.integers(1, 3000)),
           statement="Slices of the fixture corpora (corpus.en, german.txt, address.txt, tinystories_sample.txt) and "
                     "of generated text encode to exactly the reference's ids (which equal Hugging Face tokenizers' "
                     "and tiktoken's on GPT-2's files). With GPT-2's real files when present (../shared/fixtures or "
                     "$LMSPEC_GPT2_DIR), always with synthetic GPT-2-format files.",
           source="openai/gpt-2 src/encoder.py (bytes_to_unicode, bpe); tiktoken gpt2 encoding; HF tokenizers "
                  "ByteLevel BPE")
def check_gpt2_corpora(ctx: Context, p: dict) -> None:
    case = gpt2_setup(ctx, p)
    text = _slice(corpus_text(p["corpus"]), p["start"], p["length"])
    start = p["start"] % max(1, len(corpus_text(p["corpus"])))
    ids = encode(ctx, case.tok, text)
    expected = case.reference.encode(text)
    if ids != expected:
        fail_sequences(ctx, f"{p['corpus']}[{start}:{start + p['length']}] ({clip(text, 60)}) is encoded unlike GPT-2",
                       ids, expected)
