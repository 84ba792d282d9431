"""Parameter counts: every count is checked against the parameters of the transformers model itself."""

from __future__ import annotations

from hypothesis import strategies as st

from ...reference.accounting import params as ref
from .models import hf_configs, measured_module_parameters
from ..core import Component, Context, Invariant, Option

KEYS = ("total", "embedding", "non_embedding", "active")


def _counts(ctx: Context, config: dict) -> dict:
    out = ctx.target(dict(config), embedding=ctx.options["embedding"])
    if not isinstance(out, dict) or any(not isinstance(out.get(k), int) for k in KEYS):
        ctx.fail(f"param_count must return a dict of ints with keys {KEYS}, got {out!r}")
    return out


def _check_matches_module(ctx: Context, p: dict) -> None:
    got = _counts(ctx, p["config"])["total"]
    want = measured_module_parameters(p["config"])["total"]
    if got != want:
        ctx.fail(f"total {got:,} != {want:,} parameters of the transformers model ({got - want:+,})", target=got, measured=want)


def _check_published(ctx: Context, p: dict, table: dict | None = None) -> None:
    for name, config in (table or ref.PRESETS).items():
        got = _counts(ctx, config)["total"]
        want = ref.PUBLISHED_TOTALS[name]
        if got != want:
            ctx.fail(f"{name}: total {got:,} != published {want:,} ({got - want:+,})", model=name, target=got)


def _check_embedding_split(ctx: Context, p: dict) -> None:
    out = _counts(ctx, p["config"])
    if out["embedding"] + out["non_embedding"] != out["total"]:
        ctx.fail(f"embedding {out['embedding']:,} + non_embedding {out['non_embedding']:,} != total {out['total']:,}")
    want = measured_module_parameters(p["config"])[ctx.options["embedding"]]
    if out["embedding"] != want:
        ctx.fail(f"embedding parameters {out['embedding']:,} != {want:,} read off the module under the "
                 f"{ctx.options['embedding']!r} convention", target=out["embedding"], measured=want)


def _check_moe_active(ctx: Context, p: dict) -> None:
    out = _counts(ctx, p["config"])
    want = measured_module_parameters(p["config"])["active"]
    if out["active"] != want:
        ctx.fail(f"active parameters {out['active']:,} != {want:,} (total minus the (E - k) unused experts of every layer)",
                 target=out["active"], measured=want)


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


def _check_meta_rounding(ctx: Context, p: dict) -> None:
    _check_published(ctx, p, ref.META_PARAMS)  # Llama-2 7B/13B/70B, Llama-3 8B/70B params.json
    m = p["params"]
    heads = m["n_heads"]
    config = {"model_type": "llama", "vocab_size": m["vocab_size"], "hidden_size": m["dim"], "num_hidden_layers": m["n_layers"],
              "num_attention_heads": heads, "num_key_value_heads": m.get("n_kv_heads", heads),
              "intermediate_size": _meta_feed_forward_width(m["dim"], m["multiple_of"], m.get("ffn_dim_multiplier"))}
    got = _counts(ctx, m)["total"]
    want = measured_module_parameters(config)["total"]
    if got != want:
        ctx.fail(f"params.json total {got:,} != {want:,} of the model with Meta's FFN width "
                 f"{config['intermediate_size']} ({got - want:+,})", target=got, measured=want)


def _check_gpt2_closed_form(ctx: Context, p: dict) -> None:
    c = p["config"]
    v, n, d, L = c["vocab_size"], c["n_positions"], c["n_embd"], c["n_layer"]
    want = v * d + n * d + L * (12 * d * d + 13 * d) + 2 * d + (0 if c.get("tie_word_embeddings", True) else v * d)
    got = _counts(ctx, c)["total"]
    if got != want:
        ctx.fail(f"GPT-2 total {got:,} != V d + n_ctx d + L (12 d^2 + 13 d) + 2 d = {want:,} ({got - want:+,})", target=got)


