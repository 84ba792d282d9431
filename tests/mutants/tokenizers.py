"""Broken tokenizers: each reproduces a classic bug, and the tokenizer invariants must catch it."""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import regex

from lmspec.reference.tokenizers import bpe, unigram, wordpiece
from lmspec.reference.tokenizers.gpt2 import bytes_to_unicode, read_gpt2_files
from lmspec.reference.tokenizers.pretokenize import Splitter

_CALLS = itertools.count()  # state shared between calls: the nondeterminism bugs (each call differs from the last)


# --- bpe_train -------------------------------------------------------------------------------------------------


def _counts(text_or_path, special_tokens, weighted=True, pretokenize=True):
    text = Path(text_or_path).read_text(encoding="utf-8") if isinstance(text_or_path, Path) else text_or_path
    if pretokenize:
        counts = bpe.pretoken_counts(text, special_tokens)
    else:  # only split at special tokens: words span spaces and punctuation
        segments = regex.split("|".join(map(regex.escape, special_tokens)), text) if special_tokens else [text]
        counts = Counter(s.encode() for s in segments if s)
    return {w: (n if weighted else 1) for w, n in bpe.byte_words(counts).items()}


def _naive(text_or_path, vocab_size, special_tokens, choose, weighted=True, pretokenize=True, update=True):
    """The reference's readable trainer (`bpe.bpe_train`) with a step changed."""
    vocab = bpe._initial_vocab(special_tokens)
    words = _counts(text_or_path, special_tokens, weighted, pretokenize)
    merges = []
    while len(vocab) < vocab_size:
        pairs = bpe.count_pairs(words)
        if not pairs:
            break
        best = choose(pairs)
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        if update:
            words = bpe.merge_words(words, best)
    return vocab, merges


def train_missing_tie_break(text_or_path, vocab_size, special_tokens):
    """Ties go to the lexicographically smallest pair."""
    return _naive(text_or_path, vocab_size, special_tokens, lambda c: min(c, key=lambda p: (-c[p], p)))


def train_unweighted_counts(text_or_path, vocab_size, special_tokens):
    """Counts each distinct pre-token once, whatever its frequency."""
    return _naive(text_or_path, vocab_size, special_tokens, bpe.most_frequent, weighted=False)


def train_splits_special_tokens(text_or_path, vocab_size, special_tokens):
    """Pre-tokenizes special tokens as ordinary text, so their insides are counted and merged."""
    vocab, merges = _naive(text_or_path, vocab_size - len(special_tokens), [], bpe.most_frequent)
    for token in special_tokens:
        vocab[len(vocab)] = token.encode()
    return vocab, merges


def train_no_pretokenization(text_or_path, vocab_size, special_tokens):
    """Counts pairs across spaces and punctuation (no GPT-2 pre-tokenization)."""
    return _naive(text_or_path, vocab_size, special_tokens, bpe.most_frequent, pretokenize=False)


def train_stale_counts(text_or_path, vocab_size, special_tokens):
    """Counts pairs once, then merges them in that order, never recounting after a merge."""
    vocab = bpe._initial_vocab(special_tokens)
    pairs = bpe.count_pairs(_counts(text_or_path, special_tokens))
    merges = sorted(pairs, key=lambda p: (pairs[p], p), reverse=True)[: vocab_size - len(vocab)]
    for a, b in merges:
        vocab[len(vocab)] = a + b
    return vocab, merges


def train_words_not_updated(text_or_path, vocab_size, special_tokens):
    """Forgets to rewrite the words after a merge: the same pair wins again and again."""
    return _naive(text_or_path, vocab_size, special_tokens, bpe.most_frequent, update=False)


def train_size_ignores_specials(text_or_path, vocab_size, special_tokens):
    """Makes vocab_size - 256 merges, forgetting that special tokens take vocabulary slots."""
    return bpe.bpe_train_fast(text_or_path, vocab_size + len(special_tokens), special_tokens)


