"""The vocabulary of gradient checks: the target's vector-Jacobian products against the float64 reference's, and
the properties of a backward pass that need no reference.

The inputs that require grad are named by their position among the call's tensor arguments (`wrt`, in the order
`guard.leaves` walks args then kwargs). Cotangents are drawn in float64 from the example's seed, rounded to the
dtype under test; the target and the reference pull back the same (rounded) cotangents. The target's backward
runs where the target runs (spec/backward.py); every comparison runs here.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .backward import run_backward
from .checks import _float_dtype, assert_agree, assert_equal, assert_matches, perturb_ulp, show, to64, to_cpu
from .core import Context
from .guard import expect_tensor, leaves

__all__ = ["BACKWARD", "backward_complete", "backward_finite_differences", "backward_matches", "backward_repeatable",
           "cotangents_for", "gradient_of"]


#: the feature every gradient invariant requires, for a differentiable Component's `features` (a target declares it
#: unsupported for an inference-only kernel: its gradient invariants are then `unsupported`, never a pass)
BACKWARD = {"backward": "gradients through autograd (an inference-only kernel declares it unsupported)"}


def _tensors(value: Any) -> list[torch.Tensor]:
    return [t for t in leaves(value) if isinstance(t, torch.Tensor)]


def cotangents_for(outputs: Any, seed: int, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
    """One random cotangent per floating output tensor, in the dtype under test."""
    gen = torch.Generator().manual_seed(seed * 7919 + 104729)
    floating = [t for t in _tensors(outputs) if t.is_floating_point()]
    return [torch.randn(t.shape, generator=gen, dtype=torch.float64).to(dtype).to(device) for t in floating]


def _reference_vjp(reference: Callable, args: tuple, kwargs: dict, wrt: list[int], cotangents: list) -> list:
    result = run_backward(reference, args, kwargs, wrt, cotangents)
    if "problem" in result:
        raise RuntimeError(f"the reference's backward: {result['problem']}")  # a bug in the spec, not the target
    return result["grads"]


def _pull_back(ctx: Context, args: tuple, kwargs: dict, wrt: list[int], cotangents: list, twice: bool = False) -> dict:
    result = ctx.target.vjp(args, kwargs, wrt, cotangents, twice)
    if "problem" in result:
        ctx.fail(f"backward: {result['problem']}")
    return result


def _gradient(ctx: Context, grads: list, n: int, inputs: list[torch.Tensor], wrt: list[int], what: str) -> torch.Tensor:
    """The n-th requested gradient, which must exist and have its input's shape, dtype and device."""
    grad, given = grads[n], inputs[wrt[n]]
    if grad is None:
        ctx.fail(f"{what}: the input got no gradient although it requires grad and the output depends on it")
    return expect_tensor(grad, tuple(given.shape), given.dtype, ctx.device, what=what)


def gradient_of(ctx: Context, reference: Callable, args: tuple, kwargs: dict, wrt: list[int], seed: int,
                names: list[str] | None = None) -> list[torch.Tensor]:
    """The target's gradients for the inputs `wrt` under the example's cotangents, checked to exist with each
    input's shape, dtype and device (the reference gives the outputs' shapes)."""
    ref_out = reference(*to64(args), **to64(kwargs))
    cotangents = cotangents_for(ref_out, seed, ctx.dtype, ctx.device)
    result = _pull_back(ctx, args, kwargs, wrt, cotangents)
    inputs = _tensors((args, kwargs))
    return [_gradient(ctx, result["grads"], n, inputs, wrt, _name(names, n, wrt)) for n in range(len(wrt))]


def _name(names: list[str] | None, n: int, wrt: list[int]) -> str:
    return f"gradient of {names[n]}" if names else f"gradient of tensor argument #{wrt[n]}"


