"""Tokenizers: byte-level BPE (training, encoding, GPT-2's files), WordPiece and Unigram.

Tokenizers have no dtype (`dtypes=()`: each invariant runs once, as 'any'). The targets are of two kinds:

- trainers, plain functions: `bpe_train`, `wordpiece_train`, `unigram_train`;
- tokenizer builders: a class or factory the check calls with the component's inputs (a vocabulary, merges,
  files or pieces) that returns a *tokenizer*: an object with `encode(text: str) -> list[int]` and
  `decode(ids: list[int]) -> str`, plus the optional methods a component names (`encode_iterable`,
  `sample_encode`). A class whose `__init__` takes those inputs is a valid target as it is.

Optional abilities are features a target may declare unsupported (`__lmspec__ = {"unsupported_features": [...]}`
on the class, or through an adapter); their invariants are then reported `unsupported`, never passed.
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st

from ...reference.tokenizers import bpe as ref_bpe
from ...reference.tokenizers import gpt2 as ref_gpt2
from ...reference.tokenizers import unigram as ref_unigram
from ...reference.tokenizers import wordpiece as ref_wordpiece
from . import bpe_train, unigram, wordpiece
from .byte_level import BPE_SOURCE, Case, byte_level_invariants
from .inputs import (ENDOFTEXT, build, corpus, corpus_choices, corpus_text, encode, fail_sequences, gpt2_file_choices,
                                gpt2_files, record, show, trained_bpe)
from ..core import Component, Context, Invariant

TOKENIZER_PROTOCOL = "tokenizer = object with encode(text: str) -> list[int] and decode(ids: list[int]) -> str"

BYTE_LEVEL_FEATURES = {
    "lone_surrogates": "encode accepts a str holding surrogates and makes it valid as tiktoken does",
    "overlapping_special_tokens": "special tokens that are prefixes of one another are matched leftmost-longest",
    "streaming": "the tokenizer has encode_iterable(chunks: Iterable[str]) -> Iterator[int]",
}

# --- bpe_tokenizer: built from (vocab, merges, special_tokens) ------------------------------------------------

BPE_SPECIAL_SETS = ([ENDOFTEXT], [ENDOFTEXT, "<|pad|>"], ["<s>", "</s>"])
OVERLAPPING_SETS = ([ENDOFTEXT, ENDOFTEXT + ENDOFTEXT], ["<s>", "<s><s>", "</s>"])


#: the vocabularies bpe_tokenizer is checked with: (corpus seed, words, Zipf frequencies, merges), indexed by
#: the example's "vocab"; few and fixed, so they are trained once per process and a failure shrinks fast.
BPE_VOCABS = tuple((k, (40, 120, 200, 300)[k % 4], k % 3 != 0, (5, 30, 80, 150)[k // 4]) for k in range(16))


def bpe_params(special_sets=None) -> dict[str, st.SearchStrategy]:
    return dict(vocab=st.integers(0, len(BPE_VOCABS) - 1),
                special_tokens=st.sampled_from(special_sets or ([],) + BPE_SPECIAL_SETS))


def _bpe_corpus(p: dict) -> str:
    seed, words, zipf, _ = BPE_VOCABS[p["vocab"]]
    return corpus(seed, words, tuple(p["special_tokens"]), zipf)


def bpe_sample(p: dict, sample: list) -> str:
    """A slice of the tokenizer's own training corpus: text where its merges apply."""
    return _slice(_bpe_corpus(p), sample[1], 1 + sample[2] % 300)


def _slice(text: str, start: int, length: int) -> str:
    start = start % max(1, len(text))
    return text[start:start + length]


def bpe_setup(ctx: Context, p: dict) -> Case:
    specials = tuple(p["special_tokens"])
    vocab, merges = trained_bpe(*BPE_VOCABS[p["vocab"]], specials)
    ids = {token: i for i, token in vocab.items()}

    def rebuild():
        return build(ctx, dict(vocab), list(merges), list(specials))

    return Case(rebuild(), ref_bpe.Tokenizer(vocab, merges, specials), dict(vocab),
                {s: ids[s.encode()] for s in specials}, rebuild)


