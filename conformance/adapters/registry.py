"""The adapter registry: what an adapter is, and the table the CLI and the pytest plugin look names up in.

Each adapter's `wrap` first checks that it was given the kind of target it adapts (a class, a function, a module)
with the helpers below, which raise TypeError with a one-line reason; `load_target` turns any exception `wrap`
raises into a LoadError, so `lmspec check` exits 2 with that line instead of running a target that cannot work.
"""

from __future__ import annotations

import inspect
import sys
import types
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


# --- what a wrap function checks about its target ----------------------------------------------------------------


def describe(obj: object) -> str:
    """'the class torch.nn.modules.linear.Linear', 'the function torch.softmax', 'the module torch', 'a str'."""
    if isinstance(obj, types.ModuleType):
        return f"the module {obj.__name__}"
    builtin = isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType))
    name = getattr(obj, "__name__" if builtin else "__qualname__", None) or getattr(obj, "__name__", None)
    module = getattr(obj, "__module__", None)
    full = f"{module}.{name}" if module and name else name
    if isinstance(obj, type):
        return f"the class {full}"
    if callable(obj) and name:
        return f"the function {full}"
    return f"a {type(obj).__name__}"


def expect_class(obj: object, what: str, base: str | None = None, attrs: tuple[str, ...] = ()) -> type:
    """`obj` must be a class, a subclass of `base` ("torch.nn.Module") if given, with the attributes `attrs`."""
    if not isinstance(obj, type):
        raise TypeError(f"it adapts {what}, not {describe(obj)}")
    if base is not None:
        module, _, name = base.rpartition(".")
        base_cls = getattr(sys.modules.get(module), name, None)
        if base_cls is not None and not issubclass(obj, base_cls):
            raise TypeError(f"it adapts {what}; {describe(obj)} is not a {base} subclass")
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise TypeError(f"it adapts {what}; {describe(obj)} has no {', '.join(missing)}")
    return obj


def expect_function(obj: object, what: str, positional: int | None = None, keywords: tuple[str, ...] = (),
                    builtin: bool = False) -> Callable:
    """`obj` must be a callable that is not a class or module. With `positional` given, its signature must accept
    the call the adapter makes (that many positional arguments and these keywords); a callable whose signature
    cannot be read (a builtin) is refused then, since nothing confirms it is the library function adapted, unless
    `builtin` says the adapted function is itself one (torch.multinomial)."""
    if isinstance(obj, (type, types.ModuleType)) or not callable(obj):
        raise TypeError(f"it adapts {what}, not {describe(obj)}")
    if positional is None:
        return obj
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        if builtin:
            return obj
        raise TypeError(f"it adapts {what}; the signature of {describe(obj)} cannot be read") from None
    try:
        signature.bind(*range(positional), **dict.fromkeys(keywords))
    except TypeError as exc:
        raise TypeError(f"it adapts {what}; {describe(obj)}{signature} cannot take that call ({exc})") from None
    return obj


def expect_module(obj: object, what: str, attrs: tuple[str, ...] = ()) -> types.ModuleType:
    """`obj` must be a module with the attributes `attrs`."""
    if not isinstance(obj, types.ModuleType):
        raise TypeError(f"it adapts {what}, not {describe(obj)}")
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise TypeError(f"it adapts {what}; {describe(obj)} has no {', '.join(missing)}")
    return obj


def module_of(obj: object) -> types.ModuleType | None:
    """The module `obj` (a function or class) was defined in, if it is imported."""
    return sys.modules.get(getattr(obj, "__module__", None) or "")
