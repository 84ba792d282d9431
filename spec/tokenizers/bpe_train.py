"""`bpe_train(text_or_path, vocab_size, special_tokens) -> (vocab, merges)` and its invariants.

Most checks replay the target's merges on the corpus's pre-tokens (GPT-2 pattern, split at special tokens) with
the reference's readable pieces (reference/tokenizers/bpe.py: `byte_words`, `count_pairs`, `merge_words`): at each
step the pair counts are recounted from scratch, which is slow but obviously right, and the target's merge must
be a pair of maximal count, the lexicographically greatest among ties.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from ...reference.tokenizers import bpe as ref
from .inputs import ENDOFTEXT, clip, corpus_of, fail_sequences
from .training import assert_deterministic, assert_same_tokens, corpus_examples, train
from ..core import Component, Context, invariant

BPE_TRAIN = Component(
    name="bpe_train",
    signature="bpe_train(text_or_path: str | os.PathLike, vocab_size: int, special_tokens: list[str]) -> "
              "(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]])  (a str is the text, a PathLike a UTF-8 "
              "file)",
    summary="Byte-level BPE training: GPT-2 pre-tokens, merge the most frequent pair (ties: lexicographically "
            "greatest).",
    reference=ref.bpe_train,
    dtypes=(),
)

SPECIAL_SETS = ([], [ENDOFTEXT], [ENDOFTEXT, "<|pad|>"])
SOURCE = "Sennrich et al. 2016, Algorithm 1; Radford et al. 2019 (byte-level BPE); CS336 (2025) assignment 1, train_bpe"
Vocab, Merges = dict[int, bytes], list[tuple[bytes, bytes]]


def train_examples(min_merges: int = 0, max_merges: int = 80, special_sets=SPECIAL_SETS) -> st.SearchStrategy[dict]:
    return corpus_examples(20, 200, merges=st.integers(min_merges, max_merges),
                           special_tokens=st.sampled_from(special_sets))


def read_training(out) -> tuple[Vocab, Merges]:
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)):
        raise TypeError("expected (vocab: dict[int, bytes], merges: list)")
    vocab, merges = out[0], list(out[1])
    if not all(isinstance(k, int) and isinstance(v, bytes) for k, v in vocab.items()):
        raise TypeError("vocab must map int ids to bytes")
    if not all(isinstance(m, tuple) and len(m) == 2 and all(isinstance(x, bytes) for x in m) for m in merges):
        raise TypeError("merges must be (bytes, bytes) tuples")
    return vocab, merges


def _size(p: dict) -> int:
    return 256 + len(p["special_tokens"]) + p["merges"]


def _trained(ctx: Context, p: dict) -> tuple[Vocab, Merges]:
    return train(ctx, read_training, corpus_of(p, p["special_tokens"]), _size(p), p["special_tokens"])


def as_list(training: tuple[Vocab, Merges]) -> list:
    """The merges, then the vocabulary's (id, token) items: equal lists for equal trainings."""
    vocab, merges = training
    return merges + sorted(vocab.items())


@dataclass
class Step:
    counts: Counter  # pair -> count before the merge
    best: int  # the maximal count


def replay(text: str, special_tokens: list[str], merges: Merges) -> tuple[list[Step], list[int], dict]:
    """Apply the merges in order to the corpus's pre-tokens. Returns the pair counts seen at each step, the
    corpus's token count after 0, 1, ..., len(merges) merges, and the final words."""
    words = ref.byte_words(ref.pretoken_counts(text, special_tokens))
    steps, tokens = [], [sum(len(w) * n for w, n in words.items())]
    for pair in merges:
        counts = ref.count_pairs(words)
        steps.append(Step(counts, max(counts.values(), default=0)))
        words = ref.merge_words(words, pair)
        tokens.append(sum(len(w) * n for w, n in words.items()))
    return steps, tokens, words


# always with special tokens: the classic bug is forgetting that they take vocabulary slots
@invariant("bpe_train.vocab.size", examples=train_examples(0, 300, SPECIAL_SETS[1:]), source=SOURCE,
           statement="The vocabulary has exactly vocab_size entries, or fewer only when no pre-token of the corpus has "
                     "a pair left to merge.")
