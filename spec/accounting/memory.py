"""Memory: optimizer recipes and ZeRO, activations, KV and MLA caches, MHA vs MQA memory traffic. Each count is
checked against bytes held by real tensors: AdamW state after a step, tensors autograd saves for the backward
pass, the reference and transformers KV caches."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from ...reference import attention as ref_attention
from ...reference.accounting import memory as ref
from ..checks import assert_equal, assert_within
from ..core import Component, Context, invariant
from ..strategies import scaled
from .models import hf_model
from .relative import assert_relative

# --- weights, gradients, optimizer states ---------------------------------------------------------------

TRAINING_MEMORY = Component(
    name="training_memory",
    signature="training_memory(params: int, recipe: str = 'mixed_adam', zero_stage: int = 0, devices: int = 1) -> "
    "{'weights', 'gradients', 'optimizer', 'total'}: int bytes per device",
    summary="Bytes of weights, gradients and optimizer states under a precision recipe (fp32_adam 16 B/param, "
    "mixed_adam 2+2+12, mixed_adam_fp32_grads 18, bf16_adam 8) and a ZeRO stage.",
    reference=ref.training_memory,
    dtypes=(),
)

BYTES_PER_PARAM = {"fp32_adam": (4, 4, 8), "mixed_adam": (2, 2, 12), "mixed_adam_fp32_grads": (2, 4, 12),
                   "bf16_adam": (2, 2, 4)}


def _memory(ctx: Context, params: int, recipe: str, zero_stage: int = 0, devices: int = 1) -> dict:
    out = ctx.target(params, recipe=recipe, zero_stage=zero_stage, devices=devices)
    keys = ("weights", "gradients", "optimizer", "total")
    if not isinstance(out, dict) or any(not isinstance(out.get(k), int) for k in keys):
        ctx.fail(f"training_memory must return a dict of int bytes with keys {keys}, got {out!r}")
    assert_equal(ctx, out["total"], out["weights"] + out["gradients"] + out["optimizer"],
                 "total vs weights + gradients + optimizer")
    return out


@invariant("training_memory.recipe.bytes_per_param", examples=st.integers(1, 10**12).map(lambda n: {"params": n}),
           statement="fp32 Adam 4+4+8 = 16 B per parameter; mixed-precision Adam 2+2+12 = 16 (ZeRO's K = 12: fp32 "
           "master, momentum, variance); with fp32 main gradients 2+4+12 = 18 (Megatron); pure bf16 Adam 2+2+4 = 8.",
           source="Rajbhandari et al. 2020 (ZeRO), sec. 3.1; Narayanan et al. 2021 (Megatron-LM); Kingma & Ba 2015 "
           "(Adam)")
def check_recipe_bytes_per_param(ctx: Context, p: dict) -> None:
    n = p["params"]
    for recipe, (w, g, o) in BYTES_PER_PARAM.items():
        out = _memory(ctx, n, recipe)
        for key, per_param in (("weights", w), ("gradients", g), ("optimizer", o)):
            assert_equal(ctx, out[key], per_param * n, f"{recipe}: {key} bytes vs {per_param} B x {n:,} parameters")


def _tiny_model(sizes: list[int], dtype: torch.dtype) -> torch.nn.Module:
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    layers = [torch.nn.Linear(a, b, bias=i % 2 == 0) for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    torch.random.set_rng_state(gen_state)
    return torch.nn.Sequential(*layers).to(dtype)


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@functools.lru_cache(maxsize=256)
def _measure_recipe(recipe: str, sizes: tuple[int, ...]) -> tuple[int, int]:
    """Run one AdamW step under the recipe on a small MLP; bytes of weights, gradients and optimizer state
    (AdamW's per-tensor `step` scalars excluded), and the parameter count."""
    low = torch.float32 if recipe == "fp32_adam" else torch.bfloat16
    model = _tiny_model(sizes, low)
    x = torch.randn(3, sizes[0], dtype=low, generator=torch.Generator().manual_seed(0))
    model(x).square().sum().backward()
    params = list(model.parameters())
    grads = [p.grad for p in params]
    if recipe in ("fp32_adam", "bf16_adam"):
        optimized = params
    else:  # an fp32 master copy is optimized; the bf16 weights stay for the forward pass
        optimized = [p.detach().float().requires_grad_() for p in params]
        for master, p in zip(optimized, params):
            master.grad = p.grad.float()
        if recipe == "mixed_adam_fp32_grads":  # fp32 main grads replace the bf16 ones
            grads = [m.grad for m in optimized]
    optimizer = torch.optim.AdamW(optimized, lr=1e-3)
    optimizer.step()
    state = [v for s in optimizer.state.values() for k, v in s.items() if k != "step" and torch.is_tensor(v)]
    masters = [] if optimized is params else optimized
    total = _bytes(params) + _bytes(grads) + _bytes(masters) + _bytes(state)
    return total, sum(p.numel() for p in params)


@invariant("training_memory.recipe.measured_adamw",
           examples=st.sampled_from([{"recipe": r, "sizes": sizes} for r in sorted(BYTES_PER_PARAM)
                                     for sizes in ([3, 5], [1, 4, 2], [7, 1, 6])]),
           statement="The total equals the bytes of weights, gradients, master copy and torch.optim.AdamW state "
           "(exp_avg, exp_avg_sq) held after one step on a real module (per-tensor `step` scalars excluded).",
           source="torch.optim.AdamW (torch 2.13); Micikevicius et al. 2018 (mixed precision training)")
def check_recipe_measured_adamw(ctx: Context, p: dict) -> None:
    measured, n = _measure_recipe(p["recipe"], tuple(p["sizes"]))
    assert_equal(ctx, _memory(ctx, n, p["recipe"])["total"], measured,
                 f"{p['recipe']}: total bytes for {n:,} parameters vs the weights, gradients and state AdamW holds "
                 f"after one step ({measured / n:g} B/param)")


@invariant("training_memory.zero.stages",
           examples=st.fixed_dictionaries({"params": st.integers(1, 10**11), "devices": st.integers(1, 1024),
                                           "recipe": st.sampled_from(sorted(BYTES_PER_PARAM))}),
           statement="ZeRO stage 1 shards the optimizer states over N_d devices, stage 2 also the gradients, stage 3 "
           "also the weights (ceil(Psi / N_d) each); 7.5B parameters on 64 devices: 120, 31.4, 16.6, 1.88 GB.",
           source="Rajbhandari et al. 2020 (ZeRO), sec. 5.1-5.3 and Figure 1")
def check_zero_stages(ctx: Context, p: dict) -> None:
    n, nd, recipe = p["params"], p["devices"], p["recipe"]
    w, g, o = BYTES_PER_PARAM[recipe]
    shard = -(-n // nd)
    want = {0: (w * n, g * n, o * n), 1: (w * n, g * n, o * shard), 2: (w * n, g * shard, o * shard),
            3: (w * shard, g * shard, o * shard)}
    for stage, expected in want.items():
        out = _memory(ctx, n, recipe, stage, nd)
        assert_equal(ctx, (out["weights"], out["gradients"], out["optimizer"]), expected,
                     f"ZeRO stage {stage} on {nd} devices: (weights, gradients, optimizer)")
    # the paper's worked example: 7.5B parameters, 64 devices, K = 12
    for stage, gb in ((0, 120.0), (1, 31.4), (2, 16.6), (3, 1.88)):
        total = _memory(ctx, 7_500_000_000, "mixed_adam", stage, 64)["total"] / 1e9
        assert_within(ctx, total, gb, 0.003 * gb,  # the paper rounds to three digits
                      f"ZeRO paper, 7.5B parameters on 64 devices, stage {stage}: GB per device")


# --- activations ----------------------------------------------------------------------------------------

ACTIVATION_MEMORY = Component(
    name="activation_memory",
    signature="activation_memory(seq_len, batch, hidden, heads, recompute='none', tensor_parallel=1, "
    "sequence_parallel=False) -> int",
    summary="Activation bytes a GPT layer stores for the backward pass: s b h (34 + 5 a s / h) and its tensor-, "
    "sequence-parallel and recomputation variants (16-bit activations, 1-byte dropout masks, d_ff = 4h).",
    reference=ref.activation_memory,
    dtypes=(),
)


@functools.lru_cache(maxsize=512)
def _gpt_layer_saved_bytes(s: int, b: int, h: int, a: int, t: int) -> int:
    """Bytes autograd saves for the backward pass of one GPT layer (Megatron layout [s, b, h], bf16), as seen
    by one of t tensor-parallel ranks (a / t heads, 3h / t QKV and 4h / t MLP columns); parameters and the
    per-row LayerNorm statistics (mean, rstd: [s, b, 1]) are left out, as the paper leaves them out."""
    dtype = torch.bfloat16
    gen = torch.Generator().manual_seed(0)

    def w(*shape):
        return torch.randn(*shape, dtype=dtype, generator=gen).requires_grad_()

    hp, f, heads = h // t, 4 * h // t, a // t
    p = dict(ln1=(w(h), w(h)), qkv=(w(3 * hp, h), w(3 * hp)), o=(w(h, hp), w(h)), ln2=(w(h), w(h)),
             fc1=(w(f, h), w(f)), fc2=(w(h, f), w(h)))
    skip = {t_.untyped_storage().data_ptr() for pair in p.values() for t_ in pair}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    def layer_norm(z, weight, bias):
        out, mean, rstd = torch.native_layer_norm(z, (h,), weight, bias, 1e-5)
        skip.update({mean.untyped_storage().data_ptr(), rstd.untyped_storage().data_ptr()})
        return out

    x = torch.randn(s, b, h, dtype=dtype, generator=gen).requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t_: t_):
        y = layer_norm(x, *p["ln1"])
        q, k, v = F.linear(y, *p["qkv"]).split(hp, dim=-1)
        dh = hp // heads
        q, k, v = (z.reshape(s, b * heads, dh).transpose(0, 1) for z in (q, k, v))
        probs = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * dh**-0.5, dim=-1)
        # native_dropout saves a 1-byte mask (F.dropout on the CPU saves 2-byte noise)
        probs, _ = torch.native_dropout(probs, 0.1, True)
        context = torch.bmm(probs, v).transpose(0, 1).reshape(s, b, hp)
        out, _ = torch.native_dropout(F.linear(context, *p["o"]), 0.1, True)
        x = x + out
        z = F.gelu(F.linear(layer_norm(x, *p["ln2"]), *p["fc1"]))
        z, _ = torch.native_dropout(F.linear(z, *p["fc2"]), 0.1, True)
        x = x + z
    return sum(n for ptr, n in saved.items() if ptr not in skip)


