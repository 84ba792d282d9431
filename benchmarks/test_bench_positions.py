"""Reference RoPE (float64 angles, cos / sin rounded to x's dtype) vs the Hugging Face Llama computation in torch
(float32 angles: LlamaRotaryEmbedding's forward and apply_rotary_pos_emb, written out so transformers is not needed),
at the sizes kernel-scale examples draw (spec/positions.py) and a production prefill.

Run: python -m pytest benchmarks --benchmark-only   (see docs/benchmarks.md)
"""

from __future__ import annotations

import pytest
import torch

from lmspec.reference.positions import rope, rotate_half

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
#: besides the float32 angle error (~ position x eps32, docs/positions.md), the rounding of the output
ROUNDING = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 6e-2}

SHAPES = {
    # kernel scale: a long sequence of one head with Gemma's head dim, positions from 1000
    "long-seq": ((1, 1, 4097, 256), 1000),
    # kernel scale: many heads, a few tokens, positions past 131072
    "many-heads": ((3, 65, 6, 256), 131071),
    # production: a Llama-2-7B prefill of 4096 tokens, 32 heads of 128 dims
    "llama2-prefill": ((1, 32, 4096, 128), 0),
}


def hf_llama_rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """transformers' LlamaRotaryEmbedding.forward + apply_rotary_pos_emb, inlined."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float) / d))
    freqs = positions[:, None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    return x * cos + rotate_half(x) * sin


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_rope(measure, shape_name: str, dtype_name: str, impl: str):
    dtype = DTYPES[dtype_name]
    shape, start = SHAPES[shape_name]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    positions = torch.arange(start, start + shape[2])
    fn = (lambda: rope(x, positions)) if impl == "reference" else (lambda: hf_llama_rope(x, positions))
    out = measure(fn, group=f"rope {shape_name} {dtype_name}", impl=impl, dtype=dtype_name,
                  shape="x".join(map(str, shape)) + f", positions from {start}")
    if impl == "reference":
        angle_error = 8 * int(positions.max()) * torch.finfo(torch.float32).eps
        atol = (angle_error + ROUNDING[dtype]) * float(x.abs().max())
        torch.testing.assert_close(out, hf_llama_rope(x, positions), atol=atol, rtol=0)
