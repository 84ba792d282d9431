"""Memory: the published figures (ZeRO's example, KV cache per token of Llama 2 and 3, DeepSeek-V2's MLA), the
seed note's "1B parameters need 4 GB, 24 GB to train", and why the activation measurement uses native_dropout."""

from __future__ import annotations

import torch
import torch.nn.functional as F_nn

from lmspec.reference.accounting import memory as M
from lmspec.reference.accounting import params as P


def test_zero_paper_example():
    # Rajbhandari et al. 2020, Figure 1: Psi = 7.5B, N_d = 64, K = 12
    gb = [M.training_memory(7_500_000_000, "mixed_adam", stage, 64)["total"] / 1e9 for stage in range(4)]
    assert [round(g, 2) for g in gb] == [120.0, 31.41, 16.64, 1.88]


def test_one_billion_parameters_seed_note():
    """"1B parameters need 4 GB (fp32 weights), ~24 GB to train": weights, gradients and Adam states are 16 GB;
    the rest of the note's 24 GB (6x the weights) is activations and temporaries, which depend on batch and length."""
    n = 1_000_000_000
    fp32 = M.training_memory(n, "fp32_adam")
    assert fp32["weights"] == 4 * 10**9 and fp32["total"] == 16 * 10**9
    assert M.training_memory(n, "mixed_adam")["total"] == 16 * 10**9
    assert M.training_memory(n, "mixed_adam_fp32_grads")["total"] == 18 * 10**9


def test_kv_cache_per_token_of_published_models():
    assert M.kv_cache_bytes_per_token(P.PRESETS["llama-2-7b"]) == 2 * 32 * 32 * 128 * 2 == 524_288  # 0.5 MiB (MHA)
    assert M.kv_cache_bytes_per_token(P.PRESETS["llama-3-8b"]) == 131_072  # GQA, 8 KV heads: 4x less
    assert M.kv_cache_bytes_per_token(P.PRESETS["llama-2-70b"]) == 2 * 80 * 8 * 128 * 2
    # DeepSeek-V2: 60 layers, MLA d_c = 512, d_h^R = 64 in bf16, against MHA with 128 heads of 128
    assert M.mla_cache_bytes(60, 512, 64, 1, 1, 2) == 69_120
    assert M.kv_cache_bytes(60, 128, 128, 1, 1, 2) / M.mla_cache_bytes(60, 512, 64, 1, 1, 2) == 32768 / 576


def test_korthikanti_formula_at_gpt3_scale():
    # GPT-3 175B layer, s = 2048, b = 1, h = 12288, a = 96: 34 s b h + 5 a s^2 b bytes; 5 a s / h = 80
    s, h, a = 2048, 12288, 96
    assert M.activation_memory(s, 1, h, a) == s * h * (34 + 80)
    assert M.activation_memory(s, 1, h, a, "selective", 8, True) == 34 * s * h // 8
    assert M.activation_memory(s, 1, h, a, "full", 8) == 2 * s * h


def test_cpu_dropout_saves_two_byte_noise_not_a_mask():
    """F.dropout on the CPU multiplies by a noise tensor in the input's dtype (2 bytes per element in bf16);
    torch.native_dropout saves a 1-byte mask, which is what Korthikanti et al. assume."""
    x = torch.randn(4, 8, dtype=torch.bfloat16, requires_grad=True)

    def saved_by(fn) -> list[torch.dtype]:
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t):
            fn()
        return saved

    assert saved_by(lambda: F_nn.dropout(x, 0.1, True)) == [torch.bfloat16]
    assert saved_by(lambda: torch.native_dropout(x, 0.1, True)) == [torch.bool]


def test_mqa_traffic_at_decoding_scale():
    mha = M.attention_memory_traffic(64, 2048, 4096, 32, 32, incremental=True)
    mqa = M.attention_memory_traffic(64, 2048, 4096, 32, 1, incremental=True)
    assert mha["ratio"] > 0.5  # n / d: the cache traffic dominates, memory-bound
    assert mqa["ratio"] < mha["ratio"] / 10  # 1/d + n/(d h) + 1/b
