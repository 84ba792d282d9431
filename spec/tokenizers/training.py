"""What the three trainer components (bpe_train, wordpiece_train, unigram_train) share: examples that are generated
corpora, the target trained on one with its output read and validated, and the comparisons of two trainings
(twice with the same arguments; against the reference).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Callable, Sequence, TypeVar

from hypothesis import strategies as st

from .inputs import clip, fail_sequences, record, seeds
from ..core import Context

T = TypeVar("T")


def corpus_examples(min_words: int, max_words: int, **size: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """A generated corpus (`inputs.corpus_of`: seed, number of words, Zipf or uniform frequencies), then the fields
    that set the vocabulary size and the special tokens, in the order given."""
    return record(seed=seeds(), words=st.integers(min_words, max_words), zipf=st.booleans(), **size)


def train(ctx: Context, read: Callable[[Any], T], text_or_path: Any, vocab_size: int,
          special_tokens: Sequence[str]) -> T:
    """The target trained on a corpus, its output read by `read`, which raises TypeError (saying what it
    expected) on a malformed one."""
    out = ctx.target(text_or_path, vocab_size, list(special_tokens))
    try:
        return read(out)
    except (TypeError, ValueError) as error:
        ctx.fail(f"the trainer returned {type(out).__name__} {clip(out, 80)}: {error}")


def assert_deterministic(ctx: Context, train_once: Callable[[], T], what: str,
                         as_list: Callable[[T], Sequence] = list) -> None:
    """Two identical calls train the same output (compared as the sequences `as_list` makes of them)."""
    first, second = train_once(), train_once()
    if first != second:
        fail_sequences(ctx, f"two identical calls trained different {what}", as_list(second), as_list(first))


def assert_same_tokens(ctx: Context, got: Collection, expected: Collection, what: str) -> None:
    """The target's tokens are the reference's: sets, or Counters where counting repeats matters."""
    if got != expected:
        ctx.fail(f"{what} differ from the reference's: extra {clip(sorted(got - expected))}, missing "
                 f"{clip(sorted(expected - got))}")
