"""Sampling family: real libraries through their adapters (Hugging Face processors and warpers, transformers' own
composition of a sampling step, torch.multinomial, torch.distributions.Categorical), the options that select a
library's convention, and the statistics the samplers are judged by."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lmspec.conformance.loading import load_target
from lmspec.conformance.runner import RunConfig, Result, run_component, run_invariant
from lmspec.spec import get_component
from lmspec.spec.statistics import chi_square_pvalue, chi_square_test

EXAMPLES = 6
CONFIG = RunConfig(profile="ci", max_examples=EXAMPLES)
PIPELINE_HF = "transformers.generation.utils:GenerationMixin"


@pytest.fixture(autouse=True)
def one_thread():
    """These checks run thousands of tiny tensor ops; torch's intra-op thread pool only adds wake-up latency."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(component: str, target: str, adapter: str | None = None, config: RunConfig = CONFIG, **kw) -> list[Result]:
    return run_component(get_component(component), load_target(target, component, adapter), config, **kw)


def verdicts(results: list[Result]) -> dict[tuple[str, str], str]:
    return {(r.invariant, r.dtype): r.verdict for r in results}


def assert_conforms(results: list[Result]) -> None:
    bad = [f"{r.verdict} {r.invariant} [{r.dtype}]: {r.message}\n  {r.reproduce}" for r in results
           if r.verdict not in ("pass", "unsupported")]
    assert not bad, "\n".join(bad)
    assert any(r.verdict == "pass" for r in results)


# --- Hugging Face logits processors and warpers --------------------------------------------------------------

HF_PROCESSORS = [("temperature", "TemperatureLogitsWarper"), ("top_k", "TopKLogitsWarper"),
                 ("top_p", "TopPLogitsWarper"), ("min_p", "MinPLogitsWarper"),
                 ("epsilon_cutoff", "EpsilonLogitsWarper"), ("typical_p", "TypicalLogitsWarper"),
                 ("repetition_penalty", "RepetitionPenaltyLogitsProcessor"),
                 ("no_repeat_ngram", "NoRepeatNGramLogitsProcessor")]


@pytest.mark.parametrize("component,cls", HF_PROCESSORS, ids=[c for c, _ in HF_PROCESSORS])
def test_hf_logits_processor_conforms(component, cls):
    pytest.importorskip("transformers")
    results = run(component, f"transformers:{cls}", "hf_logits_processor")
    assert_conforms(results)
    assert all(r.verdict == "pass" for r in results)  # every dtype, every invariant: nothing declared away


@pytest.mark.parametrize("component,cls", [("top_k_sample", "TopKLogitsWarper"), ("top_p_sample", "TopPLogitsWarper"),
                                           ("min_p_sample", "MinPLogitsWarper")])
def test_hf_warper_then_multinomial_conforms(component, cls):
    pytest.importorskip("transformers")
    assert_conforms(run(component, f"transformers:{cls}", "hf_warper_sample", dtypes=["float32", "bfloat16"]))


def test_torch_multinomial_conforms_as_sampler():
    assert_conforms(run("sample", "torch:multinomial", "torch_multinomial"))


def test_torch_cross_entropy_conforms():
    """Every dtype but float16 at a real vocabulary: torch's CPU log_softmax keeps the sum of exponentials in
    float16, so past 65504 (near-)equal logits the loss is inf where it is ~log V (the reference accumulates in
    float32, as torch's CUDA kernel does)."""
    results = run("cross_entropy", "torch.nn.functional:cross_entropy", dtypes=["float64", "float32", "bfloat16"])
    assert_conforms(results)
    assert all(r.verdict == "pass" for r in results)
    component = get_component("cross_entropy")
    overflow = run_invariant(component, component.invariant("cross_entropy.uniform.log_vocab"),
                             load_target("torch.nn.functional:cross_entropy", "cross_entropy"), torch.float16, CONFIG,
                             replay={"B": 1, "V": 128256, "layout": "contiguous", "pattern": "flat", "seed": 0,
                                     "split": 1})
    assert overflow.verdict == "fail" and "non-finite" in overflow.message, overflow.message