def train_specials_not_in_vocab(text_or_path, vocab_size, special_tokens):
    vocab, merges = bpe.bpe_train_fast(text_or_path, vocab_size, special_tokens)
    specials = {t.encode() for t in special_tokens}
    kept = [t for t in vocab.values() if t not in specials]
    return dict(enumerate(kept)), merges


def train_merges_reversed(text_or_path, vocab_size, special_tokens):
    """Returns the merges last-learned first (built by prepending)."""
    vocab, merges = bpe.bpe_train_fast(text_or_path, vocab_size, special_tokens)
    return vocab, merges[::-1]


def train_random_tie_break(text_or_path, vocab_size, special_tokens):
    """Breaks ties by state carried over from the previous call (greatest pair, then smallest, ...)."""
    flip = next(_CALLS) % 2

    def choose(c):
        top = max(c.values())
        tied = sorted(p for p in c if c[p] == top)
        return tied[-1] if flip else tied[0]

    return _naive(text_or_path, vocab_size, special_tokens, choose)


def train_file_blocks_split_pretokens(text_or_path, vocab_size, special_tokens):
    """Reads a file in 64-character blocks and pre-tokenizes each block on its own."""
    if not isinstance(text_or_path, Path):
        return bpe.bpe_train_fast(text_or_path, vocab_size, special_tokens)
    text = text_or_path.read_text(encoding="utf-8")
    counts = Counter()
    for i in range(0, len(text), 64):
        counts.update(bpe.pretoken_counts(text[i:i + 64], special_tokens))
    return bpe.train_from_counts(counts, vocab_size, special_tokens)


# --- bpe_tokenizer and gpt2_tokenizer ----------------------------------------------------------------------------


class MergesByFrequency(bpe.Tokenizer):
    """Orders merges by frequency only: repeatedly applies the known merge whose pair is most frequent in the
    text being encoded (ties to the lower rank), instead of the lowest-ranked merge in each pre-token."""

    def encode(self, text):
        out = []
        for pieces, special in self.splitter.split(text):
            words = [[self.byte_ids[b] for b in piece.encode()] for piece in pieces]
            while True:
                counts = Counter(p for w in words for p in zip(w, w[1:]) if p in self.ranks)
                if not counts:
                    break
                best = max(counts, key=lambda p: (counts[p], -self.ranks[p][0]))
                words = [bpe.merge_pair(w, best, self.ranks[best][1]) for w in words]
            out += [i for w in words for i in w]
            if special is not None:
                out.append(self.special_ids[special])
        return out


class MergesLeftmostFirst(bpe.Tokenizer):
    """Applies the leftmost mergeable pair first instead of the lowest-ranked one."""

    def _bpe(self, piece):
        tokens = [self.byte_ids[b] for b in piece.encode("utf-8")]
        while True:
            i = next((k for k, p in enumerate(zip(tokens, tokens[1:])) if p in self.ranks), None)
            if i is None:
                return tokens
            tokens[i:i + 2] = [self.ranks[(tokens[i], tokens[i + 1])][1]]


class SpecialTokensSplit(bpe.Tokenizer):
    """Encodes special tokens as ordinary text."""

    def __init__(self, vocab, merges, special_tokens=None):
        super().__init__(vocab, merges, special_tokens)
        self.splitter = Splitter(())


class SpecialTokensFirstListed(bpe.Tokenizer):
    """Matches special tokens in the order they were given, not longest first."""

    def __init__(self, vocab, merges, special_tokens=None):
        super().__init__(vocab, merges, special_tokens)
        self.splitter.special_regex = regex.compile("|".join(map(regex.escape, self.special_tokens)))


class SurrogatesRaise(bpe.Tokenizer):
    def encode(self, text):
        text.encode("utf-8")
        return super().encode(text)


class DecodePerToken(bpe.Tokenizer):
    """Decodes each token's bytes on its own, breaking characters split across tokens."""

    def decode(self, ids):
        return "".join(self.vocab[i].decode("utf-8", errors="replace") for i in ids)