def backward_matches(ctx: Context, reference: Callable, args: tuple, kwargs: dict | None = None,
                     wrt: list[int] = (0,), seed: int = 0, names: list[str] | None = None) -> None:
    """Every gradient the target computes for the inputs `wrt` matches the float64 reference's vector-Jacobian
    product within the tolerance policy; the yardstick is the reference's own gradient error in the dtype under
    test (or, in float64, under a few ulps of input perturbation)."""
    kwargs, wrt = kwargs or {}, list(wrt)
    args64, kwargs64 = to64(args), to64(kwargs)
    ref_out = reference(*args64, **kwargs64)
    cotangents = cotangents_for(ref_out, seed, ctx.dtype, ctx.device)
    cot64 = [to64(c) for c in cotangents]
    ref64 = _reference_vjp(reference, args64, kwargs64, wrt, cot64)
    if _float_dtype((args, kwargs)) == torch.float64:
        gen = torch.Generator().manual_seed(0)
        lowp = _reference_vjp(reference, perturb_ulp(args64, gen), perturb_ulp(kwargs64, gen), wrt, cot64)
    else:
        lowp = _reference_vjp(reference, to_cpu(args), to_cpu(kwargs), wrt, [c.cpu() for c in cotangents])
    result = _pull_back(ctx, args, kwargs, wrt, cotangents)
    inputs = _tensors((args, kwargs))
    for n in range(len(wrt)):
        what = _name(names, n, wrt)
        grad = _gradient(ctx, result["grads"], n, inputs, wrt, what)
        if ref64[n] is None:  # the reference does not depend on it: the gradient is exactly zero
            assert_equal(ctx, grad.cpu(), torch.zeros_like(grad.cpu()), what)
            continue
        assert_matches(ctx, grad, ref64[n], lowp[n] if lowp[n] is not None else ref64[n], what=what, bound="normwise")


def backward_complete(ctx: Context, reference: Callable, args: tuple, kwargs: dict | None = None,
                      wrt: list[int] = (0,), seed: int = 0, names: list[str] | None = None) -> None:
    """Every input that requires grad gets a gradient of its own shape, dtype and device, and requiring grad does
    not change the forward output (checked against the same call without grad)."""
    kwargs, wrt = kwargs or {}, list(wrt)
    ref_out = reference(*to64(args), **to64(kwargs))
    cotangents = cotangents_for(ref_out, seed, ctx.dtype, ctx.device)
    result = _pull_back(ctx, args, kwargs, wrt, cotangents)
    inputs = _tensors((args, kwargs))
    for n in range(len(wrt)):
        _gradient(ctx, result["grads"], n, inputs, wrt, _name(names, n, wrt))
    plain = ctx.target(*args, **kwargs)
    for i, (a, b) in enumerate(zip(_tensors(result["output"]), _tensors(plain))):
        assert_agree(ctx, a, b, f"output #{i} with inputs requiring grad vs without")


def backward_repeatable(ctx: Context, reference: Callable, args: tuple, kwargs: dict | None = None,
                        wrt: list[int] = (0,), seed: int = 0, names: list[str] | None = None) -> None:
    """Pulling back twice through one graph gives the same gradients, and two `backward` calls accumulate their
    sum into `.grad` (autograd's contract; a kernel that caches or frees state wrongly breaks it)."""
    kwargs, wrt = kwargs or {}, list(wrt)
    ref_out = reference(*to64(args), **to64(kwargs))
    cotangents = cotangents_for(ref_out, seed, ctx.dtype, ctx.device)
    result = _pull_back(ctx, args, kwargs, wrt, cotangents, twice=True)
    inputs = _tensors((args, kwargs))
    for n in range(len(wrt)):
        what = _name(names, n, wrt)
        first = _gradient(ctx, result["grads"], n, inputs, wrt, what)
        again = _gradient(ctx, result["again"], n, inputs, wrt, f"{what} (second pull-back)")
        assert_agree(ctx, again, first, f"{what}: second pull-back vs first")
        summed = _gradient(ctx, result["accumulated"], n, inputs, wrt, f"{what} (.grad after two backward calls)")
        assert_agree(ctx, summed, to64(first) + to64(again), f"{what}: .grad after two backward calls vs the sum")


