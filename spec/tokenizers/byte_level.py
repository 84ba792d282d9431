"""Invariants of byte-level BPE tokenizers, shared by `bpe_tokenizer` (built from vocab and merges) and
`gpt2_tokenizer` (built from GPT-2-format files). Each component supplies a `setup(ctx, p) -> Case`.

Pre-token boundaries are those of the GPT-2 pattern (reference/tokenizers/pretokenize.py, the definition the spec
uses); expected values are computed from the target's own outputs wherever that suffices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import regex
from hypothesis import strategies as st

from ...reference.tokenizers.pretokenize import Splitter, valid_unicode
from .inputs import (call, decode, encode, fail_sequences, ids_of, multibyte_text, record, seeds, show,
                                surrogate_text, syllable_words, unicode_text)
from ..core import Context, Invariant

BPE_SOURCE = "Sennrich et al. 2016; Radford et al. 2019 (GPT-2 encoder.py); CS336 (2025) assignment 1, Tokenizer"
SPECIAL_PIECES = ("<|", "|>", "endoftext", "<|endoftext", "<s", "s>")
SAMPLE = st.lists(st.integers(0, 10**6), min_size=3, max_size=3)  # [which corpus, start, length] of sample text


@dataclass
class Case:
    tok: Any  # the target's tokenizer
    reference: Any  # the reference tokenizer built from the same inputs
    vocab: dict[int, bytes]  # every id the tokenizer may emit, special tokens included
    special_ids: dict[str, int]
    rebuild: Callable[[], Any]  # a fresh target tokenizer from the same inputs


Setup = Callable[[Context, dict], Case]
#: [seed, count] of `syllable_words`: merge order shows where pairs that share a byte occur in other proportions
#: than in the text the merges were learned from
WORDS = st.tuples(seeds(), st.integers(80, 160)).map(list)
#: where to insert special tokens into a text: [position (modulo len + 1), which special token (modulo their number)]
SPECIAL_INSERTS = st.lists(st.lists(st.integers(0, 10**6), min_size=2, max_size=2), min_size=1, max_size=3)


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


def byte_level_invariants(prefix: str, setup: Setup, params: Callable[..., dict[str, st.SearchStrategy]],
                          sample_text: Callable[[dict, list], str], source: str, special_sets: tuple,
                          overlapping_sets: tuple = ()) -> tuple[Invariant, ...]:
    """The invariants every byte-level BPE tokenizer meets. `params(special_sets)` gives the setup fields' strategies. A
    "text" is the drawn Unicode string, followed, when the example has "words" [seed, count], by
    `syllable_words(seed, count)`, and, when it has a "sample" [which, start, length], by `sample_text(p, sample)`:
    text like the tokenizer's training text, where its merges apply."""

    def ex(special=None, **fields) -> st.SearchStrategy[dict]:
        if "text" in fields and "sample" not in fields:
            fields["sample"] = st.one_of(st.none(), SAMPLE)
        return record(**(params(special) if special is not None else params()), **fields)

    def text_of(p: dict) -> str:
        words = syllable_words(*p["words"]) if p.get("words") else ""
        return p["text"] + words + (sample_text(p, p["sample"]) if p.get("sample") else "")

    def check_roundtrip(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        ids = encode(ctx, case.tok, text_of(p))
        back = decode(ctx, case.tok, ids)
        if back != text_of(p):
            ctx.fail(f"decode(encode(s)) != s: s = {show(text_of(p))}, got {show(back)}", ids=show(ids))

    def check_surrogates(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        expected = valid_unicode(text_of(p))
        back = decode(ctx, case.tok, encode(ctx, case.tok, text_of(p)))
        if back != expected:
            ctx.fail(f"decode(encode(s)) = {show(back)}; with surrogates made valid as tiktoken does it should be "
                     f"{show(expected)}")

    def _expected_with_specials(ctx, case, segments) -> list[int]:
        expected: list[int] = []
        for segment, special in segments:
            expected += encode(ctx, case.tok, segment)
            if special is not None:
                expected.append(case.special_ids[special])
        return expected

    def _special_text(case: Case, p: dict) -> tuple[str, list]:
        specials = list(case.special_ids)
        segments = [(part, specials[k % len(specials)] if i < len(p["parts"]) - 1 else None)
                    for i, (part, k) in enumerate(zip(p["parts"], p["which"]))]
        return "".join(seg + (s or "") for seg, s in segments), segments

    def check_special_atomic(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        for token, tid in case.special_ids.items():
            alone = encode(ctx, case.tok, token)
            if alone != [tid]:
                ctx.fail(f"special token {token!r} encodes to {alone}, expected its single id [{tid}]", token=token)
        text, segments = _special_text(case, p)
        ids = encode(ctx, case.tok, text)
        expected = _expected_with_specials(ctx, case, segments)
        if ids != expected:
            fail_sequences(ctx, f"text with special tokens {show(text)} is not encode(segment) + [special id] + ...",
                           ids, expected)
        back = decode(ctx, case.tok, ids)
        if back != text:
            ctx.fail(f"decode(encode(s)) != s for s with special tokens: s = {show(text)}, got {show(back)}")

    def check_longest_match(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        text, _ = _special_text(case, p)
        ids = encode(ctx, case.tok, text)
        expected = _expected_with_specials(ctx, case, split_at_specials(text, list(case.special_ids)))
        if ids != expected:
            fail_sequences(ctx, f"overlapping special tokens in {show(text)} are not matched leftmost-longest",
                           ids, expected)

    def check_deterministic(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        first, second = encode(ctx, case.tok, text_of(p)), encode(ctx, case.tok, text_of(p))
        fresh = encode(ctx, case.rebuild(), text_of(p))
        if not first == second == fresh:
            ctx.fail(f"encoding {show(text_of(p))} three times (the third with a fresh tokenizer) gave {show(first)}, "
                     f"{show(second)}, {show(fresh)}")

    def check_ids_in_vocab(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        text = with_specials(text_of(p), list(case.special_ids), p.get("specials", ()))
        ids = encode(ctx, case.tok, text)
        outside = [i for i in ids if i not in case.vocab]
        if outside:
            ctx.fail(f"encode({show(text)}) emitted ids outside the vocabulary: {show(outside)}")

    def check_concatenation(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        text = text_of(p)
        cuts = pretoken_boundaries(text, list(case.special_ids)) or [0]
        k = cuts[p["cut"] % len(cuts)]
        whole = encode(ctx, case.tok, text)
        parts = encode(ctx, case.tok, text[:k]) + encode(ctx, case.tok, text[k:])
        if whole != parts:
            fail_sequences(ctx, f"encode(a + b) != encode(a) + encode(b) at the pre-token boundary a = {show(text[:k])}, "
                                f"b = {show(text[k:])}", whole, parts)

    def check_reference(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        ids = encode(ctx, case.tok, text_of(p))
        expected = case.reference.encode(text_of(p))
        if ids != expected:
            fail_sequences(ctx, f"encode({show(text_of(p))}) differs from the reference (merges in rank order)",
                           ids, expected)

    def check_decode_bytes(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        ids = id_draw(case.vocab, p["draw"], p["length"])
        expected = b"".join(case.vocab[i] for i in ids).decode("utf-8", errors="replace")
        got = decode(ctx, case.tok, ids)
        if got != expected:
            ctx.fail(f"decode({ids}) = {show(got)}; the tokens' bytes, joined and decoded as UTF-8 with U+FFFD for "
                     f"invalid bytes, are {show(expected)}")

    def check_stream(ctx: Context, p: dict) -> None:
        case = setup(ctx, p)
        text = text_of(p)
        if p["lines"]:
            chunks = text.splitlines(keepends=True)
        else:
            cuts = sorted({c % (len(text) + 1) for c in p["cuts"]})
            chunks = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
        streamed = ids_of(ctx, call(ctx, case.tok, "encode_iterable", iter(chunks)), "encode_iterable")
        whole = encode(ctx, case.tok, text)
        if streamed != whole:
            fail_sequences(ctx, f"encode_iterable({show(chunks)}) != encode of their concatenation", streamed, whole)

    text = unicode_text()
    parts = st.lists(unicode_text(3, SPECIAL_PIECES), min_size=2, max_size=4)
    which = st.lists(st.integers(0, 7), min_size=4, max_size=4)
    inv = []

    def add(name, statement, check, examples, kind="property", requires=()):
        inv.append(Invariant(id=f"{prefix}.{name}", statement=statement, source=source, kind=kind, examples=examples,
                             check=check, requires=frozenset(requires)))

    add("roundtrip.unicode", "decode(encode(s)) == s for every valid Unicode string: emoji, combining marks, NUL, "
        "CJK, right-to-left scripts, unusual white space.", check_roundtrip,
        ex(text=st.one_of(text, multibyte_text())))
    add("roundtrip.lone_surrogates", "A str holding surrogates round-trips to the str made valid as tiktoken does: a "
        "high+low pair becomes its character, any other surrogate U+FFFD.", check_surrogates,
        ex(text=surrogate_text()), requires=("lone_surrogates",))
    add("special_tokens.atomic", "Each special token encodes to its one id wherever it appears: text around it is "
        "encoded as if the special token were a document boundary, and the whole round-trips.", check_special_atomic,
        ex(special_sets, parts=parts, which=which))
    if overlapping_sets:
        add("special_tokens.longest_match", "Overlapping special tokens are matched leftmost-longest (Hugging Face's "
            "added-vocabulary rule): '<|endoftext|><|endoftext|>' is one token when it is one.", check_longest_match,
            ex(overlapping_sets, parts=parts, which=which), requires=("overlapping_special_tokens",))
    add("encode.deterministic", "Encoding the same text twice, or with a freshly built tokenizer, gives the same ids.",
        check_deterministic, ex(text=text))
    add("encode.ids_in_vocab", "Every id encode emits is in the vocabulary, special tokens' ids included (the text "
        "holds the tokenizer's special tokens at drawn places).", check_ids_in_vocab,
        ex(text=text, specials=SPECIAL_INSERTS))
    add("encode.concatenation", "encode(a + b) == encode(a) + encode(b) when a|b is a pre-token boundary.",
        check_concatenation, ex(text=text, cut=st.integers(0, 64)))
    add("encode.matches_reference", "The ids equal the reference's: merges applied in rank order inside each "
        "pre-token.", check_reference, ex(text=unicode_text(3), words=WORDS, sample=SAMPLE), kind="differential")
    add("decode.bytes", "decode(ids) is the tokens' bytes, concatenated, decoded as UTF-8 with U+FFFD replacing invalid "
        "bytes (so ids that split a character do not raise).", check_decode_bytes,
        ex(draw=seeds(), length=st.integers(0, 24)))
    add("stream.equals_encode", "encode_iterable(chunks) yields exactly encode(''.join(chunks)), for lines and for "
        "arbitrary chunk boundaries (inside pre-tokens or special tokens).", check_stream,
        ex(special_sets, text=unicode_text(6, SPECIAL_PIECES + ("<|endoftext|>",)), sample=SAMPLE, lines=st.booleans(),
           cuts=st.lists(st.integers(0, 400), min_size=2, max_size=8)), requires=("streaming",))
    return tuple(inv)
