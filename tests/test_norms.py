"""Norms family: real targets conform (torch, Hugging Face), library differences are reported by name, and the
reference matches torch where torch has the function.

Conformance runs use the `ci` profile at 6 examples per invariant and dtype (tests/test_external_conformance.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lmspec.conformance.loading import load_target
from lmspec.conformance.runner import run_component, run_invariant
from lmspec.reference import norms as ref
from lmspec.spec import Context, Violation, get_component
from lmspec.spec.checks import assert_each_within

from .test_external_conformance import CONFIG, check_conforms, unsupported

LLAMA_RMS = "transformers.models.llama.modeling_llama:LlamaRMSNorm"
QWEN3 = "transformers.models.qwen3:modeling_qwen3"
OLMO2 = "transformers.models.olmo2:modeling_olmo2"


def _every(component: str, dtype: str) -> set[tuple[str, str]]:
    return {(i.id, dtype) for i in get_component(component).invariants}


# --- torch ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("component,path,adapter", [
    ("rms_norm", "torch.nn.functional:rms_norm", None),
    ("rms_norm", "torch.nn:RMSNorm", "torch_rms_norm_module"),
    ("layer_norm", "torch.nn.functional:layer_norm", None),
    ("layer_norm", "torch.nn:LayerNorm", "torch_layer_norm_module"),
    ("batch_norm", "torch.nn.functional:batch_norm", None),
])
def test_torch_norms_conform(component, path, adapter):
    assert not unsupported(check_conforms(component, path, adapter))


# --- Hugging Face ---------------------------------------------------------------------------------------


def test_hf_llama_rms_norm_conforms_with_its_eps_default():
    pytest.importorskip("transformers")
    results = check_conforms("rms_norm", LLAMA_RMS, "hf_rms_norm")
    assert unsupported(results) == _every("rms_norm", "float64")


NORM_EXAMPLE = {"batch": [2], "norm": [5], "weight": True, "bias": False, "eps": None, "seed": 3, "pattern": "normal",
                "layout": "contiguous"}


def replay(component: str, target, invariant: str, dtype: torch.dtype, example: dict, **options):
    """One example (no search, no shrinking): the verdict on inputs chosen to show a known difference."""
    comp = get_component(component)
    config = dataclasses.replace(CONFIG, options=options)
    return run_invariant(comp, comp.invariant(invariant), target, dtype, config, replay=example)


def test_hf_eps_default_is_reported_by_name():
    """Against torch's default (finfo eps), LlamaRMSNorm's eps=None differs, and the message names the convention."""
    pytest.importorskip("transformers")
    target = load_target(LLAMA_RMS, "rms_norm", "hf_rms_norm")
    result = replay("rms_norm", target, "rms_norm.eps.default", torch.float32, NORM_EXAMPLE, eps_default="torch")
    assert result.verdict == "fail"
    assert "eps=1e-06, the Hugging Face LlamaRMSNorm" in result.message, result.message
    assert "--option eps_default=1e-6" in result.message, result.message


def test_hf_rms_norm_float64_is_computed_in_float32():
    """Why float64 is declared unsupported: LlamaRMSNorm upcasts to float32 only, so float64 carries float32 error."""
    pytest.importorskip("transformers")
    target = dataclasses.replace(load_target(LLAMA_RMS, "rms_norm", "hf_rms_norm"), unsupported_dtypes=frozenset())
    result = replay("rms_norm", target, "rms_norm.reference.matches", torch.float64, {**NORM_EXAMPLE, "eps": 1e-5})
    assert result.verdict == "fail"
    assert 1e-12 < result.counterexample["details"]["max_rel"] < 1e-5, result.counterexample["details"]


@pytest.mark.parametrize("path,adapter", [(QWEN3, "hf_qwen3_qk_norm"), (OLMO2, "hf_olmo2_qk_norm")])
def test_hf_qk_norm_conforms(path, adapter):
    pytest.importorskip("transformers")
    results = check_conforms("qk_norm", path, adapter)
    assert unsupported(results) == _every("qk_norm", "float64")


def test_olmo2_normalizes_over_all_heads():
    """OLMo 2's q_norm spans every head: checked with Qwen3's per-head scope it fails the scope invariant."""
    pytest.importorskip("transformers")
    olmo2 = load_target(OLMO2, "qk_norm", "hf_olmo2_qk_norm")
    target = dataclasses.replace(olmo2, implied_options={})
    example = {"B": 1, "Hkv": 2, "H": 2, "L": 3, "E": 4, "start": 0, "magnitude": 1.0, "seed": 5,
               "layout": "contiguous"}
    for invariant in ("qk_norm.scope.statistics", "qk_norm.reference.matches"):
        result = replay("qk_norm", target, invariant, torch.float32, example, qk_norm_scope="per_head")
        assert result.verdict == "fail" and "raised" not in result.message, result.message
        # all_heads, as the adapter implies
        assert replay("qk_norm", olmo2, invariant, torch.float32, example).verdict == "pass"


# --- mutants that only a half-precision run can catch ------------------------------------------------------


def test_rms_norm_without_float32_upcast_fails_in_float16():
    """Squares of |x| ~ 300 overflow float16: the mutant passes in float32 and fails the large-input check in
    float16."""
    target = load_target("tests.mutants.norms:rms_squares_in_half", "rms_norm")
    example = {**NORM_EXAMPLE, "eps": 1e-5}
    assert replay("rms_norm", target, "rms_norm.precision.large_inputs", torch.float32, example).verdict == "pass"
    result = replay("rms_norm", target, "rms_norm.precision.large_inputs", torch.float16, example)
    assert result.verdict == "fail", result.message


def test_eps_outside_the_square_root_is_named():
    target = load_target("tests.mutants.norms:rms_eps_outside_sqrt", "rms_norm")
    example = {"batch": [2], "norm": [4], "eps": 1e-4, "ratio": 1.0, "seed": 1}
    result = replay("rms_norm", target, "rms_norm.eps.inside_sqrt", torch.float32, example)
    assert result.verdict == "fail" and "adds eps outside the square root" in result.message, result.message


# --- kernel scale: the bound per element, and kernels exact within one block ----------------------------------------


def _with_bound(component: str, bound: str):
    return dataclasses.replace(get_component(component), bound=bound)


def _replay_with(comp, target, invariant: str, dtype: torch.dtype, example: dict):
    return run_invariant(comp, comp.invariant(invariant), target, dtype, CONFIG, replay=example)


WIDE_EXAMPLE = {"batch": [2], "norm": [1025], "weight": True, "bias": True, "eps": None, "seed": 1,
                "pattern": "normal", "layout": "contiguous"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_bound_per_element_sees_what_the_normwise_bound_misses(dtype):
    """An output written in block floating point (one exponent per row) errs by at most ~eps max|y|: within the
    norm-wise bound, caught only because rms_norm's bound is per element."""
    target = load_target("tests.mutants.norms:rms_block_float_output", "rms_norm")
    example = {**WIDE_EXAMPLE, "bias": False, "eps": 1e-6}
    normwise = _replay_with(_with_bound("rms_norm", "normwise"), target, "rms_norm.reference.matches", dtype, example)
    assert normwise.verdict == "pass", normwise.message
    assert get_component("rms_norm").bound == "elementwise"
    result = _replay_with(get_component("rms_norm"), target, "rms_norm.reference.matches", dtype, example)
    assert result.verdict == "fail" and "8 eps of the element" in result.message, result.message


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layer_norm_keeps_the_normwise_bound_because_torch_rounds_at_the_inputs_scale(dtype):
    """Why layer_norm is norm-wise: torch's kernel computes x * (rstd w) + (b - mean rstd w), rounding at the scale
    |x_i| rstd, not at |y_i|, so a bound per element would fail torch itself at small outputs."""
    target = load_target("torch.nn.functional:layer_norm", "layer_norm")
    invariant = "layer_norm.reference.matches"
    assert _replay_with(get_component("layer_norm"), target, invariant, dtype, WIDE_EXAMPLE).verdict == "pass"
    elementwise = _replay_with(_with_bound("layer_norm", "elementwise"), target, invariant, dtype, WIDE_EXAMPLE)
    assert elementwise.verdict == "fail", "torch meets a bound per element: consider bound='elementwise'"


