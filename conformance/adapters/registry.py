"""The adapter registry: what an adapter is, and the table the CLI and the pytest plugin look names up in."""

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
