"""Invariants of `bpe_train(text_or_path, vocab_size, special_tokens) -> (vocab, merges)`.

Most checks replay the target's merges on the corpus's pre-tokens (GPT-2 pattern, split at special tokens):
at each step the pair counts are recounted from scratch, which is slow but obviously right, and the
target's merge must be a pair of maximal count, the lexicographically greatest among ties.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from ...reference.tokenizers.bpe import merge_pair, pretoken_counts
from .inputs import ENDOFTEXT, corpus_of, record, seeds, show
from ..core import Context, Invariant, Violation

SPECIAL_SETS = ([], [ENDOFTEXT], [ENDOFTEXT, "<|pad|>"])
SOURCE = "Sennrich et al. 2016, Algorithm 1; Radford et al. 2019 (byte-level BPE); CS336 (2025) assignment 1, train_bpe"


def train_examples(min_merges: int = 0, max_merges: int = 80, special_sets=SPECIAL_SETS) -> st.SearchStrategy[dict]:
    return record(seed=seeds(), words=st.integers(20, 200), zipf=st.booleans(),
                  merges=st.integers(min_merges, max_merges), special_tokens=st.sampled_from(special_sets))


def _train(ctx: Context, corpus, vocab_size: int, special_tokens: list[str]) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    out = ctx.target(corpus, vocab_size, list(special_tokens))
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)):
        ctx.fail(f"bpe_train returned {type(out).__name__}, expected (vocab: dict[int, bytes], merges: list)")
    vocab, merges = out
    if not all(isinstance(k, int) and isinstance(v, bytes) for k, v in vocab.items()):
        ctx.fail("vocab must map int ids to bytes")
    merges = list(merges)
    if not all(isinstance(m, tuple) and len(m) == 2 and all(isinstance(x, bytes) for x in m) for m in merges):
        ctx.fail("merges must be (bytes, bytes) tuples")
    return vocab, merges


def _size(p: dict) -> int:
    return 256 + len(p["special_tokens"]) + p["merges"]


def _trained(ctx: Context, p: dict):
    return _train(ctx, corpus_of(p, p["special_tokens"]), _size(p), p["special_tokens"])


@dataclass
class Step:
    counts: Counter  # pair -> count before the merge
    best: int  # the maximal count


def replay(text: str, special_tokens: list[str], merges: list[tuple[bytes, bytes]]) -> tuple[list[Step], list[int], dict]:
    """Apply the merges in order to the corpus's pre-tokens. Returns the pair counts seen at each step, the
    corpus's token count after 0, 1, ..., len(merges) merges, and the final words."""
    words = {tuple(bytes([b]) for b in w): n for w, n in pretoken_counts(text, special_tokens).items()}
    steps, tokens = [], [sum(len(w) * n for w, n in words.items())]
    for pair in merges:
        counts: Counter = Counter()
        for w, n in words.items():
            for q in zip(w, w[1:]):
                counts[q] += n
        steps.append(Step(counts, max(counts.values(), default=0)))
        words = {merge_pair(w, pair): n for w, n in words.items()}
        tokens.append(sum(len(w) * n for w, n in words.items()))
    return steps, tokens, words


# --- checks -------------------------------------------------------------------------------------------------


def check_size(ctx: Context, p: dict) -> None:
    vocab, merges = _trained(ctx, p)
    if len(vocab) > _size(p):
        ctx.fail(f"vocab has {len(vocab)} entries, more than the requested {_size(p)}")
    if len(vocab) < _size(p):
        _, _, words = replay(corpus_of(p, p["special_tokens"]), p["special_tokens"], merges)
        left = [w for w in words if len(w) > 1]
        if left:
            ctx.fail(f"vocab has {len(vocab)} entries, fewer than the requested {_size(p)}, although pre-tokens with "
                     f"pairs to merge remain, e.g. {show(left[0])}")


def check_contents(ctx: Context, p: dict) -> None:
    vocab, merges = _trained(ctx, p)
    values = Counter(vocab.values())
    missing = [bytes([b]) for b in range(256) if bytes([b]) not in values]
    if missing:
        ctx.fail(f"vocab lacks single bytes {show(missing)}")
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
        ctx.fail(f"vocab holds tokens that are neither bytes, special tokens nor merge results: {show(list(extra))}")


def check_unique(ctx: Context, p: dict) -> None:
    _, merges = _trained(ctx, p)
    seen: set = set()
    for rank, pair in enumerate(merges):
        if pair in seen:
            ctx.fail(f"merge #{rank} {pair!r} repeats an earlier merge", rank=rank)
        seen.add(pair)


def check_parts_exist(ctx: Context, p: dict) -> None:
    _, merges = _trained(ctx, p)
    known = {bytes([b]) for b in range(256)}
    for rank, (a, b) in enumerate(merges):
        for part in (a, b):
            if part not in known:
                ctx.fail(f"merge #{rank} {(a, b)!r}: part {part!r} is neither a byte nor the result of an earlier merge",
                         rank=rank)
        known.add(a + b)


def check_highest_count(ctx: Context, p: dict) -> None:
    _, merges = _trained(ctx, p)
    steps, _, _ = replay(corpus_of(p, p["special_tokens"]), p["special_tokens"], merges)
    for rank, (pair, step) in enumerate(zip(merges, steps)):
        if step.counts[pair] != step.best:
            top = max(step.counts, key=lambda q: (step.counts[q], q))
            raise Violation(f"merge #{rank} {pair!r} occurs {step.counts[pair]} times in the corpus's pre-tokens at its "
                            f"turn; the most frequent pair {top!r} occurs {step.best} times", rank=rank)


