"""A model's rotary position embedding, in the rotate-half convention (GPT-NeoX, Llama), to check with lmspec.

    cd examples && lmspec check rope --target mymodel:apply_rope
"""

import torch


def apply_rope(x, positions, theta=10000.0):
    """x: [B, H, L, D], positions: [L] int64. Pairs (i, i + D/2) turn by position * theta^(-2i/D)."""
    d = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)  # [D/2]
    angles = positions.to(torch.float64)[:, None] * inv_freq  # [L, D/2]
    cos, sin = angles.cos().repeat(1, 2).to(x.dtype), angles.sin().repeat(1, 2).to(x.dtype)  # [L, D]
    rotated = torch.cat([-x[..., d // 2 :], x[..., : d // 2]], dim=-1)
    return x * cos + rotated * sin
