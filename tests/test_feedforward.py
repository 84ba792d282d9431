"""Feed-forward family: Hugging Face LlamaMLP (SwiGLU) and GPT2MLP (plain FFN with biases) conform through their
adapters; the width rule matches Hugging Face's default configs; the reference matches its formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmspec.conformance.loading import load_target
from lmspec.conformance.runner import RunConfig, run_component
from lmspec.reference import feedforward as ref
from lmspec.spec import get_component

from .test_external_conformance import check_conforms, unsupported


def test_hf_llama_mlp_conforms():
    pytest.importorskip("transformers")
    mlp = "transformers.models.llama.modeling_llama:LlamaMLP"
    assert not unsupported(check_conforms("swiglu", mlp, "hf_llama_mlp"))


def test_hf_gpt2_mlp_conforms():
    pytest.importorskip("transformers")
    mlp = "transformers.models.gpt2.modeling_gpt2:GPT2MLP"
    assert not unsupported(check_conforms("feed_forward", mlp, "hf_gpt2_mlp"))


def test_widths_match_hf_default_configs():
    transformers = pytest.importorskip("transformers")
    llama = transformers.LlamaConfig()  # Llama-2-7B sizes
    assert ref.ffn_hidden_dim(llama.hidden_size, gated=True, multiple_of=256) == llama.intermediate_size == 11008
    gpt2 = transformers.GPT2Config()  # n_inner None means 4 * n_embd (GPT2Block)
    assert gpt2.n_inner is None and ref.ffn_hidden_dim(gpt2.n_embd) == 4 * 768


def test_glu_references_match_their_formulas():
    x = torch.randn(3, 5, dtype=torch.float64)
    wg, wu, wd = (torch.randn(*shape, dtype=torch.float64) for shape in ((7, 5), (7, 5), (5, 7)))
    torch.testing.assert_close(ref.swiglu(x, wg, wu, wd), F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd))
    torch.testing.assert_close(ref.geglu(x, wg, wu, wd, "tanh"),
                               F.linear(F.gelu(F.linear(x, wg), approximate="tanh") * F.linear(x, wu), wd))
    b_in, b_out = torch.randn(7, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(ref.feed_forward(x, wg, wd, b_in, b_out, "relu"),
                               F.linear(F.relu(F.linear(x, wg, b_in)), wd, b_out))


def test_parallel_and_serial_blocks_differ_only_in_what_the_mlp_reads():
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    attention, mlp = (lambda h: torch.tanh(h) * 0.5), (lambda h: h.pow(2) * 0.1)
    norm = lambda h: F.layer_norm(h, (6,))  # noqa: E731
    serial = ref.transformer_block(x, attention, mlp, norm, norm)
    parallel = ref.transformer_block(x, attention, mlp, norm, norm, parallel=True)
    h = x + attention(norm(x))
    torch.testing.assert_close(serial, h + mlp(norm(h)))
    torch.testing.assert_close(parallel, x + attention(norm(x)) + mlp(norm(x)))


TILE_MUTANTS = [("swiglu", "swiglu_drops_partial_k_tile"), ("feed_forward", "ffn_drops_partial_k_tile")]


@pytest.mark.parametrize("component,mutant", TILE_MUTANTS, ids=[m[1] for m in TILE_MUTANTS])
def test_tile_mutants_conform_at_small_scale(component, mutant):
    """A matmul that drops the last partial K tile is exact while K fits one tile: it conforms at --scale small;
    tests/test_mutants.py shows the default (kernel) scale catches it."""
    target = load_target(f"tests.mutants.feedforward:{mutant}", component)
    invariant = f"{component}.reference.matches"
    results = run_component(get_component(component), target, RunConfig(profile="ci", scale="small"),
                            dtypes=["float32"], only=[invariant])
    assert [r.verdict for r in results] == ["pass"], [r.message for r in results]