PARAM_COUNT = Component(
    name="param_count",
    family="accounting",
    signature="param_count(config: dict, embedding: str = 'input_and_output') -> {'total', 'embedding', 'non_embedding', 'active'}: int",
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
    invariants=(
        Invariant(
            id="params.total.matches_module",
            statement="The total equals the number of distinct parameters of the transformers model built from the "
            "config (meta device), for every supported architecture: GQA, biases, tied or untied head, MoE.",
            source="transformers 5.23 modeling_{gpt2,llama,mistral,qwen2,qwen3,gemma,mixtral}.py",
            kind="property",
            examples=hf_configs().map(lambda c: {"config": c}),
            check=_check_matches_module,
        ),
        Invariant(
            id="params.published_totals",
            statement="GPT-2 124,439,808 / 354,823,168 / 774,030,080 / 1,557,611,200; Llama-2-7B 6,738,415,616; "
            "Llama-3-8B 8,030,261,248 (and the other presets: Llama-2 13B/70B, Llama-3 70B, Mistral 7B, Mixtral 8x7B).",
            source="Radford et al. 2019; Touvron et al. 2023 (Llama 2); Meta Llama 3 model card; counted by "
            "transformers 5.23 on the meta device",
            kind="property",
            examples=st.just({}),
            check=_check_published,
        ),
        Invariant(
            id="params.embedding.split",
            statement="embedding + non_embedding = total, and the embedding count is what the chosen convention "
            "reads off the module (embedding tables, plus an untied output head under input_and_output).",
            source="Kaplan et al. 2020, sec. 2.1; transformers PreTrainedModel.num_parameters; nanoGPT model.py",
            kind="property",
            examples=hf_configs().map(lambda c: {"config": c}),
            check=_check_embedding_split,
        ),
        Invariant(
            id="params.moe.active",
            statement="Active parameters = total - L (E - k) x (parameters of one expert); dense models: active = total.",
            source="Jiang et al. 2024 (Mixtral of Experts, sec. 2.1: 47B total, 13B active); Fedus et al. 2022",
            kind="property",
            examples=hf_configs(("mixtral", "mixtral", "llama", "gpt2")).map(lambda c: {"config": c}),
            check=_check_moe_active,
            requires=frozenset({"active_parameters"}),
        ),
        Invariant(
            id="params.llama.ffn_rounding",
            statement="A Meta params.json sizes the FFN as int(2 x 4d / 3), times ffn_dim_multiplier, rounded up to "
            "multiple_of; the count equals the model built with that width (and Meta's own params.json files give the "
            "published totals: Llama-2-7B 11008 wide, Llama-3-8B 14336).",
            source="meta-llama/llama model.py FeedForward.__init__; meta-llama/llama3 model.py",
            kind="property",
            examples=_meta_params(),
            check=_check_meta_rounding,
            requires=frozenset({"meta_params_json"}),
        ),
        Invariant(
            id="params.gpt2.closed_form",
            statement="GPT-2: N = V d + n_ctx d + L (12 d^2 + 13 d) + 2 d (+ V d for an untied head).",
            source="Radford et al. 2019; transformers modeling_gpt2.py (Conv1D with bias, two LayerNorms per block, ln_f)",
            kind="property",
            examples=hf_configs(("gpt2",), ffn_width=False).map(lambda c: {"config": c}),
            check=_check_gpt2_closed_form,
        ),
    ),
)


def _approx_example(p: dict) -> dict:
    """A GPT-2 config with the given depth and width (vocabulary and positions minimal: they are subtracted)."""
    return {"config": {"model_type": "gpt2", "vocab_size": 2, "n_positions": 1, "n_embd": p["n_head"] * p["head_dim"],
                       "n_layer": p["n_layer"], "n_head": p["n_head"]}}


def _check_approx_error(ctx: Context, p: dict) -> None:
    c = p["config"]
    L, d = c["n_layer"], c["n_embd"]
    got = ctx.target(L, d)
    counts = measured_module_parameters(c)
    non_embedding = counts["total"] - counts["input_and_output"]
    if not isinstance(got, int) or non_embedding - got != (13 * L + 2) * d:
        ctx.fail(f"12 L d^2 approximation {got!r}: the exact non-embedding count {non_embedding:,} should exceed it by "
                 f"exactly (13 L + 2) d = {(13 * L + 2) * d:,} (biases and norms)", target=got)


APPROX_PARAMS = Component(
    name="approx_params",
    family="accounting",
    signature="approx_params(num_layers: int, d_model: int) -> int",
    summary="Kaplan et al.'s N ~ 12 L d^2 non-embedding parameters (d_attn = d, d_ff = 4d); low by (13 L + 2) d for GPT-2.",
    reference=ref.approx_params,
    dtypes=(),
    invariants=(
        Invariant(
            id="params.approx.stated_error",
            statement="12 L d^2 is the GPT-2 non-embedding count without biases and norms: the exact count exceeds it "
            "by (13 L + 2) d, a relative error of 13 / (12 d) + 1 / (6 L d) (0.14% for GPT-2 small).",
            source="Kaplan et al. 2020, sec. 2.1 (N ~ 2 d_model n_layer (2 d_attn + d_ff) = 12 n_layer d_model^2)",
            kind="property",
            examples=st.fixed_dictionaries({"n_layer": st.integers(1, 4), "n_head": st.sampled_from([1, 2, 3]),
                                            "head_dim": st.integers(1, 4)}).map(_approx_example),
            check=_check_approx_error,
        ),
    ),
)

COMPONENTS = (PARAM_COUNT, APPROX_PARAMS)
