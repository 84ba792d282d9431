"""Positional encodings: rotary (two conventions, Llama 3 frequency scaling), sinusoidal, learned.

Read top to bottom: RoPE frequencies, the two ways of pairing dims, the three RoPE components, then the
sinusoidal table, the learned table and GPT-2's context cropping. Sources:
- RoPE: Su et al. 2021, RoFormer, eq. 34: pair i of the head dimension is rotated by m * theta^(-2i/D) at
  position m. Two layouts of the pairs:
  - rotate-half (Hugging Face Llama / GPT-NeoX, `rotate_half` and `apply_rotary_pos_emb` in
    transformers/models/llama/modeling_llama.py): pair i is dims (i, i + D/2);
  - interleaved (GPT-J, `rotate_every_two` in transformers/models/gptj/modeling_gptj.py; Meta's original
    llama/model.py `apply_rotary_emb` via complex numbers over adjacent pairs): pair i is dims (2i, 2i + 1).
  They are equal up to a fixed permutation of the head dimension (`interleaved_to_half`).
- Llama 3 scaling: Meta's llama-models `apply_scaling` (Llama 3.1), transformers
  modeling_rope_utils._compute_llama3_parameters: frequencies whose wavelength 2 pi / f is below
  original_max / high_freq_factor are kept, above original_max / low_freq_factor divided by `factor`, and
  interpolated in between with s = (original_max / wavelength - low) / (high - low).
- Sinusoidal: Vaswani et al. 2017, sec. 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)),
  PE(pos, 2i + 1) = cos(pos / 10000^(2i/d)).
- Learned: a lookup table of `num_positions` rows (GPT-2 `wpe`, torch.nn.functional.embedding); GPT-2
  generation crops the context to its last `context_size` tokens (`idx[:, -context_size:]`, Radford et al.
  2019; Raschka, "Build a Large Language Model (From Scratch)", listing 4.8) so positions stay inside it.

Precision: frequencies and angles m * f are computed in float64 and the cos / sin tables rounded to the input's
dtype. Libraries compute them in float32 with the expression of `rope_inv_freq` (HF, GPT-J and Meta alike);
`angle_dtype=torch.float32` (`angle_dtype_for`) reproduces that, and the spec uses it as the error witness
of a typical implementation in float32 and below, whose angle error grows with the position.
"""

from __future__ import annotations

import math

import torch

from ._typing import Float, Int, Tensor, typechecked

# --- frequencies ------------------------------------------------------------------------------------------


def rope_inv_freq(dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """theta^(-2i/dim) for i = 0 .. dim/2 - 1, computed in `dtype` with the expression Hugging Face, GPT-J and Meta's
    Llama all use: 1 / (theta ** (arange(0, dim, 2) / dim))."""
    if dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {dim}")
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype) / dim))