def check_size(ctx: Context, p: dict) -> None:
    vocab, merges = _trained(ctx, p)
    if len(vocab) > _size(p):
        ctx.fail(f"vocab has {len(vocab)} entries, more than the requested {_size(p)}")
    if len(vocab) < _size(p):
        _, _, words = replay(corpus_of(p, p["special_tokens"]), p["special_tokens"], merges)
        left = [w for w in words if len(w) > 1]
        if left:
            ctx.fail(f"vocab has {len(vocab)} entries, fewer than the requested {_size(p)}, although pre-tokens with "
                     f"pairs to merge remain, e.g. {clip(left[0])}")


@invariant("bpe_train.vocab.contents", examples=train_examples(), source=SOURCE,
           statement="Ids are 0..n-1; the vocabulary is the 256 single bytes, each special token once, and one token "
                     "per merge (n = 256 + specials + merges).")
def check_contents(ctx: Context, p: dict) -> None:
    vocab, merges = _trained(ctx, p)
    values = Counter(vocab.values())
    missing = [bytes([b]) for b in range(256) if bytes([b]) not in values]
    if missing:
        ctx.fail(f"vocab lacks single bytes {clip(missing)}")
    for token in p["special_tokens"]:
        if values[token.encode()] != 1:
            ctx.fail(f"special token {token!r} is in the vocab {values[token.encode()]} times, expected once")
    expected = len(vocab) - 256 - len(p["special_tokens"])
    if len(merges) != expected:
        ctx.fail(f"{len(merges)} merges for a vocab of {len(vocab)} = 256 bytes + {len(p['special_tokens'])} special "
                 f"tokens + {expected} merged tokens")
    if sorted(vocab) != list(range(len(vocab))):
        ctx.fail(f"vocab ids are not 0..{len(vocab) - 1}")
    made = Counter(a + b for a, b in merges)
    extra = values - Counter(bytes([b]) for b in range(256)) - Counter(t.encode() for t in p["special_tokens"]) - made
    if extra:
        ctx.fail(f"vocab holds tokens that are neither bytes, special tokens nor merge results: {clip(list(extra))}")


@invariant("bpe_train.merges.unique", examples=train_examples(0, 100), source=SOURCE,
           statement="No pair is merged twice.")
def check_unique(ctx: Context, p: dict) -> None:
    _, merges = _trained(ctx, p)
    seen: set = set()
    for rank, pair in enumerate(merges):
        if pair in seen:
            ctx.fail(f"merge #{rank} {pair!r} repeats an earlier merge", rank=rank)
        seen.add(pair)


@invariant("bpe_train.merges.parts_exist_before", examples=train_examples(), source=SOURCE,
           statement="Each merge's two parts are single bytes or results of earlier merges.")
def check_parts_exist(ctx: Context, p: dict) -> None:
    _, merges = _trained(ctx, p)
    known = {bytes([b]) for b in range(256)}
    for rank, (a, b) in enumerate(merges):
        for part in (a, b):
            if part not in known:
                ctx.fail(f"merge #{rank} {(a, b)!r}: part {part!r} is neither a byte nor the result of an earlier "
                         f"merge", rank=rank)
        known.add(a + b)


@invariant("bpe_train.merges.highest_count", examples=train_examples(), source=SOURCE,
           statement="Each merge is a pair of maximal count among adjacent pairs inside the corpus's pre-tokens after "
                     "the earlier merges (special tokens are not counted).")
def check_highest_count(ctx: Context, p: dict) -> None:
    _, merges = _trained(ctx, p)
    steps, _, _ = replay(corpus_of(p, p["special_tokens"]), p["special_tokens"], merges)
    for rank, (pair, step) in enumerate(zip(merges, steps)):
        if step.counts[pair] != step.best:
            top = max(step.counts, key=lambda q: (step.counts[q], q))
            ctx.fail(f"merge #{rank} {pair!r} occurs {step.counts[pair]} times in the corpus's pre-tokens at its "
                     f"turn; the most frequent pair {top!r} occurs {step.best} times", rank=rank)


@invariant("bpe_train.merges.tie_break", examples=train_examples(),
           source=SOURCE + " (\"prefer the lexicographically greater pair\")",
           statement="Among pairs tied at the maximal count, the lexicographically greatest (bytes_a, bytes_b) is "
                     "merged.")