# --- gpt2_tokenizer: built from GPT-2-format files ------------------------------------------------------------


def gpt2_params(special_sets=None) -> dict[str, st.SearchStrategy]:
    return dict(files=st.sampled_from(gpt2_file_choices()))


@functools.lru_cache(maxsize=4)
def _gpt2_reference(vocab_path: str, merges_path: str) -> tuple[ref_bpe.Tokenizer, dict[int, bytes]]:
    vocab, _ = ref_gpt2.read_gpt2_files(vocab_path, merges_path, (ENDOFTEXT,))
    return ref_gpt2.from_gpt2_files(vocab_path, merges_path, (ENDOFTEXT,)), vocab


def gpt2_sample(p: dict, sample: list) -> str:
    """A slice of a fixture corpus (of generated text where GPT-2's files are absent)."""
    names = corpus_choices()
    return _slice(corpus_text(names[sample[0] % len(names)]), sample[1], 1 + sample[2] % 300)


def gpt2_setup(ctx: Context, p: dict) -> Case:
    paths = gpt2_files(p["files"])
    reference, vocab = _gpt2_reference(*paths)

    def rebuild():
        return build(ctx, *paths, [ENDOFTEXT])

    return Case(rebuild(), reference, vocab, dict(reference.special_ids), rebuild)


def check_gpt2_corpora(ctx: Context, p: dict) -> None:
    case = gpt2_setup(ctx, p)
    text = _slice(corpus_text(p["corpus"]), p["start"], p["length"])
    start = p["start"] % max(1, len(corpus_text(p["corpus"])))
    ids = encode(ctx, case.tok, text)
    expected = case.reference.encode(text)
    if ids != expected:
        fail_sequences(ctx, f"{p['corpus']}[{start}:{start + p['length']}] ({show(text, 60)}) is encoded unlike GPT-2",
                       ids, expected)


GPT2_CORPORA = Invariant(
    id="gpt2_tokenizer.corpora.match_reference",
    statement="Slices of the fixture corpora (corpus.en, german.txt, address.txt, tinystories_sample.txt) and of "
              "generated text encode to exactly the reference's ids (which equal Hugging Face tokenizers' and tiktoken's "
              "on GPT-2's files). With GPT-2's real files when present (../shared/fixtures or $LMSPEC_GPT2_DIR), always "
              "with synthetic GPT-2-format files.",
    source="openai/gpt-2 src/encoder.py (bytes_to_unicode, bpe); tiktoken gpt2 encoding; HF tokenizers ByteLevel BPE",
    kind="differential",
    examples=record(files=st.sampled_from(gpt2_file_choices()), corpus=st.sampled_from(corpus_choices()),
                    start=st.integers(0, 10**6), length=st.integers(1, 3000)),
    check=check_gpt2_corpora,
)

# --- components -----------------------------------------------------------------------------------------------

BPE_TRAIN = Component(
    name="bpe_train",
    family="tokenizers",
    signature="bpe_train(text_or_path: str | os.PathLike, vocab_size: int, special_tokens: list[str]) -> "
              "(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]])  (a str is the text, a PathLike a UTF-8 file)",
    summary="Byte-level BPE training: GPT-2 pre-tokens, merge the most frequent pair (ties: lexicographically greatest).",
    reference=ref_bpe.bpe_train,
    invariants=bpe_train.INVARIANTS,
    dtypes=(),
)

BPE_TOKENIZER = Component(
    name="bpe_tokenizer",
    family="tokenizers",
    signature=f"Tokenizer(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str]) -> "
              f"tokenizer; {TOKENIZER_PROTOCOL}; optional encode_iterable(Iterable[str]) -> Iterator[int]",
    summary="Byte-level BPE encoding (merges in rank order inside GPT-2 pre-tokens), decoding, special tokens, streams.",
    reference=ref_bpe.Tokenizer,
    invariants=byte_level_invariants("bpe_tokenizer", bpe_setup, bpe_params, bpe_sample, BPE_SOURCE, BPE_SPECIAL_SETS,
                                     OVERLAPPING_SETS),
    dtypes=(),
    features=BYTE_LEVEL_FEATURES,
)