def _replaced(value: Any, new: dict[int, torch.Tensor], counter: list[int]) -> Any:
    """The call's arguments with the tensor leaves numbered in `new` replaced."""
    if isinstance(value, (list, tuple)):
        return type(value)(_replaced(v, new, counter) for v in value)
    if isinstance(value, dict):
        return {k: _replaced(v, new, counter) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        counter[0] += 1
        return new.get(counter[0] - 1, value)
    return value


#: central differences in float64 with this step (relative to the input's scale): truncation ~h^2, rounding ~eps/h
FD_STEP = 1e-6
#: allowed |directional derivative - <gradient, direction>| relative to the sum of |terms| of the dot product, plus
#: FD_ROUNDING_ULPS float64 ulps of the forward's outputs (weighted by the cotangents) divided by the step
FD_RELATIVE = 1e-5
FD_ROUNDING_ULPS = 16.0
FD_EPS = torch.finfo(torch.float64).eps


def backward_finite_differences(ctx: Context, reference: Callable, args: tuple, kwargs: dict | None = None,
                                wrt: list[int] = (0,), seed: int = 0, names: list[str] | None = None) -> None:
    """float64: the target's gradients agree with central finite differences of its own forward along a random
    direction, <c, (f(x + h d) - f(x - h d)) / 2h> = sum_i <grad_i, d_i> (torch.autograd.gradcheck's idea, one
    random direction instead of every column): needs no reference, so it also backs the reference up."""
    kwargs, wrt = kwargs or {}, list(wrt)
    grads = gradient_of(ctx, reference, args, kwargs, wrt, seed, names)
    inputs = _tensors((args, kwargs))
    gen = torch.Generator().manual_seed(seed * 31 + 7)
    # a random direction over the finite entries (an input's -inf, a masked logit, stays where it is)
    directions = [torch.randn(inputs[i].shape, generator=gen, dtype=torch.float64).to(ctx.device)
                  * torch.isfinite(inputs[i]) for i in wrt]
    cotangents = cotangents_for(reference(*to64(args), **to64(kwargs)), seed, ctx.dtype, ctx.device)
    # one step for every input keeps the quotient a single directional derivative
    h = FD_STEP * max([1.0] + [float(inputs[i][torch.isfinite(inputs[i])].abs().max()) for i in wrt
                               if torch.isfinite(inputs[i]).any()])
    plus = _replaced((args, kwargs), {i: inputs[i] + h * d for i, d in zip(wrt, directions)}, [0])
    minus = _replaced((args, kwargs), {i: inputs[i] - h * d for i, d in zip(wrt, directions)}, [0])
    with torch.no_grad():  # forward values only (in-process, a module's own parameters would build a graph)
        f_plus = [t for t in _tensors(ctx.target(*plus[0], **plus[1])) if t.is_floating_point()]
        f_minus = [t for t in _tensors(ctx.target(*minus[0], **minus[1])) if t.is_floating_point()]
    numeric = sum(float((c * (a - b)).sum()) for c, a, b in zip(cotangents, f_plus, f_minus)) / (2 * h)
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, directions))
    magnitude = sum(float((g * d).abs().sum()) for g, d in zip(grads, directions))
    # the forward's own rounding, divided by the step: what a saturated or large output costs the quotient
    rounding = sum(float((c.abs() * (a.abs() + b.abs())).sum()) for c, a, b in zip(cotangents, f_plus, f_minus))
    allowed = FD_RELATIVE * max(magnitude, abs(numeric), 1e-300) + FD_ROUNDING_ULPS * FD_EPS * rounding / (2 * h)
    if not abs(numeric - analytic) <= allowed:
        a, n = show(analytic, numeric)
        ctx.fail(f"the gradients' directional derivative sum_i <grad_i, d_i> = {a}, but central differences of the "
                 f"target's own forward give {n} (step {h:.3g}; allowed deviation {allowed:.3g} = {FD_RELATIVE:g} x "
                 "the sum of |terms| + the forward's rounding over the step)",
                 analytic=analytic, numeric=numeric, allowed=allowed)
