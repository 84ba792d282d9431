"""Parameter counts of decoder-only transformers, from a Hugging Face `config.json` or Meta's `params.json`.

Sources:
- GPT-2: Radford et al. 2019 and transformers' `GPT2LMHeadModel` (learned positions, LayerNorm with bias,
  biases on every projection, output head tied to the token embedding unless `tie_word_embeddings` is false).
  Per layer 12 d^2 + 13 d, so N = V d + n_ctx d + L (12 d^2 + 13 d) + 2 d.
- Llama: Touvron et al. 2023 and Meta's `llama/model.py` (RMSNorm with weight only, SwiGLU with three bias-free
  matrices, GQA, untied head); FFN width `int(2 * 4d / 3)`, times `ffn_dim_multiplier`, rounded up to
  `multiple_of` (`FeedForward.__init__`). Mistral, Qwen2 (q/k/v biases), Qwen3 (per-head q/k RMSNorm) and
  Gemma (tied head, head_dim 256 by default) have the same skeleton.
- Mixture of experts: Mixtral (Jiang et al. 2024): every layer has a router (E x d) and E SwiGLU experts, of
  which `num_experts_per_tok` run per token: active = total - L (E - k) x (one expert).
- 12 L d^2: Kaplan et al. 2020, sec. 2.1 (d_attn = d, d_ff = 4d; embeddings, biases and norms left out).

Conventions for the embedding / non-embedding split (sources disagree; `embedding=` chooses):
- "input_and_output" (Kaplan et al. 2020): token embedding, learned positions and an untied output head are
  embedding parameters; a tied matrix is counted once.
- "input_only" (Hugging Face `num_parameters(exclude_embeddings=True)`): the `nn.Embedding` tables only; an
  untied head is an ordinary (non-embedding) linear layer.
- "positions_only" (nanoGPT `get_num_params(non_embedding=True)`): only the position table; the token table
  counts because, tied, it is the output head (GPT-2 small: 123,653,376).
Defaults of a missing config key follow transformers 5.23's config classes (per `model_type`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

EmbeddingConvention = Literal["input_and_output", "input_only", "positions_only"]
EMBEDDING_CONVENTIONS = ("input_and_output", "input_only", "positions_only")

#: transformers 5.23 defaults of the keys that size a model, per model_type (used when config.json omits them).
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
                 tie_word_embeddings=True),
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=None, head_dim=None, attention_bias=False, mlp_bias=False,
                  tie_word_embeddings=False),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, head_dim=None, tie_word_embeddings=False),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False),
    "qwen3": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, head_dim=128, attention_bias=False,
                  tie_word_embeddings=False),
    "gemma": dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=16, head_dim=256, attention_bias=False,
                  tie_word_embeddings=True),
    "mixtral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, head_dim=None, num_local_experts=8,
                    num_experts_per_tok=2, tie_word_embeddings=False),
}
SUPPORTED_MODEL_TYPES = tuple(HF_DEFAULTS)


@dataclass(frozen=True)
class Architecture:
    """The numbers that parameter, FLOP and memory counts depend on, in one vocabulary for every family."""

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # FFN width (of one expert for MoE)
    mlp: Literal["mlp", "glu"]  # two matrices (GPT-2) or gate, up and down (SwiGLU / GeGLU)
    norm: Literal["layernorm", "rmsnorm"]  # LayerNorm has weight and bias, RMSNorm a weight only
    learned_positions: int = 0  # rows of a learned position table (0: RoPE)
    tied_embeddings: bool = False
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on queries and keys
    num_experts: int = 1
    experts_per_token: int = 1

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1


def llama_ffn_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier: float | None = None) -> int:
    """Meta's `FeedForward` width: int(2 * 4 dim / 3), times the multiplier, rounded up to `multiple_of`.

    Llama-2-7B (4096, 256) -> 11008; Llama-3-8B (4096, 1024, 1.3) -> 14336; Llama-2-70B (8192, 4096, 1.3) -> 28672.
    """
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def _from_meta_params(p: Mapping[str, Any]) -> Architecture:
    """Meta's params.json (llama repository): dim, n_layers, n_heads, n_kv_heads, vocab_size, multiple_of, ..."""
    vocab = int(p["vocab_size"])
    if vocab <= 0:
        raise ValueError("params.json has vocab_size <= 0 (Meta sets it from the tokenizer): give the real vocab size")
    dim, heads = int(p["dim"]), int(p["n_heads"])
    return Architecture(
        model_type="llama", vocab_size=vocab, hidden_size=dim, num_layers=int(p["n_layers"]), num_heads=heads,
        num_kv_heads=int(p.get("n_kv_heads") or heads), head_dim=dim // heads,
        intermediate_size=llama_ffn_hidden_dim(dim, int(p.get("multiple_of", 256)), p.get("ffn_dim_multiplier")),
        mlp="glu", norm="rmsnorm",
    )