#: measured layers (autograd runs a bf16 GPT layer for each; cached): t = 1, 2, 4 shards, s from 1 up, b = 1, 2.
ACTIVATION_SHAPES = [
    {"seq_len": s, "batch": b, "heads": a, "hidden": h, "tensor_parallel": t}
    for s, b, a, h, t in ((1, 1, 1, 1, 1), (5, 2, 2, 6, 1), (8, 1, 4, 8, 1), (3, 2, 2, 4, 2), (7, 1, 4, 12, 2),
                          (4, 2, 4, 4, 4), (6, 1, 8, 16, 4), (2, 1, 3, 9, 1))
]


def _activations(ctx: Context, p: dict, recompute: str = "none", sp: bool = False) -> int:
    out = ctx.target(p["seq_len"], p["batch"], p["hidden"], p["heads"], recompute=recompute,
                     tensor_parallel=p["tensor_parallel"], sequence_parallel=sp)
    if not isinstance(out, int):
        ctx.fail(f"activation_memory must return int bytes, got {out!r}")
    return out


@invariant("activation_memory.measured", examples=st.sampled_from(ACTIVATION_SHAPES),
           statement="Without recomputation the count equals the bytes autograd saves for one GPT layer in bf16 "
           "(1-byte dropout masks; per-row LayerNorm statistics aside), for t = 1, 2, 4 tensor-parallel shards.",
           source="Korthikanti et al. 2022, sec. 4.1-4.2; torch.autograd.graph.saved_tensors_hooks")
