"""torch.nn.functional.scaled_dot_product_attention pinned to one CUDA backend each, as lmspec targets.

Used by the gpu test in test_external_conformance.py: `sdpa_math`, `sdpa_flash`, `sdpa_efficient` and
`sdpa_cudnn` each run SDPA inside `torch.nn.attention.sdpa_kernel(<backend>)`, so torch raises ("No available
kernel") instead of silently falling back to another backend.

What each fused backend refuses at dispatch (aten/src/ATen/native/transformers/cuda/sdp_utils.cpp,
can_use_flash_attention / can_use_mem_efficient_attention / can_use_cudnn_attention) is handled in one of
three ways, never by switching backend:

- declared unsupported in `__lmspec__` (reported UNSUP): dtypes and mask / dropout / GQA features;
- exact input preparation inside the wrapper: inputs made contiguous (every fused kernel needs stride 1 in
  the last dim, the spec's "strided" / "transposed" layouts do not have it) and head dims zero-padded (zero
  columns add exact zeros to q.k; padded value columns are sliced off the output; the scale is passed
  explicitly as 1/sqrt(E), torch's default on the unpadded query). Flash needs E == Ev; efficient and cuDNN
  need E and Ev divisible by 8 (fp16/bf16 on sm80+; 4 for fp32 on efficient);
- shape restrictions the test applies to the examples (`EXAMPLE_FIXES`): flash refuses is_causal with
  Lq != Lk ("Flash attention does not support the is_causal flag when seqlen_q != seqlen_k"), cuDNN
  refuses Lk == 1; the examples for those backends are made square with L >= 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _pinned(backend: SDPBackend, pad: str | None, unsupported_dtypes=(), unsupported_features=()):
    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        e, ev = query.shape[-1], value.shape[-1]
        if pad == "common":  # flash: one head dim for q, k and v
            we = wv = _round_up(max(e, ev), 8)
        elif pad == "separate":  # efficient / cuDNN: E and Ev each a multiple of the alignment
            align = 8 if query.dtype in (torch.float16, torch.bfloat16) else 4
            we, wv = _round_up(e, align), _round_up(ev, align)
        else:
            we, wv = e, ev
        if (we, wv) != (e, ev):
            scale = 1.0 / math.sqrt(e) if scale is None else scale
            query, key = (F.pad(t, (0, we - e)) for t in (query, key))
            value = F.pad(value, (0, wv - ev))
        if pad is not None:
            query, key, value = (t.contiguous() for t in (query, key, value))
            attn_mask = attn_mask.contiguous() if attn_mask is not None else None
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa
            )
        return out[..., :ev]

    sdpa.__name__ = sdpa.__qualname__ = f"sdpa_{backend.name.lower()}"
    sdpa.__lmspec__ = {"unsupported_dtypes": list(unsupported_dtypes), "unsupported_features": list(unsupported_features)}
    return sdpa


sdpa_math = _pinned(SDPBackend.MATH, pad=None)
sdpa_flash = _pinned(SDPBackend.FLASH_ATTENTION, pad="common", unsupported_dtypes=["float64", "float32"], unsupported_features=["attn_mask"])
# mem-efficient: no GQA (check_batch_size_and_num_heads_dense<false>), no float64.
sdpa_efficient = _pinned(SDPBackend.EFFICIENT_ATTENTION, pad="separate", unsupported_dtypes=["float64"], unsupported_features=["gqa"])
# cuDNN: fp16/bf16; masks and dropout are gated on cuDNN versions and mask shapes, declared unsupported here.
sdpa_cudnn = _pinned(
    SDPBackend.CUDNN_ATTENTION, pad="separate", unsupported_dtypes=["float64", "float32"], unsupported_features=["attn_mask", "dropout"]
)

BACKENDS = {"math": sdpa_math, "flash": sdpa_flash, "efficient": sdpa_efficient, "cudnn": sdpa_cudnn}


def _square(p: dict, at_least: int = 1) -> dict:
    length = max(p["Lq"], at_least)
    fixed = {**p, "Lq": length, "Lk": length}
    if "cut" in fixed:
        fixed["cut"] = min(fixed["cut"], length - 1)
    return fixed


#: how the test maps the spec's examples into shapes each backend dispatches (identity where none needed).
EXAMPLE_FIXES = {
    "math": lambda p: p,
    "flash": _square,
    "efficient": lambda p: p,
    "cudnn": lambda p: _square(p, at_least=2),
}
