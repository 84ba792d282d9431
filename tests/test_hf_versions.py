"""What changed in Hugging Face transformers between the versions lmspec is verified on (docs/conventions.md,
"Hugging Face versions"): each test asserts the documented behaviour of the installed version."""

from __future__ import annotations

import inspect

import pytest
import torch
from packaging.version import Version

transformers = pytest.importorskip("transformers")
INSTALLED = Version(transformers.__version__)
CACHE_RENAMED = Version("5.25")


def test_generate_passes_the_kv_cache_under_the_documented_name():
    """5.25 renamed the model's KV-cache argument from `past_key_values` to `cache` (and the output field)."""
    from lmspec.conformance.adapters.decoding import callable_lm

    seen = []

    def model(ids):
        return torch.zeros(ids.shape[0], ids.shape[1], 3, dtype=torch.float64)

    net = callable_lm(model, 3)
    forward = net.forward

    def recording_forward(*args, **kwargs):
        seen.append(sorted(k for k in ("cache", "past_key_values") if kwargs.get(k) is not None))
        return forward(*args, **kwargs)

    net.forward = recording_forward
    ids = torch.tensor([[1, 2]])
    from transformers import GenerationConfig

    net.generate(ids, attention_mask=torch.ones_like(ids), generation_config=GenerationConfig(max_new_tokens=3, do_sample=False))
    expected = ["cache"] if INSTALLED >= CACHE_RENAMED else ["past_key_values"]
    assert seen[1:] and all(names == expected for names in seen[1:]), (transformers.__version__, seen)


def test_create_causal_mask_names_its_cache_parameter_as_documented():
    from transformers import masking_utils

    params = list(inspect.signature(masking_utils.create_causal_mask).parameters)
    assert params[3] == ("cache" if INSTALLED >= CACHE_RENAMED else "past_key_values"), params


def test_causal_lm_output_field_as_documented():
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = CausalLMOutputWithPast.__dataclass_fields__
    assert ("cache" in fields) == (INSTALLED >= CACHE_RENAMED), sorted(fields)
