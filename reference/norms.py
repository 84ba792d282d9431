"""Normalization: RMSNorm, LayerNorm, BatchNorm, pre-/post-norm residual blocks, and QK-norm.

Each function's source is in the comment above it. Half-precision inputs are computed in float32 and rounded once
at the end, as torch does (its "opmath" type) and as HF's RMSNorm does; the reference run in float16/bfloat16 is
then the error witness of a careful implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from ._typing import Float, Int, Tensor, typechecked
from .positions import rope

Shape = int | Sequence[int]


# Source: torch's accumulate ("opmath") type, aten/src/ATen/OpMathType.h: float for Half and BFloat16.
def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The type torch computes reductions in: float32 for float16/bfloat16, else the dtype itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# Source: torch.nn.functional.rms_norm / torch.nn.RMSNorm docs (torch 2.13), eps=None.
def default_rms_eps(dtype: torch.dtype) -> float:
    """torch's rms_norm eps=None: the machine epsilon of the computation (opmath) type (torch 2.13 RMSNorm docs)."""
    return torch.finfo(opmath_dtype(dtype)).eps


# Source: torch.nn.functional.layer_norm / rms_norm: normalized_shape names the input's trailing dims.
def _normalized_dims(input: Tensor, normalized_shape: Shape, weight: Tensor | None) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.dim() - len(shape) :]) != shape or len(shape) > input.dim():
        raise ValueError(f"input of shape {tuple(input.shape)} does not end with normalized_shape {shape}")
    if weight is not None and tuple(weight.shape) != shape:
        raise ValueError(f"weight has shape {tuple(weight.shape)}, expected normalized_shape {shape}")
    return tuple(range(-len(shape), 0))


#: elements per chunk of whole rows in rms_norm and layer_norm: a chunk's temporaries stay in cache and are reused by
#: the allocator, where whole-tensor temporaries at 4096 x 8192 are fresh memory each (benchmarks/test_bench_norms.py).
CHUNK_ELEMENTS = 1 << 20


