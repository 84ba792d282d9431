"""Unigram language-model tokenization (SentencePiece, T5): EM training with pruning, Viterbi, sampling.

Source: Kudo 2018, "Subword Regularization: Improving Neural Network Translation Models with Multiple
Subword Candidates", sec. 3.1 (Viterbi), 3.2 (EM on a seed vocabulary; prune the pieces whose removal
increases the loss least, always keeping single characters; shrink by a factor per round) and 2.2
(sampling segmentations with probability proportional to P(x)^alpha, by forward-filtering backward-sampling,
as sentencepiece's `Lattice::Sample`). Conventions follow sentencepiece (src/unigram_model.cc,
src/unigram_model_trainer.cc): spaces are written "▁" (U+2581); a position no single-character piece covers
gets an unknown node scored min(score) - 10; consecutive unknown characters are one unknown token; on equal
path scores the node reached first (earliest start, then shortest piece) is kept.

Canonical text handling (sentencepiece with the "identity" normalizer, add_dummy_prefix=False,
remove_extra_whitespaces=False): the text is used as is, " " becomes "▁", and `decode` turns "▁" back into
" ", so decode(encode(s)) == s whenever every character of s is covered by a piece. The trainer's M-step is
the maximum-likelihood estimate (sentencepiece uses a digamma-smoothed estimate: scores differ, the
procedure is the same).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import Counter
from pathlib import Path
from collections.abc import Sequence

import regex

from .._typing import typechecked
from .corpus_argument import check_corpus_argument

SPACE = "\u2581"
UNK_PENALTY = 10.0
UNK_SURFACE = " \u2047 "  # what sentencepiece's decoder writes for an unknown token


def _logsumexp(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values)) if m > -math.inf else -math.inf


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


class Unigram:
    """A Unigram tokenizer from (piece, log-probability) pairs; `pieces[unk_id]` is the unknown token."""

    def __init__(self, pieces: Sequence[tuple[str, float]], unk_id: int = 0):
        self.pieces = [(str(p), float(s)) for p, s in pieces]
        self.unk_id = unk_id
        self.ids = {p: i for i, (p, _) in enumerate(self.pieces) if i != unk_id}
        self.scores = [s for _, s in self.pieces]
        normal = [s for i, (_, s) in enumerate(self.pieces) if i != unk_id]
        self.unk_score = (min(normal) if normal else 0.0) - UNK_PENALTY
        self.max_len = max((len(p) for p in self.ids), default=1)

    def _edges(self, text: str, exclude: int = -1) -> list[list[tuple[int, int, float]]]:
        """For each end position, the (start, id, score) of every piece ending there (unknown nodes included),
        leaving out the piece `exclude`."""
        ending: list[list[tuple[int, int, float]]] = [[] for _ in range(len(text) + 1)]
        for i in range(len(text)):
            single = False
            for j in range(i + 1, min(len(text), i + self.max_len) + 1):
                pid = self.ids.get(text[i:j])
                if pid is not None and pid != exclude:
                    ending[j].append((i, pid, self.scores[pid]))
                    single |= j == i + 1
            if not single:
                ending[i + 1].append((i, self.unk_id, self.unk_score))
        return ending

    def viterbi(self, text: str, exclude: int = -1) -> list[int]:
        """The maximum-score segmentation of already-normalized text, as piece ids (unknowns not fused)."""
        ending = self._edges(text, exclude)
        best = [0.0] + [-math.inf] * len(text)
        back: list[tuple[int, int]] = [(0, 0)] * (len(text) + 1)
        for j in range(1, len(text) + 1):
            for i, pid, score in sorted(ending[j]):  # earliest start first; strict > keeps the first on ties
                if best[i] + score > best[j]:
                    best[j], back[j] = best[i] + score, (i, pid)
        ids, j = [], len(text)
        while j > 0:
            i, pid = back[j]
            ids.append(pid)
            j = i
        return ids[::-1]

    def _fuse_unknowns(self, ids: list[int]) -> list[int]:
        return [i for k, i in enumerate(ids) if not (i == self.unk_id and k and ids[k - 1] == self.unk_id)]

    def encode(self, text: str) -> list[int]:
        return self._fuse_unknowns(self.viterbi(text.replace(" ", SPACE)))

    def sample_encode(self, text: str, alpha: float, seed: int) -> list[int]:
        """A segmentation drawn with probability proportional to exp(alpha * its score) (subword
        regularization), by forward filtering and backward sampling; deterministic given `seed`."""
        text = text.replace(" ", SPACE)
        ending = self._edges(text)
        forward = [0.0] + [-math.inf] * len(text)
        for j in range(1, len(text) + 1):
            forward[j] = _logsumexp([forward[i] + alpha * s for i, _, s in ending[j]])
        rng, ids, j = random.Random(seed), [], len(text)
        while j > 0:
            weights = [math.exp(forward[i] + alpha * s - forward[j]) for i, _, s in ending[j]]
            i, pid, _ = rng.choices(ending[j], weights=weights)[0]
            ids.append(pid)
            j = i
        return self._fuse_unknowns(ids[::-1])

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(UNK_SURFACE if i == self.unk_id else self.pieces[i][0] for i in ids).replace(SPACE, " ")

    def save(self, path: str | os.PathLike) -> None:
        """JSON: {"unk_id": ..., "pieces": [[piece, score], ...]} (Hugging Face's Unigram vocab layout)."""
        data = {"unk_id": self.unk_id, "pieces": self.pieces}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Unigram":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls([tuple(p) for p in data["pieces"]], data["unk_id"])


# --- training ---------------------------------------------------------------------------------------------

WORD = regex.compile(SPACE + "*[^" + SPACE + "]+|" + SPACE + "+")


def _words(text_or_path: str | os.PathLike) -> Counter[str]:
    check_corpus_argument(text_or_path, "unigram_train")
    text = Path(text_or_path).read_text(encoding="utf-8") if isinstance(text_or_path, os.PathLike) else text_or_path
    return Counter(WORD.findall(text.replace(" ", SPACE)))


def _seed(words: Counter[str], size: int, max_len: int) -> dict[str, float]:
    """Every character, plus the `size` most frequent longer substrings by frequency x length (Kudo 2018:
    "the union of all characters and the most frequent substrings"); log relative frequencies as scores."""
    freq: Counter[str] = Counter()
    for w, n in words.items():
        for i in range(len(w)):
            for j in range(i + 1, min(len(w), i + max_len) + 1):
                freq[w[i:j]] += n
    chars = {p for p in freq if len(p) == 1}
    longer = sorted((p for p in freq if len(p) > 1), key=lambda p: (-freq[p] * len(p), p))[:size]
    kept = chars | set(longer)
    total = sum(freq[p] for p in kept)
    return {p: math.log(freq[p] / total) for p in kept}


def _lattice(word: str, index: dict[str, int], max_len: int) -> list[list[tuple[int, int]]]:
    """For each end position j, the (start, piece index) of every piece ending at j."""
    return [[(i, index[word[i:j]]) for i in range(max(0, j - max_len), j) if word[i:j] in index]
            for j in range(1, len(word) + 1)]


def _em(scores: dict[str, float], words: Counter[str], rounds: int) -> dict[str, float]:
    """EM rounds: expected piece counts by forward-backward over each word's lattice (E), then each piece's
    log relative expected count (M, maximum likelihood)."""
    pieces = sorted(scores)
    index = {p: k for k, p in enumerate(pieces)}
    max_len = max(map(len, pieces))
    lattices = {w: _lattice(w, index, max_len) for w in words}
    for _ in range(rounds):
        logp = [scores[p] for p in pieces]
        counts = [0.0] * len(pieces)
        for w, n in words.items():
            ending = lattices[w]
            fwd = [0.0] + [-math.inf] * len(w)
            for j, edges in enumerate(ending, start=1):
                fwd[j] = _logsumexp([fwd[i] + logp[k] for i, k in edges])
            bwd = [-math.inf] * len(w) + [0.0]
            for j in range(len(w), 0, -1):
                for i, k in ending[j - 1]:
                    bwd[i] = _logaddexp(bwd[i], logp[k] + bwd[j])
            z = fwd[-1]
            for j, edges in enumerate(ending, start=1):
                for i, k in edges:
                    counts[k] += n * math.exp(fwd[i] + logp[k] + bwd[j] - z)
        total = sum(counts)
        scores = {p: math.log(max(counts[k], 1e-12) / total) for k, p in enumerate(pieces)}
    return scores


def _best(word: str, scores: dict[str, float], max_len: int, exclude: str = "") -> tuple[float, list[str]]:
    """Viterbi over `word` with the pieces in `scores` (but not `exclude`): the best score and its pieces.
    Same tie rule as `Unigram.viterbi`: earliest start first, strict improvement only."""
    best = [0.0] + [-math.inf] * len(word)
    back = [0] * (len(word) + 1)
    for j in range(1, len(word) + 1):
        for i in range(max(0, j - max_len), j):
            piece = word[i:j]
            score = scores.get(piece)
            if score is not None and piece != exclude and best[i] + score > best[j]:
                best[j], back[j] = best[i] + score, i
    pieces, j = [], len(word)
    while j > 0:
        pieces.append(word[back[j]:j])
        j = back[j]
    return best[-1], pieces[::-1]


def _prune(scores: dict[str, float], words: Counter[str], chars: set[str], keep: int) -> dict[str, float]:
    """Keep the `keep` pieces (characters always) whose removal would increase the corpus loss the most.

    Removing piece s re-segments each of its Viterbi occurrences by the best segmentation of s without s:
    loss increase = count(s) * (score(s) - score(alternative)); a piece never used costs nothing to remove."""
    max_len = max(map(len, scores))
    used: Counter[str] = Counter()
    for w, n in words.items():
        for piece in _best(w, scores, max_len)[1]:
            used[piece] += n
    delta = {p: used[p] * (s - _best(p, scores, max_len, exclude=p)[0]) for p, s in scores.items() if p not in chars}
    ranked = sorted(delta, key=lambda p: (-delta[p], p))
    kept = chars | set(ranked[: max(0, keep - len(chars))])
    return {p: scores[p] for p in kept}


@typechecked
def unigram_train(
    text_or_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: Sequence[str] = ("<unk>",),
    *,
    max_piece_length: int = 16,
    seed_size: int = 1_000_000,
    shrinking_factor: float = 0.75,
    em_rounds: int = 2,
) -> list[tuple[str, float]]:
    """Train a Unigram model: [(special, 0.0)...] then (piece, log-probability) by decreasing score.

    Start from the seed vocabulary (at most `seed_size` substrings, sentencepiece's default 1,000,000); repeat
    {EM, prune to max(target, shrinking_factor x size)} until the size is `vocab_size - len(special_tokens)`,
    with a final EM. Every character of the corpus is kept; a corpus with fewer distinct substrings (of at most
    `max_piece_length` characters, within words) than the target gives a smaller vocabulary."""
    return train_from_words(_words(text_or_path), vocab_size, special_tokens, max_piece_length=max_piece_length,
                            seed_size=seed_size, shrinking_factor=shrinking_factor, em_rounds=em_rounds)


def train_from_words(words: Counter[str], vocab_size: int, special_tokens: Sequence[str] = ("<unk>",), *,
                     max_piece_length: int = 16, seed_size: int = 1_000_000, shrinking_factor: float = 0.75,
                     em_rounds: int = 2) -> list[tuple[str, float]]:
    """`unigram_train` on word counts already made (words are "▁"-escaped, as `_words` makes them)."""
    specials = list(dict.fromkeys(special_tokens))
    target = vocab_size - len(specials)
    scores = _seed(words, seed_size, max_piece_length)
    chars = {p for p in scores if len(p) == 1}
    if len(chars) > target:
        raise ValueError(f"vocab_size {vocab_size} < special tokens + {len(chars)} characters")
    scores = _em(scores, words, em_rounds)
    while len(scores) > target:
        scores = _prune(scores, words, chars, max(target, int(len(scores) * shrinking_factor)))
        scores = _em(scores, words, em_rounds)
    total = _logsumexp(list(scores.values()))
    ranked = sorted(scores, key=lambda p: (-scores[p], p))
    return [(s, 0.0) for s in specials] + [(p, scores[p] - total) for p in ranked]
