"""Reference activations (computed in opmath, rounded once; GELU's Phi via erfc) vs torch's kernels on CPU, at a
kernel-scale example's size and a Llama-2-7B MLP activation.

Run: python -m pytest benchmarks --benchmark-only   (see docs/benchmarks.md)
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmspec.reference import activations as ref

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
SHAPES = {
    # A kernel-scale example: one flat run past int16 offsets (spec/activations.py INDEX_EDGES).
    "flat-65537": (65537,),
    # The MLP activation of 512 tokens of Llama-2-7B (intermediate size 11008).
    "llama2-mlp": (512, 11008),
}
FUNCTIONS = {
    "gelu": (ref.gelu, F.gelu),
    "gelu_tanh": (lambda x: ref.gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh")),
    "silu": (ref.silu, F.silu),
}


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("fn_name", list(FUNCTIONS))
def test_activation(measure, fn_name: str, shape_name: str, dtype_name: str, impl: str):
    dtype = DTYPES[dtype_name]
    shape = SHAPES[shape_name]
    x = (torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 4).to(dtype)
    reference, theirs = FUNCTIONS[fn_name]
    fn = (lambda: reference(x)) if impl == "reference" else (lambda: theirs(x))
    measure(fn, group=f"{fn_name} {shape_name} {dtype_name}", impl=impl, dtype=dtype_name,
            shape="x".join(map(str, shape)))
