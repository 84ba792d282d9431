"""Adapters for the norms family: torch's nn.RMSNorm / nn.LayerNorm modules, Hugging Face RMSNorm classes, and
Hugging Face QK-norm (Qwen3, OLMo 2) assembled exactly as their attention layers do it.

Each adapter builds the library module in the input's dtype, copies the canonical weights into it and calls it;
it never changes what the module computes. Differences are declared (dtypes, implied options) and recorded in
docs/conventions.md (section "Norms, activations, feed-forward, positions").

- `torch_rms_norm_module`, `torch_layer_norm_module`: the nn.RMSNorm / nn.LayerNorm class.
- `hf_rms_norm`: a Hugging Face `<Model>RMSNorm(hidden_size, eps=1e-6)` class (LlamaRMSNorm, Qwen3RMSNorm, ...):
  eps omitted means the class default 1e-6 (option eps_default=1e-6); computes in float32, so float64 is
  declared unsupported. Multi-dim normalized shapes are flattened into the last dim (same mean, same result).
- `hf_qwen3_qk_norm`, `hf_olmo2_qk_norm`: the modeling module (e.g. `transformers.models.qwen3:modeling_qwen3`);
  its RMSNorm class, RotaryEmbedding and apply_rotary_pos_emb, composed as Qwen3Attention / Olmo2Attention do.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from .hf import call_with, config_class, tiny_config
from .registry import AdapterSpec, expect_class, expect_module, register


def _shape(normalized_shape) -> tuple[int, ...]:
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


def _wrap_torch_rms_module(cls: object, component: str) -> Callable:
    expect_class(cls, "the torch.nn:RMSNorm module class", base="torch.nn.Module")

    def rms_norm(input, normalized_shape, weight=None, eps=None):
        module = cls(_shape(normalized_shape), eps=eps, elementwise_affine=weight is not None, device=input.device, dtype=input.dtype)
        return call_with(module, {"weight": weight}, input)

    return rms_norm


def _wrap_torch_layer_norm_module(cls: object, component: str) -> Callable:
    expect_class(cls, "the torch.nn:LayerNorm module class", base="torch.nn.Module")

    def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
        affine = weight is not None or bias is not None
        module = cls(_shape(normalized_shape), eps=eps, elementwise_affine=affine, bias=bias is not None, device=input.device, dtype=input.dtype)
        return call_with(module, {"weight": weight, "bias": bias}, input)

    return layer_norm


register(AdapterSpec(
    name="torch_rms_norm_module",
    components=("rms_norm",),
    wrap=_wrap_torch_rms_module,
    doc="torch.nn.RMSNorm(normalized_shape, eps, elementwise_affine=weight is not None) in the input's dtype, weight copied in.",
))

register(AdapterSpec(
    name="torch_layer_norm_module",
    components=("layer_norm",),
    wrap=_wrap_torch_layer_norm_module,
    doc="torch.nn.LayerNorm(normalized_shape, eps, elementwise_affine, bias=bias is not None) in the input's dtype; a missing "
    "weight with a bias given is the module's initial weight, ones.",
))


@functools.lru_cache(maxsize=128)
def _hf_rms_cached(cls, size: int, eps: float | None, dtype, device: str):
    module = cls(size) if eps is None else cls(size, eps=eps)  # eps omitted: the class's own default
    module = module.to(device=device, dtype=dtype).requires_grad_(False)
    module.lmspec_initial_scale = norm_scale(module).detach().clone()  # what weight=None means for this class
    return module


def norm_scale(module: torch.nn.Module) -> torch.nn.Parameter:
    """The module's scale parameter: `weight` (Llama, Qwen, T5, Gemma), else `scale`, else its only parameter."""
    for name in ("weight", "scale", "gamma", "g"):
        if isinstance(getattr(module, name, None), torch.nn.Parameter):
            return getattr(module, name)
    params = list(module.parameters())
    if len(params) != 1:
        raise TypeError(f"{type(module).__name__} has no `weight`, `scale`, `gamma` or `g` parameter and "
                        f"{len(params)} parameters: which one scales the output is not known")
    return params[0]


def _hf_rms_module(cls, size: int, eps: float | None, weight, dtype, device) -> Callable:
    """The module called with `weight` standing in for its scale parameter (so gradients reach it); weight=None
    uses the class's own initial value (ones for Llama, zeros for Gemma, whose (1 + weight) then scales by 1)."""
    module = _hf_rms_cached(cls, size, eps, dtype, str(device))
    scale = norm_scale(module)
    name = next(n for n, p in module.named_parameters() if p is scale)
    value = weight.reshape(-1) if weight is not None else module.lmspec_initial_scale
    return functools.partial(call_with, module, {name: value})


def _wrap_hf_rms_norm(cls: object, component: str) -> Callable:
    expect_class(cls, "a Hugging Face <Model>RMSNorm module class", base="torch.nn.Module")

    def rms_norm(input, normalized_shape, weight=None, eps=None):
        shape = _shape(normalized_shape)
        n = math.prod(shape)
        module = _hf_rms_module(cls, n, eps, weight, input.dtype, input.device)
        flat = input.reshape(*input.shape[: input.dim() - len(shape)], n)
        return module(flat).reshape(input.shape)

    return rms_norm