def _by_rows(normalize: Callable[[Tensor], Tensor], input: Tensor, norm_dims: int) -> Tensor:
    """`normalize` (rows -> rows, each row on its own) applied to chunks of whole rows, the results concatenated: the
    same values as one call, with temporaries of CHUNK_ELEMENTS instead of the input's size."""
    if input.numel() <= CHUNK_ELEMENTS:
        return normalize(input)
    rows = input.reshape(-1, *input.shape[input.dim() - norm_dims :])
    per_chunk = max(1, CHUNK_ELEMENTS // rows[0].numel())
    return torch.cat([normalize(chunk) for chunk in rows.split(per_chunk)]).reshape(input.shape)


# Source: Zhang & Sennrich 2019, "Root Mean Square Layer Normalization", eq. 4: y = x / RMS(x) * g with
# RMS(x) = sqrt(mean(x^2) + eps), eps inside the square root as in torch.nn.functional.rms_norm and Hugging Face
# LlamaRMSNorm (`x * rsqrt(mean(x^2) + eps)`). weight_offset=1: Gemma's RMSNorm (Gemma Team 2024, gemma_pytorch
# RMSNorm `add_unit_offset`; transformers models/gemma/modeling_gemma.py GemmaRMSNorm:
# `output * (1.0 + self.weight.float())`, weight initialized to zeros, computed in float32 and rounded once).
@typechecked
def rms_norm(
    input: Float[Tensor, "*shape"],
    normalized_shape: Shape,
    weight: Float[Tensor, "*norm"] | None = None,
    eps: float | None = None,
    *,
    weight_offset: int | float = 0,
) -> Float[Tensor, "*shape"]:
    """`torch.nn.functional.rms_norm`: x / sqrt(mean(x^2 over the normalized dims) + eps) * (weight_offset + weight).

    eps=None is torch's default, the machine epsilon of the computation type (float32 for half inputs).
    weight_offset=0 (torch, Llama) scales by `weight`; weight_offset=1 is Gemma's convention (transformers
    GemmaRMSNorm): x_hat * (1 + weight), the sum 1 + weight taken in the computation type (float32 for half
    inputs), so a zero weight is the identity scaling. weight=None scales by 1 in both conventions."""
    dims = _normalized_dims(input, normalized_shape, weight)
    eps = default_rms_eps(input.dtype) if eps is None else eps

    def normalize(rows: Tensor) -> Tensor:
        x = rows.to(opmath_dtype(rows.dtype))
        y = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
        if weight is not None:
            y = y * (weight.to(y.dtype) + weight_offset) if weight_offset else y * weight.to(y.dtype)
        return y.to(rows.dtype)

    return _by_rows(normalize, input, len(dims))


# Source: Ba et al. 2016, "Layer Normalization", eqs. 3-4, with torch's biased variance and eps inside the square
# root (torch.nn.functional.layer_norm).
@typechecked
def layer_norm(
    input: Float[Tensor, "*shape"],
    normalized_shape: Shape,
    weight: Float[Tensor, "*norm"] | None = None,
    bias: Float[Tensor, "*norm"] | None = None,
    eps: float = 1e-5,
) -> Float[Tensor, "*shape"]:
    """`torch.nn.functional.layer_norm`: (x - mean) / sqrt(biased var + eps) * weight + bias."""
    dims = _normalized_dims(input, normalized_shape, weight)
    if bias is not None:
        _normalized_dims(input, normalized_shape, bias)

    def normalize(rows: Tensor) -> Tensor:
        x = rows.to(opmath_dtype(rows.dtype))
        centered = x - x.mean(dim=dims, keepdim=True)
        y = centered * torch.rsqrt(centered.pow(2).mean(dim=dims, keepdim=True) + eps)
        if weight is not None:
            y = y * weight.to(y.dtype)
        if bias is not None:
            y = y + bias.to(y.dtype)
        return y.to(rows.dtype)

    return _by_rows(normalize, input, len(dims))


# Source: Ioffe & Szegedy 2015, "Batch Normalization", Algorithm 1 (training: batch statistics) and sec. 3.1
# (inference: population statistics); torch.nn.functional.batch_norm updates the running variance with the unbiased
# batch variance.
@typechecked
def batch_norm(
    input: Float[Tensor, "n c *rest"],
    running_mean: Float[Tensor, " c"] | None,
    running_var: Float[Tensor, " c"] | None,
    weight: Float[Tensor, " c"] | None = None,
    bias: Float[Tensor, " c"] | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Float[Tensor, "n c *rest"]:
    """`torch.nn.functional.batch_norm` over channel dim 1.

    training: normalize with the batch's mean and biased variance over every dim but 1, and (like torch)
    update running_mean / running_var in place when given: r <- (1 - momentum) r + momentum * batch statistic,
    the variance statistic being unbiased (n / (n - 1)). Eval: normalize with the running statistics."""
    dims = [0] + list(range(2, input.dim()))
    view = [1, -1] + [1] * (input.dim() - 2)
    x = input.to(opmath_dtype(input.dtype))
    if training:
        count = x.numel() // x.shape[1]
        if count < 2:
            raise ValueError(f"expected more than 1 value per channel when training, got input of shape "
                             f"{tuple(input.shape)}")
        mean = x.mean(dim=dims)
        var = (x - mean.reshape(view)).pow(2).mean(dim=dims)
        with torch.no_grad():
            if running_mean is not None:
                running_mean.mul_(1 - momentum).add_(momentum * mean.to(running_mean.dtype))
            if running_var is not None:
                running_var.mul_(1 - momentum).add_(momentum * (var * count / (count - 1)).to(running_var.dtype))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var are required in eval mode (training=False)")
        mean, var = running_mean.to(x.dtype), running_var.to(x.dtype)
    y = (x - mean.reshape(view)) * torch.rsqrt(var.reshape(view) + eps)
    if weight is not None:
        y = y * weight.to(y.dtype).reshape(view)
    if bias is not None:
        y = y + bias.to(y.dtype).reshape(view)
    return y.to(input.dtype)


Order = Literal["pre", "post"]


# Source: post-norm x' = Norm(x + F(x)) (Vaswani et al. 2017, sec. 5.4 / 3.1 "LayerNorm(x + Sublayer(x))"); pre-norm
# x' = x + F(Norm(x)) (GPT-2, Radford et al. 2019, sec. 2.3; Xiong et al. 2020, "On Layer Normalization in the
# Transformer Architecture").
@typechecked
def residual_block(
    x: Float[Tensor, "*batch d"],
    sublayer: Callable[[Tensor], Tensor],
    norm: Callable[[Tensor], Tensor],
    order: Order = "pre",
) -> Float[Tensor, "*batch d"]:
    """One residual sub-block: pre-norm x + F(Norm(x)) (GPT-2, Llama) or post-norm Norm(x + F(x)) (Vaswani et al.)."""
    if order == "pre":
        return x + sublayer(norm(x))
    if order == "post":
        return norm(x + sublayer(x))
    raise ValueError(f"order must be 'pre' or 'post', got {order!r}")


Scope = Literal["per_head", "all_heads"]


# Source: per head over head_dim in Qwen3 (transformers/models/qwen3/modeling_qwen3.py:
# `Qwen3RMSNorm(self.head_dim)`), over all heads' concatenated projection in OLMo 2
# (models/olmo2/modeling_olmo2.py: `Olmo2RMSNorm(num_attention_heads * head_dim)`).
def qk_rms(x: Tensor, weight: Tensor, eps: float, scope: Scope) -> Tensor:
    """RMSNorm of queries or keys [B, H, L, E] per head or over all heads of a token (`scope`)."""
    if scope == "per_head":
        return rms_norm(x, (x.shape[-1],), weight, eps)
    b, h, l, e = x.shape  # OLMo 2: one RMSNorm over the concatenated heads of each token
    flat = x.transpose(1, 2).reshape(b, l, h * e)
    return rms_norm(flat, (h * e,), weight, eps).reshape(b, l, h, e).transpose(1, 2)


# Source: RMSNorm of queries and keys before RoPE, as Qwen3 and OLMo 2 apply q_norm / k_norm (transformers
# models/qwen3, models/olmo2); the scopes are those of qk_rms above.
@typechecked
def qk_norm(
    query: Float[Tensor, "b hq l e"],
    key: Float[Tensor, "b hkv l e"],
    q_weight: Float[Tensor, " wq"],
    k_weight: Float[Tensor, " wk"],
    positions: Int[Tensor, " l"],
    eps: float = 1e-6,
    theta: float = 10000.0,
    scope: Scope = "per_head",
) -> tuple[Float[Tensor, "b hq l e"], Float[Tensor, "b hkv l e"]]:
    """QK-norm then RoPE: rope(RMSNorm(q) * q_weight), rope(RMSNorm(k) * k_weight).

    scope 'per_head' (Qwen3): RMSNorm over each head's E dims, weights [E]. 'all_heads' (OLMo 2): over the
    H * E dims of each token, weights [H * E] (head-major, the q_proj output layout)."""
    q = qk_rms(query, q_weight, eps, scope)
    k = qk_rms(key, k_weight, eps, scope)
    return rope(q, positions, theta), rope(k, positions, theta)


# --- stand-in sublayers that cross to a worker by value ---------------------------------------------------------
# The harness runs a plain function it passes to a target in its own process (conformance/isolation.py), which cuts
# the target's autograd graph; callables of this module cross by value, so a gradient check differentiates through
# them where the target runs.


class Projection:
    """tanh(h W^T), W applied in h's dtype; `causal_mean`: h first averaged over positions 0..i along dim -2 (a
    causal token mixer standing in for attention)."""

    def __init__(self, weight: Tensor, causal_mean: bool = False):
        self.weight, self.causal_mean = weight, causal_mean

    def __call__(self, h: Tensor) -> Tensor:
        if self.causal_mean:
            counts = torch.arange(1, h.shape[-2] + 1, device=h.device, dtype=h.dtype)[:, None]
            h = h.cumsum(-2) / counts
        return torch.tanh(h @ self.weight.to(h.device, h.dtype).T)


class AffineNorm:
    """layer_norm(h; gain, shift) or rms_norm(h; gain, eps 1e-6) over the last dim, parameters in h's dtype."""

    def __init__(self, kind: Literal["layer_norm", "rms_norm"], gain: Tensor, shift: Tensor | None = None):
        self.kind, self.gain, self.shift = kind, gain, shift

    def __call__(self, h: Tensor) -> Tensor:
        d, w = h.shape[-1], self.gain.to(h.device, h.dtype)
        if self.kind == "layer_norm":
            return layer_norm(h, (d,), w, None if self.shift is None else self.shift.to(h.device, h.dtype))
        return rms_norm(h, (d,), w, 1e-6)
