"""Positions family: Hugging Face Llama RoPE (default and Llama 3 scaling) and GPT-J's interleaved RoPE and sinusoidal
table conform through their adapters, torch's embedding conforms, and a target in the other RoPE convention is
reported by name. At kernel scale the examples reach positions past 131072, real head dims and long sequences, and the
tile mutants (exact within one tile, wrong past it) pass at small scale."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings

from lmspec.conformance.loading import Target, all_adapters, load_target
from lmspec.conformance.runner import run_invariant
from lmspec.reference import positions as ref
from lmspec.spec import get_component
from lmspec.spec import positions as spec
from lmspec.spec.core import Context
from lmspec.spec.strategies import at_scale
from lmspec.spec.tolerance import compare

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


# --- kernel scale ---------------------------------------------------------------------------------------

#: (component, mutant, invariant): exact within one tile or below one edge, so they pass at --scale small; each is
#: caught at the default (kernel) scale by tests/test_mutants.py.
TILE_MUTANTS = [
    ("rope", "rope_positions_float16", "rope.reference.matches"),
    ("rope", "rope_positions_int16", "rope.reference.matches"),
    ("rope", "rope_cache_wraps", "rope.reference.matches"),
    ("rope", "rope_cache_clamps", "rope.reference.matches"),
    ("rope", "rope_positions_tile_offset", "rope.reference.matches"),
    ("rope", "rope_last_row_tile_dropped", "rope.reference.matches"),
    ("rope", "rope_freq_tile_offset", "rope.reference.matches"),
    ("rope", "rope_heads_without_stride_loop", "rope.reference.matches"),
    ("sinusoidal_positions", "sinusoidal_positions_float16", "sinusoidal_positions.reference.matches"),
    ("learned_positions", "embedding_index_int16", "learned_positions.lookup.exact"),
    ("crop_context", "crop_fixed_1024", "crop_context.keeps_last_tokens"),
]


@pytest.mark.parametrize("component,mutant,invariant", TILE_MUTANTS, ids=[m[1] for m in TILE_MUTANTS])
def test_tile_mutants_pass_at_small_scale(component, mutant, invariant):
    comp = get_component(component)
    target = load_target(f"tests.mutants.positions:{mutant}", component)
    dtype = torch.float32 if comp.dtypes else None
    result = run_invariant(comp, comp.invariant(invariant), target, dtype,
                           dataclasses.replace(CONFIG, scale="small", isolate=False))
    assert result.verdict == "pass", result.message


def _drawn(strategy, scale: str, n: int = 150) -> list[dict]:
    seen = []

    @settings(max_examples=n, derandomize=True, database=None)
    @given(strategy)
    def collect(value):
        seen.append(value)

    with at_scale(scale):
        collect()
    return seen


def test_rope_examples_reach_far_positions_head_dims_long_sequences_and_many_heads_one_at_a_time():
    small = _drawn(spec.rope_examples(), "small")
    assert max(p["start"] + p["L"] for p in small) <= 1006 and max(p["D"] for p in small) <= 16
    kernel = _drawn(spec.rope_examples(), "kernel")
    assert {p["start"] for p in kernel} >= {32767, 65535, 131071}
    assert {p["D"] for p in kernel} >= set(spec.HEAD_DIMS) and max(p["L"] for p in kernel) == 4097
    assert max(p["B"] * p["H"] for p in kernel) >= 65
    # one example is large in one or two dimensions, never in L and B x H at once
    assert all(p["L"] <= 6 or p["B"] * p["H"] == 1 for p in kernel)
    assert all(p["B"] * p["H"] * p["L"] * p["D"] <= 2**26 for p in _drawn(spec.rope_examples(), "production"))


def test_embedding_examples_look_up_rows_past_int16():
    kernel = _drawn(spec._embedding_examples(), "kernel")
    assert any(p["P"] > 65536 and p["top"] >= 2 for p in kernel)
    ctx = Context(target=None, dtype=torch.float32, device=torch.device("cpu"), options={})
    example = {"P": 65537, "D": 2, "batch": [], "L": 4, "top": 2, "seed": 0, "layout": "contiguous"}
    assert spec._embedding_inputs(ctx, example)[0][:2].tolist() == [65535, 65536]


def annotated_transformer_table(num_positions: int, dim: int) -> torch.Tensor:
    """The Annotated Transformer's (and PyTorch tutorial's) table: frequencies as exp(-2i log(10000) / d), a few ulps
    from 10000^(-2i/d): an honest float32 implementation whose error pattern is not the witness's."""
    position = torch.arange(num_positions).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * -(math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * div_term), torch.cos(position * div_term)
    return table


def test_sinusoidal_table_stays_normwise_an_honest_table_conforms_and_elementwise_would_reject_it():
    """Each element of the table is a value, but the witness (frequencies 1 / 10000^(2i/d) in float32) is one
    implementation's rounding: another honest float32 formula rounds other elements, and per element it exceeds
    twice the witness's error where the witness happens to be exact. Normwise, it conforms."""
    assert get_component("sinusoidal_positions").bound == "normwise"
    target = Target(fn=annotated_transformer_table, path="tests:annotated_transformer_table", isolatable=False)
    check_conforms("sinusoidal_positions", "tests:annotated_transformer_table", target=target)
    n, d = 4097, 64
    ref64 = ref.sinusoidal_positions(n, d, torch.float64)
    witness = ref.sinusoidal_positions(n, d, torch.float32, angle_dtype=torch.float32)
    out = annotated_transformer_table(n, d)
    assert compare(out, ref64, witness, torch.float32).ok
    assert not compare(out, ref64, witness, torch.float32, bound="elementwise").ok


def test_hf_float32_angles_err_by_position_times_eps_which_the_witness_allows():
    """HF computes inv_freq and position * inv_freq in float32: at position 131071 the angle is off by up to
    ~m eps32 / 2, 8e-3 rad, so its float32 RoPE is ~6e-3 from float64 there; the witness is that same computation, and
    the check holds a float32 target to twice it."""
    pytest.importorskip("transformers")
    target = load_target(LLAMA_ROTARY, "rope", "hf_llama_rotary")
    example = {**ROPE_EXAMPLE, "D": 128, "L": 4, "start": 131071, "shuffle": False}
    result = replay("rope", target, "rope.reference.matches", torch.float32, example)
    assert result.verdict == "pass", result.message
    x = torch.randn(1, 1, 1, 128)
    out = target.fn(x, torch.tensor([131071]))
    err = float((out.double() - ref.rope(x.double(), torch.tensor([131071]))).abs().max())
    assert 1e-4 < err < 3e-2
