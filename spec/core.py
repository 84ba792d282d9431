"""The two nouns of the spec: a Component (what is implemented) and an Invariant (what must hold of it).

An invariant's check receives a `Context` holding the implementation under test, never the reference
directly, so one invariant checks the reference in tests/ and any third-party target in conformance/.

There is one way to declare an invariant: the `invariant` decorator on its check, with a literal id that begins
with its component's name (docs/contributing.md):

    SOFTMAX = Component("softmax", signature=..., summary=..., reference=ref.softmax)

    @invariant("softmax.shift_invariance", kind="property", examples=shift_examples(),
               statement="softmax(x + c, dim) = softmax(x, dim) for any constant c.", source="definition of softmax")
    def check_shift_invariance(ctx: Context, p: dict) -> None:
        ...

A check shared by several components (or by several parameter values) is declared once with a table of rows,
each with its literal id: `@invariant(row("rope.norm_preserving", interleaved=False),
row("rope_interleaved.norm_preserving", interleaved=True), statement=..., ...)`; a row's keyword arguments
are passed to the check, and a row may override statement, source, kind, examples, requires, dtypes, budget.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from hypothesis import strategies as st

Kind = Literal["property", "differential", "statistical"]

#: dtypes every float component is checked in unless it says otherwise.
FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


#: why an example failed: the invariant's own check found a violation, or the target raised, hung, or wrote into
#: its inputs (found by the guard around every call, whatever the invariant).
Cause = Literal["violation", "raised", "timeout", "mutated_input"]


class Violation(AssertionError):
    """The target broke an invariant on one example; `details` says how (values, errors, indices)."""

    def __init__(self, message: str, cause: Cause = "violation", **details: Any):
        super().__init__(message)
        self.message = message
        self.cause = cause
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
    #: where it is declared, "spec/<family>/<module>.py:<line>" (the catalog prints it).
    location: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "requires", frozenset(self.requires))  # any iterable of feature names


@dataclass(frozen=True, eq=False)
class Component:
    """A building block: canonical target signature, reference, the dtypes it is checked in, invariants.

    Its family is the spec/ module (or package) it is declared in; `@invariant` adds its invariants in the
    order they are declared. Components declared in lmspec.spec are registered by name.
    """

    name: str
    signature: str
    summary: str
    reference: Callable
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES  # () for components without a dtype: run once, as 'any'
    options: tuple[Option, ...] = ()
    #: features a target may declare unsupported, with what each means.
    features: dict[str, str] = field(default_factory=dict)
    #: how differential checks bound its outputs' error (spec/tolerance.py): "elementwise" for outputs whose every
    #: element is a value in its own right (activations, probabilities, normalised outputs), else "normwise".
    bound: str = "normwise"
    family: str = ""
    invariants: list[Invariant] = field(default_factory=list)

    def __post_init__(self) -> None:
        module = sys._getframe(2).f_globals.get("__name__", "")  # the module that declared it
        parts = module.split(".")
        if not self.family:
            object.__setattr__(self, "family", parts[2] if parts[:2] == ["lmspec", "spec"] and len(parts) > 2 else module)
        object.__setattr__(self, "invariants", list(self.invariants))
        if parts[:2] == ["lmspec", "spec"]:
            if self.name in REGISTRY:
                raise RuntimeError(f"duplicate component name {self.name!r}")
            REGISTRY[self.name] = self

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
    #: the component's tolerance bound, "normwise" or "elementwise" (Component.bound)
    bound: str = "normwise"

    def fail(self, message: str, **details: Any) -> None:
        raise Violation(message, **details)


#: every component declared in lmspec.spec, by name, in declaration order (spec/__init__.py imports the families).
REGISTRY: dict[str, Component] = {}

_INVARIANT_FIELDS = ("statement", "source", "kind", "examples", "requires", "dtypes", "budget")
_KINDS = ("property", "differential", "statistical")


@dataclass(frozen=True)
class Row:
    """One row of an invariant table: a literal id, fields that differ from the table's, arguments for the check."""

    id: str
    overrides: dict[str, Any]
    arguments: dict[str, Any]
    line: int


def row(id: str, **kwargs: Any) -> Row:
    """A row of an `@invariant` table; keyword arguments named like Invariant fields override, the rest go to the check."""
    overrides = {k: kwargs.pop(k) for k in _INVARIANT_FIELDS if k in kwargs}
    return Row(id, overrides, kwargs, sys._getframe(1).f_lineno)


def _where(path: str, line: int) -> str:
    spec_root = os.path.dirname(os.path.abspath(__file__))
    rel = os.path.relpath(os.path.abspath(path), spec_root).replace(os.sep, "/")
    return f"spec/{rel}:{line}"


def _bind(check: Callable, arguments: dict[str, Any]) -> Callable:
    if not arguments:
        return check

    def bound(ctx: Context, p: dict) -> None:
        return check(ctx, p, **arguments)

    bound.__name__ = bound.__qualname__ = f"{check.__name__}[{', '.join(f'{k}={v!r}' for k, v in arguments.items())}]"
    bound.__module__ = check.__module__
    return bound


def invariant(
    *ids: str | Row,
    statement: str | None = None,
    source: str | None = None,
    examples: st.SearchStrategy[dict] | None = None,
    kind: Kind = "property",
    requires: Any = (),
    dtypes: tuple[torch.dtype, ...] | None = None,
    budget: float = 1.0,
) -> Callable[[Callable], Callable]:
    """Declare the decorated check as one invariant (a literal id) or a table of them (`row(...)`s).

    The component is the one whose name is the id's first dotted part; it must be declared above. The check is
    returned unchanged, so it stays importable and testable on its own."""
    table = dict(statement=statement, source=source, kind=kind, examples=examples, requires=requires, dtypes=dtypes,
                 budget=budget)

    def declare(check: Callable) -> Callable:
        if not ids:
            raise TypeError(f"@invariant on {check.__name__} names no id")
        path = inspect.getsourcefile(check) or check.__code__.co_filename
        for entry in ids:
            one = entry if isinstance(entry, Row) else Row(entry, {}, {}, check.__code__.co_firstlineno)
            fields = {**table, **one.overrides}
            component_name = one.id.split(".", 1)[0]
            component = REGISTRY.get(component_name)
            if component is None or "." not in one.id:
                raise ValueError(f"invariant id {one.id!r} must start with a declared component's name and a dot")
            missing = [k for k in ("statement", "source", "examples") if fields[k] is None]
            if missing or fields["kind"] not in _KINDS:
                raise ValueError(f"invariant {one.id!r}: missing {missing} or unknown kind {fields['kind']!r}")
            if any(inv.id == one.id for inv in component.invariants):
                raise ValueError(f"duplicate invariant id {one.id!r}")
            component.invariants.append(Invariant(
                id=one.id, check=_bind(check, one.arguments), location=_where(path, one.line), **fields))
        return check

    return declare
