"""The tokenizer references train, encode, decode, stream, save and load as documented (reference/tokenizers/bpe.py,
gpt2.py, wordpiece.py, unigram.py, baselines.py). The invariants run against them in
tests/test_reference_conforms.py; these tests pin the concrete behaviour: known merges, tie-breaks, file
formats, laziness of streaming, and the textbook examples."""

from __future__ import annotations

import itertools
import math
from collections import Counter
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmspec.reference.tokenizers import baselines as base
from lmspec.reference.tokenizers import bpe, unigram, wordpiece
from lmspec.reference.tokenizers.gpt2 import bytes_to_unicode, from_gpt2_files, read_gpt2_files, write_gpt2_files
from lmspec.reference.tokenizers.pretokenize import GPT2_REGEX, Splitter, valid_unicode
from lmspec.spec.tokenizers.inputs import corpus, unicode_text

EOT = "<|endoftext|>"


def small_corpus(seed: int = 0, words: int = 400) -> str:
    return corpus(seed, words, (EOT,))


# --- pre-tokenization -------------------------------------------------------------------------------------------


@given(unicode_text(12), st.lists(st.integers(0, 60), max_size=6))
@settings(max_examples=60)
def test_stream_split_equals_whole_split_for_any_chunking(text, cuts):
    splitter = Splitter([EOT, EOT + EOT, "<s>"])
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]

    def flat(batches):
        return [x for pieces, s in batches for x in pieces + [("special", s)] * (s is not None)]

    assert flat(splitter.split_stream(chunks)) == flat(splitter.split(text))


@given(unicode_text(12))
def test_gpt2_pieces_tile_the_text(text):
    assert "".join(GPT2_REGEX.findall(text)) == text


