"""Broken positional encodings, one plausible bug each."""

from __future__ import annotations

import math

import torch

from lmspec.reference import positions as ref

from .gradients import detached_argument, drifting_backward, zero_backward


def _inv_freq(dim, theta, dtype=torch.float32):
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype) / dim))


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def _rotate_pairs(x):
    return torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)


def _rope(x, positions, inv_freq, *, pairs="half", table="half", angle_dtype=torch.float32):
    angles = positions.to(angle_dtype)[:, None] * inv_freq.to(angle_dtype).to(positions.device)[None, :]
    angles = torch.cat([angles, angles], -1) if table == "half" else angles.repeat_interleave(2, -1)
    rotated = _rotate_half(x) if pairs == "half" else _rotate_pairs(x)
    return x * angles.cos().to(x.dtype) + rotated * angles.sin().to(x.dtype)


def rope_interleaved_pairs(x, positions, theta=10000.0):
    """GPT-J's adjacent pairs where rotate-half is asked for."""
    return _rope(x, positions, _inv_freq(x.shape[-1], theta), pairs="interleaved", table="interleaved")


def rope_partial_rotary(x, positions, theta=10000.0):
    """GPT-NeoX's partial rotary (partial_rotary_factor=0.25): rotate-half RoPE on the first quarter of each head's
    dims, with frequencies over those k dims, the rest passed through; at least one pair (D = 2 is fully rotated)."""
    k = max(2, int(x.shape[-1] * 0.25) // 2 * 2)
    return torch.cat([_rope(x[..., :k], positions, _inv_freq(k, theta)), x[..., k:]], dim=-1)


def rope_mixed_conventions(x, positions, theta=10000.0):
    """rotate_half with a cos/sin table laid out for adjacent pairs (repeat_interleave): a classic port bug."""
    return _rope(x, positions, _inv_freq(x.shape[-1], theta), pairs="half", table="interleaved")


def rope_ignores_positions(x, positions, theta=10000.0):
    """Rotates token l by l, whatever `positions` says (breaks KV-cache decoding)."""
    return _rope(x, torch.arange(x.shape[-2], device=x.device), _inv_freq(x.shape[-1], theta))


def rope_theta_ignored(x, positions, theta=10000.0):
    return _rope(x, positions, _inv_freq(x.shape[-1], 10000.0))


def rope_angles_in_input_dtype(x, positions, theta=10000.0):
    """Frequencies and angles in the input's dtype: in bfloat16, position 4093 is off by several radians."""
    return _rope(x, positions, _inv_freq(x.shape[-1], theta, x.dtype), angle_dtype=x.dtype)


def rope_interleaved_is_rotate_half(x, positions, theta=10000.0):
    return _rope(x, positions, _inv_freq(x.shape[-1], theta))


def rope_interleaved_mixed(x, positions, theta=10000.0):
    """Adjacent pairs rotated with a rotate-half (cat) cos/sin table."""
    return _rope(x, positions, _inv_freq(x.shape[-1], theta), pairs="interleaved", table="half")


def rope_interleaved_ignores_positions(x, positions, theta=10000.0):
    return _rope(x, torch.arange(x.shape[-2], device=x.device), _inv_freq(x.shape[-1], theta), pairs="interleaved",
                 table="interleaved")


def rope_interleaved_theta_ignored(x, positions, theta=10000.0):
    return _rope(x, positions, _inv_freq(x.shape[-1], 10000.0), pairs="interleaved", table="interleaved")


def _llama3(dim, theta, factor, low, high, original, *, smooth_reversed=False, scale_all=False):
    inv_freq = _inv_freq(dim, theta, torch.float64)
    if scale_all:  # plain linear position interpolation
        return inv_freq / factor
    wavelen = 2 * math.pi / inv_freq
    smooth = (original / wavelen - low) / (high - low)
    if smooth_reversed:
        smooth = 1 - smooth
    medium = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return torch.where(wavelen < original / high, inv_freq,
                       torch.where(wavelen > original / low, inv_freq / factor, medium))


def llama3_scales_all_frequencies(x, positions, theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                  original_max_position_embeddings=8192):
    f = _llama3(x.shape[-1], theta, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings,
                scale_all=True)
    return _rope(x, positions, f)


def llama3_smooth_reversed(x, positions, theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                           original_max_position_embeddings=8192):
    f = _llama3(x.shape[-1], theta, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings,
                smooth_reversed=True)
    return _rope(x, positions, f)


def llama3_theta_fixed(x, positions, theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                       original_max_position_embeddings=8192):
    """Uses Llama 3's theta 500000 whatever the caller passes."""
    f = _llama3(x.shape[-1], 500000.0, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)
    return _rope(x, positions, f)


# --- kernel-scale RoPE bugs: exact within one tile (or below one edge) and wrong past it ------------------------


def rope_positions_float16(x, positions, theta=10000.0):
    """Position ids held in float16 (e.g. `arange(L).type_as(inv_freq)` after model.half(), EleutherAI/gpt-neox#1016
    for bfloat16), angles then in float32: integers are exact up to 2048, rounded to even above, inf past 65504."""
    return _rope(x, positions.to(torch.float16), _inv_freq(x.shape[-1], theta))


def rope_positions_int16(x, positions, theta=10000.0):
    """Position ids in a 16-bit signed index type: exact up to 32767, wrapped to negative positions above."""
    return _rope(x, positions.to(torch.int16), _inv_freq(x.shape[-1], theta))


def _cos_sin_cache(dim, theta, rows=4096):
    """cos and sin of every position below `rows` (vLLM's cos_sin_cache, sized by max_position_embeddings)."""
    angles = torch.arange(rows, dtype=torch.float32)[:, None] * _inv_freq(dim, theta)[None, :]
    angles = torch.cat([angles, angles], -1)
    return angles.cos(), angles.sin()


def _rope_from_cache(x, rows, theta):
    cos, sin = _cos_sin_cache(x.shape[-1], theta)
    cos, sin = cos.to(x.device)[rows].to(x.dtype), sin.to(x.device)[rows].to(x.dtype)
    return x * cos + _rotate_half(x) * sin


def rope_cache_wraps(x, positions, theta=10000.0):
    """A cos/sin cache of 4096 rows (Llama 2's max_position_embeddings) read at position % 4096: a cache shorter than
    the positions met (vllm-project/vllm-ascend#1266: "shorter sin/cos cache than model's max positional embedding")."""
    return _rope_from_cache(x, positions % 4096, theta)


def rope_cache_clamps(x, positions, theta=10000.0):
    """A cos/sin cache of 4096 rows read at min(position, 4095): a bounds check that clamps instead of growing the
    cache (microsoft/onnxruntime#28205: RotaryEmbedding with position_ids out of the cache's bounds)."""
    return _rope_from_cache(x, positions.clamp(max=4095), theta)


def rope_positions_tile_offset(x, positions, theta=10000.0):
    """Tokens in tiles of 32 that each load the first tile's positions: the positions pointer is not advanced by the
    program's tile offset (pos_ptr + arange(BLOCK) instead of pos_ptr + pid * BLOCK + arange(BLOCK))."""
    within_tile = torch.arange(x.shape[-2], device=positions.device) % 32
    return _rope(x, positions[within_tile], _inv_freq(x.shape[-1], theta))


def rope_last_row_tile_dropped(x, positions, theta=10000.0):
    """The (batch, head, token) rows flattened, as vLLM and FlashInfer launch them: one program for up to 64 rows,
    else a loop over rows // 64 full tiles (floor where cdiv belongs), so the last rows % 64 rows keep their input."""
    out = _rope(x, positions, _inv_freq(x.shape[-1], theta))
    rows = out.reshape(-1, x.shape[-1])
    if rows.shape[0] <= 64:
        return out
    done = rows.shape[0] // 64 * 64
    return torch.cat([rows[:done], x.reshape(-1, x.shape[-1])[done:]]).reshape(x.shape)


def rope_freq_tile_offset(x, positions, theta=10000.0):
    """The head dim in tiles of 64 dims (32 pairs), each reading the first tile's frequencies: pair i turns at
    theta^(-2 (i mod 32) / D), exact for heads of up to 64 dims, wrong for 80, 96, 128, ..."""
    inv_freq = _inv_freq(x.shape[-1], theta)
    return _rope(x, positions, inv_freq[torch.arange(inv_freq.shape[0]) % 32])


def rope_heads_without_stride_loop(x, positions, theta=10000.0):
    """vLLM's rotary kernel (csrc/pos_encoding_kernels.cu) runs one block of min(H * D/2, 512) threads per token, each
    thread looping over the (head, pair) items with stride blockDim.x; without that loop, items past the 512th (heads
    past 512 / (D/2)) are never rotated. Exact while H * D/2 <= 512."""
    out = _rope(x, positions, _inv_freq(x.shape[-1], theta))
    h, d = x.shape[-3], x.shape[-1]
    item = torch.arange(h)[:, None] * (d // 2) + torch.arange(d)[None, :] % (d // 2)  # (head, pair) of each dim
    return torch.where((item < 512).to(x.device)[:, None, :], out, x)


def rope_inv_freq_bfloat16(x, positions, theta=10000.0):
    """The inverse frequencies rounded to bfloat16 (a float32 buffer cast by model.to(torch.bfloat16)) before the
    float32 phase position * inv_freq: sgl-project/sglang-jax#1472 (off by 0.83 at position 4095),
    NVIDIA/Megatron-LM#744. A precision bug, not a tile one: wrong at every position past a few."""
    return _rope(x, positions, _inv_freq(x.shape[-1], theta).to(torch.bfloat16))


def _angles(num_positions, dim):
    return torch.arange(num_positions, dtype=torch.float32)[:, None] * _inv_freq(dim, 10000.0)[None, :]


def sinusoidal_halves(num_positions, dim):
    """[sin | cos] in halves (GPT-J's and tensor2tensor's layout) where Vaswani's interleaved pairs are asked for."""
    a = _angles(num_positions, dim)
    return torch.cat([a.sin(), a.cos()], dim=-1)


def sinusoidal_sin_only(num_positions, dim):
    a = _angles(num_positions, dim).repeat_interleave(2, dim=-1)
    return a.sin()


def sinusoidal_exponent_i_over_d(num_positions, dim):
    """10000^(i/d) over all dims instead of 10000^(2i/d) per pair."""
    exponents = torch.arange(0, dim // 2, dtype=torch.float32) / dim
    a = torch.arange(num_positions, dtype=torch.float32)[:, None] / (10000.0 ** exponents)
    return torch.stack([a.sin(), a.cos()], dim=-1).flatten(-2)


def sinusoidal_positions_float16(num_positions, dim):
    """Positions as float16 (arange in half precision), angles in float32: exact up to row 2048, rounded above."""
    positions = torch.arange(num_positions, dtype=torch.float16).to(torch.float32)
    a = positions[:, None] * _inv_freq(dim, 10000.0)[None, :]
    return torch.stack([a.sin(), a.cos()], dim=-1).flatten(-2)


def embedding_wraps(input, weight):
    """Python-style modulo indexing: position P silently reuses row 0."""
    return weight[input % weight.shape[0]]


def embedding_clamps(input, weight):
    return weight[input.clamp(0, weight.shape[0] - 1)]


def embedding_off_by_one(input, weight):
    """1-based positions into a 0-based table."""
    return weight[(input + 1).clamp(max=weight.shape[0] - 1)]


def embedding_index_int16(input, weight):
    """Bounds checked in int64, then the lookup with indices narrowed to int16: rows past 32767 are read at a negative
    offset (here, from the table's end)."""
    if input.numel() and (int(input.min()) < 0 or int(input.max()) >= weight.shape[0]):
        raise IndexError("index out of range in self")
    return weight[input.to(torch.int16).to(torch.int64)]


def crop_keeps_first(idx, context_size):
    return idx[..., :context_size]


def crop_without_max(idx, context_size):
    """idx[:, T - context_size:]: a negative start for short contexts wraps and drops tokens."""
    return idx[..., idx.shape[-1] - context_size :]


def crop_fixed_1024(idx, context_size):
    """Keeps at most 1024 tokens (GPT-2's n_positions hard-coded in a buffer), whatever context_size says."""
    return idx[..., max(0, idx.shape[-1] - min(context_size, 1024)) :]


# --- backward passes (issue 15): forward bit-for-bit the reference's, a broken gradient ----------------------------


rope_zero_backward = zero_backward(ref.rope)
rope_drifting_backward = drifting_backward(ref.rope)
rope_detached = detached_argument(ref.rope, 0)
rope_interleaved_zero_backward = zero_backward(ref.rope_interleaved)
rope_interleaved_drifting_backward = drifting_backward(ref.rope_interleaved)
rope_interleaved_detached = detached_argument(ref.rope_interleaved, 0)
llama3_zero_backward = zero_backward(ref.rope_llama3)
llama3_drifting_backward = drifting_backward(ref.rope_llama3)
llama3_detached = detached_argument(ref.rope_llama3, 0)
embedding_zero_backward = zero_backward(ref.embedding)
embedding_drifting_backward = drifting_backward(ref.embedding)
embedding_detached_table = detached_argument(ref.embedding, 1)


class _RotateForwardAgain(torch.autograd.Function):
    """A hand-written RoPE backward that applies the forward rotation R(m theta) to the gradient instead of its
    transpose R(-m theta) (a sign slip on sin in a fused kernel's backward)."""

    @staticmethod
    def forward(ctx, x, positions, rotate):
        ctx.positions, ctx.rotate = positions, rotate
        return rotate(x, positions)

    @staticmethod
    def backward(ctx, grad):
        return ctx.rotate(grad, ctx.positions), None, None


def rope_backward_plus_theta(x, positions, theta=10000.0):
    return _RotateForwardAgain.apply(x, positions, lambda v, m: ref.rope(v, m, theta))


def rope_interleaved_backward_plus_theta(x, positions, theta=10000.0):
    return _RotateForwardAgain.apply(x, positions, lambda v, m: ref.rope_interleaved(v, m, theta))


def llama3_backward_plus_theta(x, positions, *scaling):
    return _RotateForwardAgain.apply(x, positions, lambda v, m: ref.rope_llama3(v, m, *scaling))


class _EmbeddingWithDecay(torch.autograd.Function):
    """A fused embedding backward that folds weight decay into the gradient (grad += 0.01 * weight): every row, looked
    up or not, gets a gradient."""

    @staticmethod
    def forward(ctx, input, weight):
        ctx.save_for_backward(input, weight)
        return ref.embedding(input, weight)  # out-of-range positions raise, as the reference's do

    @staticmethod
    def backward(ctx, grad):
        input, weight = ctx.saved_tensors
        dense = torch.zeros_like(weight).index_add_(0, input.reshape(-1), grad.reshape(-1, weight.shape[1]))
        return None, dense + 0.01 * weight


def embedding_backward_weight_decay(input, weight):
    return _EmbeddingWithDecay.apply(input, weight)


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("rope", "rope_interleaved_pairs", {"rope.convention.pairs"}),
    ("rope", "rope_mixed_conventions", {"rope.norm_preserving", "rope.reference.matches", "rope.relative.dot_product"}),
    ("rope", "rope_ignores_positions", {"rope.position_zero_identity"}),
    ("rope", "rope_theta_ignored", {"rope.theta.frequencies"}),
    ("rope", "rope_partial_rotary", {"rope.convention.pairs", "rope.reference.matches", "rope.theta.frequencies"}),
    ("rope_interleaved", "rope_interleaved_is_rotate_half",
     {"rope_interleaved.convention.pairs", "rope_interleaved.equals_permuted_rotate_half"}),
    ("rope_interleaved", "rope_interleaved_mixed",
     {"rope_interleaved.norm_preserving", "rope_interleaved.reference.matches",
      "rope_interleaved.relative.dot_product"}),
    ("rope_interleaved", "rope_interleaved_ignores_positions", {"rope_interleaved.position_zero_identity"}),
    ("rope_interleaved", "rope_interleaved_theta_ignored", {"rope_interleaved.theta.frequencies"}),
    ("rope_llama3", "llama3_scales_all_frequencies", {"rope_llama3.frequencies.bands"}),
    ("rope_llama3", "llama3_smooth_reversed", {"rope_llama3.reference.matches"}),
    ("rope_llama3", "llama3_theta_fixed", {"rope_llama3.factor_one_is_rope"}),
    ("sinusoidal_positions", "sinusoidal_halves", {"sinusoidal_positions.position_zero"}),
    ("sinusoidal_positions", "sinusoidal_sin_only", {"sinusoidal_positions.relative.rotation"}),
    ("sinusoidal_positions", "sinusoidal_exponent_i_over_d", {"sinusoidal_positions.reference.matches"}),
    ("learned_positions", "embedding_wraps", {"learned_positions.out_of_range.raises"}),
    ("learned_positions", "embedding_clamps", {"learned_positions.out_of_range.raises"}),
    ("learned_positions", "embedding_off_by_one", {"learned_positions.lookup.exact"}),
    ("crop_context", "crop_keeps_first", {"crop_context.keeps_last_tokens"}),
    ("crop_context", "crop_without_max", {"crop_context.short_context_unchanged"}),
    ("rope", "rope_angles_in_input_dtype", {"rope.reference.matches"}, {}, ("bfloat16",)),  # fine in float32
    # kernel scale: each passes at --scale small (exact within one tile or below one edge) and fails past it
    ("rope", "rope_positions_float16", {"rope.reference.matches"}),
    ("rope", "rope_positions_int16", {"rope.reference.matches"}),
    ("rope", "rope_cache_wraps", {"rope.reference.matches"}),
    ("rope", "rope_cache_clamps", {"rope.reference.matches"}),
    ("rope", "rope_positions_tile_offset", {"rope.reference.matches"}),
    ("rope", "rope_last_row_tile_dropped", {"rope.reference.matches"}),
    ("rope", "rope_freq_tile_offset", {"rope.reference.matches", "rope.theta.frequencies"}),
    ("rope", "rope_heads_without_stride_loop", {"rope.reference.matches"}),
    ("rope", "rope_inv_freq_bfloat16", {"rope.reference.matches"}),  # a precision bug, caught at every scale
    ("sinusoidal_positions", "sinusoidal_positions_float16", {"sinusoidal_positions.reference.matches"}),
    ("learned_positions", "embedding_index_int16", {"learned_positions.lookup.exact"}),
    ("crop_context", "crop_fixed_1024", {"crop_context.keeps_last_tokens", "crop_context.short_context_unchanged"}),
    # backward passes (issue 15): finite differences run in float64 only
    ("rope", "rope_zero_backward", {"rope.backward.matches_reference"}),
    ("rope", "rope_zero_backward", {"rope.backward.finite_differences"}, {}, ("float64",)),
    ("rope", "rope_drifting_backward", {"rope.backward.repeatable"}),
    ("rope", "rope_detached", {"rope.backward.complete"}),
    ("rope", "rope_backward_plus_theta", {"rope.backward.matches_reference"}),
    ("rope", "rope_backward_plus_theta", {"rope.backward.finite_differences"}, {}, ("float64",)),
    ("rope_interleaved", "rope_interleaved_zero_backward", {"rope_interleaved.backward.matches_reference"}),
    ("rope_interleaved", "rope_interleaved_zero_backward", {"rope_interleaved.backward.finite_differences"}, {},
     ("float64",)),
    ("rope_interleaved", "rope_interleaved_drifting_backward", {"rope_interleaved.backward.repeatable"}),
    ("rope_interleaved", "rope_interleaved_detached", {"rope_interleaved.backward.complete"}),
    ("rope_interleaved", "rope_interleaved_backward_plus_theta", {"rope_interleaved.backward.matches_reference"}),
    ("rope_llama3", "llama3_zero_backward", {"rope_llama3.backward.matches_reference"}),
    ("rope_llama3", "llama3_zero_backward", {"rope_llama3.backward.finite_differences"}, {}, ("float64",)),
    ("rope_llama3", "llama3_drifting_backward", {"rope_llama3.backward.repeatable"}),
    ("rope_llama3", "llama3_detached", {"rope_llama3.backward.complete"}),
    ("rope_llama3", "llama3_backward_plus_theta", {"rope_llama3.backward.matches_reference"}),
    ("learned_positions", "embedding_zero_backward", {"learned_positions.backward.matches_reference"}),
    ("learned_positions", "embedding_zero_backward", {"learned_positions.backward.finite_differences"}, {},
     ("float64",)),
    ("learned_positions", "embedding_drifting_backward", {"learned_positions.backward.repeatable"}),
    ("learned_positions", "embedding_detached_table", {"learned_positions.backward.complete"}),
    ("learned_positions", "embedding_backward_weight_decay",
     {"learned_positions.backward.unused_rows_zero", "learned_positions.backward.matches_reference"}),
]
