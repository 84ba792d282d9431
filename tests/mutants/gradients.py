"""Broken backward passes built around a correct forward, for every family's gradient mutants (issue 15).

Each wrapper keeps the forward values bit for bit and breaks only what flows back: `zero_backward` (every gradient
zero), `drifting_backward` (a backward that depends on how often it ran: stale cached state), `detached_output`
(no autograd graph at all), `detached_argument` (one input or parameter gets no gradient), `scaled_backward`
(gradients off by a constant factor, as a sum taken for a mean)."""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable

import torch


def _outputs(out: Any, fix: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(out, torch.Tensor):
        return fix(out) if out.is_floating_point() else out
    if isinstance(out, (list, tuple)):
        return type(out)(_outputs(o, fix) for o in out)
    return out


def _around(fn: Callable, fix: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    @functools.wraps(fn)
    def target(*args: Any, **kwargs: Any) -> Any:
        return _outputs(fn(*args, **kwargs), fix)

    return target


def zero_backward(fn: Callable) -> Callable:
    """Forward unchanged (out + 0 * out is out), every gradient exactly zero."""
    return _around(fn, lambda out: out.detach() + 0 * out if out.requires_grad else out)


def scaled_backward(fn: Callable, factor: float) -> Callable:
    """Forward unchanged, every gradient multiplied by `factor`."""

    def fix(out: torch.Tensor) -> torch.Tensor:
        if out.requires_grad:
            out.register_hook(lambda g: g * factor)
        return out

    return _around(fn, lambda out: fix(out * 1))


def drifting_backward(fn: Callable) -> Callable:
    """Forward unchanged; every second pull-back through a graph doubles the gradients (one count per output, so a
    function with several outputs drifts too)."""

    def fix(out: torch.Tensor) -> torch.Tensor:
        if out.requires_grad:
            calls = itertools.count()
            out.register_hook(lambda g: g * (1 + next(calls) % 2))
        return out

    return _around(fn, lambda out: fix(out * 1))


def detached_output(fn: Callable) -> Callable:
    """An inference-only kernel that does not say so: its outputs have no autograd graph."""
    return _around(fn, lambda out: out.detach())


def detached_argument(fn: Callable, index: int | str) -> Callable:
    """Argument `index` (a position, or a keyword) is used detached: it gets no gradient."""

    @functools.wraps(fn)
    def target(*args: Any, **kwargs: Any) -> Any:
        if isinstance(index, int) and index < len(args) and isinstance(args[index], torch.Tensor):
            args = args[:index] + (args[index].detach(),) + args[index + 1:]
        elif isinstance(index, str) and isinstance(kwargs.get(index), torch.Tensor):
            kwargs = {**kwargs, index: kwargs[index].detach()}
        return fn(*args, **kwargs)

    return target
