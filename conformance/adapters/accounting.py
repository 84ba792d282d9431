"""Adapters for the accounting family: transformers' own parameter counter and torch's casts.

- `hf_num_parameters` (component `param_count`): a transformers auto class (`transformers:AutoModelForCausalLM`)
  builds the model of the config on the meta device; the counts are its `num_parameters()` and
  `num_parameters(exclude_embeddings=True)`. That method excludes the `nn.Embedding` tables only (an untied
  head is non-embedding), so the adapter implies `embedding=input_only`. It has no notion of active MoE
  parameters and does not read Meta's params.json: both features are declared unsupported.
- `torch_cast` (component `float_cast`): `torch:Tensor.to`, called as `x.to(dtype_of(format))` and read back as
  float64 (an exact widening).

Library-free targets need no adapter: `torch:Tensor.view`, `torch:transpose`, `torch:Tensor.contiguous`, and
`torch._prims_common:make_contiguous_strides_for` take the canonical signatures as they are.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from .registry import AdapterSpec, expect_class, expect_function, register

FORMAT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}


def _wrap_hf_num_parameters(auto_class: object, component: str) -> Callable:
    expect_class(auto_class, "a transformers auto class (transformers:AutoModelForCausalLM)",
                 attrs=("from_config",))
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    def param_count(config: dict, embedding: str = "input_only") -> dict:
        if embedding != "input_only":
            raise ValueError(f"num_parameters(exclude_embeddings=True) counts nn.Embedding tables only, not {embedding!r}")
        c = dict(config)
        model_type = c.pop("model_type")
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # tiny vocabularies make transformers warn about default special-token ids
        try:
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                model = auto_class.from_config(AutoConfig.for_model(model_type, **c))
        finally:
            hf_logging.set_verbosity(verbosity)
        total = model.num_parameters()
        non_embedding = model.num_parameters(exclude_embeddings=True)
        return {"total": total, "embedding": total - non_embedding, "non_embedding": non_embedding, "active": total}

    return param_count


register(AdapterSpec(
    name="hf_num_parameters",
    components=("param_count",),
    wrap=_wrap_hf_num_parameters,
    doc="transformers AutoModelForCausalLM.from_config on the meta device; PreTrainedModel.num_parameters().",
    unsupported_features=frozenset({"active_parameters", "meta_params_json"}),
    implied_options={"embedding": "input_only"},
))


def _wrap_torch_cast(to: object, component: str) -> Callable:
    expect_function(to, "torch:Tensor.to, a function called as to(x, dtype)", positional=2, builtin=True)

    def float_cast(x: torch.Tensor, format: str) -> torch.Tensor:
        return to(x, FORMAT_DTYPES[format]).to(torch.float64)

    return float_cast


register(AdapterSpec(
    name="torch_cast",
    components=("float_cast",),
    wrap=_wrap_torch_cast,
    doc="torch.Tensor.to(x, dtype) for the format's dtype, widened to float64 to read the values.",
))
