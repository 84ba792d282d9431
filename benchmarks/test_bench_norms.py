"""Reference rms_norm / layer_norm (computed in row chunks, reference/norms.py) vs torch's F.rms_norm / F.layer_norm
on CPU, at the production scale the norms' strategies draw (4096 tokens of Llama-2-70B's hidden size 8192).

Run: python -m pytest benchmarks/test_bench_norms.py --benchmark-only   (see docs/benchmarks.md)
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmspec.reference import norms as ref

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
TOLERANCE = {torch.float64: dict(atol=1e-12, rtol=1e-12), torch.float32: dict(atol=1e-5, rtol=1e-5),
             torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}

#: 4096 tokens x hidden 8192 (a Llama-2-70B prefill chunk), and one decoding step of a batch of 32.
SHAPES = {"prefill-4096x8192": (4096, 8192), "decode-32x8192": (32, 8192)}


def _inputs(shape: tuple[int, int], dtype: torch.dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen).to(dtype)
    weight = (torch.randn(shape[-1], generator=gen) * 0.5 + 1).to(dtype)
    bias = (torch.randn(shape[-1], generator=gen) * 0.5).to(dtype)
    return x, weight, bias


CALLS = {
    ("rms_norm", "reference"): lambda x, w, b: ref.rms_norm(x, (x.shape[-1],), w, 1e-6),
    ("rms_norm", "torch"): lambda x, w, b: F.rms_norm(x, [x.shape[-1]], w, 1e-6),
    ("layer_norm", "reference"): lambda x, w, b: ref.layer_norm(x, (x.shape[-1],), w, b),
    ("layer_norm", "torch"): lambda x, w, b: F.layer_norm(x, [x.shape[-1]], w, b),
}


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("op", ["rms_norm", "layer_norm"])
def test_norm(measure, op: str, shape_name: str, dtype_name: str, impl: str):
    dtype = DTYPES[dtype_name]
    shape = SHAPES[shape_name]
    x, w, b = _inputs(shape, dtype)
    call = CALLS[(op, impl)]
    out = measure(lambda: call(x, w, b), group=f"{op} {shape_name} {dtype_name}", min_rounds=3, impl=impl,
                  dtype=dtype_name, shape="x".join(map(str, shape)))
    if impl == "reference":
        torch.testing.assert_close(out, CALLS[(op, "torch")](x, w, b), **TOLERANCE[dtype])
