"""Rotary position embeddings (the part the attention family needs; the positions family extends this).

Source: Su et al. 2021, RoFormer, eq. 34, in the rotate-half convention of Hugging Face Llama / GPT-NeoX
(`rotate_half`, `apply_rotary_pos_emb` in transformers/models/llama/modeling_llama.py).
"""

from __future__ import annotations

import torch

from ._typing import Float, Int, Tensor, typechecked


@typechecked
def rope_cos_sin(
    positions: Int[Tensor, " seq"], dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float64
) -> tuple[Float[Tensor, "seq dim"], Float[Tensor, "seq dim"]]:
    """cos and sin tables: frequency i = theta^(-2i/dim), duplicated over the two halves (rotate-half layout)."""
    if dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {dim}")
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


@typechecked
def rope(x: Float[Tensor, "*batch seq dim"], positions: Int[Tensor, " seq"], theta: float = 10000.0) -> Float[Tensor, "*batch seq dim"]:
    """x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1] for x = [x1, x2]."""
    cos, sin = rope_cos_sin(positions, x.shape[-1], theta, dtype=x.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
