"""Loading a target from `module:attr`, applying an adapter, and reading what it declares it supports.

A target may carry `__lmspec__ = {"unsupported_dtypes": [...], "unsupported_features": [...]}`; an adapter
may declare the same. What is declared unsupported is reported as `unsupported`, never as a pass.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable

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
    #: size limits the target declares (`__lmspec__ = {"max_sizes": {"E": 256, "B": 1}}`): examples stay within them
    max_sizes: dict[str, float] = field(default_factory=dict)
    #: whether a worker process can load it again from `path` (False for an object built in this process)
    isolatable: bool = True

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


def _max_sizes(obj: object) -> dict[str, float]:
    decl = getattr(obj, "__lmspec__", None) or {}
    return {str(k): float(v) for k, v in dict(decl.get("max_sizes", {})).items()}


def all_adapters() -> dict:
    """Every registered adapter, by name (conformance/adapters/, one module per family)."""
    from .adapters import ADAPTERS

    return ADAPTERS


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' naming the known names nearest to `name`, or '' when none is near."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def unknown(kind: str, name: str, known: Iterable[str], where: str = "") -> str:
    """The one-line message for an unknown name: "unknown adapter 'x' (did you mean 'y'?); `lmspec list` ..."."""
    return f"unknown {kind} {name!r}" + did_you_mean(name, known) + (f"; {where}" if where else "")


def check_device(device: str) -> torch.device:
    """The device `device` names, if torch can place tensors there; LoadError with the reason otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise LoadError(f"device {device!r} is not a device torch knows: {str(exc).splitlines()[0]}") from None
    if dev.type == "meta":
        raise LoadError("device 'meta' holds no values: nothing could be checked on it")
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise LoadError(f"device {device!r} is not available: {why} (torch {torch.__version__})")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise LoadError(f"device {device!r} is not available: torch.backends.mps.is_available() is False")
    backend = getattr(torch, dev.type, None) if dev.type not in ("cpu", "mps") else None
    if backend is not None and hasattr(backend, "is_available") and not backend.is_available():
        raise LoadError(f"device {device!r} is not available: torch.{dev.type}.is_available() is False")
    if dev.index is not None and backend is not None and hasattr(backend, "device_count"):
        count = backend.device_count()
        if dev.index >= count:
            raise LoadError(f"device {device!r} is not available: torch sees {count} {dev.type} device(s)")
    return dev


def load_target(path: str, component: str, adapter: str | None = None) -> Target:
    ADAPTERS = all_adapters()

    if adapter is not None:
        if adapter not in ADAPTERS:
            raise LoadError(unknown("adapter", adapter, ADAPTERS, "`lmspec list --adapters` lists them"))
        spec = ADAPTERS[adapter]
        if component not in spec.components:
            raise LoadError(f"adapter {adapter!r} adapts {', '.join(spec.components)}, not {component!r}")
    obj = resolve(path)
    if adapter is not None:
        try:
            fn = spec.wrap(obj, component)
        except Exception as exc:  # a target of the wrong kind, or the wrapped library missing: could not run
            reason = str(exc) if isinstance(exc, (TypeError, LoadError)) else f"{type(exc).__name__}: {exc}"
            raise LoadError(f"adapter {adapter!r} cannot wrap {path}: {' '.join(reason.split())}") from exc
        return Target(
            fn=fn,
            path=path,
            adapter=adapter,
            unsupported_dtypes=spec.unsupported_dtypes | _declared(obj, "unsupported_dtypes"),
            unsupported_features=spec.unsupported_features | _declared(obj, "unsupported_features"),
            implied_options=dict(spec.implied_options),
            max_sizes=_max_sizes(obj),
        )
    if not callable(obj):
        raise LoadError(f"{path} is a {type(obj).__name__}, not callable")
    return Target(
        fn=obj,
        path=path,
        unsupported_dtypes=_declared(obj, "unsupported_dtypes"),
        unsupported_features=_declared(obj, "unsupported_features"),
        max_sizes=_max_sizes(obj),
    )
