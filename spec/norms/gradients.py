"""Backward passes of the norms (issue 15): every norm's vector-Jacobian products for its input and affine parameters
against the float64 reference's, and the properties of a backward pass that need no reference (spec/gradients.py).

One table per kind of check, a row per component; each row names how to build one call (`Call`) from an example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ...reference import norms as ref
from ..core import Context, invariant, row
from ..gradients import backward_complete, backward_finite_differences, backward_matches, backward_repeatable
from ..guard import leaves
from . import rms_layer, variants
from .sources import BA, IOFFE, QWEN3, TORCH_LN, TORCH_RMS, XIONG, ZHANG

#: where each norm's gradient formula is written down (what the differential compares against is autograd through
#: the reference, which these derivations state in closed form)
RMS_GRAD = (f"{ZHANG}, sec. 3 (dx = r w g - r^3 x mean(w g x), r = 1 / sqrt(mean(x^2) + eps); dw = sum g x r); "
            f"torch tools/autograd/derivatives.yaml _fused_rms_norm; {TORCH_RMS}")
LN_GRAD = (f"{BA}; torch tools/autograd/derivatives.yaml native_layer_norm (layer_norm_backward: dx = r (w g - "
           f"mean(w g) - x_hat mean(w g x_hat)), dw = sum g x_hat, db = sum g); {TORCH_LN}")
BN_GRAD = (f"{IOFFE}, sec. 3 (backpropagation through the batch statistics); torch derivatives.yaml "
           "native_batch_norm (batchnorm_backward; eval mode: an affine map of x)")
BLOCK_GRAD = f"{XIONG} (the residual path's gradient is the identity plus the sublayer's); chain rule"
QK_GRAD = f"{QWEN3}; chain rule through RMSNorm ({ZHANG}) and RoPE (a rotation: its transpose pulls back)"


@dataclass
class Call:
    """One call of the target: its reference, arguments, and the differentiable tensors among them (by name)."""

    reference: Callable
    args: tuple
    kwargs: dict
    differentiable: dict[str, torch.Tensor]

    def wrt(self) -> tuple[list[int], list[str]]:
        """Positions of the differentiable tensors among the call's tensor leaves, and their names."""
        positions, names = [], []
        for n, t in enumerate(t for t in leaves((self.args, self.kwargs)) if isinstance(t, torch.Tensor)):
            for name, d in self.differentiable.items():
                if t is d:
                    positions.append(n)
                    names.append(name)
                    break
        return positions, names


def _named(**tensors) -> dict[str, torch.Tensor]:
    return {name: t for name, t in tensors.items() if t is not None}


def rms_call(ctx: Context, p: dict) -> Call:
    x = rms_layer._x(ctx, p)
    w, _ = rms_layer._affine(ctx, p)
    return Call(rms_layer._rms_reference(ctx), (x, p["norm"], w), rms_layer._eps_kwargs(p["eps"]),
                _named(input=x, weight=w))


class _HalfLayerNorm(torch.autograd.Function):
    """LayerNorm over the flattened trailing dims with torch's half-precision kernel's numerics: mean and rstd kept in
    the input's dtype (native_layer_norm returns them so), the backward in float32 in the form dx = rstd w g + b x + c
    (torch's layer_norm_backward), whose terms of size |x| rstd cancel to leave the gradient."""

    @staticmethod
    def forward(ctx, x, shape, w, b, eps):
        ctx.shape, n = shape, math.prod(shape)
        rows = x.reshape(-1, n).float()
        mean = rows.mean(-1, keepdim=True)
        rstd = torch.rsqrt((rows - mean).pow(2).mean(-1, keepdim=True) + eps)
        mean, rstd = mean.to(x.dtype).float(), rstd.to(x.dtype).float()
        ctx.save_for_backward(x, w, mean, rstd)
        y = (rows - mean) * rstd
        y = y * w.reshape(-1).float() if w is not None else y
        y = y + b.reshape(-1).float() if b is not None else y
        return y.to(x.dtype).reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x, w, mean, rstd = ctx.saved_tensors
        n = math.prod(ctx.shape)
        rows, dy = x.reshape(-1, n).float(), grad.reshape(-1, n).float()
        gw = dy * w.reshape(-1).float() if w is not None else dy
        ds, db = (gw * rows).sum(-1, keepdim=True), gw.sum(-1, keepdim=True)
        coef = (db * mean - ds) * rstd.pow(3) / n
        dx = rstd * gw + coef * rows + (-coef * mean - db * rstd / n)
        xhat = (rows - mean) * rstd
        dw = None if w is None else (dy * xhat).sum(0).reshape(ctx.shape).to(x.dtype)
        db_ = dy.sum(0).reshape(ctx.shape).to(x.dtype) if ctx.needs_input_grad[3] else None
        return dx.reshape(x.shape).to(x.dtype), None, dw, db_, None


