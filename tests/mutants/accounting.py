"""Broken resource-accounting implementations: each is the reference with one mistake seen in the wild."""

import math

import numpy as np
import torch

from lmspec.reference.accounting import flops as F
from lmspec.reference.accounting import formats as N
from lmspec.reference.accounting import memory as M
from lmspec.reference.accounting import params as P

# --- parameters -----------------------------------------------------------------------------------------


def layernorm_off_by_one(config, embedding="input_and_output"):
    """Forgets GPT-2's final LayerNorm (ln_f): 2 d parameters short."""
    out = P.param_count(config, embedding)
    arch = P.architecture(config)
    if arch.norm == "layernorm":
        ln_f = 2 * arch.hidden_size
        out = {**out, "total": out["total"] - ln_f, "non_embedding": out["non_embedding"] - ln_f,
               "active": out["active"] - ln_f}
    return out


def untied_head_counted_as_tied(config, embedding="input_and_output"):
    """Counts the output head as the token table even when tie_word_embeddings is false."""
    arch = P.architecture(config)
    if arch.tied_embeddings:
        return P.param_count(config, embedding)
    return P.param_count(P.Architecture(**{**arch.__dict__, "tied_embeddings": True}), embedding)


def positions_not_embedding(config, embedding="input_and_output"):
    """Leaves the learned position table out of the embedding count whatever the convention."""
    out = P.param_count(config, embedding)
    positions = P.parameter_breakdown(config)["position_embedding"]
    if embedding != "positions_only":
        out = {**out, "embedding": out["embedding"] - positions, "non_embedding": out["non_embedding"] + positions}
    return out


def moe_active_is_total(config, embedding="input_and_output"):
    """Reports every expert as active."""
    out = P.param_count(config, embedding)
    return {**out, "active": out["total"]}