def llama3_inv_freq(
    dim: int,
    theta: float = 500000.0,
    factor: float = 8.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_max_position_embeddings: int = 8192,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Llama 3.1 scaled frequencies (Meta's `apply_scaling`), computed in `dtype`: keep high frequencies, divide low
    ones by `factor`, and interpolate linearly in original_max / wavelength between the two bands."""
    if high_freq_factor <= low_freq_factor:
        raise ValueError(f"high_freq_factor {high_freq_factor} must exceed low_freq_factor {low_freq_factor}")
    inv_freq = rope_inv_freq(dim, theta, dtype)
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_max_position_embeddings / low_freq_factor
    high_freq_wavelen = original_max_position_embeddings / high_freq_factor
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    medium = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return torch.where(wavelen < high_freq_wavelen, inv_freq,
                       torch.where(wavelen > low_freq_wavelen, inv_freq / factor, medium))


def angle_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """float64 angles for float64 tensors, float32 otherwise: what libraries do (HF, GPT-J, Meta)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# --- pairing dims and rotating them -----------------------------------------------------------------------


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) for the two halves of the last dim: HF Llama's rotate_half."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rotate_pairs(x: Tensor) -> Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): GPT-J's rotate_every_two."""
    return torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)


@typechecked
def apply_rotary(
    x: Float[Tensor, "*batch seq dim"],
    positions: Int[Tensor, " seq"],
    inv_freq: Float[Tensor, " half"],
    interleaved: bool = False,
    angle_dtype: torch.dtype = torch.float64,
) -> Float[Tensor, "*batch seq dim"]:
    """Rotate pair i of every position m by m * inv_freq[i]; pairs (i, i + D/2) or, if interleaved, (2i, 2i + 1).

    Angles, cos and sin are computed in `angle_dtype`, rounded to x's dtype, and applied in x's dtype."""
    if x.shape[-1] != 2 * inv_freq.shape[0]:
        raise ValueError(f"head dim {x.shape[-1]} != 2 x {inv_freq.shape[0]} frequencies")
    angles = positions.to(angle_dtype)[:, None] * inv_freq.to(angle_dtype)[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)  # one per pair, then laid out over the pair's dims
    if interleaved:
        cos, sin, rotated = cos.repeat_interleave(2, dim=-1), sin.repeat_interleave(2, dim=-1), rotate_pairs(x)
    else:
        cos, sin, rotated = torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1), rotate_half(x)
    return x * cos + rotated * sin


# --- RoPE: rotate-half, interleaved, Llama 3 scaling ------------------------------------------------------


@typechecked
def rope_cos_sin(
    positions: Int[Tensor, " seq"], dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float64
) -> tuple[Float[Tensor, "seq dim"], Float[Tensor, "seq dim"]]:
    """cos and sin tables: frequency i = theta^(-2i/dim), duplicated over the two halves (rotate-half layout, HF
    LlamaRotaryEmbedding), computed in float64 and rounded to `dtype`."""
    if dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {dim}")
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    return torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)


@typechecked
def rope(
    x: Float[Tensor, "*batch seq dim"], positions: Int[Tensor, " seq"], theta: float = 10000.0
) -> Float[Tensor, "*batch seq dim"]:
    """x * cos + rotate_half(x) * sin (Su et al. eq. 34 in HF Llama's apply_rotary_pos_emb layout)."""
    cos, sin = rope_cos_sin(positions, x.shape[-1], theta, dtype=x.dtype)
    return x * cos + rotate_half(x) * sin


@typechecked
def rope_interleaved(
    x: Float[Tensor, "*batch seq dim"], positions: Int[Tensor, " seq"], theta: float = 10000.0
) -> Float[Tensor, "*batch seq dim"]:
    """RoPE on adjacent pairs (2i, 2i + 1) with frequency theta^(-2i/D): GPT-J and Meta's original Llama."""
    return apply_rotary(x, positions, rope_inv_freq(x.shape[-1], theta), interleaved=True)


@typechecked
def rope_llama3(
    x: Float[Tensor, "*batch seq dim"],
    positions: Int[Tensor, " seq"],
    theta: float = 500000.0,
    factor: float = 8.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_max_position_embeddings: int = 8192,
) -> Float[Tensor, "*batch seq dim"]:
    """Rotate-half RoPE with Llama 3.1 scaled frequencies (HF rope_type 'llama3'; attention_factor is 1)."""
    inv_freq = llama3_inv_freq(x.shape[-1], theta, factor, low_freq_factor, high_freq_factor,
                               original_max_position_embeddings)
    return apply_rotary(x, positions, inv_freq)


def interleaved_to_half(dim: int) -> Tensor:
    """The permutation P with rope(x[..., P]) = rope_interleaved(x)[..., P]: P = (0, 2, 4, ..., 1, 3, 5, ...),
    which puts each adjacent pair (2i, 2i + 1) at (i, i + D/2)."""
    return torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])


# --- sinusoidal, learned, cropping ------------------------------------------------------------------------


@typechecked
def sinusoidal_positions(
    num_positions: int, dim: int, dtype: torch.dtype = torch.float32, angle_dtype: torch.dtype = torch.float64
) -> Float[Tensor, "num_positions dim"]:
    """Vaswani et al. sec. 3.5: sin at even dims, cos at odd dims, frequency 10000^(-2i/d), computed in
    `angle_dtype` and rounded to `dtype`."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even dim, got {dim}")
    work = angle_dtype
    inv_freq = rope_inv_freq(dim, 10000.0, work)
    angles = torch.arange(num_positions, dtype=work)[:, None] * inv_freq[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2).to(dtype)


@typechecked
def embedding(input: Int[Tensor, "*batch"], weight: Float[Tensor, "num_positions dim"]) -> Float[Tensor, "*batch dim"]:
    """Learned positional embedding lookup (GPT-2 wpe, torch.nn.functional.embedding): row input[...] of the table;
    an index outside [0, num_positions) raises IndexError, never wraps or clamps."""
    n = weight.shape[0]
    if input.numel() and (int(input.min()) < 0 or int(input.max()) >= n):
        raise IndexError(f"position indices must lie in [0, {n}); got min {int(input.min())}, max {int(input.max())}")
    return weight[input]


@typechecked
def crop_context(idx: Int[Tensor, "*batch seq"], context_size: int) -> Int[Tensor, "*batch kept"]:
    """The last `context_size` tokens (all of them if fewer), as GPT-2 generation does before each step
    (idx[:, -context_size:])."""
    if context_size < 1:
        raise ValueError(f"context_size must be >= 1, got {context_size}")
    return idx[..., max(0, idx.shape[-1] - context_size) :]
