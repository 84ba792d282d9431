"""Shape-typed, runtime-checked signatures for every public reference function.

`typechecked` applies jaxtyping's shape checking with beartype, so a reference called with inconsistent
shapes fails loudly at its boundary instead of broadcasting into a wrong answer.
"""

from __future__ import annotations

from beartype import beartype
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Tensor", "typechecked"]


def typechecked(fn):
    """Check the jaxtyping shape annotations of `fn` at every call (beartype does the type checks)."""
    return jaxtyped(typechecker=beartype)(fn)
