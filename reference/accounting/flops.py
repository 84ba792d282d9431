"""FLOP counts of transformer forward and training steps, the published approximations, and compute budgets.

What is counted: floating-point operations of matrix multiplications, a multiply-add being 2 FLOPs (an
[m, k] x [k, n] product is 2 m n k). Elementwise work (norms, softmax, activations, residuals) and embedding
lookups are left out, as in every formula below and in `torch.utils.flop_counter.FlopCounterMode`, which
counts mm/addmm/bmm as 2 m n k (bias additions not counted), the backward of a matmul as twice its forward,
and SDPA as 4 B H Lq Lk E forward whatever the mask. FlopCounterMode counts SDPA only where it dispatches to a
kernel it knows: on the CPU the default fused SDPA kernel is not counted (0 FLOPs), so attention must run on
the math backend or as explicit matmuls (Hugging Face `attn_implementation="eager"`) to be measured; likewise
transformers' default `grouped_mm` MoE experts are not counted on the CPU (`experts_implementation="eager"`).

Attention conventions (`attention=`): "dense" counts every (query, key) pair of QK^T and AV, as dense kernels,
FlopCounterMode, PaLM and Megatron do; "half" halves it for a causal mask (FlashAttention's benchmarks, and
Kaplan's 2 n_layer n_ctx d_attn); "exact" counts the pairs a causal mask keeps, Lq (Lk - Lq) + Lq (Lq + 1) / 2.

Sources: Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1 (C_forward = 2N + 2 n_layer
n_ctx d_attn, training ~ 6N per token); Chowdhery et al. 2022, "PaLM", appendix B (model FLOPs per token
6N + 12 L H Q T; MFU vs HFU); Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM", sec. 5.1 (72 B s l h^2 (1 + s/6h + V/12hl), 96 ... with recomputation);
Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models" (selective
recomputation recomputes QK^T, softmax, dropout and AV); Brown et al. 2020, "GPT-3", appendix D (1 PF-day =
10^15 x 86,400 FLOP; 175B: 3.14e23 FLOP, 3.64e3 PF-days); Hoffmann et al. 2022, "Chinchilla" (C ~ 6 N D,
~20 tokens per parameter: 70B and 1.4T tokens).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Mapping

from .params import architecture, matmul_parameters

AttentionConvention = Literal["dense", "half", "exact"]
ATTENTION_CONVENTIONS = ("dense", "half", "exact")
Recompute = Literal["none", "selective", "full"]
RECOMPUTE = ("none", "selective", "full")

#: one petaflop/s-day: 10^15 FLOP/s for 86,400 s (GPT-3 appendix D).
PF_DAY_FLOPS = 1e15 * 86400


def matmul_flops(m: int, n: int, k: int) -> int:
    """[m, k] x [k, n]: m n dot products of length k, each k multiplies and k adds: 2 m n k."""
    return 2 * m * n * k


def causal_pairs(q_len: int, kv_len: int) -> int:
    """(query, key) pairs a causal mask keeps when the queries are the last q_len of kv_len positions."""
    if q_len > kv_len:
        raise ValueError(f"causal attention with more queries ({q_len}) than keys ({kv_len})")
    return q_len * (kv_len - q_len) + q_len * (q_len + 1) // 2


def attention_flops(
    batch: int, heads: int, q_len: int, kv_len: int, head_dim: int, value_dim: int | None = None,
    attention: AttentionConvention = "dense",
) -> int:
    """QK^T (2 B H Lq Lk E) plus AV (2 B H Lq Lk Ev); `heads` are query heads (GQA repeats K and V)."""
    ev = head_dim if value_dim is None else value_dim
    per_pair = 2 * batch * heads * (head_dim + ev)
    if attention == "dense":
        return per_pair * q_len * kv_len
    if attention == "half":
        return per_pair * q_len * kv_len // 2
    if attention == "exact":
        return per_pair * causal_pairs(q_len, kv_len)
    raise ValueError(f"attention convention {attention!r} not in {ATTENTION_CONVENTIONS}")


def forward_breakdown(
    config: Mapping[str, Any], seq_len: int, batch: int = 1, attention: AttentionConvention = "dense"
) -> dict[str, int]:
    """Matmul FLOPs of one forward pass over batch x seq_len tokens, by part.

    per layer: 2 T x (projection, router and top-k expert matrices) plus the attention core; then the output
    head 2 T d V. The input embedding is a lookup (0 FLOPs); a tied head still multiplies.
    """
    arch = architecture(config)
    tokens = batch * seq_len
    layer_weights = (matmul_parameters(arch) - arch.vocab_size * arch.hidden_size) // arch.num_layers
    core = attention_flops(batch, arch.num_heads, seq_len, seq_len, arch.head_dim, arch.head_dim, attention)
    per_layer = 2 * tokens * layer_weights + core
    head = 2 * tokens * arch.hidden_size * arch.vocab_size
    return {
        "per_layer": per_layer,
        "attention_core": arch.num_layers * core,
        "layers": arch.num_layers * per_layer,
        "head": head,
        "total": arch.num_layers * per_layer + head,
    }


def forward_flops(
    config: Mapping[str, Any], seq_len: int, batch: int = 1, attention: AttentionConvention = "dense"
) -> int:
    """Matmul FLOPs of one forward pass (see `forward_breakdown`)."""
    return forward_breakdown(config, seq_len, batch, attention)["total"]


def training_flops(
    config: Mapping[str, Any], seq_len: int, batch: int = 1, recompute: Recompute = "none",
    attention: AttentionConvention = "dense",
) -> int:
    """Forward + backward (twice the forward: gradients of inputs and of weights) + what is recomputed.

    "selective" recomputes the attention core (Korthikanti et al. 2022); "full" reruns every layer's forward
    but not the output head (Megatron's 96 B s l h^2 formula; Hugging Face gradient checkpointing).
    """
    parts = forward_breakdown(config, seq_len, batch, attention)
    extra = {"none": 0, "selective": parts["attention_core"], "full": parts["layers"]}
    if recompute not in extra:
        raise ValueError(f"recompute {recompute!r} not in {RECOMPUTE}")
    return 3 * parts["total"] + extra[recompute]


def six_nd(params: int, tokens: int) -> int:
    """Kaplan et al. 2020 / Chinchilla: training compute C ~ 6 N D (2 N forward, 4 N backward per token)."""
    return 6 * params * tokens


def kaplan_forward_flops_per_token(n_layer: int, d_model: int, d_attn: int, d_ff: int, n_ctx: int) -> int:
    """Kaplan et al. 2020, Table 1: C_forward = 2 N + 2 n_layer n_ctx d_attn, N = 2 d_model n_layer (2 d_attn + d_ff).

    The de-embedding (2 d_model n_vocab) is listed separately and not included; the context term is half of
    the dense QK^T + AV count (a causal average)."""
    n = 2 * d_model * n_layer * (2 * d_attn + d_ff)
    return 2 * n + 2 * n_layer * n_ctx * d_attn


def palm_model_flops_per_token(params: int, layers: int, heads: int, head_dim: int, seq_len: int) -> int:
    """PaLM appendix B: 6 N + 12 L H Q T model FLOPs per training token (dense attention, no recomputation)."""
    return 6 * params + 12 * layers * heads * head_dim * seq_len


def megatron_training_flops(
    batch: int, seq_len: int, layers: int, hidden: int, vocab: int, recompute: bool = False
) -> int:
    """Narayanan et al. 2021, sec. 5.1: 72 B s l h^2 (1 + s/(6h) + V/(12 h l)) per iteration, or with full
    recomputation 96 B s l h^2 (1 + s/(6h) + V/(16 l h)); exact integers for a GPT layer (d_ff = 4h)."""
    b, s, l, h, v = batch, seq_len, layers, hidden, vocab
    if recompute:
        return 96 * b * s * l * h * h + 16 * b * s * s * l * h + 6 * b * s * h * v
    return 72 * b * s * l * h * h + 12 * b * s * s * l * h + 6 * b * s * h * v


def petaflop_days(flops: float) -> float:
    """Compute in petaflop/s-days: flops / (10^15 x 86,400)."""
    return flops / PF_DAY_FLOPS


def chinchilla_optimal(compute: float, tokens_per_param: float = 20.0) -> tuple[float, float]:
    """(N, D) with 6 N D = compute and D = tokens_per_param x N (Hoffmann et al. 2022's ~20 tokens per parameter)."""
    params = math.sqrt(compute / (6.0 * tokens_per_param))
    return params, tokens_per_param * params


#: dense (no structured sparsity) peak tensor throughput in TFLOP/s, with the datasheet's "with sparsity"
#: figure where it prints one (exactly twice the dense one): MFU must divide by the dense figure.
PEAK_TFLOPS: dict[tuple[str, str], tuple[float, float | None, str]] = {
    ("V100-SXM2", "fp16"): (125.0, None, "NVIDIA V100 datasheet"),
    ("A100", "bf16"): (312.0, 624.0, "NVIDIA A100 datasheet"),
    ("A100", "fp16"): (312.0, 624.0, "NVIDIA A100 datasheet"),
    ("A100", "tf32"): (156.0, 312.0, "NVIDIA A100 datasheet"),
    ("A100", "fp32"): (19.5, None, "NVIDIA A100 datasheet"),
    ("H100-SXM", "bf16"): (989.0, 1979.0, "NVIDIA H100 datasheet (SXM5)"),
    ("H100-SXM", "fp16"): (989.0, 1979.0, "NVIDIA H100 datasheet (SXM5)"),
    ("H100-SXM", "fp8"): (1979.0, 3958.0, "NVIDIA H100 datasheet (SXM5)"),
    ("H100-SXM", "tf32"): (494.5, 989.0, "NVIDIA H100 datasheet (SXM5)"),
    ("H100-PCIe", "bf16"): (756.0, 1513.0, "NVIDIA H100 datasheet (PCIe)"),
    ("H100-PCIe", "fp8"): (1513.0, 3026.0, "NVIDIA H100 datasheet (PCIe)"),
    ("H200", "bf16"): (989.0, 1979.0, "NVIDIA H200 datasheet (SXM)"),
    ("H200", "fp8"): (1979.0, 3958.0, "NVIDIA H200 datasheet (SXM)"),
    ("MI300X", "bf16"): (1307.4, 2614.9, "AMD Instinct MI300X datasheet"),
    ("TPU-v4", "bf16"): (275.0, None, "Google Cloud TPU v4 documentation"),
}


def dense_peak_flops(device: str, dtype: str) -> float:
    """Dense peak FLOP/s of `device` in `dtype` (PEAK_TFLOPS). Sparse datasheet figures are 2x too high for MFU."""
    key = (device, dtype)
    if key not in PEAK_TFLOPS:
        known = ", ".join(f"{d}/{t}" for d, t in PEAK_TFLOPS)
        raise KeyError(f"no dense peak for {device}/{dtype}; known: {known}")
    return PEAK_TFLOPS[key][0] * 1e12


def warn_if_sparse_peak(peak_flops_per_s: float) -> None:
    """Warn when a peak equals a datasheet's 'with sparsity' figure and no dense one (A100 bf16 624; not 1979,
    which is H100's dense fp8 as well as its sparse bf16): twice the dense throughput, so MFU would be halved."""
    tflops = peak_flops_per_s / 1e12
    dense = {d for d, _, _ in PEAK_TFLOPS.values()}
    sparse = [f"{dev} {dt}" for (dev, dt), (_, sp, _) in PEAK_TFLOPS.items()
              if sp is not None and math.isclose(sp, tflops)]
    if sparse and not any(math.isclose(d, tflops) for d in dense):
        warnings.warn(f"{tflops:g} TFLOP/s is the 'with sparsity' datasheet figure of {', '.join(sparse)}; MFU "
                      "divides by the dense peak (half of it): see dense_peak_flops", stacklevel=3)


def utilization(
    config: Mapping[str, Any], seq_len: int, batch: int, step_seconds: float, peak_flops_per_s: float,
    recompute: Recompute = "none", attention: AttentionConvention = "dense",
) -> dict[str, float]:
    """MFU and HFU of a training step that took `step_seconds` (PaLM appendix B).

    MFU counts the model FLOPs (no recomputation) whatever the implementation does; HFU counts the FLOPs the
    hardware executed, recomputation included, so HFU >= MFU. Both divide by the dense peak."""
    if step_seconds <= 0 or peak_flops_per_s <= 0:
        raise ValueError("step_seconds and peak_flops_per_s must be positive")
    warn_if_sparse_peak(peak_flops_per_s)
    budget = step_seconds * peak_flops_per_s
    return {
        "mfu": training_flops(config, seq_len, batch, "none", attention) / budget,
        "hfu": training_flops(config, seq_len, batch, recompute, attention) / budget,
    }