def check_tie_break(ctx: Context, p: dict) -> None:
    _, merges = _trained(ctx, p)
    steps, _, _ = replay(corpus_of(p, p["special_tokens"]), p["special_tokens"], merges)
    for rank, (pair, step) in enumerate(zip(merges, steps)):
        if step.counts[pair] != step.best:
            return  # not a maximal pair at all: that is bpe_train.merges.highest_count's failure
        tied = [q for q, c in step.counts.items() if c == step.best]
        if pair != max(tied):
            ctx.fail(f"merge #{rank} {pair!r} ties with {len(tied)} pairs at count {step.best}; the "
                     f"lexicographically greatest is {max(tied)!r}", rank=rank, tied=clip(sorted(tied)))


@invariant("bpe_train.merges.inside_pretokens", examples=train_examples(), source=SOURCE,
           statement="Every merged token occurs inside some pre-token of the corpus: merges never cross a pre-token "
                     "boundary or a special token.")
def check_inside_pretokens(ctx: Context, p: dict) -> None:
    text = corpus_of(p, p["special_tokens"])
    _, merges = _trained(ctx, p)
    pieces = list(ref.pretoken_counts(text, p["special_tokens"]))
    for rank, (a, b) in enumerate(merges):
        if not any(a + b in piece for piece in pieces):
            ctx.fail(f"merge #{rank} makes {a + b!r}, which occurs in no pre-token of the corpus (a merge across a "
                     f"pre-token boundary or through a special token)", rank=rank)


@invariant("bpe_train.compression.monotone", examples=train_examples(2, 80), source=SOURCE,
           statement="Every merge shortens the training corpus, so its bytes per token never decrease as the "
                     "vocabulary grows.")
def check_compression(ctx: Context, p: dict) -> None:
    text = corpus_of(p, p["special_tokens"])
    _, merges = _trained(ctx, p)
    _, tokens, _ = replay(text, p["special_tokens"], merges)
    for rank in range(len(merges)):
        if tokens[rank + 1] >= tokens[rank]:
            ctx.fail(f"merge #{rank} {merges[rank]!r} does not shorten the training corpus ({tokens[rank]} -> "
                     f"{tokens[rank + 1]} tokens): bytes per token must grow with every merge", rank=rank)
    smaller = dict(p, merges=p["merges"] // 2)
    _, merges_small = _trained(ctx, smaller)
    _, tokens_small, _ = replay(text, p["special_tokens"], merges_small)
    if tokens_small[-1] < tokens[-1]:
        ctx.fail(f"{len(merges_small)} merges encode the corpus in {tokens_small[-1]} tokens, {len(merges)} merges in "
                 f"{tokens[-1]}: compression decreased as the vocabulary grew")


@invariant("bpe_train.deterministic", examples=train_examples(), source=SOURCE,
           statement="Two identical calls return identical vocabularies and merges.")
def check_deterministic(ctx: Context, p: dict) -> None:
    assert_deterministic(ctx, lambda: _trained(ctx, p), "vocabularies (merges, then (id, token) items)", as_list)


@invariant("bpe_train.chunking.independent", examples=train_examples(1, 60), source=SOURCE,
           statement="Training from a file (os.PathLike, however the trainer reads it in chunks) equals training on "
                     "its text (str).")
def check_chunking(ctx: Context, p: dict) -> None:
    text = corpus_of(p, p["special_tokens"])
    vocab, merges = train(ctx, read_training, text, _size(p), p["special_tokens"])
    with tempfile.TemporaryDirectory(prefix="lmspec-bpe-") as directory:
        path = os.path.join(directory, "corpus.txt")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        file_vocab, file_merges = train(ctx, read_training, Path(path), _size(p), p["special_tokens"])
    if file_merges != merges:
        fail_sequences(ctx, "the merges trained from the file differ from those trained on its text", file_merges,
                       merges)
    if sorted(file_vocab.values()) != sorted(vocab.values()):
        ctx.fail("the vocabulary trained from the file differs from the one trained on its text")


@invariant("bpe_train.reference.matches", kind="differential", examples=train_examples(), source=SOURCE,
           statement="The merges, in order, and the vocabulary's tokens equal the reference trainer's.")
def check_reference(ctx: Context, p: dict) -> None:
    vocab, merges = _trained(ctx, p)
    # the fast reference trainer: tests/test_tokenizers_reference.py shows it equal to the readable `bpe_train`
    ref_vocab, ref_merges = ref.bpe_train_fast(corpus_of(p, p["special_tokens"]), _size(p), p["special_tokens"])
    if merges != ref_merges:
        fail_sequences(ctx, "the merges differ from the reference's", merges, ref_merges)
    assert_same_tokens(ctx, Counter(vocab.values()), Counter(ref_vocab.values()), "the vocabulary's tokens")