GPT2_TOKENIZER = Component(
    name="gpt2_tokenizer",
    family="tokenizers",
    signature=f"from_files(vocab_json: str, merges_txt: str, special_tokens: list[str]) -> tokenizer (GPT-2's file "
              f"format: tokens through bytes_to_unicode); {TOKENIZER_PROTOCOL}",
    summary="GPT-2's tokenizer loaded from vocab.json + merges.txt, encoding exactly as GPT-2.",
    reference=ref_gpt2.from_gpt2_files,
    invariants=tuple(inv for inv in byte_level_invariants("gpt2_tokenizer", gpt2_setup, gpt2_params, gpt2_sample,
                                                          "openai/gpt-2 src/encoder.py; " + BPE_SOURCE, ())
                     if not inv.id.endswith("stream.equals_encode")) + (GPT2_CORPORA,),
    dtypes=(),
    features={k: v for k, v in BYTE_LEVEL_FEATURES.items() if k != "streaming" and k != "overlapping_special_tokens"},
)

WORDPIECE_TRAIN = Component(
    name="wordpiece_train",
    family="tokenizers",
    signature="wordpiece_train(text_or_path: str | os.PathLike, vocab_size: int, special_tokens: list[str]) -> "
              "list[str]  (the vocabulary; continuation tokens start with '##')",
    summary="WordPiece training: merge the pair of highest freq(ab) / (freq(a) freq(b)) over BERT pre-tokens.",
    reference=ref_wordpiece.wordpiece_train,
    invariants=wordpiece.TRAIN_INVARIANTS,
    dtypes=(),
)

WORDPIECE_TOKENIZER = Component(
    name="wordpiece_tokenizer",
    family="tokenizers",
    signature=f"WordPiece(vocab: dict[str, int], unk_token: str, max_input_chars_per_word: int) -> tokenizer; "
              f"{TOKENIZER_PROTOCOL}  (BERT pre-tokens, no lower-casing; decode joins words with spaces)",
    summary="Greedy longest-match-first WordPiece encoding with [UNK] and a per-word character limit.",
    reference=ref_wordpiece.WordPiece,
    invariants=wordpiece.ENCODE_INVARIANTS,
    dtypes=(),
)

UNIGRAM_TRAIN = Component(
    name="unigram_train",
    family="tokenizers",
    signature="unigram_train(text_or_path: str | os.PathLike, vocab_size: int, special_tokens: list[str]) -> "
              "list[tuple[str, float]]  (pieces with log-probability scores; ' ' is written '\u2581')",
    summary="Unigram LM training: EM from a seed vocabulary, pruning the pieces whose removal costs least.",
    reference=ref_unigram.unigram_train,
    invariants=unigram.TRAIN_INVARIANTS,
    dtypes=(),
)

UNIGRAM_TOKENIZER = Component(
    name="unigram_tokenizer",
    family="tokenizers",
    signature=f"Unigram(pieces: list[tuple[str, float]], unk_id: int) -> tokenizer; {TOKENIZER_PROTOCOL}; optional "
              f"sample_encode(text: str, alpha: float, seed: int) -> list[int]  (' ' <-> '\u2581', no dummy prefix)",
    summary="Unigram LM segmentation: Viterbi (maximum score) and sampling proportional to exp(alpha x score).",
    reference=ref_unigram.Unigram,
    invariants=unigram.TOKENIZER_INVARIANTS,
    dtypes=(),
    features={"sampling": "the tokenizer has sample_encode(text, alpha, seed), deterministic given seed"},
)

COMPONENTS = (BPE_TRAIN, BPE_TOKENIZER, GPT2_TOKENIZER, WORDPIECE_TRAIN, WORDPIECE_TOKENIZER, UNIGRAM_TRAIN,
              UNIGRAM_TOKENIZER)
