"""Tokenizer throughput: BPE training (the reference's incremental trainer, the naive recount-per-merge trainer,
Hugging Face tokenizers' Rust BpeTrainer) and encoding (the reference with and without its pre-token cache,
tiktoken, Hugging Face tokenizers), plus the memory of streaming a file through `encode_iterable`.

Run: python -m pytest benchmarks/test_bench_tokenizers.py --benchmark-only   (docs/tokenizers.md has figures)
Corpora: corpus.en and GPT-2's files from ../shared/fixtures (those rows skip without them), and a generated
~5.7 MB corpus (Zipf-distributed words from a 100,000-word lexicon of syllables; lmspec.spec.tokenizers.inputs).
"""

from __future__ import annotations

import functools
import tracemalloc
from pathlib import Path

import pytest

from lmspec.conformance.loading import load_target
from lmspec.reference.tokenizers import bpe
from lmspec.reference.tokenizers.gpt2 import GPT2_SPECIAL_TOKENS, MERGES_FILE, VOCAB_FILE, from_gpt2_files, gpt2_dir
from lmspec.spec.tokenizers.inputs import corpus

EOT = "<|endoftext|>"
NAIVE_LIMIT = 1000  # the naive trainer is timed only up to this vocabulary: O(merges x distinct pre-tokens), minutes


@functools.lru_cache(maxsize=None)
def text_of(name: str) -> str:
    if name == "generated-5MB":
        return corpus(7, 850_000, (EOT,), True, lexicon=100_000)
    if name == "generated-1MB":
        return text_of("generated-5MB")[:1_000_000]
    directory = gpt2_dir()
    if directory is None:
        pytest.skip("../shared/fixtures is absent: no corpus.en or GPT-2 files")
    return (directory / name).read_text(encoding="utf-8")


def _trainer(impl: str):
    if impl == "reference":
        return bpe.bpe_train_fast
    if impl == "naive":
        return bpe.bpe_train
    pytest.importorskip("tokenizers")
    return load_target("tokenizers:Tokenizer", "bpe_train", "hf_tokenizers").fn


@pytest.mark.parametrize("impl", ["reference", "naive", "hf-tokenizers"])
@pytest.mark.parametrize("name,vocab_size", [("corpus.en", 1000), ("corpus.en", 5000), ("generated-5MB", 300),
                                             ("generated-5MB", 1000), ("generated-5MB", 10000)])
def test_bpe_train(measure, benchmark, name, vocab_size, impl):
    if impl == "naive" and vocab_size > NAIVE_LIMIT:
        pytest.skip(f"the naive trainer is only timed up to vocab_size={NAIVE_LIMIT}")
    text = text_of(name)
    train = _trainer(impl)
    group, info = f"bpe_train {name} vocab={vocab_size}", dict(impl=impl, corpus_mb=round(len(text.encode()) / 1e6, 3))
    if impl == "naive" and not benchmark.disabled:  # minutes per call: one timed call, no warm-up
        benchmark.group = group
        benchmark.extra_info.update(info)
        vocab, merges = benchmark.pedantic(lambda: train(text, vocab_size, [EOT]), rounds=1, iterations=1)
    else:
        slow = len(text) > 10**6
        vocab, merges = measure(lambda: train(text, vocab_size, [EOT]), group=group, min_rounds=1 if slow else 3,
                                max_rounds=3 if slow else 20, **info)
    if impl == "naive":
        assert (vocab, merges) == bpe.bpe_train_fast(text, vocab_size, [EOT])  # same result, only slower
    assert len(vocab) == 257 + len(merges) <= vocab_size


@functools.lru_cache(maxsize=None)
def _gpt2(impl: str):
    directory = gpt2_dir()
    if directory is None:
        pytest.skip("GPT-2's files are absent")
    paths = str(directory / VOCAB_FILE), str(directory / MERGES_FILE)
    if impl.startswith("reference"):
        return from_gpt2_files(*paths)
    library = {"tiktoken": ("tiktoken:Encoding", "tiktoken"), "hf-tokenizers": ("tokenizers:Tokenizer", "hf_tokenizers")}[impl]
    pytest.importorskip(library[0].split(":")[0])
    return load_target(library[0], "gpt2_tokenizer", library[1]).fn(*paths, list(GPT2_SPECIAL_TOKENS))


@pytest.mark.parametrize("impl", ["reference-cold", "reference-cached", "tiktoken", "hf-tokenizers"])
@pytest.mark.parametrize("name", ["corpus.en", "generated-1MB"])
def test_encode_gpt2(measure, name, impl):
    """GPT-2's tokenizer on one long string. reference-cold clears the pre-token cache before every call;
    reference-cached keeps it warm (repeated words are looked up, not re-merged)."""
    text = text_of(name)
    tok = _gpt2(impl)
    if impl == "reference-cold":
        def run():
            tok.cache.clear()
            return tok.encode(text)
    else:
        tok.encode(text)
        run = functools.partial(tok.encode, text)
    ids = measure(run, group=f"encode gpt2 {name}", min_rounds=3, max_rounds=20, impl=impl,
                  mb=round(len(text.encode()) / 1e6, 3))
    assert ids == _gpt2("reference-cached").encode(text)


@pytest.fixture(scope="module")
def big_files(tmp_path_factory) -> dict[int, Path]:
    directory = tmp_path_factory.mktemp("stream")
    text = text_of("generated-5MB")
    files = {}
    for mb in (1, 4):
        path = directory / f"{mb}MB.txt"
        with open(path, "w", encoding="utf-8") as f:
            f.write((text * (1 + mb * 10**6 // len(text)))[: mb * 10**6])
        files[mb] = path
    return files


@pytest.mark.parametrize("mode", ["stream", "whole"])
@pytest.mark.parametrize("mb", [1, 4])
def test_stream_encode_memory(measure, benchmark, big_files, mb, mode):
    """Peak traced Python memory while encoding a file: `encode_iterable(open(path))` holds a line, a short tail
    and the pre-token cache (bounded by Tokenizer.CACHE_SIZE, here 4,096 entries for both modes), flat in the file
    size; `encode(path.read_text())` holds the text and every id."""
    tok = bpe.Tokenizer(*bpe.bpe_train_fast(text_of("generated-5MB")[:200_000], 2000, [EOT]), [EOT])
    tok.CACHE_SIZE = 1 << 12
    path = big_files[mb]

    def run():
        tok.cache.clear()
        tracemalloc.start()
        if mode == "stream":
            with open(path, encoding="utf-8", newline="") as f:
                n = sum(1 for _ in tok.encode_iterable(f))
        else:
            n = len(tok.encode(path.read_text(encoding="utf-8")))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return n, peak

    n, peak = measure(run, group=f"encode {mb} MB file (traced)", min_rounds=1, max_rounds=1, impl=mode, file_mb=mb)
    benchmark.extra_info["peak_traced_mb"] = round(peak / 1e6, 2)
    benchmark.extra_info["tokens"] = n
