"""Adapters for tokenizer libraries: Hugging Face `tokenizers`, `tiktoken` and `sentencepiece`.

Each adapter builds the library's own tokenizer from the component's canonical inputs and exposes
`encode(text) -> list[int]` / `decode(ids) -> str`; the library does all the tokenizing. Registered:

- `hf_tokenizers` (target `tokenizers:Tokenizer`): `bpe_tokenizer` (models.BPE from the vocab and merges through
  GPT-2's byte-to-unicode table, ByteLevel pre-tokenizer and decoder, special tokens as AddedTokens),
  `gpt2_tokenizer` (models.BPE.from_file), `wordpiece_tokenizer` (models.WordPiece, BertPreTokenizer, WordPiece
  decoder with cleanup=False), `unigram_tokenizer` (models.Unigram with " " replaced by "\u2581"), `bpe_train`
  (trainers.BpeTrainer with the 256-byte initial alphabet, fed the documents between the corpus's special tokens:
  the library does not split its training text at special tokens itself).
- `tiktoken` (target `tiktoken:Encoding`): `bpe_tokenizer` (mergeable ranks = the vocab's ids) and `gpt2_tokenizer`
  (ranks from tiktoken's own `data_gym_to_mergeable_bpe_ranks`, no download), GPT-2's pattern,
  `encode(text, allowed_special="all")`.
- `sentencepiece` (target `sentencepiece:SentencePieceProcessor`): `unigram_tokenizer`, from a ModelProto written
  here (no protobuf package needed): the pieces and scores (float32), <unk> at unk_id, normalizer "identity",
  no dummy prefix, no white-space collapsing, " " escaped as "\u2581"; `sample_encode` is
  `encode(enable_sampling=True, alpha=alpha, nbest_size=-1)` after `set_random_generator_seed(seed)`.

What each library cannot do is declared (unsupported features); docs/conventions.md lists the differences.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import struct
import tempfile
from pathlib import Path

from .registry import AdapterSpec, expect_class, register

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPACE = "\u2581"


def _gpt2_table() -> dict[int, str]:
    """GPT-2's bytes_to_unicode (openai/gpt-2 encoder.py), restated here so adapters do not use the reference."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(others)}}


def _stamp(*paths) -> tuple:
    return tuple((str(p), os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths)


class _Wrapped:
    """encode/decode over a library object; `sample` is the optional sample_encode."""

    def __init__(self, encode, decode, sample=None):
        self.encode, self.decode = encode, decode
        if sample is not None:
            self.sample_encode = sample


# --- Hugging Face tokenizers --------------------------------------------------------------------------------


def _hf_wrap(tok) -> _Wrapped:
    return _Wrapped(lambda text: tok.encode(text, add_special_tokens=False).ids,
                    lambda ids: tok.decode(list(ids), skip_special_tokens=False))


def _hf_byte_level(tok, special_tokens):
    from tokenizers import AddedToken, decoders, pre_tokenizers

    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special_tokens])
    return tok


