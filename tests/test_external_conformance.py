"""Third-party implementations checked against the spec through the conformance runner.

Every invariant must pass or be declared unsupported (by the target or its adapter); where a library differs
from the canonical spec, a test here shows the difference is real (the check fails without the declaration or
option), so a declaration never hides a bug. docs/conventions.md explains each difference.

Profile "ci" (derandomized, no example database) with EXAMPLES examples per invariant and dtype instead of
its 12, to keep the file under a minute on two CPU cores; `lmspec check ...` runs the full profile.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from lmspec.spec import Component, get_component
from lmspec.conformance.loading import Target, load_target
from lmspec.conformance.runner import Result, RunConfig, run_component, run_invariant

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # fake_flash_attn and sdpa_backends are importable as targets
    sys.path.insert(0, str(HERE))

EXAMPLES = 6
CONFIG = RunConfig(profile="ci", max_examples=EXAMPLES)
HF_EAGER = "transformers.models.llama.modeling_llama:eager_attention_forward"
HF_LLAMA = "transformers.models.llama.modeling_llama:LlamaAttention"
FAKE_FLASH = "fake_flash_attn:flash_attn_func"


def _describe(results: list[Result]) -> str:
    return "\n".join(f"{r.verdict.upper()} {r.invariant} [{r.dtype}]: {r.message}\n    {r.reproduce or ''}" for r in results)


def check_conforms(component: str | Component, path: str, adapter: str | None = None, config: RunConfig = CONFIG,
                   target: Target | None = None, dtypes=None) -> list[Result]:
    """Run every invariant of `component`; each must pass or be unsupported, and at least one must pass."""
    comp = get_component(component) if isinstance(component, str) else component
    target = target or load_target(path, comp.name, adapter)
    results = run_component(comp, target, config, dtypes=dtypes)
    bad = [r for r in results if r.verdict not in ("pass", "unsupported")]
    assert not bad, f"{path} ({adapter or 'no adapter'}) does not conform:\n{_describe(bad)}"
    assert any(r.verdict == "pass" for r in results), f"{path}: nothing was evaluated"
    return results


def unsupported(results: list[Result]) -> set[tuple[str, str]]:
    return {(r.invariant, r.dtype) for r in results if r.verdict == "unsupported"}


def with_examples(component: Component, fix) -> Component:
    """The component with every invariant's examples mapped through `fix` (a restriction of the spec's inputs)."""
    return dataclasses.replace(
        component, invariants=tuple(dataclasses.replace(inv, examples=inv.examples.map(fix)) for inv in component.invariants)
    )


# --- torch ----------------------------------------------------------------------------------------------


def test_torch_sdpa_conforms():
    results = check_conforms("attention", "torch.nn.functional:scaled_dot_product_attention")
    assert not unsupported(results)


def test_torch_softmax_conforms():
    results = check_conforms("softmax", "torch:softmax")
    assert not unsupported(results)


# --- FlashAttention (a pure-torch fake of flash_attn_func: tests/fake_flash_attn.py) ----------------------


def _flash_unsupported_expected(component: Component, results: list[Result]) -> set[tuple[str, str]]:
    needs_mask = {inv.id for inv in component.invariants if "attn_mask" in inv.requires}
    return {(r.invariant, r.dtype) for r in results if r.dtype in ("float64", "float32") or r.invariant in needs_mask}


def test_flash_attn_adapter_conforms():
    component = get_component("attention")
    results = check_conforms(component, FAKE_FLASH, "flash_attn")
    assert unsupported(results) == _flash_unsupported_expected(component, results)


def test_flash_attn_adapter_sliding_window_conforms():
    results = check_conforms("sliding_window_attention", FAKE_FLASH, "flash_attn_sliding_window")
    assert {d for _, d in unsupported(results)} == {"float64", "float32"}


@pytest.mark.parametrize("invariant", ["attention.causal.visible_keys", "attention.reference.matches"])
def test_flash_attn_top_left_alignment_fails(invariant):
    """FlashAttention aligns causal masks bottom-right: checked against torch's top-left default, it must fail,
    and the counterexample must have Lq != Lk (for Lq == Lk the two alignments agree)."""
    component = get_component("attention")
    target = load_target(FAKE_FLASH, "attention", "flash_attn")
    # one invariant and dtype: the full ci budget (12 examples), so the search reliably reaches Lq != Lk.
    config = dataclasses.replace(CONFIG, max_examples=None, options={"causal_alignment": "top_left"})
    result = run_invariant(component, component.invariant(invariant), target, torch.float16, config)
    assert result.verdict == "fail", result.message
    params = result.counterexample["params"]
    assert params["Lq"] != params["Lk"], params


def test_fake_flash_attn_is_faithful_to_flash_attn_func():
    """The fake's own contract: FlashAttention 2's dtype and head-dim checks, and its window formula."""
    from fake_flash_attn import flash_attn_func

    q = torch.randn(1, 3, 2, 8, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="fp16 and bf16"):
        flash_attn_func(q.float(), q.float(), q.float())
    with pytest.raises(RuntimeError, match="head_size"):
        flash_attn_func(q, q, q[..., :4])
    with pytest.raises(RuntimeError, match="must divide"):
        flash_attn_func(q, q[:, :, :1].expand(1, 3, 3, 8), q[:, :, :1].expand(1, 3, 3, 8))
    lq, lk = 3, 6
    q = torch.zeros(1, lq, 1, lk, dtype=torch.float16)
    k = torch.zeros(1, lk, 1, lk, dtype=torch.float16)
    v = torch.eye(lk, dtype=torch.float16)[None, :, None, :]  # output row i = the weights of query i
    for window, causal in [((-1, -1), True), ((1, 0), False), ((0, 2), False), ((2, 1), False), ((-1, 0), False), ((1, -1), True)]:
        w = flash_attn_func(q, k, v, causal=causal, window_size=window)[0, :, 0].float()
        left, right = window[0], 0 if causal else window[1]
        i = torch.arange(lq)[:, None] + lk - lq
        j = torch.arange(lk)[None, :]
        visible = ((j >= i - left) | (left < 0)) & ((j <= i + right) | (right < 0))
        expected = visible / visible.sum(-1, keepdim=True).clamp_min(1)
        assert torch.equal(w, expected.to(torch.float16).float()), (window, causal, w)


# --- Hugging Face transformers --------------------------------------------------------------------------


def test_hf_eager_conforms():
    pytest.importorskip("transformers")
    results = check_conforms("attention", HF_EAGER, "hf_eager")
    assert {d for _, d in unsupported(results)} == {"float64"}
    assert all(r.verdict == "unsupported" for r in results if r.dtype == "float64")


def test_hf_eager_sliding_window_conforms():
    pytest.importorskip("transformers")
    results = check_conforms("sliding_window_attention", HF_EAGER, "hf_eager_sliding_window")
    assert {d for _, d in unsupported(results)} == {"float64"}


def test_hf_eager_fully_masked_rows_are_uniform_not_zero():
    """HF masks with finfo.min, not -inf: a fully masked row averages all values. The adapter's implied
    fully_masked_rows=unspecified is needed; with the spec's default (zeros) the invariant fails."""
    pytest.importorskip("transformers")
    component = get_component("attention")
    target = load_target(HF_EAGER, "attention", "hf_eager")
    config = dataclasses.replace(CONFIG, options={"fully_masked_rows": "zeros"})
    example = {"B": 1, "Hkv": 1, "G": 1, "Lq": 3, "Lk": 4, "E": 5, "Ev": 2, "causal": False, "scale": None, "seed": 7,
               "pattern": "normal", "layout": "contiguous", "mask_seed": 3, "mask_shape": "lq_lk", "additive": False}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        result = run_invariant(component, component.invariant("attention.mask.fully_masked_rows"), target, dtype, config, replay=example)
        assert result.verdict == "fail" and "fully masked" in result.message, (dtype, result.message)
        assert "expected 0" in result.message, result.message  # query 0 sees no key: HF gives it weights, not zeros


