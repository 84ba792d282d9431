"""Memory of training and inference: weights, gradients and optimizer states, activations, KV caches; and
the memory traffic of multi-head vs multi-query attention.

Sources:
- Rajbhandari et al. 2020, "ZeRO", sec. 3.1 and 5: mixed-precision Adam keeps fp16 weights (2 B) and
  gradients (2 B) and K = 12 bytes of optimizer state (fp32 master weights, momentum, variance): 16 B per
  parameter; stage 1 partitions the optimizer states over N_d devices, stage 2 also the gradients, stage 3
  also the weights: (2 + 2 + K) Psi, 2 Psi + 2 Psi + K Psi / N_d, 2 Psi + (2 + K) Psi / N_d, (2 + 2 + K) Psi / N_d.
  Their example: Psi = 7.5B, N_d = 64: 120 GB, 31.4 GB, 16.6 GB, 1.88 GB.
- Megatron-LM (Narayanan et al. 2021; `--accumulate-allreduce-grads-in-fp32`) accumulates gradients in an
  fp32 main-grad buffer: 2 + 4 + 12 = 18 B per parameter.
- fp32 Adam: 4 (weights) + 4 (gradients) + 8 (two moments) = 16 B; pure bf16 Adam (weights, gradients and
  moments in bf16, no master copy): 8 B. torch.optim.AdamW also keeps one `step` scalar per parameter
  tensor (4 bytes each), which per-parameter counts leave out.
- Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", sec. 4 and
  Table 2: activations per GPT layer s b h (34 + 5 a s / h) bytes, assuming 16-bit activations, 1-byte
  dropout masks, d_ff = 4h, two LayerNorms and dropout after the attention softmax, the attention output and
  the MLP; small buffers (LayerNorm mean / rstd) are left out.
- KV cache: 2 (K and V) x layers x kv_heads x head_dim x tokens x batch x bytes (Pope et al. 2022, sec. 3.1);
  MLA caches c_KV and k_R: (d_c + d_h^R) elements per token per layer (DeepSeek-V2, sec. 2.1.2, Table 1).
- Shazeer 2019, "Fast Transformer Decoding: One Write-Head is All You Need", sec. 2.4 and 3.1 (below).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from .params import architecture, param_count

#: bytes per parameter: (weights, gradients, optimizer states).
RECIPES: dict[str, tuple[int, int, int]] = {
    "fp32_adam": (4, 4, 8),
    "mixed_adam": (2, 2, 12),
    "mixed_adam_fp32_grads": (2, 4, 12),
    "bf16_adam": (2, 2, 4),
}
RECIPE_DOCS = {
    "fp32_adam": "fp32 weights and gradients, fp32 Adam moments: 4 + 4 + 8 = 16 B/param",
    "mixed_adam": "bf16/fp16 weights and gradients, fp32 master weights and moments (ZeRO's K = 12): "
    "2 + 2 + 12 = 16 B/param",
    "mixed_adam_fp32_grads": "as mixed_adam with fp32 main gradients (Megatron-LM): 2 + 4 + 12 = 18 B/param",
    "bf16_adam": "bf16 weights, gradients and Adam moments, no master copy: 2 + 2 + 4 = 8 B/param",
}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def training_memory(params: int, recipe: str = "mixed_adam", zero_stage: int = 0, devices: int = 1) -> dict[str, int]:
    """Bytes per device of weights, gradients and optimizer states (activations excluded).

    ZeRO stage s >= 1 shards the optimizer states, s >= 2 also the gradients, s = 3 also the weights, each
    device holding ceil(params / devices) of every sharded tensor.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    if zero_stage not in (0, 1, 2, 3) or devices < 1:
        raise ValueError("zero_stage must be 0..3 and devices >= 1")
    w, g, o = RECIPES[recipe]
    shard = _ceil_div(params, devices)
    out = {
        "weights": w * (shard if zero_stage >= 3 else params),
        "gradients": g * (shard if zero_stage >= 2 else params),
        "optimizer": o * (shard if zero_stage >= 1 else params),
    }
    out["total"] = out["weights"] + out["gradients"] + out["optimizer"]
    return out