def _wrap_hf(cls: object, component: str):
    expect_class(cls, "the Hugging Face tokenizers:Tokenizer class", attrs=("encode", "decode"))
    import regex
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    table = _gpt2_table()
    to_text = lambda token: "".join(table[b] for b in token)  # noqa: E731
    from_text = {ch: b for b, ch in table.items()}

    def bpe_tokenizer(vocab, merges, special_tokens=None):
        specials = {s.encode() for s in special_tokens or ()}
        hf_vocab = {(t.decode() if t in specials else to_text(t)): i for i, t in vocab.items()}
        model = models.BPE(vocab=hf_vocab, merges=[(to_text(a), to_text(b)) for a, b in merges])
        return _hf_wrap(_hf_byte_level(cls(model), special_tokens or ()))

    @functools.lru_cache(maxsize=2)
    def _gpt2(stamp, special_tokens):
        return _hf_wrap(_hf_byte_level(cls(models.BPE.from_file(stamp[0][0], stamp[1][0])), special_tokens))

    def gpt2_tokenizer(vocab_json, merges_txt, special_tokens):
        return _gpt2(_stamp(vocab_json, merges_txt), tuple(special_tokens))

    def wordpiece_tokenizer(vocab, unk_token="[UNK]", max_input_chars_per_word=100):
        tok = cls(models.WordPiece(vocab=dict(vocab), unk_token=unk_token, max_input_chars_per_word=max_input_chars_per_word))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
        return _hf_wrap(tok)

    def unigram_tokenizer(pieces, unk_id=0):
        tok = cls(models.Unigram([(p, float(s)) for p, s in pieces], unk_id=unk_id, byte_fallback=False))
        tok.normalizer = normalizers.Replace(" ", SPACE)
        tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.Fuse()])
        return _hf_wrap(tok)

    def bpe_train(text_or_path, vocab_size, special_tokens):
        text = Path(text_or_path).read_text(encoding="utf-8") if isinstance(text_or_path, os.PathLike) else text_or_path
        tok = _hf_byte_level(cls(models.BPE()), special_tokens)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens), min_frequency=0,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        # the canonical corpus marks document boundaries with special tokens; HF's trainer takes documents (it
        # does not split its training text at added tokens), so the corpus is passed as the documents between them
        documents = regex.split("|".join(map(regex.escape, sorted(special_tokens, key=len, reverse=True))), text) \
            if special_tokens else [text]
        tok.train_from_iterator(documents, trainer)
        model = json.loads(tok.to_str())["model"]
        specials = set(special_tokens)

        def to_bytes(token: str) -> bytes:
            return token.encode() if token in specials else bytes(from_text[ch] for ch in token)

        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return ({i: to_bytes(t) for t, i in model["vocab"].items()}, [(to_bytes(a), to_bytes(b)) for a, b in merges])

    return {"bpe_tokenizer": bpe_tokenizer, "gpt2_tokenizer": gpt2_tokenizer, "wordpiece_tokenizer": wordpiece_tokenizer,
            "unigram_tokenizer": unigram_tokenizer, "bpe_train": bpe_train}[component]


register(AdapterSpec(
    name="hf_tokenizers",
    components=("bpe_tokenizer", "gpt2_tokenizer", "wordpiece_tokenizer", "unigram_tokenizer", "bpe_train"),
    wrap=_wrap_hf,
    doc="Hugging Face tokenizers (target tokenizers:Tokenizer): BPE/ByteLevel, WordPiece/BertPreTokenizer, Unigram, "
        "BpeTrainer. Python strs with lone surrogates cannot cross into Rust; no streaming encode; no sampling.",
    unsupported_features=frozenset({"lone_surrogates", "streaming", "sampling"}),
))


# --- tiktoken --------------------------------------------------------------------------------------------------


def _tiktoken_wrap(enc) -> _Wrapped:
    return _Wrapped(lambda text: enc.encode(text, allowed_special="all"), lambda ids: enc.decode(list(ids)))


@contextlib.contextmanager
def _no_tiktoken_cache():
    """tiktoken caches files it reads by path; local files that change must be read afresh."""
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


