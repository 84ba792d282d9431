"""`lmspec estimate`: parameters, FLOPs, memory, KV cache and compute-optimal data of a model, each with the
convention it uses. Every number comes from the reference formulas in reference/{params,flops,memory}.py,
which the accounting invariants check against transformers models, FlopCounterMode and real tensors.

    lmspec estimate (--preset NAME | --hf-config config.json) [--seq-len S] [--batch B] [--tokens D]
                    [--recipe R] [--zero-stage Z --devices N] [--recompute R] [--attention A] [--json]

Exit codes: 0 printed, 2 could not run (unknown preset, unreadable or unsupported config).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from lmspec.reference.accounting import flops as F
from lmspec.reference.accounting import memory as M
from lmspec.reference.accounting import params as P

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}


def add_parser(subparsers) -> argparse.ArgumentParser:
    est = subparsers.add_parser("estimate", help="parameters, FLOPs, memory and KV cache of a model (with conventions)")
    source = est.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", choices=sorted(P.PRESETS), help="a published model")
    source.add_argument("--hf-config", metavar="CONFIG.json", help="a Hugging Face config.json (or Meta params.json)")
    est.add_argument("--seq-len", type=int, help="tokens per sequence (default: the model's context, at most 4096)")
    est.add_argument("--batch", type=int, default=1, help="sequences per step (default 1)")
    est.add_argument("--tokens", type=float, help="training tokens D (default: Chinchilla-optimal 20 N)")
    est.add_argument("--recipe", default="mixed_adam", choices=sorted(M.RECIPES), help="precision / optimizer recipe")
    est.add_argument("--zero-stage", type=int, default=0, choices=[0, 1, 2, 3])
    est.add_argument("--devices", type=int, default=1, help="data-parallel devices sharing ZeRO partitions")
    est.add_argument("--recompute", default="none", choices=F.RECOMPUTE, help="activation recomputation")
    est.add_argument("--attention", default="dense", choices=F.ATTENTION_CONVENTIONS, help="attention FLOP convention")
    est.add_argument("--embedding", default="input_and_output", choices=P.EMBEDDING_CONVENTIONS,
                     help="which parameters count as embedding")
    est.add_argument("--weight-dtype", default="bf16", choices=sorted(BYTES), help="inference weight format")
    est.add_argument("--kv-dtype", default="bf16", choices=sorted(BYTES), help="KV cache format")
    est.add_argument("--json", action="store_true", help="machine-readable output")
    est.set_defaults(func=run)
    return est


def _config(args) -> tuple[str, dict]:
    if args.preset:
        return args.preset, P.preset(args.preset)
    return args.hf_config, P.load_config(args.hf_config)


def _default_seq_len(config: dict) -> int:
    context = config.get("n_positions") or config.get("max_position_embeddings") or config.get("max_seq_len") or 4096
    return int(min(context, 4096))


def estimate(config: dict, name: str = "model", seq_len: int | None = None, batch: int = 1, tokens: float | None = None,
             recipe: str = "mixed_adam", zero_stage: int = 0, devices: int = 1, recompute: str = "none",
             attention: str = "dense", embedding: str = "input_and_output", weight_dtype: str = "bf16",
             kv_dtype: str = "bf16") -> dict:
    """Everything `lmspec estimate` prints, as a dict of plain numbers and strings."""
    arch = P.architecture(config)
    s = seq_len or _default_seq_len(config)
    counts = P.param_count(config, embedding)
    n_mm = P.matmul_parameters(arch)
    step_tokens = batch * s
    forward = F.forward_flops(config, s, batch, attention)
    training = F.training_flops(config, s, batch, recompute, attention)
    model_flops = F.training_flops(config, s, batch, "none", attention)
    chinchilla_tokens = 20 * counts["total"]
    d = float(tokens) if tokens is not None else float(chinchilla_tokens)
    run_flops = model_flops / step_tokens * d
    states = M.training_memory(counts["total"], recipe, zero_stage, devices)
    activations = arch.num_layers * M.activation_memory(s, batch, arch.hidden_size, arch.num_heads, recompute)
    kv_token = M.kv_cache_bytes_per_token(arch, BYTES[kv_dtype])
    inference = M.inference_memory(arch, s, batch, BYTES[weight_dtype], BYTES[kv_dtype])
    return {
        "model": {"name": name, "model_type": arch.model_type, "layers": arch.num_layers, "hidden_size": arch.hidden_size,
                  "heads": arch.num_heads, "kv_heads": arch.num_kv_heads, "head_dim": arch.head_dim,
                  "intermediate_size": arch.intermediate_size, "vocab_size": arch.vocab_size,
                  "tied_embeddings": arch.tied_embeddings, "experts": arch.num_experts, "experts_per_token": arch.experts_per_token},
        "setting": {"seq_len": s, "batch": batch, "tokens_per_step": step_tokens},
        "conventions": {
            "embedding": embedding,
            "attention": attention,
            "recompute": recompute,
            "flops": "matmul FLOPs (2 m n k), as torch.utils.flop_counter counts them; backward = 2 x forward",
            "training_memory": f"{recipe}: {M.RECIPE_DOCS[recipe]}; ZeRO stage {zero_stage} over {devices} device(s)",
            "activations": "Korthikanti et al. 2022, s b h (34 + 5 a s / h) bytes per layer (GPT layer: d_ff = 4h, "
                           "dropout, 16-bit activations)" + ("" if arch.model_type == "gpt2" else "; approximate for this architecture"),
            "kv_cache": f"2 x layers x kv_heads x head_dim x {kv_dtype}",
            "chinchilla": "D = 20 N (Hoffmann et al. 2022), N = total parameters",
        },
        "parameters": {
            "total": counts["total"], "embedding": counts["embedding"], "non_embedding": counts["non_embedding"],
            "active": counts["active"], "matmul_per_token": n_mm,
            "approx_12_L_d2": P.approx_params(arch.num_layers, arch.hidden_size),
        },
        "flops": {
            "forward_per_token": forward // step_tokens,
            "forward_per_step": forward,
            "training_per_token": training // step_tokens,
            "training_per_step": training,
            "model_flops_per_token": model_flops // step_tokens,
            "six_n_per_token": 6 * n_mm,
        },
        "training_run": {"tokens": d, "model_flops": run_flops, "pf_days": F.petaflop_days(run_flops)},
        "memory": {
            "training": {**{k: v for k, v in states.items() if k != "total"}, "activations": activations,
                         "total": states["total"] + activations},
            "inference": {**inference, "weight_dtype": weight_dtype},
        },
        "kv_cache": {"bytes_per_token": kv_token, "dtype": kv_dtype},
        "chinchilla": {"optimal_tokens": chinchilla_tokens, "tokens_per_param": 20},
    }


def _bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.2f} {unit} ({int(n):,} B)"
    return f"{int(n):,} B"


def _text(r: dict) -> str:
    m, p, f, mem, c = r["model"], r["parameters"], r["flops"], r["memory"], r["conventions"]
    moe = f", {m['experts']} experts (top-{m['experts_per_token']})" if m["experts"] > 1 else ""
    lines = [
        f"{m['name']}: {m['model_type']}, {m['layers']} layers, d {m['hidden_size']}, {m['heads']} heads "
        f"({m['kv_heads']} KV) of {m['head_dim']}, FFN {m['intermediate_size']}, vocab {m['vocab_size']}"
        f"{', tied head' if m['tied_embeddings'] else ''}{moe}",
        f"setting: seq_len {r['setting']['seq_len']}, batch {r['setting']['batch']}",
        "",
        "parameters",
        f"  total          {p['total']:,}",
        f"  embedding      {p['embedding']:,}   (convention: {c['embedding']})",
        f"  non-embedding  {p['non_embedding']:,}",
        f"  active         {p['active']:,}   (per token)",
        f"  matmul N       {p['matmul_per_token']:,}   (weights one token multiplies by)",
        f"  12 L d^2       {p['approx_12_L_d2']:,}",
        "",
        f"FLOPs ({c['flops']}; attention: {c['attention']})",
        f"  forward        {f['forward_per_token']:,} per token, {f['forward_per_step']:,} per step",
        f"  training       {f['training_per_token']:,} per token, {f['training_per_step']:,} per step (recompute: {c['recompute']})",
        f"  6 N            {f['six_n_per_token']:,} per token (attention term left out)",
        f"  training run   {r['training_run']['tokens']:,.0f} tokens: {r['training_run']['model_flops']:.3e} model FLOPs "
        f"= {r['training_run']['pf_days']:,.1f} PF-days",
        "",
        f"training memory per device ({c['training_memory']})",
    ]
    lines += [f"  {k:<14} {_bytes(v)}" for k, v in mem["training"].items()]
    lines += [f"  (activations: {c['activations']})", "", f"inference memory ({mem['inference']['weight_dtype']} weights, "
              f"KV cache for seq_len x batch tokens)"]
    lines += [f"  {k:<14} {_bytes(mem['inference'][k])}" for k in ("weights", "kv_cache", "total")]
    lines += ["", f"KV cache        {_bytes(r['kv_cache']['bytes_per_token'])} per token ({c['kv_cache']})",
              f"Chinchilla      {r['chinchilla']['optimal_tokens']:,} tokens ({c['chinchilla']})"]
    return "\n".join(lines)


def run(args) -> int:
    try:
        name, config = _config(args)
        report = estimate(config, name, args.seq_len, args.batch, args.tokens, args.recipe, args.zero_stage, args.devices,
                          args.recompute, args.attention, args.embedding, args.weight_dtype, args.kv_dtype)
    except (OSError, ValueError, KeyError) as exc:
        print(f"lmspec: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else _text(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m lmspec.conformance.estimate ...`: the same command without the rest of the CLI."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    parser = argparse.ArgumentParser(prog="lmspec")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["estimate", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