def check_activations_measured(ctx: Context, p: dict) -> None:
    want = _gpt_layer_saved_bytes(p["seq_len"], p["batch"], p["hidden"], p["heads"], p["tensor_parallel"])
    assert_equal(ctx, _activations(ctx, p), want, "bytes per layer vs those autograd saves for the backward pass of "
                 f"a GPT layer (bf16, t = {p['tensor_parallel']})")


@st.composite
def _small_activation_examples(draw) -> dict:
    t = draw(st.sampled_from([1, 1, 2, 4]))
    heads = t * draw(st.integers(1, 2))
    return {"seq_len": draw(st.integers(1, 8)), "batch": draw(st.integers(1, 2)), "heads": heads,
            "hidden": heads * draw(st.integers(1, 3)), "tensor_parallel": t}


@st.composite
def _production_activation_examples(draw) -> dict:
    """Real models' layers (GPT-3 175B, Llama-3.1-405B, a 7B) at contexts up to 128k and batches up to 64: the
    byte counts pass 2^31 (and 2^53 for the 5 a s^2 b score term at 128k), where int32 or float arithmetic breaks."""
    hidden, heads = draw(st.sampled_from([(12288, 96), (16384, 128), (4096, 32)]))
    return {"seq_len": draw(st.sampled_from([2048, 4096, 8192, 131072])), "batch": draw(st.sampled_from([1, 8, 64])),
            "heads": heads, "hidden": hidden, "tensor_parallel": draw(st.sampled_from([1, 2, 4, 8]))}