class AddPrefixSpace(bpe.Tokenizer):
    """Prepends a space before encoding (and strips it after decoding), as add_prefix_space=True does."""

    def encode(self, text):
        return super().encode(text if text.startswith(" ") else " " + text)

    def decode(self, ids):
        text = super().decode(ids)
        return text[1:] if text.startswith(" ") else text


class CacheAliasing(bpe.Tokenizer):
    """Returns the cached list of the first pre-token and extends it in place, corrupting the cache."""

    def encode(self, text):
        ids = None
        for piece in [x for ps, special in self.splitter.split(text) for x in ps + ([special] if special else [])]:
            if piece in self.special_ids:
                part = [self.special_ids[piece]]
            else:
                part = self.cache.get(piece) or self.cache.setdefault(piece, self._bpe(piece))
            if ids is None:
                ids = part
            else:
                ids.extend(self._bpe(piece) if part is ids else part)  # grows by the text each call, not doubling
        return ids or []


class SpecialIdsAppended(bpe.Tokenizer):
    """Gives special tokens fresh ids after the vocabulary even when they are in it."""

    def __init__(self, vocab, merges, special_tokens=None):
        super().__init__(vocab, merges, special_tokens)
        top = max(self.vocab) + 1
        self.special_ids = {s: top + k for k, s in enumerate(self.special_tokens)}
        for s, i in self.special_ids.items():
            self.vocab[i] = s.encode()


class StreamPerChunk(bpe.Tokenizer):
    """encode_iterable encodes each chunk on its own."""

    def encode_iterable(self, chunks):
        for chunk in chunks:
            yield from self.encode(chunk)


def _gpt2(cls):
    @functools.lru_cache(maxsize=2)  # like the reference: 50,000 merges are read and indexed once
    def cached(vocab_path, merges_path, special_tokens):
        vocab, merges = read_gpt2_files(vocab_path, merges_path, special_tokens)
        return cls(vocab, merges, special_tokens)

    def load(vocab_path, merges_path, special_tokens):
        return cached(str(vocab_path), str(merges_path), tuple(special_tokens))

    load.__doc__ = f"GPT-2 files loaded into {cls.__name__}: {cls.__doc__}"
    return load


gpt2_special_tokens_split = _gpt2(SpecialTokensSplit)
gpt2_surrogates_raise = _gpt2(SurrogatesRaise)
gpt2_decode_per_token = _gpt2(DecodePerToken)
gpt2_add_prefix_space = _gpt2(AddPrefixSpace)
gpt2_cache_aliasing = _gpt2(CacheAliasing)
gpt2_special_ids_appended = _gpt2(SpecialIdsAppended)


@functools.lru_cache(maxsize=2)
def _wrong_table_tokenizer(vocab_path, merges_path, special_tokens):
    table = dict(bytes_to_unicode())
    moved = [b for b in range(256) if table[b] != chr(b)]
    for b, ch in zip(moved, sorted((table[b] for b in moved), reverse=True)):
        table[b] = ch
    vocab, merges = read_gpt2_files(vocab_path, merges_path, special_tokens, table=table)
    return bpe.Tokenizer(vocab, merges, special_tokens)


def gpt2_wrong_byte_table(vocab_path, merges_path, special_tokens):
    """Maps the 68 unprintable bytes to chr(256 + n) in decreasing instead of increasing byte order."""
    return _wrong_table_tokenizer(str(vocab_path), str(merges_path), tuple(special_tokens))


# --- exact for short words and small vocabularies, wrong past a buffer or a narrow id type -------------------


class IdsUint16(bpe.Tokenizer):
    """Keeps ids in uint16 arrays (encode's output and decode's input): ids above 65535 wrap (tokenmonster#23,
    a 65536-token vocabulary's ids overflowing uint16; huggingface/datatrove#118, ids stored as uint16)."""

    def encode(self, text):
        return np.asarray(super().encode(text), dtype=np.int64).astype(np.uint16).tolist()

    def decode(self, ids):
        return super().decode(np.asarray(list(ids), dtype=np.int64).astype(np.uint16).tolist())


