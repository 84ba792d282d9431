"""Hugging Face tokenizers, tiktoken and sentencepiece checked against the tokenizer components through
their adapters (conformance/adapters/tokenizers.py). Every invariant passes or is declared unsupported; each
declaration and each documented difference (docs/conventions.md, "Tokenizers") is shown to be real: without
it the check fails."""

from __future__ import annotations

import dataclasses

import pytest

from lmspec.conformance.loading import load_target
from lmspec.conformance.runner import RunConfig, run_component
from lmspec.spec import get_component

CONFIG = RunConfig(profile="ci", max_examples=6)
HF, TIKTOKEN, SP = "tokenizers:Tokenizer", "tiktoken:Encoding", "sentencepiece:SentencePieceProcessor"


def _run(component: str, path: str, adapter: str, only=None, target=None):
    pytest.importorskip(path.split(":")[0])
    target = target or load_target(path, component, adapter)
    return run_component(get_component(component), target, CONFIG, only=only)


def conforms(component: str, path: str, adapter: str) -> set[str]:
    """Run every invariant; all pass or are unsupported. Returns the unsupported invariant ids."""
    results = _run(component, path, adapter)
    bad = [f"{r.verdict} {r.invariant}: {r.message}\n  {r.reproduce}" for r in results
           if r.verdict not in ("pass", "unsupported")]
    assert not bad, "\n".join(bad)
    return {r.invariant for r in results if r.verdict == "unsupported"}


def without_declarations(component: str, path: str, adapter: str):
    target = load_target(path, component, adapter)
    return dataclasses.replace(target, unsupported_features=frozenset())


LIBRARIES = [
    ("bpe_tokenizer", HF, "hf_tokenizers",
     {"bpe_tokenizer.roundtrip.lone_surrogates", "bpe_tokenizer.stream.equals_encode"}),
    ("gpt2_tokenizer", HF, "hf_tokenizers", {"gpt2_tokenizer.roundtrip.lone_surrogates"}),
    ("wordpiece_tokenizer", HF, "hf_tokenizers", set()),
    ("unigram_tokenizer", HF, "hf_tokenizers", {"unigram_tokenizer.sampling.distribution"}),
    ("bpe_tokenizer", TIKTOKEN, "tiktoken", {"bpe_tokenizer.stream.equals_encode"}),
    ("gpt2_tokenizer", TIKTOKEN, "tiktoken", set()),
    ("unigram_tokenizer", SP, "sentencepiece", set()),
]


@pytest.mark.parametrize("component,path,adapter,unsupported", LIBRARIES, ids=[f"{c}-{a}" for c, _, a, _ in LIBRARIES])
def test_library_conforms(component, path, adapter, unsupported):
    assert conforms(component, path, adapter) == unsupported


def test_hf_lone_surrogates_declaration_is_real():
    target = without_declarations("bpe_tokenizer", HF, "hf_tokenizers")
    results = _run("bpe_tokenizer", HF, "hf_tokenizers", only={"bpe_tokenizer.roundtrip.lone_surrogates"},
                   target=target)
    assert [r.verdict for r in results] == ["fail"] and "raised" in results[0].message


def test_hf_bpe_trainer_differs_only_in_its_tie_break():
    """BpeTrainer breaks count ties toward the pair of smaller token ids (its Merge ordering), not the
    lexicographically greatest byte pair; everything else conforms."""
    results = _run("bpe_train", HF, "hf_tokenizers")
    verdicts = {r.invariant: r.verdict for r in results}
    differ = {"bpe_train.merges.tie_break", "bpe_train.reference.matches"}
    assert {k for k, v in verdicts.items() if v != "pass"} == differ, \
        [(r.invariant, r.message) for r in results if r.verdict != "pass"]


def test_cli_catches_a_special_token_splitting_tokenizer_and_replays_it():
    from .conftest import run_cli

    mutant = "tests.mutants.tokenizers:SpecialTokensSplit"
    proc = run_cli("check", "bpe_tokenizer", "--target", mutant, "--invariant", "bpe_tokenizer.special_tokens.atomic")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    command = next(line for line in proc.stdout.splitlines() if "--replay" in line)
    replay = command.split("--replay", 1)[1].strip().strip("'")
    again = run_cli("check", "bpe_tokenizer", "--target", mutant, "--invariant", "bpe_tokenizer.special_tokens.atomic",
                    "--replay", replay)
    assert again.returncode == 1 and "1 checked" in again.stdout
    fixed = run_cli("check", "bpe_tokenizer", "--target", "lmspec.reference.tokenizers.bpe:Tokenizer", "--invariant",
                    "bpe_tokenizer.special_tokens.atomic", "--replay", replay)
    assert fixed.returncode == 0, fixed.stdout
