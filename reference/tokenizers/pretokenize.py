"""GPT-2 pre-tokenization and special-token splitting, for whole strings and for streams of chunks.

Source: GPT-2's encoder.py (openai/gpt-2, src/encoder.py) pattern
`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`, also used by Hugging Face
`tokenizers`' ByteLevel pre-tokenizer and by tiktoken's `gpt2` / `r50k_base` encodings. The pieces tile the
text: every character is a letter, a number, whitespace or "other", so `"".join(pieces) == text`.

Special tokens are matched leftmost-longest (Hugging Face's AddedVocabulary) before pre-tokenization, and are
never split or merged with their neighbours.

Lone surrogates (a Python `str` may hold them; UTF-8 cannot encode them) are made valid as tiktoken does:
the text is round-tripped through UTF-16 with `surrogatepass` and decoded with `errors="replace"`, so a
high+low surrogate pair becomes the character it encodes and any other lone surrogate becomes U+FFFD.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_REGEX = regex.compile(GPT2_PATTERN)

#: pieces held back at the end of a stream buffer: a contraction ("'" then "r" -> "'re") can change the
#: piece before the last one when more text arrives; nothing in the pattern looks further back than that.
HELD_PIECES = 2


def valid_unicode(text: str) -> str:
    """`text` unchanged if UTF-8 can encode it, else with surrogates fixed as tiktoken does (see module doc)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Splitter:
    """Splits text at special tokens (leftmost-longest), then into GPT-2 pre-tokens."""

    def __init__(self, special_tokens: Sequence[str] = (), pattern: regex.Pattern = GPT2_REGEX):
        self.special_tokens = tuple(dict.fromkeys(special_tokens))
        self.pattern = pattern
        ordered = sorted(self.special_tokens, key=len, reverse=True)  # longest first: leftmost-longest match
        self.special_regex = regex.compile("|".join(regex.escape(s) for s in ordered)) if ordered else None

    def split(self, text: str) -> Iterator[tuple[list[str], str | None]]:
        """Batches (pre-tokens of a text segment, the special token after it or None), covering `text`."""
        if self.special_regex is None:
            yield self.pattern.findall(text), None
            return
        start = 0
        for match in self.special_regex.finditer(text):
            yield self.pattern.findall(text, start, match.start()), match.group()
            start = match.end()
        yield self.pattern.findall(text, start), None

    def _hold(self, buffer: str) -> int:
        """The earliest position whose suffix is a proper prefix of a special token (len(buffer) if none)."""
        hold = len(buffer)
        for token in self.special_tokens:
            for k in range(min(len(token) - 1, len(buffer)), 0, -1):
                if len(buffer) - k >= hold:
                    break
                if buffer.endswith(token[:k]):
                    hold = len(buffer) - k
                    break
        return hold

    def split_stream(self, chunks: Iterable[str]) -> Iterator[tuple[list[str], str | None]]:
        """As `split("".join(chunks))`, holding only the unfinished tail of the text in memory.

        After each chunk, a special token that starts before any possible start of a longer one is final, and
        so is every pre-token before the last HELD_PIECES of the text after it: those are emitted and dropped."""
        buffer = ""
        for chunk in chunks:
            buffer += valid_unicode(chunk)
            hold = self._hold(buffer)
            start = 0
            if self.special_regex is not None:
                for match in self.special_regex.finditer(buffer):
                    if match.start() >= hold:
                        break
                    yield self.pattern.findall(buffer, start, match.start()), match.group()
                    start = match.end()
            if start < hold:
                pieces = self.pattern.findall(buffer, start, hold)
                keep = pieces[-HELD_PIECES:]
                if len(pieces) > len(keep):
                    yield pieces[: len(pieces) - len(keep)], None
                start = hold - sum(len(p) for p in keep)
            buffer = buffer[start:]
        if buffer:
            yield from self.split(buffer)