def ln_witness(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """The reference; in float16 / bfloat16 the half-precision kernel's numerics (`_HalfLayerNorm`) as the witness of
    an honest kernel's gradient error: where a row's gradient nearly cancels (two elements, |x| >> std) it errs by a
    few eps of |x| rstd |g|, not of the gradient."""
    if input.dtype not in (torch.float16, torch.bfloat16):
        return ref.layer_norm(input, normalized_shape, weight, bias, eps)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return _HalfLayerNorm.apply(input, shape, weight, bias, eps)


def layer_norm_call(ctx: Context, p: dict) -> Call:
    x = rms_layer._x(ctx, p)
    (x, shape, w, b), kwargs = rms_layer._ln_args(ctx, p, x)
    return Call(ln_witness, (x, shape, w, b), kwargs, _named(input=x, weight=w, bias=b))


def batch_norm_call(ctx: Context, p: dict) -> Call:
    x = variants._bn_input(ctx, p)
    params = variants._bn_params(ctx, p)
    args = variants._bn_call(ctx, x, p, p["training"], params)
    return Call(variants.bn_witness, args, {}, _named(input=x, weight=params["weight"], bias=params["bias"]))


def residual_call(ctx: Context, p: dict) -> Call:
    x = variants._block_x(ctx, p)
    sublayer, norm = variants._callables(ctx, p)
    return Call(ref.residual_block, (x, sublayer, norm, p["order"]), {}, _named(x=x))


def qk_call(ctx: Context, p: dict) -> Call:
    q, k, wq, wk, positions = variants._qk_inputs(ctx, p)
    return Call(variants._qk_reference(ctx), (q, k, wq, wk, positions), {},
                _named(query=q, key=k, q_weight=wq, k_weight=wk))


#: varied: no grid values, so no row is constant (where a step of finite differences measures the kink of x / eps)
RMS_EXAMPLES = rms_layer.norm_examples(eps=(None, 1e-6, 1e-5, 1e-2), varied=True)
LN_EXAMPLES = rms_layer.norm_examples(bias=True, varied=True)
BN_EXAMPLES = variants._bn_examples()
BLOCK_EXAMPLES = variants._block_examples()
QK_EXAMPLES = variants._qk_examples()


def _run(check: Callable, ctx: Context, p: dict, call: Callable[[Context, dict], Call]) -> None:
    c = call(ctx, p)
    wrt, names = c.wrt()
    check(ctx, c.reference, c.args, c.kwargs, wrt=wrt, seed=p["seed"], names=names)


def _matches(what: str) -> str:
    return (f"The vector-Jacobian products for {what} match the float64 reference's within the tolerance policy "
            "(random cotangents; the reference's own gradient error in the dtype under test is the yardstick).")


COMPLETE = ("Every input and parameter that requires grad gets a gradient of its own shape, dtype and device, and "
            "requiring grad does not change the forward output.")
REPEATABLE = ("Pulling back twice through one graph gives the same gradients, and two backward calls accumulate their "
              "sum into .grad.")
FINITE = ("float64: the gradients' directional derivative equals central finite differences of the target's own "
          "forward along a random direction.")
GRADCHECK = "torch.autograd.gradcheck (directional form); central differences, O(h^2) truncation"
AUTOGRAD = "torch.autograd (accumulation into .grad, retain_graph); issue 15"


@invariant(row("rms_norm.backward.matches_reference", call=rms_call, examples=RMS_EXAMPLES, source=RMS_GRAD,
               statement=_matches("input and weight")),
           row("layer_norm.backward.matches_reference", call=layer_norm_call, examples=LN_EXAMPLES, source=LN_GRAD,
               statement=_matches("input, weight and bias")),
           row("batch_norm.backward.matches_reference", call=batch_norm_call, examples=BN_EXAMPLES, source=BN_GRAD,
               statement=_matches("input, weight and bias (training: through the batch statistics)")),
           row("residual_block.backward.matches_reference", call=residual_call, examples=BLOCK_EXAMPLES,
               source=BLOCK_GRAD, statement=_matches("the block input x, pre- and post-norm")),
           row("qk_norm.backward.matches_reference", call=qk_call, examples=QK_EXAMPLES, source=QK_GRAD,
               statement=_matches("query, key, q_weight and k_weight")),
           kind="differential", requires={"backward"}, budget=0.5)
def check_backward_matches(ctx: Context, p: dict, call: Callable) -> None:
    _run(backward_matches, ctx, p, call)


def _affine(p: dict) -> dict:
    """Every affine parameter given: completeness is about the parameters' gradients."""
    return {**p, "weight": True, "bias": True, "affine": True}


@invariant(row("rms_norm.backward.complete", call=rms_call, examples=RMS_EXAMPLES.map(_affine), source=RMS_GRAD),
           row("layer_norm.backward.complete", call=layer_norm_call, examples=LN_EXAMPLES.map(_affine), source=LN_GRAD),
           row("batch_norm.backward.complete", call=batch_norm_call, examples=BN_EXAMPLES.map(_affine), source=BN_GRAD),
           row("residual_block.backward.complete", call=residual_call, examples=BLOCK_EXAMPLES, source=BLOCK_GRAD),
           row("qk_norm.backward.complete", call=qk_call, examples=QK_EXAMPLES, source=QK_GRAD),
           statement=COMPLETE, requires={"backward"}, budget=0.5)
def check_backward_complete(ctx: Context, p: dict, call: Callable) -> None:
    _run(backward_complete, ctx, p, call)


@invariant(row("rms_norm.backward.repeatable", call=rms_call, examples=RMS_EXAMPLES),
           row("layer_norm.backward.repeatable", call=layer_norm_call, examples=LN_EXAMPLES),
           row("batch_norm.backward.repeatable", call=batch_norm_call, examples=BN_EXAMPLES),
           row("residual_block.backward.repeatable", call=residual_call, examples=BLOCK_EXAMPLES),
           row("qk_norm.backward.repeatable", call=qk_call, examples=QK_EXAMPLES),
           statement=REPEATABLE, source=AUTOGRAD, requires={"backward"}, budget=0.5)
def check_backward_repeatable(ctx: Context, p: dict, call: Callable) -> None:
    _run(backward_repeatable, ctx, p, call)


@invariant(row("rms_norm.backward.finite_differences", call=rms_call, examples=RMS_EXAMPLES),
           row("layer_norm.backward.finite_differences", call=layer_norm_call, examples=LN_EXAMPLES),
           row("batch_norm.backward.finite_differences", call=batch_norm_call, examples=BN_EXAMPLES),
           row("residual_block.backward.finite_differences", call=residual_call, examples=BLOCK_EXAMPLES),
           row("qk_norm.backward.finite_differences", call=qk_call, examples=QK_EXAMPLES),
           statement=FINITE, source=GRADCHECK, requires={"backward"}, dtypes=(torch.float64,), budget=0.5)
def check_backward_finite_differences(ctx: Context, p: dict, call: Callable) -> None:
    _run(backward_finite_differences, ctx, p, call)