def _activation_examples() -> st.SearchStrategy[dict]:
    """Small layers at every scale; real models' layers from scale "kernel" up."""
    return scaled(_small_activation_examples(), _production_activation_examples())


@invariant("activation_memory.korthikanti_table2", examples=_activation_examples(),
           statement="s b h (10 + 24/t + 5 a s / (h t)) with tensor parallelism; s b h (34 + 5 a s / h) / t with "
           "sequence parallelism; s b h (10 + 24/t) and 34 s b h / t with selective recomputation; 2 s b h with full "
           "recomputation.",
           source="Korthikanti et al. 2022, Table 2")
def check_activations_korthikanti_table2(ctx: Context, p: dict) -> None:
    s, b, h, a, t = p["seq_len"], p["batch"], p["hidden"], p["heads"], p["tensor_parallel"]
    sbh = s * b * h
    rows = {  # Table 2, times t to stay in integers: t x s b h (...)
        ("none", False): sbh * (10 * t + 24) + 5 * a * s * s * b,
        ("none", True): sbh * 34 + 5 * a * s * s * b,
        ("selective", False): sbh * (10 * t + 24),
        ("selective", True): sbh * 34,
        ("full", False): 2 * sbh * t,
        ("full", True): 2 * sbh * t,
    }
    for (recompute, sp), want_times_t in rows.items():
        assert_equal(ctx, _activations(ctx, p, recompute, sp) * t, want_times_t,
                     f"recompute={recompute}, sequence_parallel={sp}: t = {t} times the bytes vs t times Table 2's")


# --- KV caches ------------------------------------------------------------------------------------------

