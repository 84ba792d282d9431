"""Broken softmax implementations."""

import torch

from .gradients import detached_argument, drifting_backward, zero_backward


def no_max_subtraction(input, dim):
    """exp overflows for logits around 1e4 in float32 and float16."""
    e = input.exp()
    return e / e.sum(dim=dim, keepdim=True)


def wrong_axis(input, dim):
    """Normalizes over the first axis whatever `dim` says."""
    return torch.softmax(input, dim=0)


def log_softmax_instead(input, dim):
    return torch.log_softmax(input, dim=dim)


def temperature_multiplies(logits, temperature):
    """Multiplies by the temperature instead of dividing."""
    return torch.softmax(logits * temperature, dim=-1)


def temperature_ignored(logits, temperature):
    return torch.softmax(logits, dim=-1)


def sum_normalized(input, dim):
    """Divides by the plain sum instead of exponentiating: not shift invariant, negative outputs."""
    return input / input.sum(dim=dim, keepdim=True)


def softmax_flushes_tiny(input, dim):
    """Probabilities below 2^-24 (6e-8) flushed to 0, as an exp evaluated in float16 inside a float32 kernel flushes
    them: within the norm-wise bound (8 eps of the largest probability) in float32 and bfloat16, not element by
    element."""
    p = torch.softmax(input, dim)
    return torch.where(p < 2.0**-24, torch.zeros_like(p), p)


#: columns one block of the tiled kernels below holds.
BLOCK = 1024


def _blocks(x, dim):
    """The row (along dim, moved last, in float32 or float64) split into BLOCK-column tiles."""
    x = x.movedim(dim, -1)
    x = x.double() if x.dtype == torch.float64 else x.float()
    return x, list(x.split(BLOCK, dim=-1))


def softmax_online_no_rescale(input, dim):
    """Online softmax (one pass over the tiles for max and sum) that forgets to rescale the running sum when a later
    tile raises the running max: d += sum(exp(x - m_new)) instead of d = d exp(m_old - m_new) + ... Exact within one
    tile. The correct update is Milakov & Gimelshein 2018, 'Online normalizer calculation for softmax', alg. 3."""
    x, tiles = _blocks(input, dim)
    m = torch.full_like(x[..., :1], -torch.inf)
    d = torch.zeros_like(m)
    for tile in tiles:
        m = torch.maximum(m, tile.amax(-1, keepdim=True))
        d = d + (tile - m).exp().sum(-1, keepdim=True)  # bug: d was summed against the old max
    return ((x - m).exp() / d).to(input.dtype).movedim(-1, dim)


def softmax_drops_last_partial_tile(input, dim):
    """Multi-tile path loops over the full tiles only (range(0, n - BLOCK + 1, BLOCK)): the last partial tile is left
    out of the max and the sum, though its outputs are written. Exact for rows of <= 1024 columns (the single-tile
    path) and multiples of 1024."""
    x, tiles = _blocks(input, dim)
    if len(tiles) > 1 and tiles[-1].shape[-1] < BLOCK:
        tiles = tiles[:-1]
    m = torch.cat(tiles, -1).amax(-1, keepdim=True)
    d = torch.cat(tiles, -1).sub(m).exp().sum(-1, keepdim=True)
    return ((x - m).exp() / d).to(input.dtype).movedim(-1, dim)


def softmax_int16_columns(input, dim):
    """Column offsets in int16: columns from 32768 on wrap to negative offsets and read the row from its end (Python
    indexing stands in for the out-of-bounds read). Exact for rows of up to 32768 columns (Llama-2's 32000 vocabulary
    included); wrong for GPT-2's, Llama-3's and Qwen2's."""
    x = input.movedim(dim, -1)
    n = x.shape[-1]
    columns = torch.arange(n, device=x.device).to(torch.int16).long() % n
    return torch.softmax(x[..., columns], dim=-1).movedim(-1, dim)


def temperature_online_rescale_unscaled(logits, temperature):
    """Online softmax of logits / T that tracks the running max of the raw logits and rescales the running sum by
    exp(m_old - m_new) without the 1/T: exact within one 1024-column tile and at T = 1, wrong past it."""
    x, tiles = _blocks(logits, -1)
    m = torch.full_like(x[..., :1], -torch.inf)
    d = torch.zeros_like(m)
    for tile in tiles:
        m_new = torch.maximum(m, tile.amax(-1, keepdim=True))
        d = d * (m - m_new).exp() + ((tile - m_new) / temperature).exp().sum(-1, keepdim=True)  # bug: no / T
        m = m_new
    return (((x - m) / temperature).exp() / d).to(logits.dtype)