def test_torch_cross_entropy_backward_conforms_but_float16_drops_the_softmax_term_at_a_real_vocabulary():
    """Forward and backward in every dtype on the drawn examples (float16 included: the gradient invariants only);
    at the forward's overflow example (V = 128256 near-equal logits) torch's CPU float16 log-softmax is -inf, so its
    backward returns -onehot(t) / N without softmax(x) / N (each ~8e-6, below float16's eps at the gradient's
    scale, so the normwise differential check cannot see it): each row's gradient sums to -1/N instead of 0."""
    component = get_component("cross_entropy")
    target = load_target("torch.nn.functional:cross_entropy", "cross_entropy")
    backward = [i.id for i in component.invariants if "backward" in i.requires]
    results = run_component(component, target, CONFIG, dtypes=["float16"], only=backward)
    assert_conforms(results)
    assert all(r.verdict == "pass" for r in results)
    overflow = {"B": 1, "V": 128256, "layout": "contiguous", "pattern": "flat", "seed": 0, "split": 1}
    summed = run_invariant(component, component.invariant("cross_entropy.backward.rows_sum_to_zero"), target,
                           torch.float16, CONFIG, replay=overflow)
    assert summed.verdict == "fail" and "row 0's gradient" in summed.message, summed.message
    for dtype in (torch.float32, torch.bfloat16):
        fine = run_invariant(component, component.invariant("cross_entropy.backward.rows_sum_to_zero"), target, dtype,
                             CONFIG, replay=overflow)
        assert fine.verdict == "pass", fine.message


def test_hf_top_p_conforms_with_any_tie_rule_but_declares_none():
    """HF resolves boundary ties by torch.sort order, which torch does not fix (CPU sort is not stable past a few
    elements): the default top_p_ties=any accepts it; the reference's own rule (highest ids kept) is checkable."""
    pytest.importorskip("transformers")
    component = get_component("top_p")
    invariant = component.invariant("top_p.ties.minimal_any_choice")
    target = load_target("lmspec.reference.sampling:top_p", "top_p")
    passed = run_invariant(component, invariant, target, torch.float32,
                           dataclasses.replace(CONFIG, options={"top_p_ties": "highest_index"}))
    assert passed.verdict == "pass", passed.message
    tie = {"B": 1, "above": 0, "tied": 2, "below": 0, "keep": 1, "seed": 0, "layout": "contiguous"}  # one of two tied
    failed = run_invariant(component, invariant, target, torch.float32,
                           dataclasses.replace(CONFIG, options={"top_p_ties": "lowest_index"}),
                           replay=tie)
    assert failed.verdict == "fail" and "top_p_ties=lowest_index keeps [0]" in failed.message, failed.message


# --- the sampling step: transformers' own composition, and the order option ----------------------------------


def test_transformers_sampling_step_conforms_in_hf_order():
    """_get_logits_processor's list (Temperature, TopK, TopP, MinP, RepetitionPenalty first) is the hf order."""
    pytest.importorskip("transformers")
    results = run("sampling_pipeline", PIPELINE_HF, "hf_generation_pipeline")
    assert_conforms(results)
    unsupported = {i for (i, _), v in verdicts(results).items() if v == "unsupported"}
    assert unsupported == {"sampling_pipeline.penalties.presence_frequency_scope"}


ORDER_WITNESS = {"B": 1, "Lo": 0, "Lp": 0, "V": 3, "gap": 0, "layout": "contiguous", "pattern": "normal", "seed": 4}


def _min_p_placement(target: str, adapter: str | None, dtype: torch.dtype, **options) -> Result:
    component = get_component("sampling_pipeline")
    return run_invariant(component, component.invariant("sampling_pipeline.order.min_p_placement"),
                         load_target(target, "sampling_pipeline", adapter), dtype,
                         dataclasses.replace(CONFIG, options=options),
                         replay=ORDER_WITNESS)


def test_transformers_sampling_step_is_not_vllm_order():
    """The adapter implies order=hf; an explicit --option order=vllm overrides it, and the min-p placement shows."""
    pytest.importorskip("transformers")
    result = _min_p_placement(PIPELINE_HF, "hf_generation_pipeline", torch.float32, order="vllm")
    assert result.verdict == "fail" and "order=vllm" in result.message, result.message


def test_vllm_order_conforms_only_under_its_option():
    vllm = "lmspec.reference.sampling:sampling_pipeline_vllm"
    assert_conforms(run("sampling_pipeline", vllm, config=dataclasses.replace(CONFIG, options={"order": "vllm"})))
    for dtype in (torch.float64, torch.float32):
        assert _min_p_placement(vllm, None, dtype).verdict == "fail"