KV_CACHE_BYTES = Component(
    name="kv_cache_bytes",
    signature="kv_cache_bytes(num_layers, kv_heads, head_dim, tokens, batch, bytes_per_element) -> int",
    summary="Bytes of a KV cache: 2 (K and V) x layers x kv_heads x head_dim x tokens x batch x bytes; MHA, GQA "
    "and MQA differ only in kv_heads.",
    reference=ref.kv_cache_bytes,
    dtypes=(),
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _kv_bytes(ctx: Context, p: dict) -> int:
    size = torch.empty((), dtype=DTYPES[p["dtype"]]).element_size()
    out = ctx.target(p["layers"], p["kv_heads"], p["head_dim"], p["tokens"], p["batch"], size)
    if not isinstance(out, int):
        ctx.fail(f"kv_cache_bytes must return int bytes, got {out!r}")
    return out


@st.composite
def _kv_examples(draw) -> dict:
    kv = draw(st.sampled_from([1, 2, 4]))
    return {"layers": draw(st.integers(1, 4)), "heads": kv * draw(st.sampled_from([1, 2, 4])), "kv_heads": kv,
            "head_dim": 2 * draw(st.integers(1, 8)), "tokens": draw(st.integers(1, 9)),
            "batch": draw(st.integers(1, 3)),
            "dtype": draw(st.sampled_from(["float32", "bfloat16", "float16"]))}


@invariant("kv_cache_bytes.measured_reference", examples=_kv_examples(),
           statement="The count equals the bytes of the reference KVCache after `tokens` decoding steps.",
           source="Pope et al. 2022, sec. 3.1; lmspec.reference.attention.KVCache")
def check_kv_cache_measured_reference(ctx: Context, p: dict) -> None:
    got = _kv_bytes(ctx, p)
    cache = ref_attention.KVCache(p["layers"])
    dtype = DTYPES[p["dtype"]]
    for _ in range(p["tokens"]):  # one decoding step at a time
        for layer in range(p["layers"]):
            step = torch.zeros(p["batch"], p["kv_heads"], 1, p["head_dim"], dtype=dtype)
            cache.update(layer, step, step.clone())
    assert_equal(ctx, got, cache.nbytes, f"bytes vs those the reference KVCache holds after {p['tokens']} steps")


#: transformers caches measured: MHA, GQA and MQA, in float32, bfloat16 and float16.
KV_CASES = (
    {"layers": 2, "heads": 4, "kv_heads": 4, "head_dim": 4, "tokens": 5, "batch": 2, "dtype": "float32"},
    {"layers": 3, "heads": 4, "kv_heads": 2, "head_dim": 6, "tokens": 3, "batch": 1, "dtype": "bfloat16"},
    {"layers": 1, "heads": 8, "kv_heads": 1, "head_dim": 2, "tokens": 7, "batch": 3, "dtype": "float16"},
    {"layers": 2, "heads": 2, "kv_heads": 1, "head_dim": 8, "tokens": 1, "batch": 1, "dtype": "bfloat16"},
)


@functools.lru_cache(maxsize=16)
def _transformers_cache_bytes(layers: int, heads: int, kv_heads: int, head_dim: int, tokens: int, batch: int,
                              dtype: str) -> int:
    config = {"model_type": "llama", "vocab_size": 8, "hidden_size": heads * head_dim, "intermediate_size": 4,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "head_dim": head_dim}
    model = hf_model(config, dtype=DTYPES[dtype]).eval()
    ids = torch.zeros(batch, tokens, dtype=torch.long, device="meta")
    with torch.no_grad():
        cache = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True).past_key_values
    return sum(layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
               for layer in cache.layers)


@invariant("kv_cache_bytes.measured_transformers", examples=st.just({}),
           statement="The count equals the bytes of transformers' DynamicCache after a forward pass of a Llama model "
           "with MHA, GQA or MQA (1 KV head), in float32, bfloat16 or float16.",
           source="transformers 5.23 cache_utils.DynamicCache; Shazeer 2019 (MQA); Ainslie et al. 2023 (GQA)")
