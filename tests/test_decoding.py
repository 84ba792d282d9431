"""Decoding family: transformers' generate() (greedy, sampling, beam search, assisted decoding, prefix-constrained
sampling) and `_speculative_sampling` through their adapters, the same decoders on a tiny random-config GPT-2,
and the rules the references document (DoLa's candidate layers, the layer-selection option)."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from lmspec.conformance.loading import load_target
from lmspec.conformance.runner import RunConfig, Result, run_component, run_invariant
from lmspec.reference.decoding import search as dec
from lmspec.reference.decoding import variants as variants
from lmspec.reference.decoding import speculative as spec
from lmspec.spec import get_component

transformers = pytest.importorskip("transformers")

EXAMPLES = 6
CONFIG = RunConfig(profile="ci", max_examples=EXAMPLES)
GENERATE = "transformers.generation.utils:GenerationMixin"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: torch's intra-op thread pool only adds wake-up latency."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="module")
def quiet_transformers():
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    yield
    logging.set_verbosity(level)


def run(component: str, target: str, adapter: str | None = None, config: RunConfig = CONFIG, **kw) -> list[Result]:
    return run_component(get_component(component), load_target(target, component, adapter), config, **kw)


def assert_conforms(results: list[Result], unsupported: set[str] = frozenset()) -> None:
    bad = [f"{r.verdict} {r.invariant}: {r.message}\n  {r.reproduce}" for r in results
           if r.verdict not in ("pass", "unsupported")]
    assert not bad, "\n".join(bad)
    assert {r.invariant for r in results if r.verdict == "unsupported"} == set(unsupported)


# --- generate() through the adapter --------------------------------------------------------------------------


def test_generate_greedy_conforms_without_context_cropping():
    assert_conforms(run("greedy_search", GENERATE, "hf_generate"), {"greedy_search.context.cropped"})


def test_generate_sampling_conforms():
    assert_conforms(run("sample_search", GENERATE, "hf_generate"))


def test_generate_beam_search_conforms():
    assert_conforms(run("beam_search", GENERATE, "hf_generate"))


def test_generate_prefix_constrained_sampling_conforms():
    assert_conforms(run("grammar_constrained_sample", GENERATE, "hf_generate"))


def test_assisted_generation_conforms():
    """Greedy equivalence and one target call per round (greedy and sampling)."""
    results = run("speculative_decode", GENERATE, "hf_generate", only=["speculative_decode.greedy.equals_greedy",
                                                                      "speculative_decode.equal_draft.one_call_per_round"])
    assert_conforms(results)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LMSPEC_SLOW"), reason="1000 assisted generate() calls (one row each): set LMSPEC_SLOW=1")
def test_assisted_generation_sequence_statistics():
    component = get_component("speculative_decode")
    result = run_invariant(component, component.invariant("speculative_decode.distribution.chi_square"),
                           load_target(GENERATE, "speculative_decode", "hf_generate"), None,
                           dataclasses.replace(CONFIG, max_examples=2, timeout_s=600.0))
    assert result.verdict == "pass", result.message


def test_transformers_speculative_sampling_conforms():
    """transformers verifies one sequence at a time (about 0.5 ms a row): float32, one example per invariant."""
    results = run("speculative_sampling", "transformers.generation.utils:_speculative_sampling", "hf_speculative_sampling",
                  config=dataclasses.replace(CONFIG, max_examples=1), dtypes=["float32"])
    assert_conforms(results)


# --- a tiny random-config GPT-2 ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2():
    config = transformers.GPT2Config(vocab_size=13, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=12)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # sharper distributions than the default init, so greedy and beam choices are not near ties
        model.lm_head.weight.mul_(30)
    return model


def _logits_fn(model):
    def fn(ids):
        with torch.no_grad():
            return model(ids).logits.to(torch.float64)
    return fn


def test_gpt2_generate_matches_the_references(gpt2):
    fn = _logits_fn(gpt2)
    ids = torch.tensor([[3, 5, 7], [1, 1, 2]])
    mask = torch.ones_like(ids)
    greedy = gpt2.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=6, pad_token_id=12)
    assert torch.equal(greedy, dec.greedy_search(fn, ids, 6, eos_token_id=12))
    beams = gpt2.generate(ids, attention_mask=mask, do_sample=False, num_beams=3, max_new_tokens=5, num_return_sequences=2,
                          length_penalty=0.8, output_scores=True, return_dict_in_generate=True, pad_token_id=12)
    sequences, scores = dec.beam_search(fn, ids, 3, 5, eos_token_id=12, length_penalty=0.8, num_return_sequences=2)
    assert torch.equal(beams.sequences, sequences)
    assert torch.allclose(beams.sequences_scores.double(), scores, rtol=1e-4)
    torch.manual_seed(123)
    sampled = gpt2.generate(ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=6, pad_token_id=12)
    assert torch.equal(sampled, dec.sample_search(fn, ids, 6, torch.Generator().manual_seed(123), eos_token_id=12))


def test_gpt2_assisted_generation_is_greedy(gpt2):
    """A differently initialized GPT-2 as the assistant: assisted greedy decoding equals plain greedy decoding."""
    torch.manual_seed(1)
    draft = transformers.GPT2LMHeadModel(gpt2.config).eval()
    ids = torch.tensor([[3, 5, 7]])
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    out = gpt2.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=7, assistant_model=draft, pad_token_id=12)
    greedy = dec.greedy_search(_logits_fn(gpt2), ids, 7, eos_token_id=12)
    assert torch.equal(out, greedy)
    assert torch.equal(spec.speculative_decode(_logits_fn(gpt2), _logits_fn(draft), ids, 7, 3, do_sample=False), greedy[:, :10])


# --- documented rules ----------------------------------------------------------------------------------------


def test_dola_candidate_layers_rule():
    assert variants.dola_candidate_layers(32, "low", tie_word_embeddings=False) == list(range(0, 16, 2))
    assert variants.dola_candidate_layers(32, "high", tie_word_embeddings=False) == list(range(16, 32, 2))
    assert variants.dola_candidate_layers(32, "low", tie_word_embeddings=True) == list(range(2, 16, 2))
    assert variants.dola_candidate_layers(48, "high", tie_word_embeddings=False) == list(range(28, 48, 2))
    assert variants.dola_candidate_layers(2, "low", tie_word_embeddings=True) == [1]
    assert variants.dola_candidate_layers(12, [3, 20], tie_word_embeddings=False) == [3]


def test_dola_layer_selection_option():
    """transformers 4.x chooses one premature layer for the whole batch: it conforms under layer_selection=batch_mean
    and fails the paper's per-row rule."""
    batch_mean = "lmspec.reference.decoding.variants:dola_logits_batch_mean"
    config = dataclasses.replace(CONFIG, options={"layer_selection": "batch_mean"})
    assert_conforms(run("dola_logits", batch_mean, config=config))
    component = get_component("dola_logits")
    witness = {"B": 2, "C": 2, "V": 5, "seed": 3, "relative_top": 0.1, "pattern": "normal"}
    failed = run_invariant(component, component.invariant("dola_logits.layer_selection.max_jsd"),
                           load_target(batch_mean, "dola_logits"), torch.float64, CONFIG, replay=witness)
    assert failed.verdict == "fail", "pick a witness whose rows prefer different layers"


