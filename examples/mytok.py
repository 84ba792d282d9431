"""A GPT-2 tokenizer loaded from GPT-2's files (vocab.json, merges.txt), to check with lmspec.

This one builds Hugging Face `tokenizers`' byte-level BPE from the two files; put your own loader in its place.

    cd examples && lmspec check gpt2_tokenizer --target mytok:load_gpt2
"""


class _Tokenizer:
    def __init__(self, tokenizer):
        self._tok = tokenizer

    def encode(self, text):
        return self._tok.encode(text).ids

    def decode(self, ids):
        return self._tok.decode(ids, skip_special_tokens=False)


def load_gpt2(vocab_json, merges_txt, special_tokens=()):
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    tokenizer = Tokenizer(BPE.from_file(vocab_json, merges_txt))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(special_tokens))
    return _Tokenizer(tokenizer)


# Hugging Face tokenizers takes a Rust String: a str holding lone surrogates cannot be passed in. Declared, so that
# invariant is reported "unsupported" (never a pass) instead of failing.
load_gpt2.__lmspec__ = {"unsupported_features": ["lone_surrogates"]}