def _wrap_tiktoken(cls: object, component: str):
    expect_class(cls, "the tiktoken:Encoding class", attrs=("encode", "decode"))

    def bpe_tokenizer(vocab, merges, special_tokens=None):
        ids = {t: i for i, t in sorted(vocab.items(), reverse=True)}
        top = max(vocab) + 1
        specials = {}
        for s in dict.fromkeys(special_tokens or ()):
            specials[s] = ids.get(s.encode(), None)
            if specials[s] is None:
                specials[s], top = top, top + 1
        special_bytes = {s.encode() for s in specials}
        ranks = {t: i for t, i in ids.items() if t not in special_bytes}
        return _tiktoken_wrap(cls(name="lmspec-bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials))

    @functools.lru_cache(maxsize=2)
    def _gpt2(stamp, special_tokens):
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks

        vocab_json, merges_txt = stamp[0][0], stamp[1][0]
        with tempfile.TemporaryDirectory() as tmp, _no_tiktoken_cache():
            text = Path(merges_txt).read_text(encoding="utf-8")
            if not text.startswith("#version"):  # tiktoken skips the first line as GPT-2's "#version: 0.2" header
                merges_txt = os.path.join(tmp, "merges.txt")
                Path(merges_txt).write_text("#version: 0.2\n" + text, encoding="utf-8")
            ranks = data_gym_to_mergeable_bpe_ranks(merges_txt, vocab_json)
        encoder = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        specials = {s: encoder[s] for s in special_tokens}
        return _tiktoken_wrap(cls(name="gpt2-files", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials))

    def gpt2_tokenizer(vocab_json, merges_txt, special_tokens):
        return _gpt2(_stamp(vocab_json, merges_txt), tuple(special_tokens))

    return {"bpe_tokenizer": bpe_tokenizer, "gpt2_tokenizer": gpt2_tokenizer}[component]


register(AdapterSpec(
    name="tiktoken",
    components=("bpe_tokenizer", "gpt2_tokenizer"),
    wrap=_wrap_tiktoken,
    doc="tiktoken Encoding (target tiktoken:Encoding) built from the vocab's ids as mergeable ranks, or from GPT-2's "
        "files by tiktoken's own loader; GPT-2's pattern; allowed_special='all'. No streaming encode.",
    unsupported_features=frozenset({"streaming"}),
))


# --- sentencepiece ------------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32 values are written as 10-byte two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _int(number: int, value: int) -> bytes:
    return _field(number, 0, _varint(value))


def _bytes(number: int, value: bytes) -> bytes:
    return _field(number, 2, _varint(len(value)) + value)


def sentencepiece_model_proto(pieces, unk_id: int = 0) -> bytes:
    """A serialized sentencepiece ModelProto (src/sentencepiece_model.proto field numbers): a Unigram model
    with these pieces and scores, <unk> at unk_id, and the canonical normalization (identity, no dummy prefix,
    no white-space collapsing, " " -> "\u2581")."""
    out = b""
    for i, (piece, score) in enumerate(pieces):
        kind = 2 if i == unk_id else 1  # UNKNOWN or NORMAL
        out += _bytes(1, _bytes(1, piece.encode()) + _field(2, 5, struct.pack("<f", score)) + _int(3, kind))
    trainer = _int(3, 1) + _int(4, len(pieces)) + _int(40, unk_id) + _int(41, -1) + _int(42, -1) + _int(43, -1)
    normalizer = _bytes(1, b"identity") + _int(3, 0) + _int(4, 0) + _int(5, 1)
    return out + _bytes(2, trainer) + _bytes(3, normalizer)


def _wrap_sentencepiece(cls: object, component: str):
    expect_class(cls, "the sentencepiece:SentencePieceProcessor class", attrs=("encode", "decode"))
    import sentencepiece as spm

    def unigram_tokenizer(pieces, unk_id=0):
        sp = cls(model_proto=sentencepiece_model_proto(pieces, unk_id))

        def sample(text, alpha, seed):
            spm.set_random_generator_seed(int(seed))
            return sp.encode(text, enable_sampling=True, alpha=float(alpha), nbest_size=-1)

        return _Wrapped(lambda text: sp.encode(text), lambda ids: sp.decode(list(ids)), sample)

    return {"unigram_tokenizer": unigram_tokenizer}[component]


register(AdapterSpec(
    name="sentencepiece",
    components=("unigram_tokenizer",),
    wrap=_wrap_sentencepiece,
    doc="sentencepiece SentencePieceProcessor (target sentencepiece:SentencePieceProcessor) from a ModelProto with the "
        "given pieces (scores as float32), identity normalization, no dummy prefix; sampling with nbest_size=-1.",
))
