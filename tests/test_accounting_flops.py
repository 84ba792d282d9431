"""FLOPs: full-size models on the meta device against FlopCounterMode, the counting facts the spec relies on
(CPU SDPA and grouped-mm experts are not counted; checkpoint early stop skips work), and the published
compute figures."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F_nn
from torch.utils.flop_counter import FlopCounterMode

from lmspec.reference.accounting import flops as F
from lmspec.reference.accounting import params as P
from lmspec.spec.accounting.models import hf_model, measured_flops

pytest.importorskip("transformers")


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("name,seq_len", [("gpt2", 1024), ("llama-3-8b", 64)])
def test_full_size_forward_matches_flop_counter_on_meta(name, seq_len):
    config = P.PRESETS[name]
    model = hf_model(config).eval()
    ids = torch.zeros(1, seq_len, dtype=torch.long, device="meta")
    with torch.no_grad():
        counted = _count(lambda: model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False))
    assert counted == F.forward_flops(config, seq_len)
    if name == "gpt2":  # and the Megatron form for the whole training step
        assert 3 * counted == F.megatron_training_flops(1, 1024, 12, 768, 50257)


def test_cpu_sdpa_is_not_counted_but_the_math_backend_and_meta_are():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(2, 3, 8, 4)
    want = F.attention_flops(2, 3, 8, 8, 4)
    # torch 2.13, fused CPU kernel
    assert _count(lambda: F_nn.scaled_dot_product_attention(q, q, q, is_causal=True)) == 0
    with sdpa_kernel(SDPBackend.MATH):
        assert _count(lambda: F_nn.scaled_dot_product_attention(q, q, q, is_causal=True)) == want
    qm = q.to("meta")
    assert _count(lambda: F_nn.scaled_dot_product_attention(qm, qm, qm, is_causal=True)) == want


def test_grouped_mm_experts_are_not_counted_on_cpu():
    """transformers' default MoE kernel (grouped_mm) is invisible to FlopCounterMode on the CPU: the spec measures
    MoE models with experts_implementation='eager'."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = {"model_type": "mixtral", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 12,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "num_local_experts": 4,
              "num_experts_per_tok": 2}
    c = dict(config)
    hf_config = AutoConfig.for_model(c.pop("model_type"), attn_implementation="eager", **c)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_config(hf_config).eval()
    assert model.config._experts_implementation == "grouped_mm"
    ids = torch.zeros(1, 5, dtype=torch.long)
    with torch.no_grad():
        counted = _count(lambda: model(input_ids=ids, use_cache=False))
    experts = 5 * 2 * 3 * 2 * 8 * 12  # tokens x top-k x (gate, up, down) x 2 d f
    assert counted == F.forward_flops(config, 5) - experts
    assert measured_flops(config, 5, 1)["forward"] == F.forward_flops(config, 5)


def test_checkpoint_early_stop_skips_the_last_projection():
    """torch's default non-reentrant checkpointing stops recomputing once the backward has what it needs: a Llama
    layer's down projection (2 T d f) is not rerun; Megatron's 'full recomputation' counts it."""
    from torch.utils.checkpoint import set_checkpoint_early_stop

    config = {"model_type": "llama", "vocab_size": 5, "hidden_size": 4, "intermediate_size": 6, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 1}
    model = hf_model(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.zeros(1, 4, dtype=torch.long, device="meta")

    def step():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.sum().backward()

    with set_checkpoint_early_stop(True):
        early = _count(step)
    assert early == F.training_flops(config, 4, 1, "full") - 2 * (2 * 4 * 4 * 6)


def test_published_compute_figures():
    assert F.PF_DAY_FLOPS == 8.64e19
    assert abs(F.petaflop_days(3.14e23) - 3640) < 10  # GPT-3 Table D.1: 3.64e3 PF-days
    assert F.six_nd(175_000_000_000, 300_000_000_000) == 315 * 10**21
    n, d = F.chinchilla_optimal(5.88e23)
    assert round(n / 1e9) == 70 and round(d / 1e12, 1) == 1.4
    assert F.dense_peak_flops("A100", "bf16") == 312e12 and F.dense_peak_flops("H100-SXM", "bf16") == 989e12
    with pytest.raises(KeyError, match="known"):
        F.dense_peak_flops("H100", "bf16")


def test_utilization_of_a_gpt2_step():
    config = P.PRESETS["gpt2"]
    flops = F.training_flops(config, 1024, 8)
    out = F.utilization(config, 1024, 8, step_seconds=0.05, peak_flops_per_s=F.dense_peak_flops("A100", "bf16"),
                        recompute="full")
    assert out["mfu"] == flops / (0.05 * 312e12)
    assert out["hfu"] > out["mfu"]


def test_mfu_against_a_sparse_datasheet_figure_warns():
    config = P.PRESETS["gpt2"]
    with pytest.warns(UserWarning, match="with sparsity"):
        F.utilization(config, 1024, 8, 0.05, 624e12)  # A100 bf16 "with sparsity"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.utilization(config, 1024, 8, 0.05, 989e12)  # dense: no warning
        F.utilization(config, 1024, 8, 0.05, 312e12)  # A100 dense bf16 (also A100 tf32 with sparsity): no warning
        F.utilization(config, 1024, 8, 0.05, 1979e12)  # H100 fp8 dense (also bf16 with sparsity): ambiguous, no warning
