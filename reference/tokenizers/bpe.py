"""Byte-level BPE (GPT-2, RoBERTa, Llama 3): training, encoding, decoding, streaming, save and load.

Sources: Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units", Algorithm 1
(merge the most frequent pair, repeatedly); Radford et al. 2019 (GPT-2) for byte-level BPE over
regex pre-tokens; the training conventions (vocabulary = 256 bytes + special tokens + merges; ties in
pair count broken toward the lexicographically greatest byte pair) are those of Stanford CS336
(2025) assignment 1, whose `train_bpe(input_path, vocab_size, special_tokens) -> (vocab, merges)` is the
canonical signature here. `bpe_train` is the readable trainer (recount every pair before each merge);
`bpe_train_fast` returns the same with incremental counts.

Vocabulary layout of `bpe_train`: ids 0-255 are the single bytes, then the special tokens in the order
given, then one id per merge in merge order. Training stops early, with a smaller vocabulary, when no
pre-token has two tokens left to merge.
"""

from __future__ import annotations

import heapq
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from .._typing import typechecked
from .corpus_argument import check_corpus_argument
from .pretokenize import Splitter, valid_unicode

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]
Token = TypeVar("Token", bytes, int)

#: characters read per block when training from a file: the file is streamed, never held whole.
FILE_BLOCK_CHARS = 1 << 20


def _chunks(text_or_path: str | os.PathLike | Iterable[str], block: int = FILE_BLOCK_CHARS) -> Iterable[str]:
    """A `str` is the text itself; an `os.PathLike` is a UTF-8 file, read in blocks; anything else is an
    iterable of text chunks whose concatenation is the corpus."""
    check_corpus_argument(text_or_path, "bpe_train")
    if isinstance(text_or_path, str):
        return (text_or_path,)
    if isinstance(text_or_path, os.PathLike):
        return _read_blocks(Path(text_or_path), block)
    return text_or_path


def _read_blocks(path: Path, block: int) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        while chunk := f.read(block):
            yield chunk


def pretoken_counts(text_or_path, special_tokens: Sequence[str] = (), block: int = FILE_BLOCK_CHARS) -> Counter[bytes]:
    """How often each pre-token (as UTF-8 bytes) occurs; special tokens split the text and are not counted."""
    counts: Counter[str] = Counter()
    for pieces, _special in Splitter(special_tokens).split_stream(_chunks(text_or_path, block)):
        counts.update(pieces)
    return Counter({piece.encode("utf-8"): n for piece, n in counts.items()})


def _initial_vocab(special_tokens: Sequence[str]) -> Vocab:
    vocab = {i: bytes([i]) for i in range(256)}
    for token in dict.fromkeys(special_tokens):
        vocab[len(vocab)] = token.encode("utf-8")
    return vocab


def _check_size(vocab_size: int, special_tokens: Sequence[str]) -> int:
    base = 256 + len(dict.fromkeys(special_tokens))
    if vocab_size < base:
        raise ValueError(f"vocab_size {vocab_size} < 256 bytes + {base - 256} special tokens")
    return vocab_size - base


@typechecked
def bpe_train(
    text_or_path: str | os.PathLike | Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
) -> tuple[Vocab, Merges]:
    """Train byte-level BPE the textbook way (Sennrich et al.'s Algorithm 1, minbpe's `train`): before each
    merge, count every adjacent pair inside the pre-tokens and merge the most frequent one.

    Ties in count go to the lexicographically greatest pair `(bytes_a, bytes_b)`. Each merge costs a pass over
    the distinct pre-tokens; `bpe_train_fast` returns the same result with incremental counts
    (tests/test_tokenizers_reference.py shows them equal)."""
    n_merges = _check_size(vocab_size, special_tokens)
    # ids 0-255 are the single bytes, then the special tokens in the order given
    vocab = _initial_vocab(special_tokens)
    # the distinct pre-tokens, each a tuple of single bytes, with how often it occurs (special tokens split the
    # text and are never counted, so never merged)
    words = byte_words(pretoken_counts(text_or_path, special_tokens))
    merges: Merges = []
    while len(merges) < n_merges:
        # count the adjacent pairs inside every pre-token, weighted by how often the pre-token occurs
        pairs = count_pairs(words)
        if not pairs:  # every pre-token is one token: nothing left to merge, the vocabulary stays smaller
            break
        # the most frequent pair; among ties, the lexicographically greatest
        best = most_frequent(pairs)
        # it becomes a token, with the next id
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        # and replaces the pair wherever it occurs
        words = merge_words(words, best)
    return vocab, merges


