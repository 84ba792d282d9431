"""Reference softmax (in opmath: max-subtract, exp and divide in place, one temporary) vs torch.softmax on CPU, at the
sizes kernel-scale examples draw (spec/softmax.py) and a prefill's attention scores.

Run: python -m pytest benchmarks --benchmark-only   (see docs/benchmarks.md)
"""

from __future__ import annotations

import pytest
import torch

from lmspec.reference.softmax import softmax

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
TOLERANCE = {torch.float64: dict(atol=1e-12, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-4),
             torch.bfloat16: dict(atol=1e-2, rtol=2e-2)}

SHAPES = {
    # Attention weights of one 1024-token prefill layer: 16 heads x 1024 x 1024, softmax over keys.
    "attn-scores": (1, 16, 1024, 1024),
    # Next-token distribution for a batch of 8 over a Llama-3-sized vocabulary.
    "vocab-logits": (8, 128256),
    # A kernel-scale example: three rows of Qwen2's vocabulary.
    "qwen2-vocab-rows": (3, 151936),
    # A kernel-scale example: many short rows (batch x heads*queries x 9 keys).
    "many-short-rows": (2, 4097, 9),
}


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_softmax(measure, shape_name: str, dtype_name: str, impl: str):
    dtype = DTYPES[dtype_name]
    shape = SHAPES[shape_name]
    x = (torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 4).to(dtype)
    fn = (lambda: softmax(x, dim=-1)) if impl == "reference" else (lambda: torch.softmax(x, dim=-1))
    out = measure(
        fn,
        group=f"softmax {shape_name} {dtype_name}",
        impl=impl,
        dtype=dtype_name,
        shape="x".join(map(str, shape)) + ", dim=-1",
    )
    if impl == "reference":
        torch.testing.assert_close(out, torch.softmax(x, dim=-1), **TOLERANCE[dtype])