class LongWordTruncated(bpe.Tokenizer):
    """Encodes a pre-token into a fixed 1024-byte buffer: the bytes of a longer word past it are dropped."""

    def _bpe(self, piece):
        raw = piece.encode("utf-8")
        if len(raw) <= 1024:
            return super()._bpe(piece)
        return super()._bpe(raw[:1024].decode("utf-8", errors="ignore"))


class LongWordChunked(bpe.Tokenizer):
    """Splits a pre-token longer than 1024 bytes into 1024-byte chunks encoded apart: the text round-trips, but no
    merge crosses a chunk boundary."""

    def _bpe(self, piece):
        raw = piece.encode("utf-8")
        if len(raw) <= 1024:
            return super()._bpe(piece)
        ids = []
        for k in range(0, len(raw), 1024):
            tokens = [self.byte_ids[b] for b in raw[k:k + 1024]]
            ids += self._merge_all(tokens)
        return ids

    def _merge_all(self, tokens):
        while len(tokens) > 1:
            best = min(zip(tokens, tokens[1:]), key=lambda p: self.ranks.get(p, (1 << 62,))[0])
            if best not in self.ranks:
                break
            tokens = bpe.merge_pair(tokens, best, self.ranks[best][1])
        return tokens


gpt2_long_word_truncated = _gpt2(LongWordTruncated)


# --- wordpiece ---------------------------------------------------------------------------------------------------


def _wordpiece_train(text_or_path, vocab_size, special_tokens, score, continuation_alphabet=True, choose=max):
    text = wordpiece._read_text(text_or_path)
    counts = Counter(wordpiece.bert_pretokenize(text))
    words = {tuple([w[0]] + ["##" + c for c in w[1:]]): n for w, n in counts.items()}
    vocab = list(dict.fromkeys(special_tokens))
    units = {u for w in words for u in w if continuation_alphabet or not u.startswith("##")}
    vocab += sorted(units - set(vocab))
    while len(vocab) < vocab_size:
        unit, pair = Counter(), Counter()
        for w, n in words.items():
            for u in w:
                unit[u] += n
            for q in zip(w, w[1:]):
                pair[q] += n
        if not pair:
            break
        a, b = choose(pair, key=lambda q: (score(pair[q], unit[q[0]], unit[q[1]]), q))
        new = a + b[2:] if b.startswith("##") else a + b
        words = {tuple(wordpiece._merge(list(w), a, b, new)): n for w, n in words.items()}
        if new not in vocab:
            vocab.append(new)
    return vocab


def _score(fab, fa, fb):
    from fractions import Fraction

    return Fraction(fab, fa * fb)


def wordpiece_frequency_only(text_or_path, vocab_size, special_tokens):
    """Merges the most frequent pair, as BPE does, ignoring the parts' frequencies."""
    return _wordpiece_train(text_or_path, vocab_size, special_tokens, lambda fab, fa, fb: fab)


def wordpiece_size_ignores_specials(text_or_path, vocab_size, special_tokens):
    return _wordpiece_train(text_or_path, vocab_size + len(special_tokens), special_tokens, _score)


def wordpiece_no_continuation_alphabet(text_or_path, vocab_size, special_tokens):
    """Starts from the word-initial letters only, so '##x' units are missing from the vocabulary."""
    return _wordpiece_train(text_or_path, vocab_size, special_tokens, _score, continuation_alphabet=False)


def wordpiece_random_ties(text_or_path, vocab_size, special_tokens):
    """Breaks score ties by state carried over from the previous call."""
    flip = next(_CALLS) % 2

    def choose(pairs, key):
        best = max(key(q)[0] for q in pairs)
        tied = sorted(q for q in pairs if key(q)[0] == best)
        return tied[-1] if flip else tied[0]

    return _wordpiece_train(text_or_path, vocab_size, special_tokens, _score, choose=choose)


