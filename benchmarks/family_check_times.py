"""Seconds each family's `lmspec check` takes against torch (or, where torch has no such function, against the
reference), with the default profile: the figure docs/benchmarks.md reports before and after a change to the
strategies. Run: `python benchmarks/family_check_times.py [--scale small|kernel|production] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lmspec.conformance.loading import load_target
from lmspec.conformance.runner import RunConfig, run_component
from lmspec.spec import components

#: (component, target, adapter): torch's own function where it has one
TORCH_TARGETS = {
    "attention": [("attention", "torch.nn.functional:scaled_dot_product_attention", None)],
    "softmax": [("softmax", "torch:softmax", None)],
    "norms": [("rms_norm", "torch.nn.functional:rms_norm", None), ("layer_norm", "torch.nn.functional:layer_norm", None)],
    "activations": [("gelu", "torch.nn.functional:gelu", None), ("silu", "torch.nn.functional:silu", None)],
    "sampling": [("cross_entropy", "torch.nn.functional:cross_entropy", None),
                 ("sample", "torch:multinomial", "torch_multinomial")],
    "positions": [("rope", "transformers.models.llama.modeling_llama:LlamaRotaryEmbedding", "hf_llama_rotary")],
    "feedforward": [("swiglu", "transformers.models.llama.modeling_llama:LlamaMLP", "hf_llama_mlp")],
}


def family_rows() -> dict[str, list[tuple[str, str, str | None]]]:
    rows = dict(TORCH_TARGETS)
    for name, component in components().items():  # families without a torch counterpart: every component's reference
        if component.family not in TORCH_TARGETS:
            rows.setdefault(component.family, []).append((name, component.reference_path, None))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig(profile="ci") if args.scale is None else RunConfig(profile="ci", scale=args.scale)
    figures = {}
    for family, rows in family_rows().items():
        started = time.perf_counter()
        verdicts = []
        for name, path, adapter in rows:
            component = components()[name]
            results = run_component(component, load_target(path, name, adapter), config)
            verdicts += [r.verdict for r in results]
        seconds = time.perf_counter() - started
        figures[family] = {"seconds": round(seconds, 2), "targets": [r[1] for r in rows][:3],
                           "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))}}
        print(f"{family:12s} {seconds:7.1f} s  {figures[family]['verdicts']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
