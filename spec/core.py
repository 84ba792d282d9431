"""The two nouns of the spec: a Component (what is implemented) and an Invariant (what must hold of it).

An invariant's check receives a `Context` holding the implementation under test, never the reference
directly, so one invariant checks the reference in tests/ and any third-party target in conformance/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from hypothesis import strategies as st

Kind = Literal["property", "differential", "statistical"]

#: dtypes every float component is checked in unless it says otherwise.
FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


class Violation(AssertionError):
    """The target broke an invariant on one example; `details` says how (values, errors, indices)."""

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.message = message
        self.details = details


class Unsupported(Exception):
    """The target declared that it does not support what this invariant needs (a dtype or a feature)."""


@dataclass(frozen=True)
class Option:
    """A convention the user may choose when checking a target (e.g. where the causal mask is aligned)."""

    name: str
    default: str
    choices: tuple[str, ...]
    doc: str


@dataclass(frozen=True)
class Invariant:
    """A named, sourced statement with a check against an implementation passed in.

    `examples` draws JSON-serialisable parameter dicts (shapes, seeds, flags); the check materialises
    tensors from them, so a counterexample is a small dict that `--replay` reproduces exactly.
    """

    id: str
    statement: str
    source: str
    kind: Kind
    examples: st.SearchStrategy[dict]
    check: Callable[["Context", dict], None]
    requires: frozenset[str] = frozenset()
    dtypes: tuple[torch.dtype, ...] | None = None
    #: fraction of the profile's example budget this invariant uses (statistical checks are heavy).
    budget: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "requires", frozenset(self.requires))  # any iterable of feature names


@dataclass(frozen=True)
class Component:
    """A building block: canonical target signature, reference, the dtypes it is checked in, invariants."""

    name: str
    family: str
    signature: str
    summary: str
    reference: Callable
    invariants: tuple[Invariant, ...]
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES  # () for components without a dtype: run once, as 'any'
    options: tuple[Option, ...] = ()
    #: features a target may declare unsupported, with what each means.
    features: dict[str, str] = field(default_factory=dict)

    @property
    def reference_path(self) -> str:
        return f"{self.reference.__module__}:{self.reference.__qualname__}"

    def invariant(self, invariant_id: str) -> Invariant:
        for inv in self.invariants:
            if inv.id == invariant_id:
                return inv
        raise KeyError(f"component {self.name!r} has no invariant {invariant_id!r}")

    def resolve_options(self, given: dict[str, str]) -> dict[str, str]:
        """Defaults overlaid with the user's choices; unknown keys or values raise ValueError."""
        known = {o.name: o for o in self.options}
        for key, value in given.items():
            if key not in known:
                raise ValueError(f"unknown option {key!r} for {self.name} (known: {sorted(known) or 'none'})")
            if value not in known[key].choices:
                raise ValueError(f"option {key}={value!r} not in {known[key].choices}")
        return {name: given.get(name, opt.default) for name, opt in known.items()}


@dataclass
class Context:
    """What a check sees: the guarded target, the dtype and device under test, options, and error records."""

    target: Callable
    dtype: torch.dtype | None  # None for components that have no dtype (tokenizers, formulas)
    device: torch.device
    options: dict[str, str]
    errors: list = field(default_factory=list)

    def fail(self, message: str, **details: Any) -> None:
        raise Violation(message, **details)