class WordPieceShortestMatch(wordpiece.WordPiece):
    """Takes the shortest vocabulary prefix at each step instead of the longest."""

    def encode_word(self, word):
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        out, start = [], 0
        while start < len(word):
            for end in range(start + 1, len(word) + 1):
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    out.append(piece)
                    start = end
                    break
            else:
                return [self.unk_token]
        return out


class WordPiecePartialUnk(wordpiece.WordPiece):
    """Keeps the pieces found before an uncoverable position and adds [UNK] for the rest of the word."""

    def encode_word(self, word):
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start and ("##" if start else "") + word[start:end] not in self.vocab:
                end -= 1
            if end == start:
                return out + [self.unk_token]
            out.append(("##" if start else "") + word[start:end])
            start = end
        return out


class WordPieceNoMaxChars(wordpiece.WordPiece):
    def encode_word(self, word):
        saved, self.max_input_chars_per_word = self.max_input_chars_per_word, 10**9
        try:
            return super().encode_word(word)
        finally:
            self.max_input_chars_per_word = saved


class WordPieceDecodeKeepsHashes(wordpiece.WordPiece):
    def decode(self, ids):
        return " ".join(self.tokens[i] for i in ids)


# --- unigram -----------------------------------------------------------------------------------------------------


def unigram_keeps_no_characters(text_or_path, vocab_size, special_tokens):
    """Prunes single characters like any other piece: none is left (the other scores renormalised)."""
    pieces = [(p, s) for p, s in unigram.unigram_train(text_or_path, vocab_size, special_tokens)
              if p in special_tokens or len(p) > 1]
    total = unigram._logsumexp([s for p, s in pieces if p not in special_tokens] or [0.0])
    return [(p, s if p in special_tokens else s - total) for p, s in pieces]


def unigram_size_ignores_specials(text_or_path, vocab_size, special_tokens):
    return unigram.unigram_train(text_or_path, vocab_size + len(special_tokens), special_tokens)


def unigram_unnormalized_scores(text_or_path, vocab_size, special_tokens):
    """Returns scores shifted by the log of the corpus size (log counts, not log-probabilities)."""
    pieces = unigram.unigram_train(text_or_path, vocab_size, special_tokens)
    return [(p, s if p in special_tokens else s + 3.0) for p, s in pieces]


def unigram_prunes_most_useful(text_or_path, vocab_size, special_tokens):
    """Prunes the pieces whose removal increases the loss most."""
    original = unigram._prune

    def inverted(scores, words, chars, keep):
        pieces = sorted(scores)
        model = unigram.Unigram([("", 0.0)] + [(p, scores[p]) for p in pieces])
        used = Counter()
        for w, n in words.items():
            for pid in model.viterbi(w):
                used[model.pieces[pid][0]] += n
        delta = {p: used[p] * (scores[p] - sum(model.scores[i] for i in model.viterbi(p, exclude=k + 1)))
                 for k, p in enumerate(pieces) if p not in chars}
        ranked = sorted(delta, key=lambda p: (delta[p], p))
        return {p: scores[p] for p in chars | set(ranked[: max(0, keep - len(chars))])}

    unigram._prune = inverted
    try:
        return unigram.unigram_train(text_or_path, vocab_size, special_tokens)
    finally:
        unigram._prune = original


def unigram_scores_misaligned(text_or_path, vocab_size, special_tokens):
    """Writes the scores in the wrong order: the most probable piece gets the smallest probability."""
    pieces = unigram.unigram_train(text_or_path, vocab_size, special_tokens)
    normal = [p for p in pieces if p[0] not in special_tokens]
    scores = sorted(s for _, s in normal)
    return [p for p in pieces if p[0] in special_tokens] + [(p, s) for (p, _), s in zip(normal, scores)]


