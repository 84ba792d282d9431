"""The trainers' corpus argument: a `str` is the training text itself, an `os.PathLike` names a UTF-8 file.

A short `str` without a newline that names an existing file is almost always a path passed by mistake
(`bpe_train("corpus.txt", 500)` would train on the ten characters of the name): refused, with the fix.
"""

from __future__ import annotations

import os


def check_corpus_argument(value: object, trainer: str) -> None:
    if isinstance(value, str) and "\n" not in value and len(value) < 4096 and os.path.isfile(value):
        raise ValueError(
            f"{trainer} got the str {value!r}, which names an existing file, but a str is the training text itself. "
            f"To train on the file, pass pathlib.Path({value!r}); to train on this string as text, add a newline "
            "or read the text first (pathlib.Path(...).read_text())."
        )