# --- broken backward passes (issue 15) -------------------------------------------------------------------


class _DiagonalJacobian(torch.autograd.Function):
    """torch's forward; the backward keeps only the diagonal of J = diag(p) - p p^T: dx = p g, the -p <p, g> term
    dropped (a kernel that forgets the row reduction of the backward)."""

    @staticmethod
    def forward(ctx, input, dim):
        p = torch.softmax(input, dim)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        return p * grad, None


def softmax_diagonal_jacobian(input, dim):
    return _DiagonalJacobian.apply(input, dim)


class _TemperatureGradWithoutT(torch.autograd.Function):
    """softmax(logits / T) forward; the backward is softmax's, the chain rule's 1 / T forgotten. Exact at T = 1."""

    @staticmethod
    def forward(ctx, logits, temperature):
        p = torch.softmax(logits / temperature, dim=-1)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        return p * (grad - (p * grad).sum(-1, keepdim=True)), None


def temperature_backward_without_inverse_t(logits, temperature):
    return _TemperatureGradWithoutT.apply(logits, temperature)


def _temperature_softmax(logits, temperature):
    return torch.softmax(logits / temperature, dim=-1)


softmax_zero_backward = zero_backward(torch.softmax)
softmax_drifting_backward = drifting_backward(torch.softmax)
softmax_detached_input = detached_argument(torch.softmax, 0)
temperature_zero_backward = zero_backward(_temperature_softmax)
temperature_drifting_backward = drifting_backward(_temperature_softmax)
temperature_detached_logits = detached_argument(_temperature_softmax, 0)


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("softmax", "no_max_subtraction", {"softmax.stability.no_overflow"}),
    ("softmax", "wrong_axis", {"softmax.normalization.sums_to_one", "softmax.reference.matches"}),
    ("softmax", "log_softmax_instead", {"softmax.normalization.sums_to_one", "softmax.reference.matches"}),
    ("softmax", "sum_normalized", {"softmax.normalization.sums_to_one", "softmax.shift_invariance"}),
    ("temperature_softmax", "temperature_multiplies",
     {"temperature_softmax.entropy.monotone",
      "temperature_softmax.limit.zero_is_argmax",
      "temperature_softmax.reference.matches"}),
    ("temperature_softmax", "temperature_ignored",
     {"temperature_softmax.limit.infinity_is_uniform", "temperature_softmax.limit.zero_is_argmax"}),
    # the elementwise bound sees small probabilities (the norm-wise one let them go to 0 in float32 and bfloat16)
    ("softmax", "softmax_flushes_tiny", {"softmax.reference.matches"}, {}, ("float32", "bfloat16")),
    # exact within one tile of 1024 columns (or 32768 for int16), wrong past it (pass at --scale small)
    ("softmax", "softmax_online_no_rescale", {"softmax.reference.matches", "softmax.normalization.sums_to_one"}),
    ("softmax", "softmax_drops_last_partial_tile",
     {"softmax.reference.matches", "softmax.normalization.sums_to_one"}),
    ("softmax", "softmax_int16_columns", {"softmax.reference.matches"}),
    ("temperature_softmax", "temperature_online_rescale_unscaled", {"temperature_softmax.reference.matches"}),
    # backward: the generic breakages, and softmax's Jacobian taken as diagonal
    ("softmax", "softmax_zero_backward", {"softmax.backward.matches_reference"}),
    ("softmax", "softmax_zero_backward", {"softmax.backward.finite_differences"}, {}, ("float64",)),
    ("softmax", "softmax_drifting_backward", {"softmax.backward.repeatable"}),
    ("softmax", "softmax_detached_input", {"softmax.backward.complete"}),
    ("softmax", "softmax_diagonal_jacobian", {"softmax.backward.matches_reference"}),
    ("softmax", "softmax_diagonal_jacobian", {"softmax.backward.finite_differences"}, {}, ("float64",)),
    ("temperature_softmax", "temperature_zero_backward", {"temperature_softmax.backward.matches_reference"}),
    ("temperature_softmax", "temperature_zero_backward", {"temperature_softmax.backward.finite_differences"}, {},
     ("float64",)),
    ("temperature_softmax", "temperature_drifting_backward", {"temperature_softmax.backward.repeatable"}),
    ("temperature_softmax", "temperature_detached_logits", {"temperature_softmax.backward.complete"}),
    # exact at T = 1: caught where the strategy draws T != 1
    ("temperature_softmax", "temperature_backward_without_inverse_t",
     {"temperature_softmax.backward.matches_reference"}),
    ("temperature_softmax", "temperature_backward_without_inverse_t",
     {"temperature_softmax.backward.finite_differences"}, {}, ("float64",)),
]
