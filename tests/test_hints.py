"""Honest hints: a failure message names a known convention only when the target's output matches that convention's
formula within the tolerance policy, and otherwise says which is nearest and how far; numbers in messages are readable.

Cases: Gemma's RMSNorm, x_hat * (1 + weight), which conforms under --option weight_offset=1; GPT-NeoX's partial
rotary (partial_rotary_factor=0.25), which is not the interleaved convention; near misses that match nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lmspec.conformance.loading import load_target
from lmspec.conformance.runner import run_invariant
from lmspec.spec import Context, Violation, get_component
from lmspec.spec.checks import assert_each_within, assert_matches, eps_units

from .conftest import check
from .test_external_conformance import CONFIG

NORMS = "tests.mutants.norms"
POSITIONS = "tests.mutants.positions"
GEMMA = f"{NORMS}:rms_gemma_one_plus_weight"
PARTIAL = f"{POSITIONS}:rope_partial_rotary"
GEMMA_CATCHERS = ["rms_norm.reference.matches", "rms_norm.scale.unit_rms", "rms_norm.equals_layer_norm_on_zero_mean",
                  "rms_norm.precision.large_inputs"]


def _failures(results) -> list:
    failed = [r for r in results if r.verdict == "fail"]
    assert failed and all(r.cause == "violation" for r in failed), [(r.invariant, r.message) for r in results]
    return failed


def replay(component: str, target: str, invariant: str, example: dict, dtype=torch.float32, **options):
    comp = get_component(component)
    config = dataclasses.replace(CONFIG, options=options)
    return run_invariant(comp, comp.invariant(invariant), load_target(target, component), dtype, config, replay=example)


# --- RMSNorm: Gemma's (1 + weight) -------------------------------------------------------------------------


def test_gemma_rms_norm_is_told_one_plus_weight_not_eps_outside():
    code, results = check("rms_norm", GEMMA, dtypes=["float32"], only=GEMMA_CATCHERS)
    assert code == 1
    for r in _failures(results):
        assert "the target scales by (1 + weight), Gemma's convention" in r.message, r.message
        assert "--option weight_offset=1" in r.message, r.message
        assert "outside the square root" not in r.message, r.message


def test_gemma_rms_norm_conforms_with_weight_offset_1():
    code, results = check("rms_norm", GEMMA, weight_offset="1")
    assert code == 0, [(r.invariant, r.dtype, r.message) for r in results if r.verdict != "pass"]


def gemma_rms_norm(input, normalized_shape, weight=None, eps=None):
    """transformers' GemmaRMSNorm as an rms_norm target: a missing weight is its initial value, zeros (scaling by 1);
    eps omitted is torch's default, as the spec's eps_default=torch asks."""
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    shape = [normalized_shape] if isinstance(normalized_shape, int) else list(normalized_shape)
    n = 1
    for size in shape:
        n *= size
    if eps is None:
        eps = torch.finfo(torch.float32 if input.dtype != torch.float64 else torch.float64).eps
    module = GemmaRMSNorm(n, eps=eps).to(device=input.device, dtype=input.dtype).requires_grad_(False)
    if weight is not None:
        module.weight.copy_(weight.reshape(-1))
    flat = input.reshape(*input.shape[: input.dim() - len(shape)], n)
    return module(flat).reshape(input.shape)


def test_transformers_gemma_rms_norm_conforms_with_weight_offset_1_and_is_named_without():
    pytest.importorskip("transformers")
    target = "tests.test_hints:gemma_rms_norm"
    # float64 is left out: GemmaRMSNorm computes in float32 whatever the input's dtype (x.float()).
    code, results = check("rms_norm", target, dtypes=["float32", "bfloat16", "float16"], weight_offset="1")
    assert code == 0, [(r.invariant, r.dtype, r.message) for r in results if r.verdict != "pass"]
    code, results = check("rms_norm", target, dtypes=["float32"], only=["rms_norm.reference.matches"])
    assert code == 1 and "scales by (1 + weight), Gemma's convention" in _failures(results)[0].message


def test_reference_takes_weight_offset_into_account():
    from lmspec.reference import norms as ref

    x, w = torch.randn(3, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    plain = ref.rms_norm(x, [5], None, 1e-6)
    torch.testing.assert_close(ref.rms_norm(x, [5], w, 1e-6, weight_offset=1), plain * (1 + w))
    torch.testing.assert_close(ref.rms_norm(x, [5], w, 1e-6), plain * w)
    torch.testing.assert_close(ref.rms_norm(x, [5], None, 1e-6, weight_offset=1), plain)


# --- RMSNorm: other conventions, and near misses ----------------------------------------------------------


def test_eps_outside_the_root_is_named_when_it_matches():
    code, results = check("rms_norm", f"{NORMS}:rms_eps_outside_sqrt", dtypes=["float32"],
                          only=["rms_norm.eps.inside_sqrt"])
    message = _failures(results)[0].message
    assert "the target adds eps outside the square root" in message, message
    assert "Gemma" not in message, message


def rms_twice_eps_outside_sqrt(input, normalized_shape, weight=None, eps=None):
    """x / (RMS(x) + 2 eps): near "eps outside the square root", but not it."""
    eps = torch.finfo(torch.float32).eps if eps is None else eps
    dims = tuple(range(-len(normalized_shape), 0))
    x = input.double()
    y = x / (x.pow(2).mean(dims, keepdim=True).sqrt() + 2 * eps)
    return (y if weight is None else y * weight.double()).to(input.dtype)


def test_a_near_miss_is_reported_as_nearest_not_as_the_cause():
    code, results = check("rms_norm", "tests.test_hints:rms_twice_eps_outside_sqrt", dtypes=["float32"],
                          only=["rms_norm.eps.inside_sqrt"])
    message = _failures(results)[0].message
    assert "the target adds" not in message, message
    assert "it matches no known convention: the nearest is a target that adds eps outside the square root" in message, \
        message
    assert "eps of float32 at the output's scale" in message, message


def test_eps_default_convention_is_named():
    code, results = check("rms_norm", f"{NORMS}:rms_eps_default_1e6", dtypes=["float32"],
                          only=["rms_norm.eps.default"])
    message = _failures(results)[0].message
    assert "the target takes eps omitted as eps=1e-06" in message and "--option eps_default=1e-6" in message


# --- RoPE: partial rotary (GPT-NeoX) and the two pairings -------------------------------------------------


def test_partial_rotary_is_named_not_interleaved():
    code, results = check("rope", PARTIAL, dtypes=["float32"], only=["rope.convention.pairs", "rope.reference.matches"])
    assert code == 1
    for r in _failures(results):
        assert "rotates only the first" in r.message, r.message
        assert "(partial rotary, e.g. GPT-NeoX partial_rotary_factor=0.25)" in r.message, r.message
        assert "interleaved" not in r.message and "other convention" not in r.message, r.message


@pytest.mark.parametrize("dim,rotated", [(8, 2), (16, 4), (32, 8)])
def test_partial_rotary_names_its_rotated_dims(dim, rotated):
    # D = 8 rotates dims (0, 1) only: the support of an interleaved pair, which the old hint named "interleaved".
    result = replay("rope", PARTIAL, "rope.convention.pairs", {"D": dim, "position": 1, "theta": 10000.0})
    assert result.verdict == "fail"
    named = f"rotates only the first {rotated} of {dim} dims (partial rotary, e.g. GPT-NeoX partial_rotary_factor=0.25)"
    assert named in result.message, result.message
    assert "interleaved" not in result.message, result.message


def neox_rope(x, positions, theta=10000.0):
    """transformers' GPT-NeoX rotary embedding with its default partial_rotary_factor=0.25, as a rope target."""
    from transformers import GPTNeoXConfig
    from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding, apply_rotary_pos_emb

    d = x.shape[-1]
    config = GPTNeoXConfig(hidden_size=d, num_attention_heads=1, intermediate_size=1, num_hidden_layers=1,
                           vocab_size=8, max_position_embeddings=8192,
                           rope_parameters={"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": 0.25})
    cos, sin = GPTNeoXRotaryEmbedding(config).to(x.device)(x, positions[None])
    return apply_rotary_pos_emb(x, x, cos, sin)[0]