TILE_MUTANTS = [("rms_norm", "rms_first_block_only", ["rms_norm.reference.matches"]),
                ("rms_norm", "rms_drops_partial_block", ["rms_norm.reference.matches"]),
                ("layer_norm", "ln_blocks_without_welford_merge", ["layer_norm.reference.matches"])]


@pytest.mark.parametrize("component,mutant,invariants", TILE_MUTANTS, ids=[m[1] for m in TILE_MUTANTS])
def test_tile_mutants_conform_at_small_scale(component, mutant, invariants):
    """Exact within one block of columns: at --scale small they conform; tests/test_mutants.py shows the default
    (kernel) scale catches them."""
    target = load_target(f"tests.mutants.norms:{mutant}", component)
    config = dataclasses.replace(CONFIG, scale="small")
    results = run_component(get_component(component), target, config, dtypes=["float32"], only=invariants)
    assert [r.verdict for r in results] == ["pass"] * len(invariants), [r.message for r in results]


# --- the reference against torch ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_rms_norm_default_eps_is_torchs(dtype):
    x = torch.full((2, 4), 3e-4, dtype=dtype)
    torch.testing.assert_close(ref.rms_norm(x, (4,)), F.rms_norm(x, [4]), rtol=0, atol=0)


def test_batch_norm_training_updates_running_statistics_like_torch():
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    ours_mean, ours_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    torch_mean, torch_var = ours_mean.clone(), ours_var.clone()
    out = ref.batch_norm(x, ours_mean, ours_var, training=True, momentum=0.3)
    expected = F.batch_norm(x, torch_mean, torch_var, training=True, momentum=0.3)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(ours_mean, torch_mean)
    torch.testing.assert_close(ours_var, torch_var)  # the unbiased batch variance goes into running_var


