"""lmspec.spec: components, invariants and input strategies, one module per family.

`components()` is the registry every consumer (CLI, pytest plugin, docs catalog, tests) reads.
"""

from __future__ import annotations

import importlib
import pkgutil

from .core import Component, Context, Invariant, Option, Unsupported, Violation

__all__ = ["Component", "Context", "Invariant", "Option", "Unsupported", "Violation", "components", "get_component"]


#: catalog order of the families; a family module added to spec/ and not listed here comes after, by name.
FAMILY_ORDER = (
    "softmax", "attention", "attention_variants", "norms", "norms_variants", "activations", "feedforward", "positions",
    "sampling", "sampling_penalties", "sampling_pipeline", "sampling_samplers", "sampling_metrics", "decoding", "decoding_variants",
    "decoding_speculative", "tokenizers", "accounting_params", "accounting_flops", "accounting_memory", "accounting_formats",
)


def _family_modules() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    listed = [name for name in FAMILY_ORDER if name in found]
    return listed + sorted(set(found) - set(listed))


def components() -> dict[str, Component]:
    """Every component, by name, in catalog order: the COMPONENTS of every module in spec/ that has them."""
    found: dict[str, Component] = {}
    for name in _family_modules():
        module = importlib.import_module(f"{__name__}.{name}")
        for component in getattr(module, "COMPONENTS", ()):
            if component.name in found:
                raise RuntimeError(f"duplicate component name {component.name!r}")
            found[component.name] = component
    return found


def get_component(name: str) -> Component:
    registry = components()
    if name not in registry:
        raise KeyError(f"unknown component {name!r}; known: {', '.join(registry)}")
    return registry[name]
