"""Parameter counts: every count is checked against the parameters of the transformers model itself."""

from __future__ import annotations

from hypothesis import strategies as st

from ...reference.accounting import params as ref
from ..checks import assert_equal
from ..core import Component, Context, Option, invariant
from .models import hf_configs, measured_module_parameters

KEYS = ("total", "embedding", "non_embedding", "active")

PARAM_COUNT = Component(
    name="param_count",
    signature="param_count(config: dict, embedding: str = 'input_and_output') -> "
    "{'total', 'embedding', 'non_embedding', 'active'}: int",
    summary="Parameters of a decoder-only model from its Hugging Face config.json (gpt2, llama, mistral, qwen2, qwen3, "
    "gemma, mixtral) or Meta's params.json; `active` is what one token uses (MoE: top-k experts).",
    reference=ref.param_count,
    dtypes=(),
    features={"active_parameters": "reports the parameters one token uses (MoE: top-k experts)",
              "meta_params_json": "accepts Meta's params.json (dim, n_layers, multiple_of, ffn_dim_multiplier)"},
    options=(
        Option("embedding", "input_and_output", ref.EMBEDDING_CONVENTIONS,
               "which parameters are 'embedding': token and position tables and an untied output head (Kaplan et al. "
               "2020), the nn.Embedding tables only (transformers' num_parameters(exclude_embeddings=True)), or the "
               "position table only (nanoGPT's get_num_params)"),
    ),
)


def _counts(ctx: Context, config: dict) -> dict:
    out = ctx.target(dict(config), embedding=ctx.options["embedding"])
    if not isinstance(out, dict) or any(not isinstance(out.get(k), int) for k in KEYS):
        ctx.fail(f"param_count must return a dict of ints with keys {KEYS}, got {out!r}")
    return out


@invariant("param_count.total.matches_module", examples=hf_configs().map(lambda c: {"config": c}),
           statement="The total equals the number of distinct parameters of the transformers model built from the "
           "config (meta device), for every supported architecture: GQA, biases, tied or untied head, MoE.",
           source="transformers 5.23 modeling_{gpt2,llama,mistral,qwen2,qwen3,gemma,mixtral}.py")
def check_total_matches_module(ctx: Context, p: dict) -> None:
    assert_equal(ctx, _counts(ctx, p["config"])["total"], measured_module_parameters(p["config"])["total"],
                 "total vs the parameters of the transformers model")


def _published_totals(ctx: Context, table: dict) -> None:
    for name, config in table.items():
        assert_equal(ctx, _counts(ctx, config)["total"], ref.PUBLISHED_TOTALS[name], f"{name}: total vs published")


@invariant("param_count.published_totals", examples=st.just({}),
           statement="GPT-2 124,439,808 / 354,823,168 / 774,030,080 / 1,557,611,200; Llama-2-7B 6,738,415,616; "
           "Llama-3-8B 8,030,261,248 (and the other presets: Llama-2 13B/70B, Llama-3 70B, Mistral 7B, Mixtral 8x7B).",
           source="Radford et al. 2019; Touvron et al. 2023 (Llama 2); Meta Llama 3 model card; counted by "
           "transformers 5.23 on the meta device")
def check_published_totals(ctx: Context, p: dict) -> None:
    _published_totals(ctx, ref.PRESETS)


@invariant("param_count.embedding.split", examples=hf_configs().map(lambda c: {"config": c}),
           statement="embedding + non_embedding = total, and the embedding count is what the chosen convention "
           "reads off the module (embedding tables, plus an untied output head under input_and_output).",
           source="Kaplan et al. 2020, sec. 2.1; transformers PreTrainedModel.num_parameters; nanoGPT model.py")
def check_embedding_split(ctx: Context, p: dict) -> None:
    out = _counts(ctx, p["config"])
    assert_equal(ctx, out["embedding"] + out["non_embedding"], out["total"], "embedding + non_embedding vs total")
    want = measured_module_parameters(p["config"])[ctx.options["embedding"]]
    assert_equal(ctx, out["embedding"], want,
                 f"embedding parameters vs those read off the module under the {ctx.options['embedding']!r} convention")


@invariant("param_count.moe.active",
           examples=hf_configs(("mixtral", "mixtral", "llama", "gpt2")).map(lambda c: {"config": c}),
           statement="Active parameters = total - L (E - k) x (parameters of one expert); dense models: "
           "active = total.",
           source="Jiang et al. 2024 (Mixtral of Experts, sec. 2.1: 47B total, 13B active); Fedus et al. 2022",
           requires={"active_parameters"})
def check_moe_active(ctx: Context, p: dict) -> None:
    assert_equal(ctx, _counts(ctx, p["config"])["active"], measured_module_parameters(p["config"])["active"],
                 "active parameters vs total minus the (E - k) unused experts of every layer")