def architecture(config: Mapping[str, Any] | Architecture) -> Architecture:
    """Parse a Hugging Face config.json dict (`model_type` in SUPPORTED_MODEL_TYPES) or Meta's params.json."""
    if isinstance(config, Architecture):
        return config
    if "model_type" not in config and "dim" in config and "n_layers" in config:
        return _from_meta_params(config)
    model_type = config.get("model_type")
    if model_type not in HF_DEFAULTS:
        raise ValueError(f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    c = {**HF_DEFAULTS[model_type], **config}
    if model_type == "gpt2":
        d = int(c["n_embd"])
        return Architecture(
            model_type="gpt2", vocab_size=int(c["vocab_size"]), hidden_size=d, num_layers=int(c["n_layer"]),
            num_heads=int(c["n_head"]), num_kv_heads=int(c["n_head"]), head_dim=d // int(c["n_head"]),
            intermediate_size=int(c["n_inner"] or 4 * d), mlp="mlp", norm="layernorm",
            learned_positions=int(c["n_positions"]), tied_embeddings=bool(c["tie_word_embeddings"]),
            qkv_bias=True, out_bias=True, mlp_bias=True,
        )
    d, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
    kv_heads = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or d // heads)
    attention_bias = bool(c.get("attention_bias", False))
    return Architecture(
        model_type=model_type, vocab_size=int(c["vocab_size"]), hidden_size=d, num_layers=int(c["num_hidden_layers"]),
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=int(c["intermediate_size"]),
        mlp="glu", norm="rmsnorm", tied_embeddings=bool(c["tie_word_embeddings"]),
        qkv_bias=attention_bias or model_type == "qwen2",  # Qwen2 hard-codes q/k/v biases (and none on o_proj)
        out_bias=attention_bias, mlp_bias=bool(c.get("mlp_bias", False)), qk_norm=model_type == "qwen3",
        num_experts=int(c.get("num_local_experts", 1)), experts_per_token=int(c.get("num_experts_per_tok", 1)),
    )


def load_config(path: str | Path) -> dict:
    """A config.json (Hugging Face) or params.json (Meta) from disk."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def layer_parameters(arch: Architecture) -> dict[str, int]:
    """One decoder layer: attention, FFN (all experts), router, norms; and one expert, for the active count."""
    d, dh = arch.hidden_size, arch.head_dim
    q, kv = arch.num_heads * dh, arch.num_kv_heads * dh
    attention = d * q + 2 * d * kv + q * d
    attention += (q + 2 * kv) * arch.qkv_bias + d * arch.out_bias + 2 * dh * arch.qk_norm
    f = arch.intermediate_size
    if arch.mlp == "mlp":
        expert = 2 * d * f + (f + d) * arch.mlp_bias
    else:
        expert = 3 * d * f + (2 * f + d) * arch.mlp_bias
    norm = 2 * d if arch.norm == "layernorm" else d
    router = arch.num_experts * d if arch.is_moe else 0
    return {"attention": attention, "mlp": arch.num_experts * expert, "expert": expert, "router": router,
            "norms": 2 * norm}


def parameter_breakdown(config: Mapping[str, Any] | Architecture) -> dict[str, int]:
    """Every part of the model, counted once (a tied head adds nothing)."""
    arch = architecture(config)
    d, v = arch.hidden_size, arch.vocab_size
    layer = layer_parameters(arch)
    per_layer = layer["attention"] + layer["mlp"] + layer["router"] + layer["norms"]
    parts = {
        "token_embedding": v * d,
        "position_embedding": arch.learned_positions * d,
        "layers": arch.num_layers * per_layer,
        "final_norm": 2 * d if arch.norm == "layernorm" else d,
        "head": 0 if arch.tied_embeddings else v * d,
    }
    parts["total"] = sum(parts.values())
    parts["inactive_experts"] = arch.num_layers * (arch.num_experts - arch.experts_per_token) * layer["expert"]
    return parts


def param_count(config: Mapping[str, Any], embedding: EmbeddingConvention = "input_and_output") -> dict[str, int]:
    """{total, embedding, non_embedding, active} for a config.json / params.json dict.

    `active` is what one token uses (MoE: the top-k experts; dense models: all). `embedding` is counted under
    the chosen convention (module docstring); total = embedding + non_embedding always.
    """
    if embedding not in EMBEDDING_CONVENTIONS:
        raise ValueError(f"embedding convention {embedding!r} not in {EMBEDDING_CONVENTIONS}")
    parts = parameter_breakdown(config)
    if embedding == "positions_only":
        emb = parts["position_embedding"]
    elif embedding == "input_only":
        emb = parts["token_embedding"] + parts["position_embedding"]
    else:
        emb = parts["token_embedding"] + parts["position_embedding"] + parts["head"]
    total = parts["total"]
    return {"total": total, "embedding": emb, "non_embedding": total - emb, "active": total - parts["inactive_experts"]}


def approx_params(num_layers: int, d_model: int) -> int:
    """Kaplan et al. 2020's N ~ 12 L d^2 (d_attn = d, d_ff = 4d). Against GPT-2's exact non-embedding count
    12 L d^2 + 13 L d + 2 d it is low by (13 L + 2) d, a relative error of 13 / (12 d) + 1 / (6 L d) (0.14% for
    GPT-2 small)."""
    return 12 * num_layers * d_model**2


def matmul_parameters(config: Mapping[str, Any] | Architecture, active: bool = True) -> int:
    """Weights one token multiplies by: the layers' matrices (top-k experts and the router for MoE) and the
    output head (the tied table counts once, as the head). Biases, norms and embedding lookups are excluded:
    they cost no matmul FLOPs. This is the N of "2N FLOPs per token" that FlopCounterMode confirms."""
    arch = architecture(config)
    d, dh, f = arch.hidden_size, arch.head_dim, arch.intermediate_size
    attention = 2 * d * arch.num_heads * dh + 2 * d * arch.num_kv_heads * dh
    expert = (2 if arch.mlp == "mlp" else 3) * d * f
    experts = arch.experts_per_token if active else arch.num_experts
    router = arch.num_experts * d if arch.is_moe else 0
    return arch.num_layers * (attention + experts * expert + router) + arch.vocab_size * d


def with_layers(config: Mapping[str, Any], num_layers: int) -> dict:
    """The same config with another layer count (for per-layer differences)."""
    if "model_type" not in config and "dim" in config:
        key = "n_layers"  # Meta's params.json
    else:
        key = "n_layer" if config.get("model_type") == "gpt2" else "num_hidden_layers"
    return {**config, key: num_layers}


def _gpt2(n_layer: int, n_embd: int, n_head: int) -> dict:
    return {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_ctx": 1024, "n_embd": n_embd,
            "n_layer": n_layer, "n_head": n_head}


def _llama(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int, context: int,
           model_type: str = "llama", **extra) -> dict:
    return {"model_type": model_type, "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "max_position_embeddings": context, "tie_word_embeddings": False, **extra}


#: Hugging Face config.json contents of published models (the keys that size them).
PRESETS: dict[str, dict] = {
    "gpt2": _gpt2(12, 768, 12),
    "gpt2-medium": _gpt2(24, 1024, 16),
    "gpt2-large": _gpt2(36, 1280, 20),
    "gpt2-xl": _gpt2(48, 1600, 25),
    "llama-2-7b": _llama(4096, 11008, 32, 32, 32, 32000, 4096),
    "llama-2-13b": _llama(5120, 13824, 40, 40, 40, 32000, 4096),
    "llama-2-70b": _llama(8192, 28672, 80, 64, 8, 32000, 4096),
    "llama-3-8b": _llama(4096, 14336, 32, 32, 8, 128256, 8192),
    "llama-3-70b": _llama(8192, 28672, 80, 64, 8, 128256, 8192),
    "mistral-7b": _llama(4096, 14336, 32, 32, 8, 32000, 32768, "mistral"),
    "mixtral-8x7b": _llama(4096, 14336, 32, 32, 8, 32000, 32768, "mixtral", num_local_experts=8, num_experts_per_tok=2),
}

#: Meta's params.json of the same models (vocab_size filled in: Meta's files say -1 for Llama 2).
META_PARAMS: dict[str, dict] = {
    "llama-2-7b": {"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-05,
                   "vocab_size": 32000},
    "llama-2-13b": {"dim": 5120, "multiple_of": 256, "n_heads": 40, "n_layers": 40, "norm_eps": 1e-05,
                    "vocab_size": 32000},
    "llama-2-70b": {"dim": 8192, "multiple_of": 4096, "ffn_dim_multiplier": 1.3, "n_heads": 64, "n_kv_heads": 8,
                    "n_layers": 80, "norm_eps": 1e-05, "vocab_size": 32000},
    "llama-3-8b": {"dim": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256,
                   "multiple_of": 1024, "ffn_dim_multiplier": 1.3, "norm_eps": 1e-05, "rope_theta": 500000.0},
    "llama-3-70b": {"dim": 8192, "n_layers": 80, "n_heads": 64, "n_kv_heads": 8, "vocab_size": 128256,
                    "multiple_of": 4096, "ffn_dim_multiplier": 1.3, "norm_eps": 1e-05, "rope_theta": 500000.0},
}

#: Totals counted by transformers 5.23 on the meta device (GPT-2 sizes and Llama-2-7B / Llama-3-8B are also
#: the published figures); MoE active parameters for Mixtral-8x7B: 12,879,925,248 (Jiang et al. 2024: 12.9B).
PUBLISHED_TOTALS: dict[str, int] = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


__all__ = [
    "Architecture", "EMBEDDING_CONVENTIONS", "META_PARAMS", "PRESETS", "PUBLISHED_TOTALS", "SUPPORTED_MODEL_TYPES",
    "approx_params", "architecture", "layer_parameters", "llama_ffn_hidden_dim", "load_config", "matmul_parameters",
    "param_count", "parameter_breakdown", "preset", "with_layers",
]
