"""RMSNorm targets whose forward is torch's and whose backward is broken in the ways training kernels break,
for tests/test_backward.py (the per-family gradient mutants live in tests/mutants)."""

from __future__ import annotations

import itertools

import torch
from torch.nn.functional import rms_norm

_calls = itertools.count()


def _true_grads(x, w, g):
    with torch.enable_grad():
        xx, ww = x.detach().requires_grad_(), w.detach().requires_grad_()
        return torch.autograd.grad(rms_norm(xx, (x.shape[-1],), ww), (xx, ww), g)


class _Broken(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, how):
        ctx.save_for_backward(x, w)
        ctx.how = how
        return rms_norm(x, (x.shape[-1],), w)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx, gw = _true_grads(x, w, g)
        if ctx.how == "zero":
            return torch.zeros_like(gx), torch.zeros_like(gw), None
        if ctx.how == "no_weight_grad":
            return gx, None, None
        if ctx.how == "drifts":  # a backward that depends on how often it ran (stale cached state)
            return gx * (1 + next(_calls) % 2), gw, None
        return gx, gw, None


def zero_backward(x, normalized_shape, weight, eps=None):
    return _Broken.apply(x, weight, "zero")


def no_weight_gradient(x, normalized_shape, weight, eps=None):
    return _Broken.apply(x, weight, "no_weight_grad")


def drifting_backward(x, normalized_shape, weight, eps=None):
    return _Broken.apply(x, weight, "drifts")


def detached(x, normalized_shape, weight, eps=None):
    return rms_norm(x, normalized_shape, weight, eps).detach()


def overwrites_input_when_it_requires_grad(x, normalized_shape, weight, eps=None):
    out = rms_norm(x.detach(), normalized_shape, weight.detach(), eps)
    if x.requires_grad:
        x.data.zero_()  # a fused kernel that stores the gradient into its input's buffer
    return out
