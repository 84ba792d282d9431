"""What the accounting invariants measure: Hugging Face models built from small configs (on the `meta`
device: shapes without data, so even GPT-2 XL costs milliseconds), their parameters, and the FLOPs that
`torch.utils.flop_counter.FlopCounterMode` counts when they run.

Counting rules that matter here (torch 2.13, transformers 5.23): attention is run eagerly
(`attn_implementation="eager"`, explicit matmuls) because FlopCounterMode does not count the CPU's fused SDPA
kernel; MoE experts run with `experts_implementation="eager"` (per-expert linear layers) on the CPU with real
weights, because the default `grouped_mm` is not counted on the CPU and routing needs data.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings

import torch
from hypothesis import strategies as st
from torch.utils.checkpoint import set_checkpoint_early_stop
from torch.utils.flop_counter import FlopCounterMode

from ...reference.accounting.params import SUPPORTED_MODEL_TYPES
from ..strategies import scaled


def _quiet() -> None:
    for name in ("transformers", "transformers.configuration_utils", "transformers.modeling_utils"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except Exception:  # pragma: no cover - transformers missing: the caller's import fails with a clear message
        pass


def hf_model(config: dict, device: str = "meta", dtype: torch.dtype | None = None):
    """The transformers causal LM of a config.json dict (eager attention and experts, no special tokens)."""
    _quiet()
    from transformers import AutoConfig, AutoModelForCausalLM

    c = dict(config)
    model_type = c.pop("model_type")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        c[key] = None  # tiny vocabularies: the default special-token ids would be out of range
    hf_config = AutoConfig.for_model(model_type, attn_implementation="eager", **c)
    if getattr(hf_config, "num_local_experts", 1) > 1:
        hf_config._experts_implementation = "eager"
        device = "cpu"  # routing is data-dependent: MoE models need real weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # meta: shapes only; skip the (slow, meaningless on meta) random init, then tie as post_init does
        if device == "meta":
            from transformers.initialization import no_init_weights

            with torch.device("meta"), no_init_weights():
                model = AutoModelForCausalLM.from_config(hf_config)
            model.tie_weights()
        else:
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(hf_config)
            torch.random.set_rng_state(gen_state)
    if dtype is not None:
        model = model.to(dtype)
    return model


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def measured_parameters(model) -> dict[str, int]:
    """Counts read off the module: distinct parameters, embedding tables, an untied head, experts."""
    embeddings = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    token = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is token.weight
    total = sum(p.numel() for p in model.parameters())
    tables = sum(m.weight.numel() for m in embeddings)
    positions = tables - token.weight.numel()
    untied_head = 0 if tied or head is None else head.weight.numel()
    inactive = 0
    config = model.config
    experts = getattr(config, "num_local_experts", 1)
    if experts > 1:
        for name, module in model.named_modules():
            if name.endswith("mlp.experts"):
                one_expert = sum(p.numel() for p in module.parameters()) // experts
                inactive += (experts - config.num_experts_per_tok) * one_expert
    return {
        "total": total,
        "input_and_output": tables + untied_head,
        "input_only": tables,
        "positions_only": positions,
        "active": total - inactive,
    }


def measured_matmul_parameters(model) -> int:
    """Weights one token multiplies by: every matrix but the embedding tables, plus the output head (tied
    or not), with MoE expert matrices weighted by top-k / E and the router counted."""
    config = model.config
    experts = getattr(config, "num_local_experts", 1)
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings().weight
    total = head.numel()
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.dim() < 2 or id(p) in tables or p is head:
            continue
        if ".experts." in name:
            total += p.numel() * config.num_experts_per_tok // experts
        else:
            total += p.numel()
    return total


def _inputs(model, batch: int, seq_len: int) -> dict:
    """Token ids and an all-ones mask: with an explicit mask transformers skips its data-dependent check for
    packed sequences, which cannot run on the meta device."""
    device = model_device(model)
    return {
        "input_ids": torch.zeros(batch, seq_len, dtype=torch.long, device=device),
        "attention_mask": torch.ones(batch, seq_len, dtype=torch.long, device=device),
    }


def _by_op(counter: FlopCounterMode) -> dict[str, int]:
    return {str(op).split(".")[-1]: n for op, n in counter.get_flop_counts().get("Global", {}).items()}


def _key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def measured_flops(config: dict, seq_len: int, batch: int = 1, checkpoint: bool = False) -> dict:
    """FlopCounterMode counts of one training step of the transformers model (all parameters trainable):
    "forward", "backward", "total", "forward_by_op" (mm / addmm / bmm; with eager attention bmm is exactly
    QK^T and AV), "layer0" (decoder layer 0's forward), "matmul_params" (weights one token multiplies by).

    checkpoint=True enables transformers' gradient checkpointing (non-reentrant) with torch's early stop
    turned off, so every decoder layer's whole forward is rerun in the backward pass, as Megatron counts it.
    (With early stop on, torch's default, recomputation ends once the tensors the backward needs exist: for
    a Llama layer the final down projection, 2 T d f FLOPs, is not rerun.)

    Results are cached per process: every invariant measures the same few cases (CASES)."""
    return dict(_measured_flops(_key(config), seq_len, batch, checkpoint))


@functools.lru_cache(maxsize=256)
def _measured_flops(config_key: str, seq_len: int, batch: int, checkpoint: bool) -> dict:
    model = hf_model(json.loads(config_key))
    inputs = _inputs(model, batch, seq_len)
    with warnings.catch_warnings(), set_checkpoint_early_stop(False):
        # transformers 5 renames gradient_checkpointing_enable; the old name still works
        warnings.simplefilter("ignore")
        if checkpoint:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
        else:
            model.eval()
        with FlopCounterMode(display=False) as fwd:
            out = model(**inputs, use_cache=False)
        with FlopCounterMode(display=False) as bwd:
            out.logits.sum().backward()
    per_module = fwd.get_flop_counts()
    layer0 = [k for k in per_module if k.endswith(".layers.0") or k.endswith(".h.0")]
    return {
        "forward": fwd.get_total_flops(),
        "backward": bwd.get_total_flops(),
        "total": fwd.get_total_flops() + bwd.get_total_flops(),
        "forward_by_op": _by_op(fwd),
        "layer0": sum(per_module[layer0[0]].values()) if layer0 else 0,
        "matmul_params": measured_matmul_parameters(model),
    }


def measured_module_parameters(config: dict) -> dict[str, int]:
    """`measured_parameters` of the model built from `config` on the meta device (cached per config)."""
    return dict(_measured_module_parameters(_key(config)))


@functools.lru_cache(maxsize=1024)
def _measured_module_parameters(config_key: str) -> dict[str, int]:
    return measured_parameters(hf_model(json.loads(config_key)))


#: the measured FLOP cases: every supported architecture; MHA, GQA, MQA; biases; tied and untied heads;
#: head_dim != hidden / heads; an FFN width other than 4d; MoE with k < E, k = E and k = 1. Each example of
#: a FLOP invariant checks all of them (measurements are cached, so a run costs each case once).
def _case(seq_len: int, batch: int, **config) -> dict:
    return {"config": config, "seq_len": seq_len, "batch": batch}


CASES: dict[str, dict] = {
    "gpt2-untied-n_inner": _case(8, 1, model_type="gpt2", vocab_size=7, n_positions=9, n_embd=8, n_layer=1, n_head=2,
                                 n_inner=20, tie_word_embeddings=False),
    "gpt2-one-head": _case(1, 3, model_type="gpt2", vocab_size=5, n_positions=8, n_embd=6, n_layer=3, n_head=1),
    "llama-gqa-biases-head_dim": _case(4, 2, model_type="llama", vocab_size=9, hidden_size=8, intermediate_size=10,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=6,
                                       attention_bias=True, mlp_bias=True),
    "llama-mqa-tied": _case(7, 1, model_type="llama", vocab_size=17, hidden_size=12, intermediate_size=7,
                            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                            tie_word_embeddings=True),
    "mistral-gqa": _case(3, 2, model_type="mistral", vocab_size=10, hidden_size=16, intermediate_size=20,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1),
    "qwen2-qkv-bias": _case(5, 1, model_type="qwen2", vocab_size=12, hidden_size=8, intermediate_size=12,
                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
    "qwen3-qk-norm": _case(4, 1, model_type="qwen3", vocab_size=9, hidden_size=8, intermediate_size=16,
                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, head_dim=6),
    "gemma-tied": _case(3, 2, model_type="gemma", vocab_size=11, hidden_size=6, intermediate_size=9,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=4),
    "mixtral-top2-of-4": _case(6, 2, model_type="mixtral", vocab_size=10, hidden_size=8, intermediate_size=12,
                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                               num_experts_per_tok=2),
    "mixtral-top1-of-3-tied": _case(5, 1, model_type="mixtral", vocab_size=6, hidden_size=4, intermediate_size=6,
                                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                    num_local_experts=3, num_experts_per_tok=1, tie_word_embeddings=True),
}
GPT_CASES = {name: case for name, case in CASES.items() if case["config"]["model_type"] == "gpt2"}

#: production sizes, measured on the meta device too (shapes only: milliseconds): one layer of Llama-3.1-405B's
#: width over a 128k context, Qwen2's 151936-token vocabulary and GPT-2 XL's width with large batches that are not
#: powers of two (so float32 rounding shows). Counts pass 2^31 (one 405B layer holds 3.2e9 weights) and, with full
#: recomputation, 2^53 (9.5e15 FLOPs): what int32, float32 or float64 arithmetic gets wrong. Drawn from "kernel" up.
PRODUCTION_CASES: dict[str, dict] = {
    "llama-405b-width-1-layer-128k": _case(131072, 1, model_type="llama", vocab_size=128256, hidden_size=16384,
                                           intermediate_size=53248, num_hidden_layers=1, num_attention_heads=128,
                                           num_key_value_heads=8),
    "qwen2-vocab-151936-batch-255": _case(4096, 255, model_type="qwen2", vocab_size=151936, hidden_size=1536,
                                          intermediate_size=8960, num_hidden_layers=2, num_attention_heads=12,
                                          num_key_value_heads=2, tie_word_embeddings=True),
    "gpt2-xl-width-batch-1000": _case(1024, 1000, model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=1600,
                                     n_layer=1, n_head=25),
}


def flop_cases(p: dict, only: str | None = None) -> list[tuple[str, dict]]:
    """The cases a FLOP example checks: CASES, and PRODUCTION_CASES when the example is {"production": True}
    (drawn from scale "kernel" up, see FLOP_EXAMPLES); `only="gpt2"` keeps the GPT-2 ones."""
    cases = {**CASES, **(PRODUCTION_CASES if p.get("production") else {})}
    return [(name, c) for name, c in cases.items() if only is None or c["config"]["model_type"] == only]


#: a FLOP invariant's examples: {} checks the small CASES (every scale), {"production": True} adds PRODUCTION_CASES.
FLOP_EXAMPLES = scaled(st.just({}), st.just({"production": True}))


# --- strategies: small config.json dicts of every supported architecture ---------------------------------


#: real models' widths (config.json keys; layers are drawn): counts past 2^31 (one Llama-3.1-405B layer holds
#: 3.2e9 weights, its embedding 2.1e9) and vocabularies of 32000 to 256000. Mixtral is left out: MoE models are
#: built with real weights (spec/accounting/models.py), and a real expert's weights take gigabytes.
REAL_WIDTHS: dict[str, tuple[tuple[int, dict], ...]] = {
    "gpt2": ((48, {"vocab_size": 50257, "n_positions": 1024, "n_embd": 1600, "n_head": 25}),),  # GPT-2 XL
    "llama": ((126, {"vocab_size": 128256, "hidden_size": 16384, "intermediate_size": 53248,  # Llama-3.1-405B
                     "num_attention_heads": 128, "num_key_value_heads": 8}),
              (32, {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,  # Llama-2-7B
                    "num_attention_heads": 32, "num_key_value_heads": 32})),
    "mistral": ((32, {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,  # Mistral-7B
                      "num_attention_heads": 32, "num_key_value_heads": 8}),),
    "qwen2": ((80, {"vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568,  # Qwen2.5-72B
                    "num_attention_heads": 64, "num_key_value_heads": 8}),
              (28, {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,  # Qwen2-1.5B
                    "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": True})),
    "qwen3": ((36, {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,  # Qwen3-8B
                    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128}),),
    "gemma": ((28, {"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576,  # Gemma-7B
                    "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256}),),
}


@st.composite
def _real_configs(draw, model_types: tuple[str, ...]) -> dict:
    """A real model's config: its widths and all its layers (built on the meta device: 0.2 s for 405B), or one."""
    model_type = draw(st.sampled_from([t for t in model_types if t in REAL_WIDTHS]))
    layers, widths = draw(st.sampled_from(REAL_WIDTHS[model_type]))
    n = draw(st.sampled_from([layers, 1]))
    return {"model_type": model_type, **widths, ("n_layer" if model_type == "gpt2" else "num_hidden_layers"): n}


def hf_configs(model_types: tuple[str, ...] = SUPPORTED_MODEL_TYPES, max_layers: int = 2,
               ffn_width: bool = True) -> st.SearchStrategy[dict]:
    """A config.json dict: small sizes at every scale; from scale "kernel" up also a real model's (REAL_WIDTHS)."""
    small = _small_configs(model_types, max_layers, ffn_width)
    if not any(t in REAL_WIDTHS for t in model_types):
        return small
    return scaled(small, _real_configs(model_types))


@st.composite
def _small_configs(draw, model_types: tuple[str, ...] = SUPPORTED_MODEL_TYPES, max_layers: int = 2,
                   ffn_width: bool = True) -> dict:
    """A config.json dict with small sizes; optional keys are sometimes left out (the class default applies)."""
    model_type = draw(st.sampled_from(model_types))
    layers = draw(st.integers(1, max_layers))
    vocab = draw(st.integers(2, 16))
    heads = draw(st.sampled_from([1, 2, 4]))
    if model_type == "gpt2":
        head_dim = draw(st.integers(1, 4))
        c = {"model_type": "gpt2", "vocab_size": vocab, "n_positions": draw(st.integers(1, 16)),
             "n_embd": heads * head_dim, "n_layer": layers, "n_head": heads}
        inner = draw(st.one_of(st.none(), st.integers(1, 24))) if ffn_width else None
        if inner is not None:
            c["n_inner"] = inner
    else:
        kv_heads = draw(st.sampled_from([h for h in (1, 2, 4) if heads % h == 0]))
        explicit_head_dim = model_type in ("qwen3", "gemma") or draw(st.booleans())
        # transformers checks hidden % heads == 0 even when head_dim is given; RoPE needs an even head_dim
        hidden = heads * (draw(st.integers(1, 4)) if explicit_head_dim else 2 * draw(st.integers(1, 2)))
        c = {"model_type": model_type, "vocab_size": vocab, "hidden_size": hidden,
             "intermediate_size": draw(st.integers(1, 24)), "num_hidden_layers": layers,
             "num_attention_heads": heads, "num_key_value_heads": kv_heads}
        if explicit_head_dim:
            c["head_dim"] = 2 * draw(st.integers(1, 3))
        if model_type in ("llama", "qwen3", "gemma") and draw(st.booleans()):
            c["attention_bias"] = draw(st.booleans())
        if model_type == "llama" and draw(st.booleans()):
            c["mlp_bias"] = draw(st.booleans())
        if model_type == "mixtral":
            experts = draw(st.integers(2, 4))
            c["num_local_experts"] = experts
            c["num_experts_per_tok"] = draw(st.integers(1, experts))
    if draw(st.booleans()):
        c["tie_word_embeddings"] = draw(st.booleans())
    return c


__all__ = ["CASES", "FLOP_EXAMPLES", "GPT_CASES", "PRODUCTION_CASES", "REAL_WIDTHS", "flop_cases", "hf_configs",
           "hf_model", "measured_flops", "measured_matmul_parameters", "measured_module_parameters", "measured_parameters"]