@pytest.mark.parametrize("path,adapter,component,invariant", [
    (HF_EAGER, "hf_eager", "attention", "attention.reference.matches"),
    (HF_LLAMA, "hf_llama_attention", "multi_head_attention", "multi_head_attention.heads.one_head_is_single_head_attention"),
])
def test_hf_float64_is_float32_softmax(path, adapter, component, invariant):
    """Why float64 is declared unsupported: HF eager computes the softmax in float32, so a float64 check fails
    by ~1e-8, far above float64 rounding (and far below float32's)."""
    pytest.importorskip("transformers")
    comp = get_component(component)
    target = dataclasses.replace(load_target(path, component, adapter), unsupported_dtypes=frozenset())
    result = run_invariant(comp, comp.invariant(invariant), target, torch.float64, CONFIG)
    assert result.verdict == "fail", result.message
    assert 1e-12 < result.counterexample["details"]["max_rel"] < 1e-5, result.counterexample["details"]


def test_hf_llama_attention_conforms():
    """LlamaAttention has one head_dim for q, k and v: the adapter declares feature ev_ne_e unsupported."""
    pytest.importorskip("transformers")
    results = check_conforms("multi_head_attention", HF_LLAMA, "hf_llama_attention")
    every = {i.id for i in get_component("multi_head_attention").invariants}
    expected = {(i, "float64") for i in every} | {("multi_head_attention.reference.value_dim_differs", d) for d in ("float32", "float16", "bfloat16")}
    assert unsupported(results) == expected


def test_hf_llama_attention_ev_ne_e_raises_clearly():
    """Undeclared, the Ev != E examples are declined by the adapter's clear NotImplementedError: the invariant is
    reported unsupported with that reason, never a pass."""
    pytest.importorskip("transformers")
    component = get_component("multi_head_attention")
    target = dataclasses.replace(load_target(HF_LLAMA, "multi_head_attention", "hf_llama_attention"), unsupported_features=frozenset())
    result = run_invariant(component, component.invariant("multi_head_attention.reference.value_dim_differs"), target, torch.float32, CONFIG)
    assert result.verdict == "unsupported" and result.checked == 0, (result.verdict, result.message)
    assert "NotImplementedError" in result.message and "Ev=" in result.message, result.message


# --- torch SDPA on CUDA, one test per backend -----------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["math", "flash", "efficient", "cudnn"])
def test_torch_sdpa_cuda_backend_conforms(backend):
    import sdpa_backends

    component = with_examples(get_component("attention"), sdpa_backends.EXAMPLE_FIXES[backend])
    config = dataclasses.replace(CONFIG, device="cuda")
    check_conforms(component, f"sdpa_backends:sdpa_{backend}", config=config)
