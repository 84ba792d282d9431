"""Hugging Face helpers every adapter family uses: a tiny config with exactly the sizes a check draws, the module
built from it once per shape, and the canonical weights copied in.

The configs have one layer and a vocabulary of 8: an adapter builds one module (attention, MLP, norm, rotary)
from them, never a model, so nothing is downloaded and nothing but the sizes matter. Tokens ids are None so that
configs do not validate them against the tiny vocabulary.
"""

from __future__ import annotations

import sys

import torch

_TINY = dict(vocab_size=8, num_hidden_layers=1, pad_token_id=None, bos_token_id=None, eos_token_id=None)


def config_class(owner: object, suffix: str = "Config") -> type:
    """The config class that belongs with `owner`: a modeling module (`modeling_qwen3` -> Qwen3Config) or one of its
    classes (`LlamaRotaryEmbedding` -> LlamaConfig)."""
    module = owner if not isinstance(owner, type) else sys.modules[owner.__module__]
    name = module.__name__.rsplit(".", 1)[-1].replace("modeling_", "")
    return next(getattr(module, n) for n in dir(module) if n.lower() == f"{name}{suffix.lower()}")


def tiny_config(config_cls: type, **sizes):
    """`config_cls` with one layer, a vocabulary of 8, no special token ids, and the given sizes and options."""
    return config_cls(**{**_TINY, **sizes})


def frozen(module: torch.nn.Module, dtype: torch.dtype, device: str | torch.device) -> torch.nn.Module:
    """The module on `device` in `dtype`, in eval mode, without gradients: what every adapter calls."""
    return module.to(device=device, dtype=dtype).requires_grad_(False).eval()


def call_with(module: torch.nn.Module, weights: dict, *args, **kwargs):
    """module(*args, **kwargs) with the canonical weights standing in for its parameters (name -> tensor; None leaves
    a parameter as built). They are used, not copied, so gradients reach them: the adapted target has a backward."""
    given = {name: weight for name, weight in weights.items() if weight is not None}
    return torch.func.functional_call(module, given, args, kwargs, strict=False)