def check_tie_break(ctx: Context, p: dict) -> None:
    _, merges = _trained(ctx, p)
    steps, _, _ = replay(corpus_of(p, p["special_tokens"]), p["special_tokens"], merges)
    for rank, (pair, step) in enumerate(zip(merges, steps)):
        if step.counts[pair] != step.best:
            return  # not a maximal pair at all: that is bpe_train.merges.highest_count's failure
        tied = [q for q, c in step.counts.items() if c == step.best]
        if pair != max(tied):
            raise Violation(f"merge #{rank} {pair!r} ties with {len(tied)} pairs at count {step.best}; the "
                            f"lexicographically greatest is {max(tied)!r}", rank=rank, tied=show(sorted(tied)))


def check_inside_pretokens(ctx: Context, p: dict) -> None:
    text = corpus_of(p, p["special_tokens"])
    _, merges = _trained(ctx, p)
    pieces = list(pretoken_counts(text, p["special_tokens"]))
    for rank, (a, b) in enumerate(merges):
        if not any(a + b in piece for piece in pieces):
            ctx.fail(f"merge #{rank} makes {a + b!r}, which occurs in no pre-token of the corpus (a merge across a "
                     f"pre-token boundary or through a special token)", rank=rank)


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


def check_deterministic(ctx: Context, p: dict) -> None:
    first, second = _trained(ctx, p), _trained(ctx, p)
    if first != second:
        i = next((k for k, (x, y) in enumerate(zip(first[1], second[1])) if x != y), None)
        ctx.fail(f"two identical calls trained different vocabularies (first differing merge #{i})", rank=i)


def check_chunking(ctx: Context, p: dict) -> None:
    text = corpus_of(p, p["special_tokens"])
    from_text = _train(ctx, text, _size(p), p["special_tokens"])
    with tempfile.TemporaryDirectory(prefix="lmspec-bpe-") as directory:
        path = os.path.join(directory, "corpus.txt")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        from_file = _train(ctx, Path(path), _size(p), p["special_tokens"])
    if from_text[1] != from_file[1] or sorted(from_text[0].values()) != sorted(from_file[0].values()):
        i = next((k for k, (x, y) in enumerate(zip(from_text[1], from_file[1])) if x != y), min(len(from_text[1]), len(from_file[1])))
        ctx.fail(f"training from the file differs from training on its text (first at merge #{i}: "
                 f"{show(from_file[1][i:i + 1])} vs {show(from_text[1][i:i + 1])})", rank=i)


def check_reference(ctx: Context, p: dict) -> None:
    from ...reference.tokenizers.bpe import bpe_train

    text = corpus_of(p, p["special_tokens"])
    vocab, merges = _trained(ctx, p)
    ref_vocab, ref_merges = bpe_train(text, _size(p), p["special_tokens"])
    if merges != ref_merges:
        i = next((k for k, (x, y) in enumerate(zip(merges, ref_merges)) if x != y), min(len(merges), len(ref_merges)))
        ctx.fail(f"merge #{i} is {show(merges[i:i + 1])}, the reference's {show(ref_merges[i:i + 1])} "
                 f"({len(merges)} vs {len(ref_merges)} merges)", rank=i)
    if sorted(vocab.values()) != sorted(ref_vocab.values()):
        ctx.fail("the vocabulary's tokens differ from the reference's")


def _inv(name: str, statement: str, check, examples=None, source: str = SOURCE, kind: str = "property") -> Invariant:
    return Invariant(id=f"bpe_train.{name}", statement=statement, source=source, kind=kind,
                     examples=train_examples() if examples is None else examples, check=check)


INVARIANTS = (
    _inv("vocab.size", "The vocabulary has exactly vocab_size entries, or fewer only when no pre-token of the corpus has "
         "a pair left to merge.", check_size,
         # always with special tokens: the classic bug is forgetting that they take vocabulary slots
         train_examples(0, 300, SPECIAL_SETS[1:])),
    _inv("vocab.contents", "Ids are 0..n-1; the vocabulary is the 256 single bytes, each special token once, and one "
         "token per merge (n = 256 + specials + merges).", check_contents),
    _inv("merges.unique", "No pair is merged twice.", check_unique, train_examples(0, 100)),
    _inv("merges.parts_exist_before", "Each merge's two parts are single bytes or results of earlier merges.",
         check_parts_exist),
    _inv("merges.highest_count", "Each merge is a pair of maximal count among adjacent pairs inside the corpus's "
         "pre-tokens after the earlier merges (special tokens are not counted).", check_highest_count),
    _inv("merges.tie_break", "Among pairs tied at the maximal count, the lexicographically greatest (bytes_a, bytes_b) "
         "is merged.", check_tie_break, source=SOURCE + " (\"prefer the lexicographically greater pair\")"),
    _inv("merges.inside_pretokens", "Every merged token occurs inside some pre-token of the corpus: merges never cross "
         "a pre-token boundary or a special token.", check_inside_pretokens),
    _inv("compression.monotone", "Every merge shortens the training corpus, so its bytes per token never decrease as "
         "the vocabulary grows.", check_compression, train_examples(2, 80)),
    _inv("deterministic", "Two identical calls return identical vocabularies and merges.", check_deterministic),
    _inv("chunking.independent", "Training from a file (os.PathLike, however the trainer reads it in chunks) equals "
         "training on its text (str).", check_chunking, train_examples(1, 60)),
    _inv("reference.matches", "The merges, in order, and the vocabulary's tokens equal the reference trainer's.",
         check_reference, kind="differential"),
)