@pytest.mark.parametrize("shape", [(3, 5), (300, 4096), (2, 3, 70000)])
def test_row_chunked_references_match_torch(shape):
    """rms_norm and layer_norm compute in chunks of whole rows past CHUNK_ELEMENTS: the same values as torch."""
    x = torch.randn(*shape, dtype=torch.float64)
    w, b = torch.randn(shape[-1], dtype=torch.float64), torch.randn(shape[-1], dtype=torch.float64)
    torch.testing.assert_close(ref.rms_norm(x, (shape[-1],), w, 1e-6), F.rms_norm(x, [shape[-1]], w, 1e-6))
    torch.testing.assert_close(ref.layer_norm(x, shape[-2:], None, None), F.layer_norm(x, shape[-2:]))
    xb, wb = x.to(torch.bfloat16), w.to(torch.bfloat16)
    torch.testing.assert_close(ref.layer_norm(xb, (shape[-1],), wb), F.layer_norm(xb, [shape[-1]], wb),
                               atol=2e-2, rtol=2e-2)


def test_layer_norm_and_qk_norm_match_torch_formulas():
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    w, b = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(ref.layer_norm(x, (3, 6), w, b, 1e-3), F.layer_norm(x, (3, 6), w, b, 1e-3))
    q, k = torch.randn(1, 4, 5, 8, dtype=torch.float64), torch.randn(1, 2, 5, 8, dtype=torch.float64)
    wq, wk = torch.rand(8, dtype=torch.float64), torch.rand(8, dtype=torch.float64)
    positions = torch.arange(5)
    qo, ko = ref.qk_norm(q, k, wq, wk, positions)
    from lmspec.reference.positions import rope
    torch.testing.assert_close(qo, rope(F.rms_norm(q, [8], wq, 1e-6), positions))
    torch.testing.assert_close(ko, rope(F.rms_norm(k, [8], wk, 1e-6), positions))


# --- the family's elementwise closeness helper ----------------------------------------------------------------


def test_assert_each_within_reports_the_element_furthest_beyond_its_allowance():
    ctx = Context(target=None, dtype=torch.float32, device=torch.device("cpu"), options={})
    expected = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    allowed = torch.tensor([[0.5, 0.25], [0.25, 0.25]], dtype=torch.float64)
    assert_each_within(ctx, expected + allowed, expected, allowed, "at the allowance")  # <= passes
    with pytest.raises(Violation) as caught:
        assert_each_within(ctx, expected + torch.tensor([[0.625, 0.0], [0.5, 0.0]]), expected, allowed, "moved")
    assert caught.value.details["index"] == [1, 0] and "moved: 3.5, expected 3 at index [1, 0]" in caught.value.message
    with pytest.raises(Violation, match="nan, expected 0"):
        assert_each_within(ctx, torch.tensor([0.0, float("nan")]), 0.0, float("inf"), "a NaN is never within")
