"""WordPiece (BERT): likelihood-score training and greedy longest-match-first encoding.

Sources: Schuster & Nakajima 2012, "Japanese and Korean Voice Search" (WordPiece: add the unit that most
increases the training data's likelihood); Wu et al. 2016 (GNMT) sec. 4.1; the score
freq(ab) / (freq(a) * freq(b)) and the "##" continuation marker are those of the Hugging Face course,
chapter 6.6 "WordPiece tokenization". Encoding is BERT's `WordpieceTokenizer.tokenize` (google-research/bert,
tokenization.py), which Hugging Face `tokenizers`' WordPiece model reproduces: per word, the longest
vocabulary prefix, then "##"-prefixed longest continuations; a word that cannot be covered, or longer than
`max_input_chars_per_word` characters, is the single unknown token.

Pre-tokenization is Hugging Face's BertPreTokenizer: split on Unicode White_Space, then every punctuation
character (ASCII punctuation or a Unicode P* category) is a word of its own. No lower-casing or accent
stripping (a cased model); normalization, where wanted, is the caller's.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path
from collections.abc import Sequence

from .._typing import typechecked
from .corpus_argument import check_corpus_argument

PREFIX = "##"
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: Unicode White_Space (what Rust's char::is_whitespace tests, as BertPreTokenizer does); str.isspace() differs
WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                        "\u200a\u2028\u2029\u202f\u205f\u3000")


def is_punctuation(ch: str) -> bool:
    ascii_punctuation = ch.isascii() and not ch.isalnum() and ch.isprintable() and ch != " "
    return ascii_punctuation or unicodedata.category(ch).startswith("P")


def bert_pretokenize(text: str) -> list[str]:
    """Split on white space, then isolate each punctuation character."""
    words, current = [], []
    for ch in text:
        if ch in WHITE_SPACE or is_punctuation(ch):
            if current:
                words.append("".join(current))
                current = []
            if ch not in WHITE_SPACE:
                words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


def _read_text(text_or_path: str | os.PathLike) -> str:
    check_corpus_argument(text_or_path, "wordpiece_train")
    return Path(text_or_path).read_text(encoding="utf-8") if isinstance(text_or_path, os.PathLike) else text_or_path


@typechecked
def wordpiece_train(text_or_path: str | os.PathLike, vocab_size: int,
                    special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS) -> list[str]:
    """The vocabulary in id order: special tokens, the sorted alphabet (word-initial characters and "##"
    continuations), then one token per merge. Each merge joins the adjacent pair with the highest
    freq(ab) / (freq(a) freq(b)), compared exactly as fractions; ties go to the lexicographically greatest
    pair (a, b). A merge whose result is already in the vocabulary adds nothing; training stops at
    `vocab_size` tokens or when no word has two units left."""
    counts = Counter(bert_pretokenize(_read_text(text_or_path)))
    words = [[w[0]] + [PREFIX + c for c in w[1:]] for w in counts]
    freqs = list(counts.values())
    vocab = list(dict.fromkeys(special_tokens))
    vocab += sorted({unit for w in words for unit in w} - set(vocab))
    known = set(vocab)
    if len(vocab) > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} < special tokens + alphabet ({len(vocab)})")

    unit_freq: Counter[str] = Counter()
    pair_freq: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for unit in w:
            unit_freq[unit] += f
        for pair in zip(w, w[1:]):
            pair_freq[pair] += f
            where[pair].add(wi)

    while len(vocab) < vocab_size and pair_freq:
        a, b = max(pair_freq, key=lambda p: (Fraction(pair_freq[p], unit_freq[p[0]] * unit_freq[p[1]]), p))
        new = a + b[len(PREFIX):] if b.startswith(PREFIX) else a + b
        for wi in where.pop((a, b)):
            w, f = words[wi], freqs[wi]
            merged = _merge(w, a, b, new)
            if len(merged) == len(w):
                continue
            for pair in zip(w, w[1:]):
                pair_freq[pair] -= f
            for unit in w:
                unit_freq[unit] -= f
            for pair in zip(merged, merged[1:]):
                pair_freq[pair] += f
                where[pair].add(wi)
            for unit in merged:
                unit_freq[unit] += f
            words[wi] = merged
        pair_freq = +pair_freq  # drop pairs that no longer occur
        if new not in known:
            vocab.append(new)
            known.add(new)
    return vocab


def _merge(w: list[str], a: str, b: str, new: str) -> list[str]:
    out, i = [], 0
    while i < len(w):
        if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(w[i])
            i += 1
    return out


class WordPiece:
    """Greedy longest-match-first WordPiece over BERT pre-tokens; `decode` joins with spaces and glues "##"
    continuations to the token before them (Hugging Face's WordPiece decoder with cleanup=False)."""

    def __init__(self, vocab: dict[str, int] | Sequence[str], unk_token: str = "[UNK]",
                 max_input_chars_per_word: int = 100):
        self.vocab = dict(vocab) if isinstance(vocab, dict) else {t: i for i, t in enumerate(vocab)}
        if unk_token not in self.vocab:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary")
        self.unk_token, self.unk_id = unk_token, self.vocab[unk_token]
        self.max_input_chars_per_word = max_input_chars_per_word
        self.tokens = {i: t for t, i in self.vocab.items()}

    def encode_word(self, word: str) -> list[str]:
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = (PREFIX if start else "") + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def encode(self, text: str) -> list[int]:
        return [self.vocab[p] for word in bert_pretokenize(text) for p in self.encode_word(word)]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            token = self.tokens[i]
            if out and token.startswith(PREFIX):
                out.append(token[len(PREFIX):])
            else:
                out.append((" " if out else "") + token)
        return "".join(out)

    def save(self, path: str | os.PathLike) -> None:
        """BERT's vocab.txt: one token per line, the line number is the id."""
        ordered = [self.tokens[i] for i in sorted(self.tokens)]
        if sorted(self.tokens) != list(range(len(ordered))):
            raise ValueError("vocab.txt needs ids 0..n-1")
        Path(path).write_text("\n".join(ordered) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike, unk_token: str = "[UNK]",
             max_input_chars_per_word: int = 100) -> "WordPiece":
        tokens = Path(path).read_text(encoding="utf-8").split("\n")[:-1]
        return cls(tokens, unk_token, max_input_chars_per_word)
