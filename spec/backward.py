"""A target's backward pass, computed where the target runs (in the worker process, or in-process with
--in-process): autograd graphs do not cross processes, so the harness sends the inputs, which of them require grad
and the cotangents, and gets back the outputs and the vector-Jacobian products, which it compares on its own side.

The tensors that require grad share storage with the inputs the target was given, so a kernel that writes into
its inputs (Liger-style cross-entropy overwriting its logits with their gradient) is caught by the same mutation
check as any other call.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import torch

from .guard import leaves


def _requiring_grad(value: Any, wrt: set[int], counter, chosen: list[torch.Tensor]) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_requiring_grad(v, wrt, counter, chosen) for v in value)
    if isinstance(value, dict):
        return {k: _requiring_grad(v, wrt, counter, chosen) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        if next(counter) in wrt:
            leaf = value.detach().requires_grad_(True)  # same storage: writes into it are writes into the input
            chosen.append(leaf)
            return leaf
    return value


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(v) for v in value)
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


def _grads(outputs: list[torch.Tensor], inputs: list[torch.Tensor], cotangents: list[torch.Tensor]) -> list:
    found = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True, retain_graph=True)
    return [None if g is None else g.detach() for g in found]


def run_backward(fn: Callable, args: tuple, kwargs: dict, wrt: list[int], cotangents: list[torch.Tensor],
                 twice: bool = False) -> dict:
    """Call `fn` with the tensor arguments numbered `wrt` (in `leaves` order) requiring grad, and pull `cotangents`
    (one per floating output tensor, in `leaves` order) back through it.

    Returns {"output", "grads"} (a gradient per `wrt` input, None where the input got none) or {"output",
    "problem"} when the outputs cannot take the cotangents; with `twice`, also "again" (a second pull on the same
    graph) and "accumulated" (`.grad` after two `backward` calls: their sum).
    """
    chosen: list[torch.Tensor] = []
    args, kwargs = _requiring_grad((args, kwargs), set(wrt), itertools.count(), chosen)
    out = fn(*args, **kwargs)
    outputs = [t for t in leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    result: dict = {"output": _detached(out)}
    if len(outputs) != len(cotangents):
        return {**result, "problem": f"{len(outputs)} floating output tensors, expected {len(cotangents)}"}
    for i, (o, c) in enumerate(zip(outputs, cotangents)):
        if o.shape != c.shape:
            return {**result, "problem": f"output #{i} has shape {tuple(o.shape)}, expected {tuple(c.shape)}"}
    pairs = [(o, c.to(dtype=o.dtype, device=o.device)) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return {**result, "problem": "no output requires grad although its inputs do: the output is detached from "
                "the autograd graph (an inference-only kernel declares the feature 'backward' unsupported)"}
    outs, cots = [o for o, _ in pairs], [c for _, c in pairs]
    result["grads"] = _grads(outs, chosen, cots)
    if twice:
        result["again"] = _grads(outs, chosen, cots)
        for leaf in chosen:
            leaf.grad = None
        torch.autograd.backward(outs, cots, retain_graph=True)
        torch.autograd.backward(outs, cots)
        result["accumulated"] = [None if leaf.grad is None else leaf.grad.detach() for leaf in chosen]
    return result
