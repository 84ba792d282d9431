"""Reference cross-entropy and top-p vs torch on CPU, at the vocabularies kernel-scale examples draw.

Cross-entropy: lmspec's reference vs torch.nn.functional.cross_entropy. Top-p: the reference (one ascending sort,
softmax, cumsum, scatter back) vs a torch.sort-based top-p written as vLLM's `apply_top_k_top_p` and a
torch.topk-based one that sorts only the candidates a nucleus of mass p needs at most (the whole row here, where
the nucleus holds thousands of tokens).

Run: python -m pytest benchmarks/test_bench_sampling.py --benchmark-only   (see docs/benchmarks.md)
"""

from __future__ import annotations

import pytest
import torch

from lmspec.reference.sampling import cross_entropy, top_p

DTYPES = {"float32": torch.float32, "float64": torch.float64}
VOCABS = {"qwen2-151936": 151936, "llama3-128256": 128256, "llama2-32000": 32000}
ROWS = 8  # a batch of decoding rows / a short sequence of targets


def _logits(vocab: int, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(ROWS, vocab, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * scale).to(dtype)


def _torch_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """vLLM v1 apply_top_k_top_p (top-p only): ascending sort, remove cumsum <= 1 - p, keep the last."""
    ascending, order = logits.sort(dim=-1)
    remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - p
    remove[..., -1] = False
    return logits.scatter(-1, order, ascending.masked_fill(remove, float("-inf")))


def _torch_topk_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """top-p over torch.topk's descending candidates: keep while the mass before a token is < p."""
    values, indices = logits.topk(logits.shape[-1], dim=-1)
    probs = values.softmax(dim=-1)
    keep = probs.cumsum(dim=-1) - probs < p
    return torch.full_like(logits, float("-inf")).scatter(-1, indices, values.masked_fill(~keep, float("-inf")))


@pytest.mark.parametrize("impl", ["reference", "torch"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("vocab_name", list(VOCABS))
def test_cross_entropy(measure, vocab_name: str, dtype_name: str, impl: str):
    dtype, vocab = DTYPES[dtype_name], VOCABS[vocab_name]
    x = _logits(vocab, dtype)
    target = torch.randint(0, vocab, (ROWS,), generator=torch.Generator().manual_seed(1))
    fn = (lambda: cross_entropy(x, target)) if impl == "reference" else (
        lambda: torch.nn.functional.cross_entropy(x, target))
    out = measure(fn, group=f"cross_entropy {vocab_name} {dtype_name}", impl=impl, dtype=dtype_name,
                  shape=f"{ROWS}x{vocab}")
    torch.testing.assert_close(out, torch.nn.functional.cross_entropy(x, target))


@pytest.mark.parametrize("impl", ["reference", "torch_sort", "torch_topk"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("vocab_name", list(VOCABS))
def test_top_p(measure, vocab_name: str, dtype_name: str, impl: str):
    dtype, vocab = DTYPES[dtype_name], VOCABS[vocab_name]
    x = _logits(vocab, dtype, scale=0.05)  # near-flat: the nucleus holds ~90% of the vocabulary
    fn = {"reference": lambda: top_p(x, 0.9), "torch_sort": lambda: _torch_top_p(x, 0.9),
          "torch_topk": lambda: _torch_topk_top_p(x, 0.9)}[impl]
    out = measure(fn, group=f"top_p {vocab_name} {dtype_name}", impl=impl, dtype=dtype_name, shape=f"{ROWS}x{vocab}")
    kept, expected = out > float("-inf"), _torch_top_p(x, 0.9) > float("-inf")
    assert abs(int(kept.sum()) - int(expected.sum())) <= ROWS * 64  # the same nucleus up to rounding at its edge