def test_toy_model_logits_are_float32_values():
    """generate() casts logits to float32: the toy model's are float32 values, so nothing is rounded on the way."""
    model = dec.ToyLM(5, 3)
    logits = model(torch.tensor([[1, 2, 3]]))
    assert logits.dtype == torch.float64 and torch.equal(logits, logits.float().double())


def test_beam_pad_zero_is_replaced_by_eos_in_transformers():
    """transformers' beam search fills with `pad_token_id or eos_token_id`, so pad id 0 (falsy) is replaced by EOS;
    lmspec's strategies therefore never use pad id 0 (docs/conventions.md)."""
    from lmspec.conformance.adapters.decoding import callable_lm

    model = dec.ToyLM(4, 1, eos_token_id=3, eos_bias=3.0)
    ids = torch.tensor([[1, 2]])
    out = callable_lm(model, 4).generate(ids, attention_mask=torch.ones_like(ids), num_beams=2, max_new_tokens=4,
                                         num_return_sequences=2, eos_token_id=3, pad_token_id=0, do_sample=False)
    reference, _ = dec.beam_search(model, ids, 2, 4, eos_token_id=3, pad_token_id=0, num_return_sequences=2)
    filled = out[:, 2:][reference[:, 2:] == 0]
    assert filled.numel() and bool((filled == 3).all()), (out, reference)


def test_regex_automaton_generates_only_matching_text():
    """A regex over characters, a(b|c)*, as a hand-built automaton lifted to a vocabulary of multi-character
    tokens: every generated text that ends with EOS is matched by Python's `re`, and every unfinished one extends
    to a match (for this language, is one or is empty)."""
    import re

    alphabet = "abc"
    chars = torch.tensor([[1, -1, -1], [-1, 1, 1]])  # state 0 --a--> 1; state 1 --b|c--> 1
    accepting = torch.tensor([False, True])
    strings = ["a", "b", "c", "bc", "ab", "ca", ""]  # the last token is EOS
    table, accept = variants.lift_automaton(chars, accepting, [[alphabet.index(c) for c in s] for s in strings])
    eos = len(strings) - 1
    model = dec.ToyLM(len(strings), 5, eos_token_id=eos, eos_bias=1.0)
    out = variants.grammar_constrained_sample(model, torch.zeros(300, 1, dtype=torch.int64), table, accept, eos, 5,
                                              torch.Generator().manual_seed(0))
    finished = 0
    for row in out[:, 1:].tolist():
        text = "".join(strings[t] for t in (row[: row.index(eos)] if eos in row else row))
        if eos in row:
            finished += 1
            assert re.fullmatch("a(b|c)*", text), (row, text)
        else:
            assert text == "" or re.fullmatch("a(b|c)*", text), (row, text)
    assert finished > 0
