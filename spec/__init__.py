"""lmspec.spec: components, invariants and input strategies, one module (or package) per family.

`components()` is the registry every consumer (CLI, pytest plugin, docs catalog, tests) reads. A component's
family is where it is declared; the families are imported here, explicitly, in catalog order.
"""

from __future__ import annotations

from . import softmax, attention, norms, activations, feedforward, positions  # noqa: F401  (they declare components)
from . import sampling, decoding, tokenizers, accounting  # noqa: F401
from .core import REGISTRY, Component, Context, Invariant, Option, Unsupported, Violation, invariant, row

__all__ = ["Component", "Context", "Invariant", "Option", "Unsupported", "Violation", "components", "get_component",
           "invariant", "row", "FAMILIES"]

#: catalog order; the same names are the families' modules in reference/ and tests/mutants/.
FAMILIES = ("softmax", "attention", "norms", "activations", "feedforward", "positions", "sampling", "decoding", "tokenizers",
            "accounting")


def components() -> dict[str, Component]:
    """Every component, by name, in catalog order (family order, then declaration order)."""
    unknown = {c.family for c in REGISTRY.values()} - set(FAMILIES)
    if unknown:
        raise RuntimeError(f"components declared outside the families {FAMILIES}: {sorted(unknown)}")
    return {c.name: c for family in FAMILIES for c in REGISTRY.values() if c.family == family}


def get_component(name: str) -> Component:
    registry = components()
    if name not in registry:
        raise KeyError(f"unknown component {name!r}; known: {', '.join(registry)}")
    return registry[name]
