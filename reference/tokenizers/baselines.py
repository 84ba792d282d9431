"""Byte-, character- and word-level tokenizers: the baselines subword tokenization is compared against.

Byte-level: 256 ids, every string round-trips, about 1 byte per token (the longest sequences). Character-level:
one id per character seen in training, unknown characters become `<unk>`. Word-level: one id per word seen
(optionally only the `max_size` most frequent), everything else `<unk>`; whitespace is not kept, so decode
joins words with single spaces. (CS336 2025, lecture 1; Hugging Face "Summary of the tokenizers".)
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from collections.abc import Sequence

import regex

UNK = "<unk>"
WORD = regex.compile(r"\w+|[^\w\s]")


class ByteTokenizer:
    """UTF-8 bytes as ids (lone surrogates become U+FFFD, as in the byte-level BPE)."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        from .pretokenize import valid_unicode

        return list(valid_unicode(text).encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class _VocabTokenizer:
    """A fixed list of tokens; id 0 is `<unk>`. Subclasses say how text is split and joined."""

    joiner = ""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = [UNK] + [t for t in dict.fromkeys(tokens) if t != UNK]
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @staticmethod
    def split(text: str) -> list[str]:
        raise NotImplementedError

    @classmethod
    def train(cls, text: str, max_size: int | None = None):
        """The `max_size - 1` most frequent units (ties: first seen), plus `<unk>`."""
        counts = Counter(cls.split(text))
        ranked = sorted(counts, key=lambda t: -counts[t])  # stable: ties keep first-seen order
        return cls(ranked if max_size is None else ranked[: max_size - 1])

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(t, 0) for t in self.split(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.joiner.join(self.tokens[i] for i in ids)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.tokens[1:], ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike):
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))


class CharTokenizer(_VocabTokenizer):
    """One token per character (code point); decode(encode(s)) == s when every character was seen."""

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)


class WordTokenizer(_VocabTokenizer):
    """One token per word (`\\w+`) or punctuation character; whitespace is dropped."""

    joiner = " "

    @staticmethod
    def split(text: str) -> list[str]:
        return WORD.findall(text)
