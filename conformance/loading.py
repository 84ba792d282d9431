"""Loading a target from `module:attr`, applying an adapter, and reading what it declares it supports.

A target may carry `__lmspec__ = {"unsupported_dtypes": [...], "unsupported_features": [...]}`; an adapter
may declare the same. What is declared unsupported is reported as `unsupported`, never as a pass.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch


class LoadError(Exception):
    """The target cannot be run at all (bad path, import error, not callable, unknown adapter): exit code 2."""


@dataclass
class Target:
    fn: Callable
    path: str
    adapter: str | None = None
    unsupported_dtypes: frozenset[str] = field(default_factory=frozenset)
    unsupported_features: frozenset[str] = field(default_factory=frozenset)
    #: options the adapter fixes (e.g. causal_alignment=bottom_right for FlashAttention)
    implied_options: dict[str, str] = field(default_factory=dict)

    def identity(self, device: str) -> dict:
        module = self.path.split(":", 1)[0]
        return {
            "target": self.path,
            "adapter": self.adapter,
            "module": module,
            "module_version": module_version(module),
            "torch_version": torch.__version__,
            "device": device,
        }


def module_version(module: str) -> str | None:
    top = module.split(".", 1)[0]
    try:
        return importlib.metadata.version(top)
    except importlib.metadata.PackageNotFoundError:
        return getattr(sys.modules.get(top), "__version__", None)


def resolve(path: str) -> object:
    """Import `module:attr` (attr may be dotted). The working directory is importable, as with `python -m`."""
    if ":" not in path:
        raise LoadError(f"target {path!r} is not of the form module:attr")
    module_name, attr = path.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:
        raise LoadError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _declared(obj: object, key: str) -> frozenset[str]:
    decl = getattr(obj, "__lmspec__", None) or {}
    return frozenset(str(v).replace("torch.", "") for v in decl.get(key, ()))


def all_adapters() -> dict:
    """Every registered adapter, by name (conformance/adapters/, one module per family)."""
    from .adapters import ADAPTERS

    return ADAPTERS


def load_target(path: str, component: str, adapter: str | None = None) -> Target:
    ADAPTERS = all_adapters()

    obj = resolve(path)
    if adapter is not None:
        if adapter not in ADAPTERS:
            raise LoadError(f"unknown adapter {adapter!r}; known: {', '.join(sorted(ADAPTERS))}")
        spec = ADAPTERS[adapter]
        if component not in spec.components:
            raise LoadError(f"adapter {adapter!r} adapts {', '.join(spec.components)}, not {component!r}")
        fn = spec.wrap(obj, component)
        return Target(
            fn=fn,
            path=path,
            adapter=adapter,
            unsupported_dtypes=spec.unsupported_dtypes | _declared(obj, "unsupported_dtypes"),
            unsupported_features=spec.unsupported_features | _declared(obj, "unsupported_features"),
            implied_options=dict(spec.implied_options),
        )
    if not callable(obj):
        raise LoadError(f"{path} is a {type(obj).__name__}, not callable")
    return Target(
        fn=obj,
        path=path,
        unsupported_dtypes=_declared(obj, "unsupported_dtypes"),
        unsupported_features=_declared(obj, "unsupported_features"),
    )
