"""lmspec.spec: components, invariants and input strategies, one module per family.

`components()` is the registry every consumer (CLI, pytest plugin, docs catalog, tests) reads.
"""

from __future__ import annotations

from .core import Component, Context, Invariant, Option, Unsupported, Violation

__all__ = ["Component", "Context", "Invariant", "Option", "Unsupported", "Violation", "components", "get_component"]


def components() -> dict[str, Component]:
    """Every component, by name, in catalog order."""
    from . import attention, attention_variants, softmax

    found: dict[str, Component] = {}
    for family in (softmax, attention, attention_variants):
        for component in family.COMPONENTS:
            if component.name in found:
                raise RuntimeError(f"duplicate component name {component.name!r}")
            found[component.name] = component
    return found


def get_component(name: str) -> Component:
    registry = components()
    if name not in registry:
        raise KeyError(f"unknown component {name!r}; known: {', '.join(registry)}")
    return registry[name]
