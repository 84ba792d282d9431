"""Adapters for decoders: Hugging Face `generate()` (greedy, sampling, beam search, assisted / speculative decoding,
prefix-constrained sampling) and transformers' `_speculative_sampling`.

A canonical decoder takes a model callable `model(ids) -> logits[B, L, V]`. `CallableLM` turns such a callable
into a transformers `PreTrainedModel` that `generate()` can drive: its forward returns the callable's logits for
the new positions, and its KV cache is a real `DynamicCache` that stores the token ids themselves (as the keys of
its one layer), so `generate()`'s cache bookkeeping (cropping after rejected drafts in assisted decoding,
reordering beams) keeps the full sequence the callable needs. Nothing of generate's decoding logic is replaced.

transformers draws random numbers from torch's global generator; the adapters seed it, inside
`torch.random.fork_rng`, from one draw of the canonical `generator`, so equal generator states give equal outputs
and the caller's global RNG is untouched.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch

from .registry import AdapterSpec, expect_class, expect_function, register


@functools.lru_cache(maxsize=1)
def _classes():
    from transformers import PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutputWithPast

    CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"

    class CallableConfig(PretrainedConfig):
        model_type = "lmspec_callable"

        def __init__(self, vocab_size: int = 2, **kwargs):
            super().__init__(**kwargs)
            self.vocab_size, self.num_hidden_layers, self.num_attention_heads, self.hidden_size = vocab_size, 1, 1, 1

    class CallableLM(PreTrainedModel):
        config_class = CallableConfig

        def __init__(self, config, fn):
            super().__init__(config)
            self.fn = fn
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device and dtype

        def forward(self, input_ids, attention_mask=None, cache=None, past_key_values=None, use_cache=None, **kwargs):
            # transformers >= 5.25 passes and returns the KV cache as `cache`; earlier 5.x as `past_key_values`
            store = cache if cache is not None else past_key_values
            ids = input_ids
            if store is not None:  # the cache holds every earlier token id
                stored = input_ids.to(torch.float64)[:, None, :, None]
                keys, _ = store.update(stored, stored, 0)
                ids = keys[:, 0, :, 0].to(torch.int64)
            logits = self.fn(ids)[:, -input_ids.shape[1] :]
            return CausalLMOutputWithPast(logits=logits.to(torch.float32), **{CACHE_FIELD: store})

    return CallableConfig, CallableLM


@functools.lru_cache(maxsize=4)
def _with_mixin(mixin: type) -> type:
    return type("CallableLM", (_classes()[1], mixin), {})


def callable_lm(fn: Callable, vocab: int, mixin: type | None = None):
    """A transformers causal LM (with `mixin`, default GenerationMixin) computing `fn(ids) -> logits[B, L, V]`."""
    if mixin is None:
        from transformers import GenerationMixin as mixin
    return _with_mixin(mixin)(_classes()[0](vocab_size=vocab), fn).eval()


@contextlib.contextmanager
def seeded_from(generator: torch.Generator | None):
    """torch's global RNG seeded from one draw of `generator` (or left alone without one), restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        if generator is not None:
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)))
        yield


def _vocab(model: Callable, ids: torch.Tensor) -> int:
    return model(ids[:1, :1]).shape[-1]


def _config(**kwargs):
    """A GenerationConfig with the sampling warpers off unless asked for (transformers' default top_k is 50)."""
    from transformers import GenerationConfig

    base = dict(top_k=None, top_p=None, temperature=None, use_cache=True)
    if kwargs.get("do_sample"):
        base.update(top_k=0, top_p=1.0, temperature=1.0)
    return GenerationConfig(**{**base, **kwargs})


def _all(ids: torch.Tensor) -> torch.Tensor:
    """An explicit all-ones attention mask: prompts may contain the pad id, which must not be read as padding."""
    return torch.ones_like(ids)


def _special(eos: int | None, pad: int | None) -> dict:
    return dict(eos_token_id=eos, pad_token_id=eos if pad is None else pad)