def meta_width_rounded_down(config, embedding="input_and_output"):
    """Rounds Meta's FFN width down to multiple_of instead of up."""
    if "dim" in config and "model_type" not in config:
        arch = P.architecture(config)
        hidden = int(2 * 4 * arch.hidden_size / 3)
        if config.get("ffn_dim_multiplier") is not None:
            hidden = int(config["ffn_dim_multiplier"] * hidden)
        m = int(config.get("multiple_of", 256))
        return P.param_count(P.Architecture(**{**arch.__dict__, "intermediate_size": m * (hidden // m)}), embedding)
    return P.param_count(config, embedding)


def approx_with_biases(num_layers, d_model):
    """12 L d^2 + 13 L d: counts the biases and norms, so the stated error no longer holds."""
    return 12 * num_layers * d_model**2 + 13 * num_layers * d_model


# --- FLOPs ----------------------------------------------------------------------------------------------


def matmul_without_factor_two(m, n, k):
    """Counts multiply-adds (m n k), not FLOPs."""
    return m * n * k


def attention_qk_only(batch, heads, q_len, kv_len, head_dim, value_dim=None, attention="dense"):
    """Counts QK^T and forgets AV."""
    return F.attention_flops(batch, heads, q_len, kv_len, head_dim, 0, attention)


def attention_exact_is_half(batch, heads, q_len, kv_len, head_dim, value_dim=None, attention="dense"):
    """Treats the exact causal count as half the dense one (off by the diagonal)."""
    convention = "half" if attention == "exact" else attention
    return F.attention_flops(batch, heads, q_len, kv_len, head_dim, value_dim, convention)


def forward_without_head(config, seq_len, batch=1, attention="dense"):
    """Forgets the output head (2 T d V)."""
    parts = F.forward_breakdown(config, seq_len, batch, attention)
    return parts["total"] - parts["head"]


def forward_without_attention_core(config, seq_len, batch=1, attention="dense"):
    """Counts only the weight matmuls (2 N per token), not QK^T and AV."""
    parts = F.forward_breakdown(config, seq_len, batch, attention)
    return parts["total"] - parts["attention_core"]


def forward_ignores_convention(config, seq_len, batch=1, attention="dense"):
    """Always counts dense attention."""
    return F.forward_flops(config, seq_len, batch, "dense")


def forward_attention_over_kv_heads(config, seq_len, batch=1, attention="dense"):
    """Counts the attention core over KV heads (wrong under GQA: queries keep all heads)."""
    arch = P.architecture(config)
    parts = F.forward_breakdown(config, seq_len, batch, attention)
    return parts["total"] - parts["attention_core"] * (arch.num_heads - arch.num_kv_heads) // arch.num_heads


def backward_equals_forward(config, seq_len, batch=1, recompute="none", attention="dense"):
    """Training = 2 x forward: forgets that the backward computes input and weight gradients."""
    training = F.training_flops(config, seq_len, batch, recompute, attention)
    return training - F.forward_flops(config, seq_len, batch, attention)


def recompute_includes_head(config, seq_len, batch=1, recompute="none", attention="dense"):
    """Full recomputation reruns the output head as well."""
    extra = F.forward_breakdown(config, seq_len, batch, attention)["head"] if recompute == "full" else 0
    return F.training_flops(config, seq_len, batch, recompute, attention) + extra


def selective_is_full(config, seq_len, batch=1, recompute="none", attention="dense"):
    """Selective recomputation counted as full recomputation."""
    return F.training_flops(config, seq_len, batch, "full" if recompute == "selective" else recompute, attention)


def utilization_swapped(config, seq_len, batch, step_seconds, peak_flops_per_s, recompute="none", attention="dense"):
    """MFU and HFU swapped: MFU counts the recomputation."""
    out = F.utilization(config, seq_len, batch, step_seconds, peak_flops_per_s, recompute, attention)
    return {"mfu": out["hfu"], "hfu": out["mfu"]}


def pf_days_of_hours(flops):
    """A petaflop/s-hour instead of a day."""
    return flops / (1e15 * 3600)


def chinchilla_without_six(compute, tokens_per_param=20.0):
    """Solves N D = C instead of 6 N D = C."""
    params = math.sqrt(compute / tokens_per_param)
    return params, tokens_per_param * params


def sparse_peaks(device, dtype):
    """Takes the datasheet's 'with sparsity' figure where there is one."""
    dense, sparse, _ = F.PEAK_TFLOPS[(device, dtype)]
    return (sparse or dense) * 1e12


# --- memory ---------------------------------------------------------------------------------------------


def megatron_grads_as_16(params, recipe="mixed_adam", zero_stage=0, devices=1):
    """Counts fp32 main gradients as 2 bytes: 16 instead of 18 B/param."""
    return M.training_memory(params, "mixed_adam" if recipe == "mixed_adam_fp32_grads" else recipe, zero_stage, devices)


def zero1_shards_gradients(params, recipe="mixed_adam", zero_stage=0, devices=1):
    """Stage 1 already shards the gradients (that is stage 2)."""
    return M.training_memory(params, recipe, 2 if zero_stage == 1 else zero_stage, devices)


def activations_without_dropout_masks(seq_len, batch, hidden, heads, recompute="none", tensor_parallel=1,
                                      sequence_parallel=False):
    """Forgets the 1-byte dropout masks: 32 s b h + 4 a s^2 b."""
    full = M.activation_memory(seq_len, batch, hidden, heads, recompute, tensor_parallel, sequence_parallel)
    if recompute == "full":
        return full
    masks = 2 * seq_len * batch * hidden // (tensor_parallel if sequence_parallel else 1)
    scores = heads * seq_len * seq_len * batch // tensor_parallel if recompute == "none" else 0
    return full - masks - scores


def activations_tp_splits_everything(seq_len, batch, hidden, heads, recompute="none", tensor_parallel=1,
                                     sequence_parallel=False):
    """Divides every activation by t, as if sequence parallelism were always on."""
    return M.activation_memory(seq_len, batch, hidden, heads, recompute, tensor_parallel, True)


def kv_cache_without_factor_two(num_layers, kv_heads, head_dim, tokens, batch, bytes_per_element):
    """Counts the keys and forgets the values."""
    return M.kv_cache_bytes(num_layers, kv_heads, head_dim, tokens, batch, bytes_per_element) // 2


def mla_cache_without_rope_key(layers, latent_dim, rope_dim, tokens, batch, bytes_per_element):
    """Caches the latent only and forgets the decoupled RoPE key k_R."""
    return M.mla_cache_bytes(layers, latent_dim, 0, tokens, batch, bytes_per_element)


def traffic_mqa_reads_full_cache(batch, seq_len, d_model, heads, kv_heads, incremental):
    """MQA's cache reads counted as if every head had its own keys and values."""
    return M.attention_memory_traffic(batch, seq_len, d_model, heads, heads, incremental)


# --- number formats and tensors -------------------------------------------------------------------------


def fp16_max_wrong(name):
    """fp16 max as 2^16 - 1 (an integer's range, not the format's)."""
    out = N.float_format(name)
    return {**out, "max": 65535.0} if name == "float16" else out


def cast_truncates(x, format):
    """Rounds toward zero (drops the low mantissa bits)."""
    f = N.FORMATS[format]
    if format == "float32":
        return x.to(torch.float64)
    x64 = x.to(torch.float64)
    a = x64.abs()
    _, exp = torch.frexp(torch.where(a > 0, a, torch.ones_like(a)))
    quantum = torch.exp2(torch.clamp(exp.to(torch.float64) - 1, min=1 - f.bias) - f.mantissa_bits)
    out = torch.floor(a / quantum) * quantum
    out = torch.where(torch.isfinite(a), torch.clamp(out, max=f.max), a)
    return torch.copysign(out, x64)


def cast_ties_away(x, format):
    """Rounds half away from zero (C's round()) instead of half to even."""
    exact = N.float_cast(x, format)
    nudged = N.float_cast(x * (1 + 2.0**-23), format) if format != "float32" else exact
    return torch.where(torch.isfinite(exact), nudged, exact)


def cast_e4m3_overflow_nan(x, format):
    """E4M3FN overflow gives NaN (ml_dtypes' behaviour) instead of torch's saturation."""
    return N.float_cast(x, format, "nan")


def cast_flushes_subnormals(x, format):
    """Flushes subnormal results to zero (FTZ)."""
    out = N.float_cast(x, format)
    tiny = N.float_format(format)["smallest_normal"]
    return torch.where(out.abs() < tiny, torch.zeros_like(out) * torch.sign(out), out)


def quant_scale_128(x, dim=None):
    """scale = max|x| / 128: the largest element no longer fits and is clipped to 127."""
    q, scale = N.absmax_quantize(x, dim)
    scale = scale * 127 / 128
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(x.float() / safe).clamp(-127, 127).to(torch.int8), scale


def quant_truncates(x, dim=None):
    """Truncates x / scale toward zero."""
    _, scale = N.absmax_quantize(x, dim)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.trunc(x.float() / safe).clamp(-127, 127).to(torch.int8), scale


def quant_round_half_up(x, dim=None):
    """floor(x / scale + 0.5): rounds ties up, so -x no longer gives -q."""
    _, scale = N.absmax_quantize(x, dim)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.floor(x.float() / safe + 0.5).clamp(-127, 127).to(torch.int8), scale


def quant_full_int8_range(x, dim=None):
    """Uses [-128, 127] with scale max|x| / 128 for negatives: asymmetric."""
    _, scale = N.absmax_quantize(x, dim)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(x.float() / safe)
    q = torch.where(q < 0, torch.round(x.float() / safe * 128 / 127), q)
    return q.clamp(-128, 127).to(torch.int8), scale


def strides_count_empty_dims(shape):
    """Multiplies the real sizes, so a size-0 dimension zeroes the strides before it."""
    strides, running = [], 1
    for size in reversed(shape):
        strides.append(running)
        running *= size
    return tuple(reversed(strides))


def view_copies(x, shape):
    """Returns a reshaped copy: right values, but writes no longer reach the base tensor."""
    return x.reshape(shape).clone()


def transpose_copies(x, dim0, dim1):
    """Materializes the transpose in new contiguous storage."""
    return x.transpose(dim0, dim1).contiguous()


def contiguous_always_copies(x):
    return x.clone(memory_format=torch.contiguous_format)


def contiguous_returns_input(x):
    """Never copies: a transposed input stays non-contiguous."""
    return x


# --- narrow arithmetic: exact for small models, wrong at production sizes -----------------------------------


def _int32(value: int) -> int:
    """What an int32 array holds after `value` is stored in it: numpy's int64 -> int32 cast wraps silently."""
    return int(np.array(value, dtype=np.int64).astype(np.int32))


def _float32(value: int) -> int:
    """`value` after a round trip through float32: exact below 2^24, rounded to 24 significant bits above."""
    return int(np.float32(value))


def param_count_int32(config, embedding="input_and_output"):
    """Counts kept in an int32 tensor (torch.zeros(..., dtype=torch.int32) accumulators): exact for small models,
    wrapped past 2^31 (one Llama-3.1-405B layer alone holds 3.2e9 weights)."""
    return {k: _int32(v) for k, v in P.param_count(config, embedding).items()}


def training_flops_float32(config, seq_len, batch=1, recompute="none", attention="dense"):
    """FLOPs accumulated in a float32 tensor: exact below 2^24, rounded at production sizes (7.5e15 for one
    405B layer at 128k)."""
    return _float32(F.training_flops(config, seq_len, batch, recompute, attention))


def forward_flops_int32(config, seq_len, batch=1, attention="dense"):
    """Forward FLOPs in int32 (numpy / torch int32 sizes multiplied together): wraps past 2^31."""
    return _int32(F.forward_flops(config, seq_len, batch, attention))


def attention_flops_int32(batch, heads, q_len, kv_len, head_dim, value_dim=None, attention="dense"):
    """The attention count in int32: exact for small shapes, wrapped past 2^31 (B 64, H 64, E 128 at 1024 tokens)."""
    return _int32(F.attention_flops(batch, heads, q_len, kv_len, head_dim, value_dim, attention))


def activations_int32(seq_len, batch, hidden, heads, recompute="none", tensor_parallel=1, sequence_parallel=False):
    """Activation bytes in int32: s b h (34 + 5 a s / h) passes 2^31 for a 16384-wide layer at s = 4096."""
    return _int32(M.activation_memory(seq_len, batch, hidden, heads, recompute, tensor_parallel, sequence_parallel))


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("param_count", "layernorm_off_by_one", {"param_count.gpt2.closed_form", "param_count.published_totals"}),
    ("param_count", "untied_head_counted_as_tied",
     {"param_count.published_totals", "param_count.total.matches_module"}),
    ("param_count", "positions_not_embedding", {"param_count.embedding.split"}),
    ("param_count", "moe_active_is_total", {"param_count.moe.active"}),
    ("param_count", "meta_width_rounded_down", {"param_count.llama.ffn_rounding"}),
    ("approx_params", "approx_with_biases", {"approx_params.stated_error"}),
    ("matmul_flops", "matmul_without_factor_two", {"matmul_flops.counter"}),
    ("attention_flops", "attention_qk_only", {"attention_flops.counter_reference"}),
    ("attention_flops", "attention_exact_is_half", {"attention_flops.causal_conventions"}),
    ("forward_flops", "forward_without_head",
     {"forward_flops.counter_model", "forward_flops.kaplan_table1", "forward_flops.two_n_plus_attention"}),
    ("forward_flops", "forward_without_attention_core", {"forward_flops.counter_model", "forward_flops.per_layer"}),
    ("forward_flops", "forward_ignores_convention",
     {"forward_flops.causal_conventions", "forward_flops.kaplan_table1"}),
    ("forward_flops", "forward_attention_over_kv_heads", {"forward_flops.counter_model"}),
    ("training_flops", "backward_equals_forward",
     {"training_flops.counter_model", "training_flops.megatron", "training_flops.six_nd_plus_attention"}),
    ("training_flops", "recompute_includes_head",
     {"training_flops.megatron_recompute", "training_flops.recompute_full"}),
    ("training_flops", "selective_is_full", {"training_flops.recompute_selective"}),
    ("utilization", "utilization_swapped", {"utilization.hfu_at_least_mfu", "utilization.measured"}),
    ("petaflop_days", "pf_days_of_hours", {"petaflop_days.definition", "petaflop_days.gpt3"}),
    ("chinchilla_optimal", "chinchilla_without_six", {"chinchilla_optimal.budget", "chinchilla_optimal.published"}),
    ("dense_peak_flops", "sparse_peaks", {"dense_peak_flops.dense_not_sparse", "dense_peak_flops.published"}),
    ("training_memory", "megatron_grads_as_16",
     {"training_memory.recipe.bytes_per_param", "training_memory.recipe.measured_adamw"}),
    ("training_memory", "zero1_shards_gradients", {"training_memory.zero.stages"}),
    ("activation_memory", "activations_without_dropout_masks",
     {"activation_memory.korthikanti_table2", "activation_memory.measured"}),
    ("activation_memory", "activations_tp_splits_everything", {"activation_memory.korthikanti_table2"}),
    ("kv_cache_bytes", "kv_cache_without_factor_two",
     {"kv_cache_bytes.measured_reference", "kv_cache_bytes.measured_transformers"}),
    ("mla_cache_bytes", "mla_cache_without_rope_key",
     {"mla_cache_bytes.deepseek_v2", "mla_cache_bytes.measured_reference"}),
    ("attention_memory_traffic", "traffic_mqa_reads_full_cache",
     {"attention_memory_traffic.kv_heads_scale_cache_reads", "attention_memory_traffic.shazeer_formulas"}),
    ("float_format", "fp16_max_wrong", {"float_format.bit_patterns", "float_format.finfo"}),
    ("float_cast", "cast_truncates", {"float_cast.matches_reference", "float_cast.ties_to_even"}),
    ("float_cast", "cast_ties_away", {"float_cast.ties_to_even"}),
    ("float_cast", "cast_e4m3_overflow_nan", {"float_cast.overflow"}),
    ("float_cast", "cast_flushes_subnormals", {"float_cast.matches_reference", "float_cast.underflow"}),
    ("absmax_quantize", "quant_scale_128", {"absmax_quantize.range", "absmax_quantize.round_trip"}),
    ("absmax_quantize", "quant_truncates", {"absmax_quantize.round_trip"}),
    ("absmax_quantize", "quant_round_half_up", {"absmax_quantize.symmetric"}),
    ("absmax_quantize", "quant_full_int8_range", {"absmax_quantize.range"}),
    ("contiguous_strides", "strides_count_empty_dims", {"contiguous_strides.row_major"}),
    ("tensor_view", "view_copies", {"tensor_view.shares_storage"}),
    ("tensor_transpose", "transpose_copies",
     {"tensor_transpose.breaks_contiguity", "tensor_transpose.swaps_strides"}),
    ("tensor_contiguous", "contiguous_always_copies", {"tensor_contiguous.no_copy_when_contiguous"}),
    ("tensor_contiguous", "contiguous_returns_input", {"tensor_contiguous.copies_when_needed"}),
    # exact at scale "small", wrong at production sizes (drawn from scale "kernel" up)
    ("param_count", "param_count_int32", {"param_count.total.matches_module"}),
    ("training_flops", "training_flops_float32",
     {"training_flops.counter_model", "training_flops.recompute_full", "training_flops.six_nd_plus_attention"}),
    ("forward_flops", "forward_flops_int32",
     {"forward_flops.counter_model", "forward_flops.two_n_plus_attention"}),
    ("attention_flops", "attention_flops_int32", {"attention_flops.causal_conventions"}),
    ("activation_memory", "activations_int32", {"activation_memory.korthikanti_table2"}),
]