def test_transformers_gpt_neox_rotary_is_named_partial():
    pytest.importorskip("transformers")
    result = replay("rope", "tests.test_hints:neox_rope", "rope.convention.pairs",
                    {"D": 16, "position": 1, "theta": 10000.0})
    assert result.verdict == "fail"
    assert "rotates only the first 4 of 16 dims (partial rotary, e.g. GPT-NeoX partial_rotary_factor=0.25)" \
        in result.message, result.message
    example = {"B": 1, "H": 2, "L": 3, "D": 16, "start": 5, "shuffle": False, "theta": 10000.0, "seed": 1,
               "pattern": "normal", "layout": "contiguous"}
    result = replay("rope", "tests.test_hints:neox_rope", "rope.reference.matches", example)
    assert result.verdict == "fail" and "rotates only the first 4 of 16 dims" in result.message, result.message


def test_other_convention_is_named_only_when_its_formula_matches():
    code, results = check("rope", f"{POSITIONS}:rope_interleaved_pairs", dtypes=["float32"],
                          only=["rope.convention.pairs"])
    assert "the target follows the other convention, interleaved" in _failures(results)[0].message
    # adjacent pairs turned by a rotate-half cos/sin table: only interleaved pairs are mixed, but not by its formula
    code, results = check("rope", f"{POSITIONS}:rope_interleaved_mixed", dtypes=["float32"],
                          only=["rope.convention.pairs"])
    message = _failures(results)[0].message
    assert "other convention" not in message and "it matches no known RoPE layout: the nearest is" in message, message


# --- numbers in messages ----------------------------------------------------------------------------------


def _ctx(dtype=torch.float32) -> Context:
    return Context(target=None, dtype=dtype, device=torch.device("cpu"), options={})


def test_eps_units_are_readable():
    assert eps_units(1474441648118010.25, torch.float32) == "1.47e+15 eps of float32"
    assert eps_units(0.5) == "0.5 eps"
    ref64 = torch.tensor([1e-30, 1.0], dtype=torch.float64)
    with pytest.raises(Violation) as caught:
        assert_matches(_ctx(), torch.tensor([1e-30, 2.0e8]), ref64, ref64.float())
    message = caught.value.message
    assert "on this example by 2e+08 (1.68e+15 eps of float32 at the output's scale)" in message, message
    assert "target 2e+08, reference 1;" in message, message


def test_within_messages_say_the_value_the_expectation_and_the_allowed_deviation():
    with pytest.raises(Violation) as caught:
        assert_each_within(_ctx(), torch.tensor([1.0, 2.0]), 1.0, 1.2e-6, "sum of an output row's weights")
    assert caught.value.message == ("sum of an output row's weights: 2, expected 1 at index [1] (off by 1 on this "
                                    "example; allowed deviation 1.2e-06)"), caught.value.message
