"""Adapters: wrap a known library's function so it takes a component's canonical signature.

An adapter also declares what the wrapped library cannot do (dtypes, features) and which convention
options it implies (FlashAttention's causal mask is aligned bottom-right, for instance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    components: tuple[str, ...]
    wrap: Callable[[object, str], Callable]
    doc: str
    unsupported_dtypes: frozenset[str] = frozenset()
    unsupported_features: frozenset[str] = frozenset()
    implied_options: dict[str, str] = field(default_factory=dict)


ADAPTERS: dict[str, AdapterSpec] = {}


def register(spec: AdapterSpec) -> AdapterSpec:
    ADAPTERS[spec.name] = spec
    return spec
