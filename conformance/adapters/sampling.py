"""Adapters for logits processors, samplers and the sampling step: Hugging Face's processor / warper classes,
transformers' own composition of them (`GenerationMixin._get_logits_processor`), `torch.multinomial`, and
`torch.distributions.Categorical` for entropy.

Registered here:

- `hf_logits_processor`: a transformers LogitsProcessor class (TemperatureLogitsWarper, TopKLogitsWarper,
  TopPLogitsWarper, MinPLogitsWarper, EpsilonLogitsWarper, TypicalLogitsWarper, RepetitionPenaltyLogitsProcessor,
  NoRepeatNGramLogitsProcessor) built with the canonical parameter and called as `processor(input_ids, scores)`.
- `hf_warper_sample`: a warper class followed by what generate() does when sampling,
  `torch.multinomial(softmax(scores), 1)`, with the canonical generator.
- `hf_generation_pipeline`: `GenerationMixin._get_logits_processor` for a GenerationConfig(do_sample=True, ...),
  applied to prompt + output ids: transformers' own order (implies order=hf; no presence / frequency penalties).
- `torch_multinomial`: `torch.multinomial(softmax(logits), 1, generator=generator)` as `sample`.
- `torch_categorical`: `torch.distributions.Categorical(logits=...).entropy()` as `entropy`.
"""

from __future__ import annotations

from typing import Callable

import torch

from .registry import AdapterSpec, expect_class, expect_function, register

_NO_IDS = None  # warpers ignore input_ids


def _wrap_hf_processor(cls: object, component: str) -> Callable:
    expect_class(cls, "a transformers LogitsProcessor class (transformers:TopPLogitsWarper)")
    calls = {
        "temperature": lambda logits, t: cls(float(t))(_NO_IDS, logits),
        "top_k": lambda logits, k: cls(int(k))(_NO_IDS, logits),
        "top_p": lambda logits, p: cls(float(p))(_NO_IDS, logits),
        "min_p": lambda logits, p: cls(float(p))(_NO_IDS, logits),
        "epsilon_cutoff": lambda logits, epsilon: cls(float(epsilon))(_NO_IDS, logits),
        "typical_p": lambda logits, p: cls(mass=float(p))(_NO_IDS, logits),
        "repetition_penalty": lambda logits, input_ids, penalty: cls(penalty=float(penalty))(input_ids, logits),
        "no_repeat_ngram": lambda logits, input_ids, n: cls(int(n))(input_ids, logits),
    }
    return calls[component]


register(
    AdapterSpec(
        name="hf_logits_processor",
        components=("temperature", "top_k", "top_p", "min_p", "epsilon_cutoff", "typical_p", "repetition_penalty", "no_repeat_ngram"),
        wrap=_wrap_hf_processor,
        doc="A transformers LogitsProcessor class, e.g. transformers:TopPLogitsWarper: constructed with the canonical "
        "parameter (min_tokens_to_keep and filter_value at their defaults, 1 and -inf) and called as processor(input_ids, "
        "scores). TypicalLogitsWarper takes the mass as `mass`, RepetitionPenaltyLogitsProcessor as `penalty`.",
    )
)


def _wrap_hf_warper_sample(cls: object, component: str) -> Callable:
    expect_class(cls, "a transformers warper class (transformers:TopPLogitsWarper)")
    build = {"top_k_sample": int, "top_p_sample": float, "min_p_sample": float}[component]

    def fused(logits, value, generator=None):
        scores = cls(build(value))(_NO_IDS, logits)
        probs = torch.nn.functional.softmax(scores, dim=-1)  # GenerationMixin._sample
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)

    return fused


register(
    AdapterSpec(
        name="hf_warper_sample",
        components=("top_k_sample", "top_p_sample", "min_p_sample"),
        wrap=_wrap_hf_warper_sample,
        doc="A transformers warper class (TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper) followed by generate()'s "
        "sampling step, torch.multinomial(softmax(scores), 1), drawing from the canonical generator instead of the global one.",
    )
)


def _wrap_hf_pipeline(mixin: object, component: str) -> Callable:
    expect_class(mixin, "transformers' GenerationMixin class "
                 "(transformers.generation.utils:GenerationMixin)", attrs=("_get_logits_processor",))
    from .decoding import callable_lm

    def sampling_pipeline(logits, prompt_ids, output_ids, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                          repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0):
        from transformers import GenerationConfig, LogitsProcessorList

        if presence_penalty or frequency_penalty:
            raise NotImplementedError("transformers has no presence or frequency penalty")
        config = GenerationConfig(do_sample=True, temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                                  min_p=float(min_p) if min_p else None, repetition_penalty=float(repetition_penalty))
        model = callable_lm(lambda ids: None, logits.shape[-1], mixin)
        ids = torch.cat([prompt_ids, output_ids], dim=-1)
        processors = model._get_logits_processor(generation_config=config, input_ids_seq_length=max(ids.shape[-1], 1),
                                                 encoder_input_ids=ids, logits_processor=LogitsProcessorList(),
                                                 device=str(logits.device), model_kwargs={})
        return processors(ids, logits)

    return sampling_pipeline


register(
    AdapterSpec(
        name="hf_generation_pipeline",
        components=("sampling_pipeline",),
        wrap=_wrap_hf_pipeline,
        doc="transformers' GenerationMixin (target transformers.generation.utils:GenerationMixin): the LogitsProcessorList "
        "that _get_logits_processor builds for GenerationConfig(do_sample=True, temperature, top_k, top_p, min_p, "
        "repetition_penalty), applied to the logits with input_ids = prompt + output, exactly as generate() does for one "
        "step. Implies order=hf; presence and frequency penalties are unsupported (transformers has none).",
        unsupported_features=frozenset({"presence_frequency"}),
        implied_options={"order": "hf"},
    )
)


def _wrap_multinomial(fn: object, component: str) -> Callable:
    expect_function(fn, "torch:multinomial, a function called as multinomial(probs, 1, generator=)", positional=2,
                    keywords=("generator",), builtin=True)

    def sample(logits, generator=None):
        return fn(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)

    return sample


register(
    AdapterSpec(
        name="torch_multinomial",
        components=("sample",),
        wrap=_wrap_multinomial,
        doc="torch.multinomial(softmax(logits, -1), 1, generator=generator).squeeze(-1): how transformers' generate() samples "
        "(with the canonical generator); the softmax is taken in the logits' dtype.",
    )
)


def _wrap_categorical(cls: object, component: str) -> Callable:
    expect_class(cls, "the torch.distributions:Categorical class", attrs=("entropy",))

    def entropy(logits):
        return cls(logits=logits, validate_args=False).entropy()

    return entropy


register(
    AdapterSpec(
        name="torch_categorical",
        components=("entropy",),
        wrap=_wrap_categorical,
        doc="torch.distributions.Categorical(logits=logits).entropy(); Categorical clamps -inf logits to finfo.min, whose "
        "probability is 0, so masked tokens contribute nothing.",
    )
)
