"""Tokenizers family: byte-level BPE (training, encoding, GPT-2's files), WordPiece and Unigram.

Tokenizers have no dtype (`dtypes=()`: each invariant runs once, as 'any'). The targets are of two kinds:

- trainers, plain functions: `bpe_train`, `wordpiece_train`, `unigram_train` (bpe_train.py, wordpiece.py,
  unigram.py; what they share is in training.py);
- tokenizer builders: a class or factory the check calls with the component's inputs (a vocabulary, merges,
  files or pieces) that returns a *tokenizer*: an object with `encode(text: str) -> list[int]` and
  `decode(ids: list[int]) -> str`, plus the optional methods a component names (`encode_iterable`,
  `sample_encode`). A class whose `__init__` takes those inputs is a valid target as it is. `bpe_tokenizer` and
  `gpt2_tokenizer` share their checks (byte_level.py).

Optional abilities are features a target may declare unsupported (`__lmspec__ = {"unsupported_features": [...]}`
on the class, or through an adapter); their invariants are then reported `unsupported`, never passed.
"""

from . import bpe_train, byte_level, wordpiece, unigram  # noqa: F401  (they declare the components, in catalog order)