@st.composite
def _meta_params(draw) -> dict:
    heads = draw(st.sampled_from([1, 2, 4]))
    dim = heads * 2 * draw(st.integers(1, 12))
    p = {"dim": dim, "n_layers": draw(st.integers(1, 2)), "n_heads": heads, "vocab_size": draw(st.integers(2, 40)),
         "multiple_of": draw(st.sampled_from([1, 2, 8, 16, 32, 256])), "norm_eps": 1e-5}
    if draw(st.booleans()):
        p["n_kv_heads"] = draw(st.sampled_from([h for h in (1, 2, 4) if heads % h == 0]))
    if draw(st.booleans()):
        p["ffn_dim_multiplier"] = draw(st.sampled_from([1.0, 1.3, 1.5, 2.0, 0.75]))
    return {"params": p}


def _meta_feed_forward_width(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """Meta's llama/model.py `FeedForward.__init__`, transcribed line by line."""
    hidden_dim = 4 * dim
    hidden_dim = int(2 * hidden_dim / 3)
    if ffn_dim_multiplier is not None:
        hidden_dim = int(ffn_dim_multiplier * hidden_dim)
    hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
    return hidden_dim


@invariant("param_count.llama.ffn_rounding", examples=_meta_params(),
           statement="A Meta params.json sizes the FFN as int(2 x 4d / 3), times ffn_dim_multiplier, rounded up to "
           "multiple_of; the count equals the model built with that width (and Meta's own params.json files give the "
           "published totals: Llama-2-7B 11008 wide, Llama-3-8B 14336).",
           source="meta-llama/llama model.py FeedForward.__init__; meta-llama/llama3 model.py",
           requires={"meta_params_json"})
def check_llama_ffn_rounding(ctx: Context, p: dict) -> None:
    _published_totals(ctx, ref.META_PARAMS)  # Llama-2 7B/13B/70B, Llama-3 8B/70B params.json
    m = p["params"]
    heads = m["n_heads"]
    config = {"model_type": "llama", "vocab_size": m["vocab_size"], "hidden_size": m["dim"],
              "num_hidden_layers": m["n_layers"], "num_attention_heads": heads,
              "num_key_value_heads": m.get("n_kv_heads", heads),
              "intermediate_size": _meta_feed_forward_width(m["dim"], m["multiple_of"], m.get("ffn_dim_multiplier"))}
    assert_equal(ctx, _counts(ctx, m)["total"], measured_module_parameters(config)["total"],
                 f"params.json total vs the model with Meta's FFN width {config['intermediate_size']}")


@invariant("param_count.gpt2.closed_form", examples=hf_configs(("gpt2",), ffn_width=False).map(lambda c: {"config": c}),
           statement="GPT-2: N = V d + n_ctx d + L (12 d^2 + 13 d) + 2 d (+ V d for an untied head).",
           source="Radford et al. 2019; transformers modeling_gpt2.py (Conv1D with bias, two LayerNorms per block, "
           "ln_f)")
def check_gpt2_closed_form(ctx: Context, p: dict) -> None:
    c = p["config"]
    v, n, d, L = c["vocab_size"], c["n_positions"], c["n_embd"], c["n_layer"]
    want = v * d + n * d + L * (12 * d * d + 13 * d) + 2 * d + (0 if c.get("tie_word_embeddings", True) else v * d)
    assert_equal(ctx, _counts(ctx, c)["total"], want, "GPT-2 total vs V d + n_ctx d + L (12 d^2 + 13 d) + 2 d")


APPROX_PARAMS = Component(
    name="approx_params",
    signature="approx_params(num_layers: int, d_model: int) -> int",
    summary="Kaplan et al.'s N ~ 12 L d^2 non-embedding parameters (d_attn = d, d_ff = 4d); low by (13 L + 2) d "
    "for GPT-2.",
    reference=ref.approx_params,
    dtypes=(),
)


def _approx_example(p: dict) -> dict:
    """A GPT-2 config with the given depth and width (vocabulary and positions minimal: they are subtracted)."""
    return {"config": {"model_type": "gpt2", "vocab_size": 2, "n_positions": 1, "n_embd": p["n_head"] * p["head_dim"],
                       "n_layer": p["n_layer"], "n_head": p["n_head"]}}


@invariant("approx_params.stated_error",
           examples=st.fixed_dictionaries({"n_layer": st.integers(1, 4), "n_head": st.sampled_from([1, 2, 3]),
                                           "head_dim": st.integers(1, 4)}).map(_approx_example),
           statement="12 L d^2 is the GPT-2 non-embedding count without biases and norms: the exact count exceeds it "
           "by (13 L + 2) d, a relative error of 13 / (12 d) + 1 / (6 L d) (0.14% for GPT-2 small).",
           source="Kaplan et al. 2020, sec. 2.1 (N ~ 2 d_model n_layer (2 d_attn + d_ff) = 12 n_layer d_model^2)")
def check_approx_stated_error(ctx: Context, p: dict) -> None:
    c = p["config"]
    L, d = c["n_layer"], c["n_embd"]
    got = ctx.target(L, d)
    if not isinstance(got, int):
        ctx.fail(f"approx_params must return an int, got {got!r}")
    counts = measured_module_parameters(c)
    non_embedding = counts["total"] - counts["input_and_output"]
    assert_equal(ctx, non_embedding - got, (13 * L + 2) * d,
                 f"exact non-embedding count {non_embedding:,} minus the 12 L d^2 approximation (biases and norms: "
                 "(13 L + 2) d)")