def _wrap_generate(mixin: object, component: str) -> Callable:
    expect_class(mixin, "transformers' GenerationMixin class "
                 "(transformers.generation.utils:GenerationMixin)", attrs=("generate",))

    def lm(model, ids):
        return callable_lm(model, _vocab(model, ids), mixin)

    def greedy_search(model, input_ids, max_new_tokens, eos_token_id=None, pad_token_id=None, min_new_tokens=0, context_size=None):
        if context_size is not None:
            raise NotImplementedError("transformers' generate() has no context cropping (context_size)")
        config = _config(do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, **_special(eos_token_id, pad_token_id))
        return lm(model, input_ids).generate(input_ids, attention_mask=_all(input_ids), generation_config=config)

    def sample_search(model, input_ids, max_new_tokens, generator=None, eos_token_id=None, pad_token_id=None, min_new_tokens=0):
        config = _config(do_sample=True, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, **_special(eos_token_id, pad_token_id))
        with seeded_from(generator):
            return lm(model, input_ids).generate(input_ids, attention_mask=_all(input_ids), generation_config=config)

    def beam_search(model, input_ids, num_beams, max_new_tokens, eos_token_id=None, pad_token_id=None, length_penalty=1.0,
                    early_stopping=False, min_new_tokens=0, num_return_sequences=1):
        beam_options = dict(length_penalty=length_penalty, early_stopping=early_stopping) if num_beams > 1 else {}
        config = _config(do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                         num_return_sequences=num_return_sequences, output_scores=True, return_dict_in_generate=True,
                         **beam_options, **_special(eos_token_id, pad_token_id))
        net = lm(model, input_ids)
        out = net.generate(input_ids, attention_mask=_all(input_ids), generation_config=config)
        if getattr(out, "sequences_scores", None) is not None:
            return out.sequences, out.sequences_scores
        # num_beams = 1 is greedy search in transformers, which returns no sequence score: sum log p / length ** alpha
        steps = net.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        generated = out.sequences[:, input_ids.shape[-1] :]
        keep = torch.ones_like(generated, dtype=torch.bool)
        if eos_token_id is not None:
            keep = (generated == eos_token_id).to(torch.int64).cumsum(-1) - (generated == eos_token_id).to(torch.int64) == 0
        lengths = keep.sum(-1).to(torch.float64)
        return out.sequences, steps.to(torch.float64).masked_fill(~keep, 0.0).sum(-1) / lengths**length_penalty

    def speculative_decode(target_model, draft_model, input_ids, max_new_tokens, num_draft_tokens, do_sample=True, generator=None):
        vocab = _vocab(target_model, input_ids)
        config = _config(do_sample=do_sample, max_new_tokens=max_new_tokens)
        rows = []
        with seeded_from(generator):
            for row in input_ids:  # transformers' assisted generation takes one sequence at a time
                target, draft = callable_lm(target_model, vocab, mixin), callable_lm(draft_model, vocab, mixin)
                draft.generation_config.num_assistant_tokens = num_draft_tokens
                draft.generation_config.num_assistant_tokens_schedule = "constant"
                draft.generation_config.assistant_confidence_threshold = 0.0  # draft exactly num_draft_tokens each round
                rows.append(target.generate(row[None], attention_mask=_all(row[None]), generation_config=config, assistant_model=draft)[0])
        return torch.stack(rows)

    def grammar_constrained_sample(model, input_ids, transitions, accepting, eos_token_id, max_new_tokens, generator=None):
        length = input_ids.shape[-1]
        table, accept = transitions.tolist(), accepting.tolist()
        vocab = len(table[0])

        def allowed(batch_id, sent):
            state = 0
            for token in sent[length:].tolist():
                if token == eos_token_id:
                    return [eos_token_id]  # finished: generate pads it anyway
                state = table[state][token]
            return [v for v in range(vocab) if table[state][v] >= 0 and v != eos_token_id] + ([eos_token_id] if accept[state] else [])

        config = _config(do_sample=True, max_new_tokens=max_new_tokens, **_special(eos_token_id, None))
        with seeded_from(generator):
            return lm(model, input_ids).generate(input_ids, attention_mask=_all(input_ids), generation_config=config,
                                                 prefix_allowed_tokens_fn=allowed)

    return {"greedy_search": greedy_search, "sample_search": sample_search, "beam_search": beam_search,
            "speculative_decode": speculative_decode, "grammar_constrained_sample": grammar_constrained_sample}[component]


register(
    AdapterSpec(
        name="hf_generate",
        components=("greedy_search", "sample_search", "beam_search", "speculative_decode", "grammar_constrained_sample"),
        wrap=_wrap_generate,
        doc="transformers' GenerationMixin (target transformers.generation.utils:GenerationMixin): generate() on CallableLM, a "
        "PreTrainedModel wrapping the canonical model callable (its DynamicCache stores the token ids). greedy: do_sample=False; "
        "sampling: do_sample=True, top_k=0, top_p=1, temperature=1, global RNG seeded from the generator; beam search: "
        "num_beams, length_penalty, early_stopping, num_return_sequences, sequences_scores (num_beams=1 is greedy in "
        "transformers: its score is computed from compute_transition_scores); speculative: assisted generation, one row at "
        "a time, the draft model as assistant_model with num_assistant_tokens fixed (schedule 'constant', confidence "
        "threshold 0); grammar: prefix_allowed_tokens_fn walking the automaton. pad_token_id None means EOS. No context "
        "cropping (feature context_size unsupported). Logits are cast to float32 by generate().",
        unsupported_features=frozenset({"context_size"}),
    )
)


def _wrap_speculative_sampling(fn: object, component: str) -> Callable:
    expect_function(fn, "transformers' _speculative_sampling(candidate_input_ids, "
                    "candidate_logits, candidate_length, new_logits) function", positional=4)

    def speculative_sampling(draft_tokens, draft_probs, target_probs, generator=None):
        k = draft_tokens.shape[-1]
        out = torch.full((draft_tokens.shape[0], k + 1), -1, dtype=torch.int64, device=draft_tokens.device)
        with seeded_from(generator):
            for b in range(draft_tokens.shape[0]):  # transformers verifies one sequence at a time
                tokens, _ = fn(draft_tokens[b][None], draft_probs[b][None].log(), k, target_probs[b][None].log())
                out[b, : tokens.shape[-1]] = tokens[0]
        return out

    return speculative_sampling


register(
    AdapterSpec(
        name="hf_speculative_sampling",
        components=("speculative_sampling",),
        wrap=_wrap_speculative_sampling,
        doc="transformers.generation.utils:_speculative_sampling(candidate_input_ids, candidate_logits, candidate_length, "
        "new_logits): called per row with the draft tokens as the candidates, log(draft_probs) and log(target_probs) as "
        "logits (its softmax recovers the probabilities), the global RNG seeded from the generator; its valid_tokens fill "
        "the row, -1 after them.",
    )
)