def test_hf_and_vllm_orders_differ_on_a_worked_example():
    """probs (0.4, 0.3, 0.2, 0.1), top_p 0.75, min_p 0.3: HF keeps 3 tokens (top-p reaches 0.9 >= 0.75 with three;
    min-p removes only 0.1); vLLM removes 0.1 first, renormalizes, and top-p stops at two (0.78 >= 0.75)."""
    from lmspec.reference.sampling import sampling_pipeline

    logits = torch.tensor([[0.4, 0.3, 0.2, 0.1]], dtype=torch.float64).log()
    none = torch.zeros(1, 0, dtype=torch.int64)
    kept = {order: (sampling_pipeline(logits, none, none, top_p=0.75, min_p=0.3, order=order) > -math.inf).sum().item()
            for order in ("hf", "vllm")}
    assert kept == {"hf": 3, "vllm": 2}


# --- statistics ----------------------------------------------------------------------------------------------


def test_chi_square_pvalue_matches_tabulated_critical_values():
    # critical values of the chi-square distribution (Abramowitz & Stegun, table 26.8)
    for statistic, df, alpha in [(3.841, 1, 0.05), (6.635, 1, 0.01), (11.345, 3, 0.01), (23.209, 10, 0.01),
                                 (29.588, 10, 0.001)]:
        assert abs(chi_square_pvalue(statistic, df) - alpha) < 2e-4 * max(1, alpha * 100), (statistic, df)


def test_dropping_the_lowest_five_percent_passes_cosine_but_not_chi_square():
    """The weak check a sampler suite must not rely on: frequencies of a sampler that never draws the tokens carrying
    the lowest 5% of the mass still have cosine similarity > 0.99 with the true distribution."""
    probs = torch.tensor([0.30, 0.25, 0.2, 0.15, 0.05, 0.03, 0.02], dtype=torch.float64)
    draws = 3000
    counts = torch.round(torch.where(torch.arange(7) < 4, probs / 0.9, torch.zeros(7)) * draws)
    cosine = float(torch.nn.functional.cosine_similarity(counts / counts.sum(), probs, dim=0))
    assert cosine > 0.99
    _, _, pvalue = chi_square_test(counts, probs)
    assert pvalue < 1e-6


def test_sampler_statistics_do_not_false_alarm_on_a_correct_sampler():
    """100 examples of the chi-square invariant on the reference sampler (float32): at a false-alarm rate of 1e-6
    per example none may fail."""
    component = get_component("sample")
    config = dataclasses.replace(CONFIG, max_examples=100)
    result = run_invariant(component, component.invariant("sample.frequency.chi_square"),
                           load_target("lmspec.reference.sampling:sample", "sample"), torch.float32, config)
    assert result.verdict == "pass" and result.examples == 100, result.message


# --- torch.distributions.Categorical: a numeric difference the suite finds ------------------------------------


def test_categorical_entropy_loses_precision_where_documented():
    """Categorical normalizes by subtracting logsumexp from the raw logits, so its entropy carries an absolute error
    of ~eps * max|logit| (docs/conventions.md): it fails the differential check on large logits and, in float16, the
    uniform check at logits 100 (1.125 for log 3 = 1.0986); its range property holds."""
    component = get_component("entropy")
    target = load_target("torch.distributions:Categorical", "entropy", "torch_categorical")
    assert_conforms(run_component(component, target, CONFIG, only=["entropy.range.zero_to_log_support"]))
    uniform = run_invariant(component, component.invariant("entropy.uniform.log_vocab"), target, torch.float16, CONFIG,
                            replay={"B": 1, "V": 3, "seed": 0, "pattern": "normal", "layout": "contiguous"})
    assert uniform.verdict == "fail" and "vs log V: 1.125, expected 1.09861" in uniform.message, uniform.message
    large = {"B": 1, "V": 3, "seed": 2024298, "pattern": "large", "layout": "contiguous", "masked": 0}
    differential = run_invariant(component, component.invariant("entropy.reference.matches"), target, torch.float16,
                                 CONFIG, replay=large)
    assert differential.verdict == "fail", differential.message
    assert differential.counterexample["details"]["max_rel"] > 0.1  # 0.0201 for 0.0237 nats
    reference = run_invariant(component, component.invariant("entropy.reference.matches"),
                              load_target("lmspec.reference.sampling:entropy", "entropy"), torch.float16, CONFIG,
                              replay=large)
    assert reference.verdict == "pass", reference.message