def byte_words(counts: Counter[bytes]) -> dict[tuple[bytes, ...], int]:
    """Each pre-token as the tuple of its single bytes, before any merge."""
    return {tuple(bytes([b]) for b in word): n for word, n in counts.items()}


def count_pairs(words: dict[tuple[bytes, ...], int]) -> Counter[tuple[bytes, bytes]]:
    """How often each adjacent pair of tokens occurs inside the words, each word weighted by its count."""
    pairs: Counter[tuple[bytes, bytes]] = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += n
    return pairs


def most_frequent(pairs: Counter[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The pair of highest count; ties go to the lexicographically greatest pair (CS336's rule)."""
    return max(pairs, key=lambda pair: (pairs[pair], pair))


def merge_words(words: dict[tuple[bytes, ...], int], pair: tuple[bytes, bytes]) -> dict[tuple[bytes, ...], int]:
    """Every word with `pair` merged into one token."""
    return {tuple(merge_pair(word, pair, pair[0] + pair[1])): n for word, n in words.items()}


def merge_pair(word: Sequence[Token], pair: tuple[Token, Token], new: Token) -> list[Token]:
    """The word with every non-overlapping occurrence of `pair`, left to right, replaced by `new`. Tokens are
    bytes in `bpe_train`, ids in `bpe_train_fast` and `Tokenizer`."""
    a, b = pair
    out, i, n = [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


# --- the same training, fast: incremental pair counts ---------------------------------------------------------


@typechecked
def bpe_train_fast(
    text_or_path: str | os.PathLike | Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
) -> tuple[Vocab, Merges]:
    """`bpe_train`'s result, with pair counts updated incrementally rather than recounted per merge: a merge
    touches only the distinct pre-tokens that contain the merged pair, and a max-heap with lazy invalidation
    finds the next pair (stale entries are re-pushed with their current count). What the spec and the
    benchmarks run where speed matters."""
    return train_from_counts(pretoken_counts(text_or_path, special_tokens), vocab_size, special_tokens)


def _descending(token: bytes) -> tuple[int, ...]:
    """A key that sorts byte strings in reverse lexicographic order (256 ends a string: prefixes sort last)."""
    return tuple(255 - b for b in token) + (256,)


def train_from_counts(counts: Counter[bytes], vocab_size: int,
                      special_tokens: Sequence[str] = ()) -> tuple[Vocab, Merges]:
    """`bpe_train_fast` on pre-token counts already made (e.g. merged from chunks counted in parallel)."""
    n_merges = _check_size(vocab_size, special_tokens)
    vocab = _initial_vocab(special_tokens)
    words = [list(w) for w in counts]  # token ids; ids 0-255 are bytes
    freqs = list(counts.values())
    key = {i: _descending(bytes([i])) for i in range(256)}  # heap order of a pair: key[a] + key[b]

    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> the words that (may) hold it
    for wi, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            where[pair].add(wi)
    heap = [(-count, key[a] + key[b], a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)

    merges: Merges = []
    while len(merges) < n_merges and heap:
        neg, k, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count != -neg:  # stale: the pair lost occurrences since this entry was pushed
            if count > 0:
                heapq.heappush(heap, (-count, k, a, b))
            continue
        new = len(vocab)
        vocab[new] = vocab[a] + vocab[b]
        key[new] = _descending(vocab[new])
        merges.append((vocab[a], vocab[b]))
        created: set[tuple[int, int]] = set()
        for wi in where.pop((a, b)):
            word, freq = words[wi], freqs[wi]
            merged = merge_pair(word, (a, b), new)
            if len(merged) == len(word):
                continue  # the index was stale: an earlier merge removed the pair from this word
            for pair in zip(word, word[1:]):
                pair_counts[pair] -= freq
            for pair in zip(merged, merged[1:]):
                pair_counts[pair] += freq
                if new in pair:
                    where[pair].add(wi)
                    created.add(pair)
            words[wi] = merged
        del pair_counts[(a, b)]
        for pair in created:  # pairs with the new token are new: the only counts that ever grow
            heapq.heappush(heap, (-pair_counts[pair], key[pair[0]] + key[pair[1]], *pair))
    return vocab, merges


class Tokenizer:
    """A byte-level BPE tokenizer from a vocabulary, ranked merges and special tokens.

    `encode` splits at special tokens (leftmost-longest; each becomes its one id), pre-tokenizes the rest with
    the GPT-2 pattern and applies merges in rank order inside each pre-token, with a cache of encoded
    pre-tokens. `decode` concatenates the tokens' bytes and decodes UTF-8 with U+FFFD for invalid bytes.
    Special tokens missing from `vocab` get new ids after the largest one.
    """

    #: pre-tokens cached by `encode`; the cache is cleared when it grows past this (bounded memory on streams).
    CACHE_SIZE = 1 << 17

    def __init__(self, vocab: Vocab, merges: Merges, special_tokens: Sequence[str] | None = None):
        self.vocab = dict(vocab)
        self.merges = list(merges)
        self.special_tokens = list(dict.fromkeys(special_tokens or ()))
        ids = {token: i for i, token in sorted(self.vocab.items(), reverse=True)}  # lowest id wins a duplicate
        for token in self.special_tokens:
            if token.encode("utf-8") not in ids:
                new = max(self.vocab, default=-1) + 1
                self.vocab[new] = token.encode("utf-8")
                ids[token.encode("utf-8")] = new
        self.special_ids = {token: ids[token.encode("utf-8")] for token in self.special_tokens}
        missing = [bytes([b]) for b in range(256) if bytes([b]) not in ids]
        if missing:
            raise ValueError(f"byte-level BPE needs all 256 single bytes in the vocabulary; missing {missing[:4]}...")
        self.byte_ids = [ids[bytes([b])] for b in range(256)]
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (left, right) in enumerate(self.merges):
            if left not in ids or right not in ids or left + right not in ids:
                raise ValueError(f"merge #{rank} {(left, right)!r}: its parts or its result are not in the vocabulary")
            self.ranks.setdefault((ids[left], ids[right]), (rank, ids[left + right]))
        self.splitter = Splitter(self.special_tokens)
        self.cache: dict[str, list[int]] = {}

    def _bpe(self, piece: str) -> list[int]:
        tokens = [self.byte_ids[b] for b in piece.encode("utf-8")]
        ranks = self.ranks
        while len(tokens) > 1:
            best = min(zip(tokens, tokens[1:]), key=lambda p: ranks.get(p, (1 << 62,))[0])
            if best not in ranks:
                break
            tokens = merge_pair(tokens, best, ranks[best][1])
        return tokens

    def _encode_pieces(self, pieces: list[str], out: list[int]) -> None:
        cache = self.cache
        if len(cache) > self.CACHE_SIZE:
            cache.clear()
        for piece in pieces:
            ids = cache.get(piece)
            if ids is None:
                ids = cache[piece] = self._bpe(piece)
            out.extend(ids)

    def _encode_batches(self, batches) -> Iterator[list[int]]:
        for pieces, special in batches:
            out: list[int] = []
            self._encode_pieces(pieces, out)
            if special is not None:
                out.append(self.special_ids[special])
            yield out

    def encode(self, text: str) -> list[int]:
        return [i for ids in self._encode_batches(self.splitter.split(valid_unicode(text))) for i in ids]

    def encode_iterable(self, chunks: Iterable[str]) -> Iterator[int]:
        """Ids of `"".join(chunks)` (e.g. the lines of an open file), holding only a short tail in memory."""
        for ids in self._encode_batches(self.splitter.split_stream(chunks)):
            yield from ids

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    # --- save and load: GPT-2's file format (vocab.json + merges.txt), plus the special tokens ------------

    def save(self, directory: str | os.PathLike) -> None:
        """Write vocab.json and merges.txt (GPT-2's byte-to-unicode format) and special_tokens.json."""
        from .gpt2 import write_gpt2_files

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_gpt2_files(self.vocab, self.merges, directory / "vocab.json", directory / "merges.txt",
                         self.special_tokens)
        (directory / "special_tokens.json").write_text(json.dumps(self.special_tokens, ensure_ascii=False))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        from .gpt2 import from_gpt2_files

        directory = Path(directory)
        specials = json.loads((directory / "special_tokens.json").read_text())
        return from_gpt2_files(directory / "vocab.json", directory / "merges.txt", specials)
