"""Positions family: Hugging Face Llama RoPE (default and Llama 3 scaling) and GPT-J's interleaved RoPE and sinusoidal
table conform through their adapters, torch's embedding conforms, and a target in the other RoPE convention is
reported by name."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lmspec.conformance.loading import Target, all_adapters, load_target
from lmspec.conformance.runner import run_invariant
from lmspec.reference import positions as ref
from lmspec.spec import get_component

from .test_external_conformance import CONFIG, check_conforms, unsupported

LLAMA_ROTARY = "transformers.models.llama.modeling_llama:LlamaRotaryEmbedding"
GPTJ_ROPE = "transformers.models.gptj.modeling_gptj:apply_rotary_pos_emb"
GPTJ_TABLE = "transformers.models.gptj.modeling_gptj:create_sinusoidal_positions"
ROPE_EXAMPLE = {"B": 1, "H": 2, "L": 3, "D": 8, "start": 1000, "shuffle": True, "theta": 10000.0, "seed": 2,
                "pattern": "normal", "layout": "contiguous"}


def _every(component: str, dtype: str) -> set[tuple[str, str]]:
    return {(i.id, dtype) for i in get_component(component).invariants}


def replay(component: str, target, invariant: str, dtype: torch.dtype, example: dict):
    comp = get_component(component)
    return run_invariant(comp, comp.invariant(invariant), target, dtype, CONFIG, replay=example)


@pytest.mark.parametrize("component", ["rope", "rope_llama3"])
def test_hf_llama_rope_conforms(component):
    pytest.importorskip("transformers")
    results = check_conforms(component, LLAMA_ROTARY, "hf_llama_rotary")
    assert unsupported(results) == _every(component, "float64")


def test_hf_llama3_frequencies_come_from_rope_init_functions():
    """The adapter's LlamaRotaryEmbedding takes its Llama 3 frequencies from ROPE_INIT_FUNCTIONS['llama3']
    (= _compute_llama3_parameters), which match the reference to float32 rounding."""
    pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, _compute_llama3_parameters
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from lmspec.conformance.adapters.positions import _llama_like_config

    params = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    config = _llama_like_config(LlamaRotaryEmbedding, 32, params)
    module = LlamaRotaryEmbedding(config)
    assert ROPE_INIT_FUNCTIONS["llama3"] is _compute_llama3_parameters and module.rope_type == "llama3"
    torch.testing.assert_close(module.inv_freq, _compute_llama3_parameters(config)[0])
    expected = ref.llama3_inv_freq(32, 500000.0, 8.0, 1.0, 4.0, 64)
    torch.testing.assert_close(module.inv_freq.double(), expected, rtol=4e-7, atol=0)
    assert (expected < ref.rope_inv_freq(32, 500000.0)).any() and (expected == ref.rope_inv_freq(32, 500000.0)).any()


def test_hf_gptj_interleaved_rope_conforms():
    pytest.importorskip("transformers")
    results = check_conforms("rope_interleaved", GPTJ_ROPE, "hf_gptj_rope")
    theta = {i.id for i in get_component("rope_interleaved").invariants if "theta" in i.requires}
    below64 = ("float32", "float16", "bfloat16")
    expected = _every("rope_interleaved", "float64") | {(i, d) for i in theta for d in below64}
    assert unsupported(results) == expected


def test_hf_gptj_sinusoidal_table_conforms():
    pytest.importorskip("transformers")
    check_conforms("sinusoidal_positions", GPTJ_TABLE, "hf_gptj_sinusoidal")


def test_torch_embedding_conforms_as_learned_positions():
    assert not unsupported(check_conforms("learned_positions", "torch.nn.functional:embedding"))


@pytest.mark.parametrize("path,adapter,adapted_for,checked_as,named", [
    (GPTJ_ROPE, "hf_gptj_rope", "rope_interleaved", "rope", "interleaved: pair i is dims (2i, 2i + 1), as in GPT-J"),
    (LLAMA_ROTARY, "hf_llama_rotary", "rope", "rope_interleaved",
     "rotate-half: pair i is dims (i, i + D/2), as in Hugging Face Llama"),
])
def test_rope_convention_mismatch_is_reported_by_name(path, adapter, adapted_for, checked_as, named):
    pytest.importorskip("transformers")
    adapted = load_target(path, adapted_for, adapter)
    # adapted for one component, checked as the other: built here, so it cannot be reloaded in a worker
    target = Target(fn=adapted.fn, path=path, adapter=adapter, isolatable=False)
    example = {"D": 8, "position": 1, "theta": 10000.0}
    result = replay(checked_as, target, f"{checked_as}.convention.pairs", torch.float32, example)
    assert result.verdict == "fail", result.message
    assert f"the target follows the other convention, {named}" in result.message, result.message


def test_hf_rope_float64_is_computed_in_float32():
    pytest.importorskip("transformers")
    target = dataclasses.replace(load_target(LLAMA_ROTARY, "rope", "hf_llama_rotary"), unsupported_dtypes=frozenset())
    result = replay("rope", target, "rope.reference.matches", torch.float64, ROPE_EXAMPLE)
    assert result.verdict == "fail", result.counterexample
    assert 1e-12 < result.counterexample["details"]["max_rel"] < 1e-3, result.counterexample


def test_angles_in_bfloat16_are_caught():
    """The mutant computes the angles in the input's dtype: fine in float32, wrong by radians in bfloat16 at
    position ~1000."""
    target = load_target("tests.mutants.positions:rope_angles_in_input_dtype", "rope")
    assert replay("rope", target, "rope.reference.matches", torch.float32, ROPE_EXAMPLE).verdict == "pass"
    assert replay("rope", target, "rope.reference.matches", torch.bfloat16, ROPE_EXAMPLE).verdict == "fail"


def test_every_positions_adapter_is_registered():
    assert {"hf_llama_rotary", "hf_gptj_rope", "hf_gptj_sinusoidal"} <= set(all_adapters())


def test_reference_conventions_and_tables():
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    positions = torch.tensor([4, 0, 9, 2, 2])
    perm = ref.interleaved_to_half(8)
    torch.testing.assert_close(ref.rope(x[..., perm], positions), ref.rope_interleaved(x, positions)[..., perm])
    factor_one = ref.rope_llama3(x, positions, 10000.0, 1.0, 1.0, 4.0, 16)
    torch.testing.assert_close(factor_one, ref.rope(x, positions, 10000.0))
    table = ref.sinusoidal_positions(6, 4, torch.float64)
    pos, i = torch.arange(6, dtype=torch.float64)[:, None], torch.arange(2, dtype=torch.float64)[None, :]
    torch.testing.assert_close(table[:, 0::2], torch.sin(pos / 10000 ** (2 * i / 4)))
    torch.testing.assert_close(table[:, 1::2], torch.cos(pos / 10000 ** (2 * i / 4)))
    with pytest.raises(IndexError):
        ref.embedding(torch.tensor([0, 6]), torch.zeros(6, 2))
    idx = torch.arange(10)[None]
    assert ref.crop_context(idx, 4).tolist() == [[6, 7, 8, 9]] and torch.equal(ref.crop_context(idx, 20), idx)