register(AdapterSpec(
    name="hf_rms_norm",
    components=("rms_norm",),
    wrap=_wrap_hf_rms_norm,
    doc="A Hugging Face RMSNorm class with LlamaRMSNorm's constructor (hidden_size, eps=1e-6) and forward: built in the input's "
    "dtype with the normalized dims flattened into one, weight copied into its scale parameter (read as `weight`, else "
    "`scale`, `gamma` or `g`, else its only parameter; when None, the class's initial value: ones for Llama, zeros for Gemma). eps omitted = the class default 1e-6, "
    "hence eps_default=1e-6. float64 unsupported: the class computes in float32 (hidden_states.to(torch.float32)).",
    unsupported_dtypes=frozenset({"float64"}),
    implied_options={"eps_default": "1e-6"},
))


# --- QK-norm --------------------------------------------------------------------------------------------


def _config(module, heads: int, kv_heads: int, head_dim: int, eps: float):
    """The model's own config class (Qwen3Config, Olmo2Config) with these sizes and default RoPE, theta 10000."""
    return tiny_config(config_class(module), hidden_size=heads * head_dim, intermediate_size=1, num_attention_heads=heads,
                       num_key_value_heads=kv_heads, head_dim=head_dim, rms_norm_eps=eps,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def _class(module, suffix: str):
    return next(getattr(module, n) for n in dir(module) if n.endswith(suffix) and isinstance(getattr(module, n), type))


def _wrap_hf_qk_norm(scope: str):
    def wrap(module: object, component: str) -> Callable:
        what = "a Hugging Face modeling module (transformers.models.qwen3:modeling_qwen3)"
        expect_module(module, what, attrs=("apply_rotary_pos_emb",))
        try:
            norm_cls, rotary_cls = _class(module, "RMSNorm"), _class(module, "RotaryEmbedding")
            config_class(module)
        except StopIteration:
            raise TypeError(f"it adapts {what}; the module {module.__name__} has no <Model>RMSNorm, "
                            "<Model>RotaryEmbedding or <Model>Config class") from None

        def qk_norm(query, key, q_weight, k_weight, positions, eps=1e-6):
            b, h, l, e = query.shape
            hkv = key.shape[1]
            config = _config(module, h, hkv, e, eps)
            cos, sin = rotary_cls(config).to(query.device)(query, positions[None])
            if scope == "per_head":  # Qwen3: norm over head_dim of [B, L, H, E] (layout-independent)
                q = _hf_rms_module(norm_cls, e, eps, q_weight, query.dtype, query.device)(query)
                k = _hf_rms_module(norm_cls, e, eps, k_weight, key.dtype, key.device)(key)
            else:  # OLMo 2: norm over the [B, L, H * E] projection, then view as heads
                flat = lambda x: x.transpose(1, 2).reshape(b, l, -1)  # noqa: E731
                heads = lambda x, n: x.view(b, l, n, e).transpose(1, 2)  # noqa: E731
                # per-head weights [E] (the per_head scope's layout) are the same weight repeated for every head
                wq = q_weight.repeat(h) if q_weight.numel() == e else q_weight
                wk = k_weight.repeat(hkv) if k_weight.numel() == e else k_weight
                q = heads(_hf_rms_module(norm_cls, h * e, eps, wq, query.dtype, query.device)(flat(query)), h)
                k = heads(_hf_rms_module(norm_cls, hkv * e, eps, wk, key.dtype, key.device)(flat(key)), hkv)
            return module.apply_rotary_pos_emb(q, k, cos, sin)

        return qk_norm

    return wrap


_QK_DOC = (
    "The model's RMSNorm class (weights copied in, eps as given), its RotaryEmbedding built from the model's config class "
    "(rope_type default, theta 10000; cos/sin computed in float32 and cast to the input dtype) and its apply_rotary_pos_emb, "
    "in the order of the model's attention forward. float64 unsupported: the norm and the RoPE angles are float32."
)

register(AdapterSpec(
    name="hf_qwen3_qk_norm",
    components=("qk_norm",),
    wrap=_wrap_hf_qk_norm("per_head"),
    doc="Target: transformers.models.qwen3:modeling_qwen3. Qwen3Attention: q_norm / k_norm = Qwen3RMSNorm(head_dim) per head. " + _QK_DOC,
    unsupported_dtypes=frozenset({"float64"}),
    implied_options={"qk_norm_scope": "per_head"},
))

register(AdapterSpec(
    name="hf_olmo2_qk_norm",
    components=("qk_norm",),
    wrap=_wrap_hf_qk_norm("all_heads"),
    doc="Target: transformers.models.olmo2:modeling_olmo2. Olmo2Attention: q_norm = Olmo2RMSNorm(num_heads * head_dim) over the "
    "whole projection before splitting heads, hence qk_norm_scope=all_heads. Weights of head_dim elements (the per_head "
    "layout) are repeated for every head, so the module can also be checked against the per_head scope. " + _QK_DOC,
    unsupported_dtypes=frozenset({"float64"}),
    implied_options={"qk_norm_scope": "all_heads"},
))