def check_kv_cache_measured_transformers(ctx: Context, p: dict) -> None:
    for case in KV_CASES:
        assert_equal(ctx, _kv_bytes(ctx, case), _transformers_cache_bytes(**case),
                     f"bytes vs those transformers' DynamicCache of a Llama model holds ({case['heads']} heads, "
                     f"{case['kv_heads']} KV heads, {case['tokens']} tokens x batch {case['batch']}, {case['dtype']})")


MLA_CACHE_BYTES = Component(
    name="mla_cache_bytes",
    signature="mla_cache_bytes(layers, latent_dim, rope_dim, tokens, batch, bytes_per_element) -> int",
    summary="Bytes of a multi-head latent attention cache: (d_c + d_h^R) elements per token per layer.",
    reference=ref.mla_cache_bytes,
    dtypes=(),
)

#: measured MLA shapes (the reference computes c_KV and k_R for each; cached)
MLA_SHAPES = [
    {"layers": l, "heads": h, "head_dim": e, "latent_dim": dc, "rope_dim": er, "d_model": d, "tokens": n, "batch": b}
    for l, h, e, dc, er, d, n, b in ((1, 1, 2, 1, 2, 2, 1, 1), (2, 2, 4, 8, 2, 8, 5, 2), (3, 1, 2, 3, 6, 5, 3, 1),
                                     (1, 2, 2, 6, 4, 4, 6, 2), (2, 3, 4, 16, 2, 12, 2, 1))
]


@functools.lru_cache(maxsize=512)
def _mla_held_bytes(layers: int, heads: int, e: int, dc: int, er: int, d: int, tokens: int, batch: int) -> int:
    """Bytes of what the reference MLA keeps per layer for later tokens: the latent c_KV and the RoPE key k_R."""
    gen = torch.Generator().manual_seed(0)
    held = 0
    for _ in range(layers):
        x = torch.randn(batch, tokens, d, generator=gen)
        weights = [torch.randn(*shape, generator=gen) for shape in ((dc, d), (heads * e, d), (heads * er, d), (er, d))]
        latent, _, _, k_rope = ref_attention._mla_parts(x, *weights, heads, 10000.0)
        held += latent.numel() * latent.element_size() + k_rope.numel() * k_rope.element_size()
    return held


@invariant("mla_cache_bytes.measured_reference", examples=st.sampled_from(MLA_SHAPES),
           statement="The count equals the bytes of the latent c_KV and the shared RoPE key k_R that the reference MLA "
           "computes for every token (what the absorbed form attends over).",
           source="DeepSeek-AI 2024 (DeepSeek-V2), sec. 2.1.2-2.1.3, eqs. 9 and 17")
def check_mla_cache_measured_reference(ctx: Context, p: dict) -> None:
    got = ctx.target(p["layers"], p["latent_dim"], p["rope_dim"], p["tokens"], p["batch"], 4)
    held = _mla_held_bytes(p["layers"], p["heads"], p["head_dim"], p["latent_dim"], p["rope_dim"], p["d_model"],
                           p["tokens"], p["batch"])
    assert_equal(ctx, got, held, "bytes vs those of the latent c_KV and shared RoPE key of the reference MLA (float32)")


@invariant("mla_cache_bytes.deepseek_v2", examples=st.just({}),
           statement="DeepSeek-V2 (d_c = 4 d_h = 512, d_h^R = d_h / 2 = 64) caches 576 = 4.5 d_h elements per token "
           "and layer, against 2 n_h d_h = 32,768 for MHA.",
           source="DeepSeek-AI 2024 (DeepSeek-V2), Table 1")