def test_surrogates_are_made_valid_as_tiktoken_does():
    assert valid_unicode("a\ud83d\ude00b") == "a😀b"  # a high+low pair is the character it encodes
    assert valid_unicode("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert valid_unicode("plain 😀") == "plain 😀"


# --- BPE training -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,merges", [(0, 150), (1, 60), (2, 300)])
@pytest.mark.parametrize("specials", [[], [EOT], [EOT, "<|pad|>"]])
def test_fast_trainer_equals_readable_trainer(seed, merges, specials):
    """`bpe_train_fast` (incremental counts, what the spec and the benchmarks run where speed matters) returns
    exactly what the readable reference `bpe_train` does, on the generated corpora the spec trains on."""
    text = corpus(seed, 400, tuple(specials))
    size = 256 + len(specials) + merges
    assert bpe.bpe_train_fast(text, size, specials) == bpe.bpe_train(text, size, specials)
    big = corpus(2019, 6000, (EOT,), lexicon=300)  # the synthetic GPT-2 files' corpus: many merges, many ties
    assert bpe.bpe_train_fast(big, 257 + 400, [EOT]) == bpe.bpe_train(big, 257 + 400, [EOT])


def test_fast_trainer_equals_readable_trainer_on_a_fixture(shared_dir):
    text = (shared_dir / "fixtures" / "tinystories_sample.txt").read_text(encoding="utf-8")
    assert bpe.bpe_train_fast(text, 600, [EOT]) == bpe.bpe_train(text, 600, [EOT])


def test_ties_go_to_the_lexicographically_greatest_pair():
    # pre-tokens "ab" and " cd": (a, b), (' ', c), (c, d) all occur once; (c, d) is the greatest pair
    vocab, merges = bpe.bpe_train("ab cd", 257)
    assert merges == [(b"c", b"d")]
    assert max([(b"A", b"B"), (b"A", b"C"), (b"B", b"ZZ"), (b"BA", b"A")]) == (b"BA", b"A")  # CS336's example
    vocab, merges = bpe.bpe_train("BA A B ZZ", 257)
    assert merges[0] == max(p for p in [(b"B", b"A"), (b" ", b"A"), (b" ", b"B"), (b" ", b"Z"), (b"Z", b"Z")])


def test_most_frequent_pair_first_and_layout():
    # pre-tokens: "the" x2, " the" x2, " cat", " hat". (t, h) and (h, e) tie at 4: (t, h) is the greater pair;
    # then (th, e) at 4; then (' ', the) and (a, t) tie at 2: (a, t) is the greater.
    vocab, merges = bpe.bpe_train("the cat the hat the" + EOT + "the", 256 + 1 + 3, [EOT])
    assert merges == [(b"t", b"h"), (b"th", b"e"), (b"a", b"t")]
    assert [vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]
    assert vocab[256] == EOT.encode() and len(vocab) == 260
    assert all(vocab[257 + k] == a + b for k, (a, b) in enumerate(merges))


def test_runs_out_of_pairs_with_a_smaller_vocabulary():
    vocab, merges = bpe.bpe_train("ab ab", 1000, [EOT])
    assert merges == [(b"a", b"b"), (b" ", b"ab")] and len(vocab) == 256 + 1 + 2


def test_special_tokens_are_never_merged():
    text = (EOT + "x") * 50 + " y"
    vocab, merges = bpe.bpe_train(text, 300, [EOT])
    assert not any(b"<" in a + b or b"|" in a + b for a, b in merges)


def test_file_text_and_chunks_train_identically(tmp_path):
    text = small_corpus(3, 600)
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    expected = bpe.bpe_train(text, 400, [EOT])
    assert bpe.pretoken_counts(path, [EOT], block=97) == bpe.pretoken_counts(text, [EOT])
    assert bpe.bpe_train(path, 400, [EOT]) == expected
    assert bpe.bpe_train([text[i:i + 33] for i in range(0, len(text), 33)], 400, [EOT]) == expected


def test_vocab_size_below_bytes_and_specials_is_an_error():
    with pytest.raises(ValueError):
        bpe.bpe_train("abc", 256, [EOT])


# --- BPE tokenizer ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    return bpe.bpe_train(small_corpus(5, 1500), 256 + 2 + 300, [EOT, "<|pad|>"])


def test_encode_decode_special_tokens_and_unknown_specials(trained):
    tok = bpe.Tokenizer(*trained, [EOT, "<|pad|>", "<|new|>"])
    text = "thé cat" + EOT + "😀<|pad|><|new|> x"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.special_ids["<|new|>"] == max(trained[0]) + 1  # a special token missing from the vocab gets a new id
    assert ids.count(tok.special_ids[EOT]) == 1 and tok.special_ids["<|new|>"] in ids


def test_merges_need_their_tokens():
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(ValueError):
        bpe.Tokenizer(vocab, [(b"a", b"b")])


def test_encode_iterable_is_lazy(trained):
    tok = bpe.Tokenizer(*trained, [EOT])
    read = []

    def lines():
        for k in itertools.count():
            read.append(k)
            yield f"line {k} of an endless file\n"

    stream = tok.encode_iterable(lines())
    first = list(itertools.islice(stream, 5))
    assert first == tok.encode("line 0 of an endless file\n")[:5]
    assert len(read) <= 3  # ids of the first line arrive before the file is read on


def test_encode_iterable_of_a_file_equals_encode(trained, tmp_path):
    tok = bpe.Tokenizer(*trained, [EOT])
    text = small_corpus(9, 800) + "\n  tail  \n"
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    with open(path, encoding="utf-8", newline="") as f:
        assert list(tok.encode_iterable(f)) == tok.encode(text)


def test_pre_token_cache_is_bounded(trained, monkeypatch):
    tok = bpe.Tokenizer(*trained)
    monkeypatch.setattr(tok, "CACHE_SIZE", 50)
    tok.encode(" ".join(f"w{k}" for k in range(500)))
    assert len(tok.cache) <= 50 + 500  # cleared whenever a batch starts above the limit
    tok.encode("x")
    assert len(tok.cache) <= 51


def test_save_and_load_round_trip_and_are_read_by_hugging_face(trained, tmp_path):
    tok = bpe.Tokenizer(*trained, [EOT])
    tok.save(tmp_path)
    loaded = bpe.Tokenizer.load(tmp_path)
    text = small_corpus(11, 300) + " 😀 é"
    assert loaded.encode(text) == tok.encode(text) and loaded.vocab == tok.vocab and loaded.merges == tok.merges
    tokenizers = pytest.importorskip("tokenizers")
    model = tokenizers.models.BPE.from_file(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    hf = tokenizers.Tokenizer(model)
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.add_special_tokens([EOT])
    assert hf.encode(text).ids == tok.encode(text)


# --- GPT-2's files ----------------------------------------------------------------------------------------------


def test_bytes_to_unicode_table():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A" and table[0] == "Ā"
    assert all(table[b] == chr(b) for b in [*range(33, 127), *range(161, 173), *range(174, 256)])


@pytest.fixture
def gpt2_paths(shared_dir):
    fixtures = shared_dir / "fixtures"
    if not (fixtures / "gpt2_vocab.json").is_file():
        pytest.skip("../shared/fixtures lacks GPT-2's gpt2_vocab.json and gpt2_merges.txt")
    return fixtures / "gpt2_vocab.json", fixtures / "gpt2_merges.txt"


def test_gpt2_known_ids(gpt2_paths):
    tok = from_gpt2_files(*gpt2_paths)
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode(EOT) == [50256]
    assert tok.encode(" the") == [262]
    assert tok.decode([15496, 995]) == "Hello world"


CORPORA = ["corpus.en", "german.txt", "address.txt", "tinystories_sample.txt"]


@pytest.mark.parametrize("name", CORPORA)
def test_gpt2_reference_equals_hugging_face_and_tiktoken_on_fixture_corpora(gpt2_paths, shared_dir, name):
    from lmspec.conformance.loading import load_target

    text = (shared_dir / "fixtures" / name).read_text(encoding="utf-8")
    ids = from_gpt2_files(*gpt2_paths).encode(text)
    for path, adapter in [("tokenizers:Tokenizer", "hf_tokenizers"), ("tiktoken:Encoding", "tiktoken")]:
        pytest.importorskip(path.split(":")[0])
        other = load_target(path, "gpt2_tokenizer", adapter).fn(*map(str, gpt2_paths), [EOT])
        assert other.encode(text) == ids, adapter
        assert other.decode(ids) == text
    assert from_gpt2_files(*gpt2_paths).decode(ids) == text


def test_gpt2_streams_a_corpus_line_by_line(gpt2_paths, shared_dir):
    path = shared_dir / "fixtures" / "corpus.en"
    tok = from_gpt2_files(*gpt2_paths)
    with open(path, encoding="utf-8", newline="") as f:
        assert list(tok.encode_iterable(f)) == tok.encode(path.read_text(encoding="utf-8"))


def test_gpt2_files_round_trip_through_write(gpt2_paths, tmp_path):
    vocab, merges = read_gpt2_files(*gpt2_paths, [EOT])
    write_gpt2_files(vocab, merges, tmp_path / "v.json", tmp_path / "m.txt", [EOT])
    assert read_gpt2_files(tmp_path / "v.json", tmp_path / "m.txt", [EOT]) == (vocab, merges)


# --- WordPiece --------------------------------------------------------------------------------------------------

HF_COURSE = "hug " * 10 + "pug " * 5 + "pun " * 12 + "bun " * 4 + "hugs " * 5


def test_wordpiece_first_merge_is_by_score_not_frequency():
    # Hugging Face course ch. 6.6: ("##u", "##g") is the most frequent pair (20), but every pair with "##u" scores
    # 1/36; ("##g", "##s") scores 1/20 and is the first merge.
    alphabet = ["[UNK]", "##g", "##n", "##s", "##u", "b", "h", "p"]
    vocab = wordpiece.wordpiece_train(HF_COURSE, len(alphabet) + 1, ["[UNK]"])
    assert vocab == alphabet + ["##gs"]


def test_wordpiece_greedy_longest_match_unk_and_max_chars():
    tokens = ["[UNK]", "un", "##aff", "##able", "a", "##a", "##ff", "u", "##n"]
    tok = wordpiece.WordPiece(tokens, max_input_chars_per_word=8)
    assert [tok.tokens[i] for i in tok.encode("unaffable")] == ["[UNK]"]  # 9 characters > 8
    tok.max_input_chars_per_word = 100
    assert [tok.tokens[i] for i in tok.encode("unaffable")] == ["un", "##aff", "##able"]  # BERT's docstring example
    assert [tok.tokens[i] for i in tok.encode("unx, a")] == ["[UNK]", "[UNK]", "a"]  # "," is not in the vocab
    assert tok.decode(tok.encode("unaffable a")) == "unaffable a"


def test_bert_pretokenizer_splits_white_space_and_punctuation():
    words = ["Hello", ",", "world", "!", "x", "$", "y\x1cz"]
    assert wordpiece.bert_pretokenize("Hello,  world!\u3000x$y\x1cz") == words


def test_wordpiece_save_load_and_hugging_face_agree(tmp_path, shared_dir):
    text = (shared_dir / "fixtures" / "tinystories_sample.txt").read_text(encoding="utf-8")
    tok = wordpiece.WordPiece(wordpiece.wordpiece_train(text, 400))
    tok.save(tmp_path / "vocab.txt")
    loaded = wordpiece.WordPiece.load(tmp_path / "vocab.txt")
    other = (shared_dir / "fixtures" / "corpus.en").read_text(encoding="utf-8")[:20000]
    assert loaded.encode(other) == tok.encode(other)
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer(tokenizers.models.WordPiece.from_file(str(tmp_path / "vocab.txt"), unk_token="[UNK]"))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    assert hf.encode(other).ids == tok.encode(other)


# --- Unigram ----------------------------------------------------------------------------------------------------


def _segmentations(text, scores):
    if not text:
        yield (), 0.0
    for j in range(1, len(text) + 1):
        if text[:j] in scores:
            for rest, s in _segmentations(text[j:], scores):
                yield (text[:j],) + rest, scores[text[:j]] + s


PIECES = [("<unk>", 0.0), ("a", -2.0), ("b", -2.5), ("▁", -1.5), ("ab", -3.0), ("ba", -3.2), ("aba", -3.9),
          ("▁a", -2.2), ("bab", -5.0)]


@given(st.text(alphabet="ab ", min_size=1, max_size=9))
def test_viterbi_is_the_best_segmentation(text):
    tok = unigram.Unigram(PIECES)
    scores = dict(PIECES[1:])
    best = max(s for _, s in _segmentations(text.replace(" ", "▁"), scores))
    got = tok.encode(text)
    assert math.isclose(sum(tok.scores[i] for i in got), best) and tok.decode(got) == text


def test_unknown_characters_are_one_unk_per_run():
    tok = unigram.Unigram(PIECES)
    ids = tok.encode("abxyzab")
    assert ids.count(0) == 1 and tok.decode(ids) == "ab ⁇ ab"


def test_sampling_is_seeded_and_follows_exp_alpha_score():
    tok = unigram.Unigram(PIECES)
    assert tok.sample_encode("abab", 0.5, 7) == tok.sample_encode("abab", 0.5, 7)
    segs = dict((seg, s) for seg, s in _segmentations("abab", dict(PIECES[1:])))
    z = sum(math.exp(0.5 * s) for s in segs.values())
    counts = Counter(tuple(tok.pieces[i][0] for i in tok.sample_encode("abab", 0.5, k)) for k in range(4000))
    for seg, s in segs.items():
        p = math.exp(0.5 * s) / z
        assert abs(counts[seg] - 4000 * p) <= 6 * math.sqrt(4000 * p * (1 - p)) + 1


def test_unigram_training_and_save_load(tmp_path, shared_dir):
    text = (shared_dir / "fixtures" / "tinystories_sample.txt").read_text(encoding="utf-8")
    pieces = unigram.unigram_train(text, 300)
    assert len(pieces) == 300 and pieces[0] == ("<unk>", 0.0)
    assert set(text.replace(" ", "▁")) <= {p for p, _ in pieces}
    assert math.isclose(sum(math.exp(s) for _, s in pieces[1:]), 1.0)
    tok = unigram.Unigram(pieces)
    assert tok.decode(tok.encode(text)) == text
    tok.save(tmp_path / "unigram.json")
    assert unigram.Unigram.load(tmp_path / "unigram.json").encode(text) == tok.encode(text)


def test_unigram_segmentation_equals_sentencepiece_on_trained_pieces(shared_dir):
    from lmspec.conformance.loading import load_target

    pytest.importorskip("sentencepiece")
    text = (shared_dir / "fixtures" / "tinystories_sample.txt").read_text(encoding="utf-8")
    pieces = [(p, float(__import__("struct").unpack("f", __import__("struct").pack("f", s))[0]))
              for p, s in unigram.unigram_train(text, 300)]
    sp = load_target("sentencepiece:SentencePieceProcessor", "unigram_tokenizer", "sentencepiece").fn(pieces, 0)
    other = (shared_dir / "fixtures" / "corpus.en").read_text(encoding="utf-8")[:5000]
    assert sp.encode(other) == unigram.Unigram(pieces).encode(other)


# --- baselines --------------------------------------------------------------------------------------------------


def test_baselines_round_trip_save_and_load(tmp_path):
    text = "The cat sat. The dog ran! 😀"
    assert base.ByteTokenizer().decode(base.ByteTokenizer().encode(text)) == text
    chars = base.CharTokenizer.train(text)
    assert chars.decode(chars.encode(text)) == text and chars.encode("Q") == [0]
    words = base.WordTokenizer.train(text, max_size=5)  # <unk> + the 4 most frequent, ties in first-seen order
    assert words.tokens == ["<unk>", "The", "cat", "sat", "."]
    assert words.decode(words.encode("The cat ran")) == "The cat <unk>"
    words.save(tmp_path / "w.json")
    assert base.WordTokenizer.load(tmp_path / "w.json").encode(text) == words.encode(text)


def test_compression_ordering_on_corpus_en(shared_dir):
    """CS336 lecture 1: bytes and characters give ~1 byte per token, words many but with unknowns; BPE sits
    between, with no unknowns."""
    text = (shared_dir / "fixtures" / "corpus.en").read_text(encoding="utf-8")
    train, held = text[: len(text) // 2], text[len(text) // 2:]
    n = len(held.encode())
    tok = bpe.Tokenizer(*bpe.bpe_train_fast(train, 1000))
    ratio = {
        "byte": n / len(base.ByteTokenizer().encode(held)),
        "char": n / len(base.CharTokenizer.train(train).encode(held)),
        "bpe": n / len(tok.encode(held)),
    }
    assert ratio["byte"] == 1.0 <= ratio["char"] < 2.0 < ratio["bpe"]
    words = base.WordTokenizer.train(train)
    unknown = words.encode(held).count(0) / len(words.encode(held))
    assert unknown > 0.01 and tok.decode(tok.encode(held)) == held


@pytest.mark.parametrize("trainer", ["bpe_train", "wordpiece_train", "unigram_train"])
def test_a_str_naming_a_file_is_refused_with_the_fix(trainer, tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module(f"lmspec.reference.tokenizers.{trainer.split('_')[0]}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("low lower lowest " * 50, encoding="utf-8")
    with pytest.raises(ValueError, match=r"pass pathlib\.Path\('corpus\.txt'\)"):
        getattr(module, trainer)("corpus.txt", 300)
    getattr(module, trainer)(tmp_path / "corpus.txt", 300)  # a Path is the file