def unigram_unseeded_sampling(text_or_path, vocab_size, special_tokens):
    """Trains on a subsample of the corpus's word occurrences that changes from call to call (the sampler's
    state is not reset); every character is kept."""
    shift = next(_CALLS)
    words = unigram._words(text_or_path)
    occurrences = [w for w, n in sorted(words.items()) for _ in range(n)]
    sample = Counter(w for k, w in enumerate(occurrences) if (k + shift) % 3)
    sample.update(set("".join(words)))  # every character once, so none is lost
    return unigram.train_from_words(sample, vocab_size, special_tokens)


class UnigramGreedy(unigram.Unigram):
    """Takes the longest piece at each position (greedy), not the Viterbi path."""

    def viterbi(self, text, exclude=-1):
        ids, i = [], 0
        while i < len(text):
            for j in range(min(len(text), i + self.max_len), i, -1):
                if text[i:j] in self.ids:
                    ids.append(self.ids[text[i:j]])
                    i = j
                    break
            else:
                ids.append(self.unk_id)
                i += 1
        return ids


class UnigramSpacesNotEscaped(unigram.Unigram):
    def encode(self, text):
        return self._fuse_unknowns(self.viterbi(text))


class UnigramSamplingIgnoresAlpha(unigram.Unigram):
    def sample_encode(self, text, alpha, seed):
        return super().sample_encode(text, 1.0, seed)