def check_mla_cache_deepseek_v2(ctx: Context, p: dict) -> None:
    assert_equal(ctx, ctx.target(1, 512, 64, 1, 1, 1), 576, "DeepSeek-V2 (d_c = 512, d_h^R = 64): elements cached "
                 "per token and layer (MHA with 128 heads of 128: 32,768)")
    assert_equal(ctx, ctx.target(60, 512, 64, 1, 1, 2), 60 * 576 * 2, "DeepSeek-V2, 60 layers in bf16: bytes per token")


# --- memory traffic: MHA vs MQA -------------------------------------------------------------------------

ATTENTION_TRAFFIC = Component(
    name="attention_memory_traffic",
    signature="attention_memory_traffic(batch, seq_len, d_model, heads, kv_heads, incremental) -> "
    "{'operations', 'memory', 'ratio'}: float",
    summary="Shazeer 2019's arithmetic and memory-access counts of multi-head, multi-query and grouped-query "
    "attention, batched or incremental (one token per step with a KV cache).",
    reference=ref.attention_memory_traffic,
    dtypes=(),
)


@st.composite
def _traffic_examples(draw) -> dict:
    heads = draw(st.sampled_from([1, 2, 4, 8, 16, 32]))
    return {"batch": draw(st.integers(1, 64)), "seq_len": draw(st.integers(1, 4096)),
            "d_model": heads * draw(st.integers(1, 128)), "heads": heads}


def _traffic(ctx: Context, p: dict, kv_heads: int, incremental: bool) -> dict:
    out = ctx.target(p["batch"], p["seq_len"], p["d_model"], p["heads"], kv_heads, incremental)
    if not isinstance(out, dict) or not {"operations", "memory", "ratio"} <= set(out):
        ctx.fail(f"attention_memory_traffic must return operations, memory and ratio, got {out!r}")
    return out


@invariant("attention_memory_traffic.shazeer_formulas", examples=_traffic_examples(),
           statement="Operations b n d^2; memory b n d + b h n^2 + d^2 batched, b n d + b n^2 d + n d^2 incremental "
           "MHA (ratio Theta(n/d + 1/b)), b n d + b n^2 k + n d^2 incremental MQA (ratio Theta(1/d + n/(d h) + 1/b)).",
           source="Shazeer 2019, Fast Transformer Decoding: One Write-Head is All You Need, sec. 2.4 and 3.1")
def check_traffic_shazeer_formulas(ctx: Context, p: dict) -> None:
    b, n, d, h = p["batch"], p["seq_len"], p["d_model"], p["heads"]
    k = d // h
    cases = (
        ("batched MHA", h, False, b * n * d + b * h * n * n + d * d),
        ("incremental MHA", h, True, b * n * d + b * n * n * d + n * d * d),
        ("incremental MQA", 1, True, b * n * d + b * n * n * k + n * d * d),
    )
    for name, g, incremental, memory in cases:
        out = _traffic(ctx, p, g, incremental)
        assert_relative(ctx, out["operations"], b * n * d * d, f"{name} operations (b n d^2)")
        assert_relative(ctx, out["memory"], memory, f"{name} memory accesses")
        assert_relative(ctx, out["ratio"], memory / (b * n * d * d), f"{name} memory / operations")


@invariant("attention_memory_traffic.kv_heads_scale_cache_reads", examples=_traffic_examples(),
           statement="With g KV heads the incremental cache traffic is b n^2 d g / h: MQA reads h times less than MHA.",
           source="Shazeer 2019, sec. 3.1; Ainslie et al. 2023 (GQA), sec. 2")
def check_traffic_kv_heads_scale_cache_reads(ctx: Context, p: dict) -> None:
    b, n, d, h = p["batch"], p["seq_len"], p["d_model"], p["heads"]
    mha = _traffic(ctx, p, h, True)["memory"]
    for g in (g for g in (1, 2, 4, 8) if h % g == 0):
        gqa = _traffic(ctx, p, g, True)["memory"]
        assert_relative(ctx, mha - gqa, b * n * n * d * (1 - g / h),
                        f"cache traffic saved by {g} KV heads instead of {h}")
