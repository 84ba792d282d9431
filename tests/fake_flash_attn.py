"""A pure-torch STAND-IN for `flash_attn.flash_attn_func` (FlashAttention 2.x). It is NOT FlashAttention.

The real package needs CUDA and cannot be installed here; this fake lets tests exercise the `flash_attn`
adapter (conformance/adapters.py) on the CPU. It has flash_attn_func's exact signature and documented
semantics (flash_attn/flash_attn_interface.py docstring and csrc/flash_attn/flash_api.cpp, FlashAttention 2.x):

- q [B, Lq, H, D], k and v [B, Lk, Hk, D]: one head dim D <= 256 for q, k and v; H % Hk == 0, query head h
  uses KV head h // (H / Hk) (MQA / GQA).
- fp16 and bf16 only ("FlashAttention only support fp16 and bf16 data type").
- softmax_scale defaults to D ** -0.5.
- Key j is visible to query i iff i + Lk - Lq - left <= j <= i + Lk - Lq + right for window_size =
  (left, right), -1 meaning unbounded on that side; causal=True sets right = 0, so the causal mask is aligned
  to the bottom-right corner. A query row that sees no key outputs zeros.
- dropout_p drops attention probabilities, kept ones scaled by 1 / (1 - dropout_p); softcap > 0 applies
  softcap * tanh(scores / softcap); alibi_slopes adds -slope * |i + Lk - Lq - j|.
- Precision profile: scores and softmax in float32, probabilities rounded to the input dtype before P @ V
  with float32 accumulation, output in the input dtype.

Not implemented: return_attn_probs=True (raises NotImplementedError). `deterministic` only concerns the real
backward pass and is ignored.
"""

from __future__ import annotations

import torch

__version__ = "0.0.0+fake"


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),  # -1 means infinite context window
    softcap=0.0,  # 0.0 means deactivated
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise RuntimeError("FlashAttention only support fp16 and bf16 data type")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise RuntimeError("query and key/value must have the same dtype")
    if q.dim() != 4:
        raise RuntimeError(f"q must be (batch_size, seqlen_q, num_heads, head_size), got shape {tuple(q.shape)}")
    b, lq, h, d = q.shape
    lk, hk = k.shape[1], k.shape[2]
    if d > 256:
        raise RuntimeError("FlashAttention forward only supports head dimension at most 256")
    if h % hk:
        raise RuntimeError("Number of heads in key/value must divide number of heads in query")
    for name, t in (("k", k), ("v", v)):
        if tuple(t.shape) != (b, lk, hk, d):
            raise RuntimeError(f"{name} must have shape {(b, lk, hk, d)} (batch_size, seqlen_k, num_heads_k, head_size), got {tuple(t.shape)}")
    if softcap > 0.0 and dropout_p > 0.0:
        raise RuntimeError("Softcapping does not support dropout for now")
    if return_attn_probs:
        raise NotImplementedError("the fake flash_attn_func does not return attention probabilities")

    scale = d**-0.5 if softmax_scale is None else softmax_scale
    left, right = window_size
    if causal:
        right = 0
    group = h // hk
    qf = q.float().transpose(1, 2)  # [b, h, lq, d]
    kf = k.float().transpose(1, 2).repeat_interleave(group, dim=1)
    vf = v.float().transpose(1, 2).repeat_interleave(group, dim=1)
    scores = (qf @ kf.transpose(-1, -2)) * scale
    if softcap > 0.0:
        scores = softcap * torch.tanh(scores / softcap)

    i = torch.arange(lq, device=q.device)[:, None] + (lk - lq)  # query i's position among the keys
    j = torch.arange(lk, device=q.device)[None, :]
    if alibi_slopes is not None:
        slopes = alibi_slopes.float().to(q.device)  # (nheads,) or (batch_size, nheads), fp32
        slopes = slopes.reshape(1, h, 1, 1) if slopes.dim() == 1 else slopes.reshape(b, h, 1, 1)
        scores = scores - slopes * (i - j).abs().float()
    visible = torch.ones(lq, lk, dtype=torch.bool, device=q.device)
    if left >= 0:
        visible &= j >= i - left
    if right >= 0:
        visible &= j <= i + right
    scores = scores.masked_fill(~visible, float("-inf"))

    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    p = (scores - row_max).exp()
    total = p.sum(dim=-1, keepdim=True)
    p = torch.where(total > 0, p / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(p))
    if dropout_p > 0.0:
        keep = torch.rand(p.shape, device=p.device) >= dropout_p
        p = p * keep / (1.0 - dropout_p)
    out = p.to(q.dtype).float() @ vf
    return out.to(q.dtype).transpose(1, 2)
