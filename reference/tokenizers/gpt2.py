"""GPT-2's tokenizer from its released files: vocab.json (encoder.json) and merges.txt (vocab.bpe).

Source: openai/gpt-2 src/encoder.py. The files store each token's bytes as printable unicode: `bytes_to_unicode`
maps the 188 printable bytes ("!".."~", "¡".."¬", "®".."ÿ") to themselves and the other 68 bytes, in
increasing order, to chr(256), chr(257), ... (so the space byte 0x20 is "Ġ" = chr(288) and "\\n" is "Ċ").
merges.txt holds one merge per line, "left right", in rank order, after an optional "#version" header line.
vocab.json maps every token (and "<|endoftext|>", id 50256) to its id.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from collections.abc import Sequence

from .bpe import Merges, Tokenizer, Vocab

GPT2_SPECIAL_TOKENS = ("<|endoftext|>",)
VOCAB_FILE, MERGES_FILE = "gpt2_vocab.json", "gpt2_merges.txt"


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (encoder.py, `bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return dict(sorted(table.items()))


def gpt2_dir() -> Path | None:
    """Where GPT-2's files are: $LMSPEC_GPT2_DIR, else ../shared/fixtures beside this checkout; None if absent."""
    checkout = Path(__file__).resolve().parents[2]  # reference/tokenizers/gpt2.py -> the repository root
    candidates = [os.environ.get("LMSPEC_GPT2_DIR"), checkout.parent / "shared" / "fixtures"]
    for candidate in candidates:
        if candidate and (Path(candidate) / VOCAB_FILE).is_file() and (Path(candidate) / MERGES_FILE).is_file():
            return Path(candidate)
    return None


@functools.lru_cache(maxsize=8)
def _read(vocab_path: str, merges_path: str, mtimes: tuple[float, float], table: tuple[str, ...],
          specials: tuple[str, ...]) -> tuple[Vocab, Merges]:
    decoder = {ch: b for b, ch in enumerate(table)}

    def to_bytes(token: str) -> bytes:
        return bytes(decoder[ch] for ch in token)

    with open(vocab_path, encoding="utf-8") as f:
        encoder = json.load(f)
    vocab = {i: token.encode("utf-8") if token in specials else to_bytes(token) for token, i in encoder.items()}
    with open(merges_path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
    merges = [tuple(to_bytes(part) for part in line.split(" ")) for line in lines]
    return vocab, merges


def read_gpt2_files(vocab_path, merges_path, special_tokens: Sequence[str] = (), table: dict[int, str] | None = None
                    ) -> tuple[Vocab, Merges]:
    """(vocab, merges) as bytes, decoding the files' characters with `table` (GPT-2's by default).

    vocab.json entries that are exactly one of `special_tokens` are that text's UTF-8 bytes."""
    table = table or bytes_to_unicode()
    mtimes = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (vocab_path, merges_path))
    try:
        return _read(str(vocab_path), str(merges_path), mtimes, tuple(table[b] for b in range(256)),
                     tuple(special_tokens))
    except KeyError as exc:
        raise ValueError(f"{vocab_path} or {merges_path} holds a character outside the byte table: {exc}") from None


def from_gpt2_files(vocab_path, merges_path, special_tokens: Sequence[str] | None = GPT2_SPECIAL_TOKENS) -> Tokenizer:
    """The canonical GPT-2 loader: a byte-level BPE `Tokenizer` that encodes exactly as GPT-2 does.

    Loading the same unchanged files again returns the same (immutable in effect) tokenizer."""
    stamps = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (vocab_path, merges_path))
    return _load(str(vocab_path), str(merges_path), tuple(special_tokens or ()), stamps)


@functools.lru_cache(maxsize=4)
def _load(vocab_path: str, merges_path: str, special_tokens: tuple[str, ...], stamps: tuple) -> Tokenizer:
    vocab, merges = read_gpt2_files(vocab_path, merges_path, special_tokens)
    return Tokenizer(vocab, merges, special_tokens)


def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's tokenizer from the files `gpt2_dir()` finds (FileNotFoundError if none)."""
    directory = gpt2_dir()
    if directory is None:
        raise FileNotFoundError("GPT-2's gpt2_vocab.json and gpt2_merges.txt not found: set LMSPEC_GPT2_DIR")
    return from_gpt2_files(directory / VOCAB_FILE, directory / MERGES_FILE)


def write_gpt2_files(vocab: Vocab, merges: Merges, vocab_path, merges_path, special_tokens: Sequence[str] = ()) -> None:
    """Write `vocab` and `merges` in GPT-2's format (with the "#version: 0.2" header GPT-2's vocab.bpe has).

    Special tokens are written as their text; every other token through the byte table."""
    table = bytes_to_unicode()
    specials = {s.encode("utf-8") for s in special_tokens}

    def to_text(token: bytes) -> str:
        return token.decode("utf-8") if token in specials else "".join(table[b] for b in token)

    encoder = {}
    for i, token in sorted(vocab.items()):
        text = to_text(token)
        if text in encoder:
            raise ValueError(f"token {token!r} appears twice in the vocabulary (ids {encoder[text]} and {i})")
        encoder[text] = i
    Path(vocab_path).write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{to_text(a)} {to_text(b)}" for a, b in merges]
    Path(merges_path).write_text("\n".join(lines) + "\n", encoding="utf-8")