def activation_memory(
    seq_len: int, batch: int, hidden: int, heads: int, recompute: Literal["none", "selective", "full"] = "none",
    tensor_parallel: int = 1, sequence_parallel: bool = False,
) -> int:
    """Activation bytes stored per GPT layer for the backward pass (Korthikanti et al. 2022, Table 2).

    none: s b h (10 + 24/t + 5 a s / (h t)), i.e. s b h (34 + 5 a s / h) for t = 1; with sequence parallelism
    the 10 s b h replicated part is split too: s b h (34 + 5 a s / h) / t. selective recomputation drops the
    5 a s^2 b / t attention-score terms; full recomputation keeps only the layer input, 2 s b h.
    Integer division is exact when t divides h and a (as Megatron requires).
    """
    s, b, h, a, t = seq_len, batch, hidden, heads, tensor_parallel
    sbh = s * b * h
    if recompute == "full":
        return 2 * sbh
    scores = 5 * a * s * s * b // t
    replicated = 10 * sbh // t if sequence_parallel else 10 * sbh
    stored = replicated + 24 * sbh // t
    if recompute == "selective":
        return stored
    if recompute == "none":
        return stored + scores
    raise ValueError(f"recompute {recompute!r} not in ('none', 'selective', 'full')")


def kv_cache_bytes(
    num_layers: int, kv_heads: int, head_dim: int, tokens: int, batch: int, bytes_per_element: int
) -> int:
    """2 (K and V) x layers x kv_heads x head_dim x tokens x batch x bytes per element."""
    return 2 * num_layers * kv_heads * head_dim * tokens * batch * bytes_per_element


def mla_cache_bytes(
    layers: int, latent_dim: int, rope_dim: int, tokens: int, batch: int, bytes_per_element: int
) -> int:
    """MLA caches the latent c_KV (d_c) and the shared RoPE key k_R (d_h^R) per token and layer."""
    return layers * (latent_dim + rope_dim) * tokens * batch * bytes_per_element


def kv_cache_bytes_per_token(config: Mapping[str, Any], bytes_per_element: int = 2) -> int:
    """KV cache bytes one token adds over all layers of the model (batch 1)."""
    arch = architecture(config)
    return kv_cache_bytes(arch.num_layers, arch.num_kv_heads, arch.head_dim, 1, 1, bytes_per_element)


def inference_memory(
    config: Mapping[str, Any], tokens: int, batch: int = 1, weight_bytes: int = 2, cache_bytes: int = 2
) -> dict[str, int]:
    """Weights plus the KV cache of `batch` sequences of `tokens` tokens (activations of one step are small)."""
    arch = architecture(config)
    weights = param_count(config)["total"] * weight_bytes
    cache = kv_cache_bytes(arch.num_layers, arch.num_kv_heads, arch.head_dim, tokens, batch, cache_bytes)
    return {"weights": weights, "kv_cache": cache, "total": weights + cache}


def attention_memory_traffic(
    batch: int, seq_len: int, d_model: int, heads: int, kv_heads: int, incremental: bool
) -> dict[str, float]:
    """Shazeer 2019's counts for multi-head attention over n = seq_len tokens, b sequences, k = d / h.

    Derivation (sec. 2.4, 3.1): the projections perform Theta(b n d^2) arithmetic operations either way.
    - Batched (training, or a whole prompt): X is read once (b n d), the logits / weights are written and
      read once (b h n^2) and the projection matrices once (d^2): memory b n d + b h n^2 + d^2; the ratio
      memory / operations is Theta(1/k + 1/(b n)) for n <= d.
    - Incremental decoding, one token per step for n steps: each step reads the new token's activations (b d
      per step, b n d in all), reloads the keys and values of all previous tokens (g KV heads of size k: b n^2
      k g over the n steps) and the d^2 projection weights (n d^2): memory b n d + b n^2 k g + n d^2.
      Multi-head (g = h, k g = d): b n d + b n^2 d + n d^2, ratio 1/d + n/d + 1/b = Theta(n/d + 1/b) (Shazeer
      drops the dominated b n d): the cached keys and values dominate unless n << d.
      Multi-query (g = 1): b n d + b n^2 k + n d^2, ratio 1/d + n/(d h) + 1/b: h times less cache traffic.
      Grouped-query attention (Ainslie et al. 2023) interpolates with g KV heads.
    """
    b, n, d, h, g = batch, seq_len, d_model, heads, kv_heads
    if h % g:
        raise ValueError(f"{h} heads are not a multiple of {g} KV heads")
    ops = float(b * n * d * d)
    if incremental:
        memory = float(b * n * d + n * d * d) + b * n * n * d * g / h
    else:
        memory = float(b * n * d + b * h * n * n + d * d)
    return {"operations": ops, "memory": memory, "ratio": memory / ops}


__all__ = [
    "RECIPES", "activation_memory", "attention_memory_traffic", "inference_memory", "kv_cache_bytes",
    "kv_cache_bytes_per_token", "mla_cache_bytes", "training_memory",
]