class UnigramUnknownsNotFused(unigram.Unigram):
    def encode(self, text):
        return self.viterbi(text.replace(" ", unigram.SPACE))


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("bpe_train", "train_missing_tie_break", {"bpe_train.merges.tie_break", "bpe_train.reference.matches"}),
    ("bpe_train", "train_unweighted_counts", {"bpe_train.merges.highest_count", "bpe_train.reference.matches"}),
    ("bpe_train", "train_splits_special_tokens",
     {"bpe_train.merges.highest_count", "bpe_train.merges.inside_pretokens"}),
    ("bpe_train", "train_no_pretokenization", {"bpe_train.merges.highest_count", "bpe_train.merges.inside_pretokens"}),
    ("bpe_train", "train_stale_counts", {"bpe_train.compression.monotone", "bpe_train.merges.highest_count"}),
    ("bpe_train", "train_words_not_updated", {"bpe_train.merges.unique"}),
    ("bpe_train", "train_size_ignores_specials", {"bpe_train.vocab.size"}),
    ("bpe_train", "train_specials_not_in_vocab", {"bpe_train.vocab.contents"}),
    ("bpe_train", "train_merges_reversed", {"bpe_train.merges.parts_exist_before"}),
    ("bpe_train", "train_random_tie_break", {"bpe_train.deterministic"}),
    ("bpe_train", "train_file_blocks_split_pretokens", {"bpe_train.chunking.independent"}),
    ("bpe_tokenizer", "MergesByFrequency", {"bpe_tokenizer.encode.matches_reference"}),
    ("bpe_tokenizer", "MergesLeftmostFirst", {"bpe_tokenizer.encode.matches_reference"}),
    ("bpe_tokenizer", "SpecialTokensSplit", {"bpe_tokenizer.special_tokens.atomic"}),
    ("bpe_tokenizer", "SpecialTokensFirstListed", {"bpe_tokenizer.special_tokens.longest_match"}),
    ("bpe_tokenizer", "SurrogatesRaise", {"bpe_tokenizer.roundtrip.lone_surrogates"}),
    ("bpe_tokenizer", "DecodePerToken", {"bpe_tokenizer.decode.bytes", "bpe_tokenizer.roundtrip.unicode"}),
    ("bpe_tokenizer", "AddPrefixSpace", {"bpe_tokenizer.encode.concatenation"}),
    ("bpe_tokenizer", "CacheAliasing", {"bpe_tokenizer.encode.deterministic"}),
    ("bpe_tokenizer", "SpecialIdsAppended", {"bpe_tokenizer.encode.ids_in_vocab"}),
    ("bpe_tokenizer", "StreamPerChunk", {"bpe_tokenizer.stream.equals_encode"}),
    ("bpe_tokenizer", "IdsUint16", {"bpe_tokenizer.encode.matches_reference", "bpe_tokenizer.decode.bytes"}),
    ("bpe_tokenizer", "LongWordTruncated",
     {"bpe_tokenizer.roundtrip.unicode", "bpe_tokenizer.encode.matches_reference"}),
    ("bpe_tokenizer", "LongWordChunked", {"bpe_tokenizer.encode.matches_reference"}),
    ("gpt2_tokenizer", "gpt2_long_word_truncated",
     {"gpt2_tokenizer.roundtrip.unicode", "gpt2_tokenizer.encode.matches_reference"}),
    ("gpt2_tokenizer", "gpt2_wrong_byte_table",
     {"gpt2_tokenizer.corpora.match_reference", "gpt2_tokenizer.encode.matches_reference"}),
    ("gpt2_tokenizer", "gpt2_special_tokens_split", {"gpt2_tokenizer.special_tokens.atomic"}),
    ("gpt2_tokenizer", "gpt2_surrogates_raise", {"gpt2_tokenizer.roundtrip.lone_surrogates"}),
    ("gpt2_tokenizer", "gpt2_decode_per_token", {"gpt2_tokenizer.decode.bytes", "gpt2_tokenizer.roundtrip.unicode"}),
    ("gpt2_tokenizer", "gpt2_add_prefix_space", {"gpt2_tokenizer.encode.concatenation"}),
    ("gpt2_tokenizer", "gpt2_cache_aliasing", {"gpt2_tokenizer.encode.deterministic"}),
    ("gpt2_tokenizer", "gpt2_special_ids_appended", {"gpt2_tokenizer.encode.ids_in_vocab"}),
    ("wordpiece_train", "wordpiece_frequency_only",
     {"wordpiece_train.merge.max_score", "wordpiece_train.reference.matches"}),
    ("wordpiece_train", "wordpiece_size_ignores_specials", {"wordpiece_train.vocab.size"}),
    ("wordpiece_train", "wordpiece_no_continuation_alphabet", {"wordpiece_train.vocab.contents"}),
    ("wordpiece_train", "wordpiece_random_ties", {"wordpiece_train.deterministic"}),
    ("wordpiece_tokenizer", "WordPieceShortestMatch", {"wordpiece_tokenizer.encode.greedy_longest_match"}),
    ("wordpiece_tokenizer", "WordPiecePartialUnk", {"wordpiece_tokenizer.encode.unknown_word"}),
    ("wordpiece_tokenizer", "WordPieceNoMaxChars", {"wordpiece_tokenizer.encode.max_chars"}),
    ("wordpiece_tokenizer", "WordPieceDecodeKeepsHashes", {"wordpiece_tokenizer.decode.joins_words"}),
    ("unigram_train", "unigram_keeps_no_characters", {"unigram_train.vocab.keeps_characters"}),
    ("unigram_train", "unigram_size_ignores_specials", {"unigram_train.vocab.size"}),
    ("unigram_train", "unigram_unnormalized_scores", {"unigram_train.scores.log_probabilities"}),
    ("unigram_train", "unigram_prunes_most_useful", {"unigram_train.reference.matches"}),
    ("unigram_train", "unigram_scores_misaligned", {"unigram_train.loss.beats_characters"}),
    ("unigram_train", "unigram_unseeded_sampling", {"unigram_train.deterministic"}),
    ("unigram_tokenizer", "UnigramGreedy", {"unigram_tokenizer.viterbi.max_likelihood"}),
    ("unigram_tokenizer", "UnigramSpacesNotEscaped", {"unigram_tokenizer.roundtrip"}),
    ("unigram_tokenizer", "UnigramSamplingIgnoresAlpha", {"unigram_tokenizer.sampling.distribution"}),
    ("unigram_tokenizer", "UnigramUnknownsNotFused", {"unigram_tokenizer.viterbi.matches_reference"}),
]

# mutants whose bug shows as an exception on a valid input (tests/test_mutants.py expects cause "raised")
RAISES = {"SurrogatesRaise", "gpt2_surrogates_raise"}
