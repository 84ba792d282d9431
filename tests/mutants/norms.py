"""Broken normalization implementations, one plausible bug each."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmspec.reference import norms as reference_norms

from .gradients import detached_argument, drifting_backward, zero_backward


def _dims(normalized_shape) -> tuple[int, ...]:
    n = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    return tuple(range(-n, 0))


def _rms(input, normalized_shape, weight=None, eps=None, *, eps_outside=False, sqrt=True, unbiased=False, upcast=True,
         default_eps=None, offset=0.0):
    if eps is None:
        eps = default_eps if default_eps is not None else torch.finfo(
            torch.float32 if input.dtype != torch.float64 else torch.float64).eps
    x = input.float() if upcast and input.dtype in (torch.float16, torch.bfloat16) else input
    dims = _dims(normalized_shape)
    n = x[(0,) * (x.dim() - len(dims))].numel() if x.numel() else 1
    ms = x.pow(2).sum(dim=dims, keepdim=True) / (n - 1 if unbiased and n > 1 else n)
    if eps_outside:
        y = x / (ms.sqrt() + eps)
    elif sqrt:
        y = x * torch.rsqrt(ms + eps)
    else:
        y = x / (ms + eps)
    if weight is not None:
        y = y * (weight.to(y.dtype) + offset) if offset else y * weight
    return y.to(input.dtype)


def rms_eps_outside_sqrt(input, normalized_shape, weight=None, eps=None):
    """x / (RMS(x) + eps): the classic misplacement of eps."""
    return _rms(input, normalized_shape, weight, eps, eps_outside=True)


def rms_missing_sqrt(input, normalized_shape, weight=None, eps=None):
    """Divides by the mean square instead of its root."""
    return _rms(input, normalized_shape, weight, eps, sqrt=False)


def rms_unbiased_mean(input, normalized_shape, weight=None, eps=None):
    """Divides the sum of squares by n - 1."""
    return _rms(input, normalized_shape, weight, eps, unbiased=True)


def rms_eps_default_1e6(input, normalized_shape, weight=None, eps=None):
    """Hugging Face's default eps where torch's convention is asked for."""
    return _rms(input, normalized_shape, weight, eps, default_eps=1e-6)


def rms_gemma_one_plus_weight(input, normalized_shape, weight=None, eps=None):
    """Gemma's RMSNorm (transformers GemmaRMSNorm): x_hat * (1 + weight) in float32, where torch scales by weight.
    Correct under --option weight_offset=1 (tests/test_hints.py)."""
    return _rms(input, normalized_shape, weight, eps, offset=1.0)


def rms_squares_in_half(input, normalized_shape, weight=None, eps=None):
    """No float32 upcast: float16 squares of |x| > 256 overflow to inf and the output collapses to 0."""
    return _rms(input, normalized_shape, weight, eps, upcast=False)


def ln_unbiased_variance(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = _dims(normalized_shape)
    x = input.float() if input.dtype != torch.float64 else input
    y = (x - x.mean(dims, keepdim=True)) / torch.sqrt(x.var(dims, keepdim=True, unbiased=True).nan_to_num(0.0) + eps)
    y = y * weight if weight is not None else y
    return (y + bias if bias is not None else y).to(input.dtype)


def ln_no_mean_subtraction(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """RMSNorm passed off as LayerNorm."""
    shape = list(normalized_shape) if not isinstance(normalized_shape, int) else [normalized_shape]
    y = F.rms_norm(input, shape, weight, eps)
    return y + bias if bias is not None else y


def ln_affine_before_normalization(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    x = input * weight if weight is not None else input
    x = x + bias if bias is not None else x
    return F.layer_norm(x, normalized_shape, eps=eps)


def ln_over_sequence(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Statistics over the last two dims (tokens and features) when given one normalized dim: padding leaks in."""
    shape = list(normalized_shape) if not isinstance(normalized_shape, int) else [normalized_shape]
    if input.dim() > len(shape):
        shape = [input.shape[-len(shape) - 1]] + shape
    y = F.layer_norm(input, shape, eps=eps)
    y = y * weight if weight is not None else y
    return y + bias if bias is not None else y


def bn_unbiased_normalization(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                              eps=1e-5):
    """Normalizes training batches with the unbiased variance (the one that goes into running_var)."""
    if not training:
        return F.batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    dims = [0] + list(range(2, input.dim()))
    view = [1, -1] + [1] * (input.dim() - 2)
    x = input.float() if input.dtype != torch.float64 else input
    y = (x - x.mean(dims, keepdim=True)) / torch.sqrt(x.var(dims, keepdim=True, unbiased=True) + eps)
    y = y * weight.reshape(view) if weight is not None else y
    return (y + bias.reshape(view) if bias is not None else y).to(input.dtype)


def bn_per_position(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Training statistics per sample and position over the channels: a LayerNorm, not a BatchNorm."""
    if not training:
        return F.batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    view = [1, -1] + [1] * (input.dim() - 2)
    x = input.float() if input.dtype != torch.float64 else input
    y = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + eps)
    y = y * weight.reshape(view) if weight is not None else y
    return (y + bias.reshape(view) if bias is not None else y).to(input.dtype)


def bn_batch_statistics_in_eval(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                                eps=1e-5):
    """Ignores `training`: always normalizes with the batch's statistics."""
    return F.batch_norm(input, None, None, weight, bias, True, momentum, eps)


def residual_always_post(x, sublayer, norm, order="pre"):
    return norm(x + sublayer(x))


def residual_always_pre(x, sublayer, norm, order="pre"):
    return x + sublayer(norm(x))


def _qk(query, key, q_weight, k_weight, positions, eps=1e-6, *, rope_first=False, norm_k=True, across_heads=False):
    from lmspec.reference.positions import rope

    def norm(x, w):
        if across_heads:  # statistics over every head of a token
            ms = x.float().pow(2).mean(dim=(1, 3), keepdim=True)
            return (x.float() * torch.rsqrt(ms + eps) * w.float()).to(x.dtype)
        return F.rms_norm(x.float(), [x.shape[-1]], w.float(), eps).to(x.dtype)

    if rope_first:
        return norm(rope(query, positions), q_weight), norm(rope(key, positions), k_weight)
    q = norm(query, q_weight)
    k = norm(key, k_weight) if norm_k else key
    return rope(q, positions), rope(k, positions)


def qk_rope_before_norm(query, key, q_weight, k_weight, positions, eps=1e-6):
    return _qk(query, key, q_weight, k_weight, positions, eps, rope_first=True)


def qk_key_not_normalized(query, key, q_weight, k_weight, positions, eps=1e-6):
    return _qk(query, key, q_weight, k_weight, positions, eps, norm_k=False)


def qk_statistics_across_heads(query, key, q_weight, k_weight, positions, eps=1e-6):
    """Per-head weights but OLMo-2-style statistics over all heads."""
    return _qk(query, key, q_weight, k_weight, positions, eps, across_heads=True)


# --- kernels written in column blocks: exact within one block, wrong past it -------------------------------------

BLOCK = 1024  # columns per block of the blocked kernels below (Triton's MAX_FUSED_SIZE-style cap on one program's row)


def _blocks(x: torch.Tensor, block: int) -> list[torch.Tensor]:
    return list(torch.split(x, block, dim=-1))


def _rms_2d(input, normalized_shape, weight, eps, mean_square):
    """RMSNorm over the flattened normalized dims in float32 (float64 kept), with `mean_square(x)` [rows, 1]."""
    if eps is None:
        eps = torch.finfo(torch.float64 if input.dtype == torch.float64 else torch.float32).eps
    n = len(_dims(normalized_shape))
    x = input.reshape(*input.shape[: input.dim() - n], -1)
    x = x.float() if input.dtype in (torch.float16, torch.bfloat16) else x
    y = x * torch.rsqrt(mean_square(x) + eps)
    y = y.reshape(input.shape)
    return (y * weight if weight is not None else y).to(input.dtype)


def rms_first_block_only(input, normalized_shape, weight=None, eps=None):
    """Sums the squares of the first BLOCK columns only (one program, no loop over column blocks), divided by n:
    exact for rows of up to 1024 elements, too small a mean square past them (hidden 4096 scales by ~2)."""
    return _rms_2d(input, normalized_shape, weight, eps,
                   lambda x: x[..., :BLOCK].pow(2).sum(-1, keepdim=True) / x.shape[-1])


def rms_drops_partial_block(input, normalized_shape, weight=None, eps=None):
    """Loops over the full 256-column blocks only when the row spans several (a single block is masked correctly):
    the squares of the last n % 256 columns are never summed. Exact for n <= 256 and every multiple of 256 (all
    real hidden sizes), wrong at 257, 1025, 2049 (tile-ai/tilelang-ascend#890: RMSNorm wrong at N=513, the tail
    block not handled)."""
    def mean_square(x):
        n = x.shape[-1]
        full = n if n <= 256 else n // 256 * 256
        return x[..., :full].pow(2).sum(-1, keepdim=True) / n

    return _rms_2d(input, normalized_shape, weight, eps, mean_square)


def rms_block_float_output(input, normalized_shape, weight=None, eps=None):
    """Writes each row in block floating point (one exponent shared by the row, as shared-exponent / MX-style
    output casts do) with the dtype's own mantissa width: every element is rounded at the row's largest magnitude.
    Its error is at most ~eps x max|y|, inside the norm-wise bound, but elements far below the row's maximum lose
    their low bits or flush to zero: only a bound per element sees it."""
    y = F.rms_norm(input, list(normalized_shape) if not isinstance(normalized_shape, int) else [normalized_shape],
                   weight, eps)
    dims = _dims(normalized_shape)
    y64 = y.double()
    top = y64.abs().amax(dim=dims, keepdim=True).clamp_min(torch.finfo(input.dtype).tiny)
    step = torch.exp2(torch.floor(torch.log2(top))) * torch.finfo(input.dtype).eps  # one ulp at the row's maximum
    return (torch.round(y64 / step) * step).to(input.dtype)


def ln_blocks_without_welford_merge(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Per-block mean and variance (about each block's own mean) combined as the count-weighted average of the block
    variances: Chan's merge without its delta^2 n_a n_b / n term (the spread of the block means). Exact within one
    256-column block, too small a variance past it (tenstorrent/tt-metal#35291: distributed LayerNorm's Welford
    merge wrong at hidden 2432)."""
    n = len(_dims(normalized_shape))
    x = input.reshape(*input.shape[: input.dim() - n], -1)
    x = x.float() if input.dtype in (torch.float16, torch.bfloat16) else x
    blocks = _blocks(x, 256)
    mean = sum(b.sum(-1, keepdim=True) for b in blocks) / x.shape[-1]
    m2 = sum((b - b.mean(-1, keepdim=True)).pow(2).sum(-1, keepdim=True) for b in blocks)
    y = ((x - mean) * torch.rsqrt(m2 / x.shape[-1] + eps)).reshape(input.shape)
    y = y * weight if weight is not None else y
    return (y + bias if bias is not None else y).to(input.dtype)


# --- broken backward passes (issue 15): each forward is torch's, bit for bit -----------------------------------


class _RmsNormDroppedTerm(torch.autograd.Function):
    """RMSNorm whose backward drops the term through the mean square: dx = r w g only, where the chain rule through
    r = 1 / sqrt(mean(x^2) + eps) adds - r^3 x mean(w g x). `overwrite`: also writes dx into x's buffer (a fused
    kernel reusing its input's memory for the gradient), with the correct dx."""

    @staticmethod
    def forward(ctx, x, shape, w, eps, overwrite):
        ctx.save_for_backward(x, w)
        ctx.shape, ctx.eps, ctx.overwrite = shape, eps, overwrite
        return F.rms_norm(x, shape, w, eps)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        dims = _dims(ctx.shape)
        opmath = torch.float64 if x.dtype == torch.float64 else torch.float32
        eps = torch.finfo(opmath).eps if ctx.eps is None else ctx.eps
        x32, g32 = x.to(opmath), g.to(opmath)
        r = torch.rsqrt(x32.pow(2).mean(dims, keepdim=True) + eps)
        wg = g32 * w.to(opmath) if w is not None else g32
        dx = wg * r
        if ctx.overwrite:  # the right gradient, but stored in the input
            dx = dx - r.pow(3) * x32 * (wg * x32).mean(dims, keepdim=True)
        batch = tuple(range(x.dim() - len(dims)))
        dw = (g32 * x32 * r).sum(batch) if w is not None and batch else (g32 * x32 * r if w is not None else None)
        dx = dx.to(x.dtype)
        if ctx.overwrite:
            x.copy_(dx)
        return dx, None, None if dw is None else dw.to(w.dtype), None, None


def rms_backward_without_mean_square_term(input, normalized_shape, weight=None, eps=None):
    return _RmsNormDroppedTerm.apply(input, list(_shape(normalized_shape)), weight, eps, False)


def rms_backward_writes_into_input(input, normalized_shape, weight=None, eps=None):
    return _RmsNormDroppedTerm.apply(input, list(_shape(normalized_shape)), weight, eps, True)


def _shape(normalized_shape) -> tuple[int, ...]:
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


rms_zero_backward = zero_backward(F.rms_norm)
rms_drifting_backward = drifting_backward(F.rms_norm)
rms_no_weight_gradient = detached_argument(F.rms_norm, 2)
ln_zero_backward = zero_backward(F.layer_norm)
ln_drifting_backward = drifting_backward(F.layer_norm)
ln_no_bias_gradient = detached_argument(F.layer_norm, 3)
bn_zero_backward = zero_backward(F.batch_norm)
bn_drifting_backward = drifting_backward(F.batch_norm)
bn_no_weight_gradient = detached_argument(F.batch_norm, 3)
residual_zero_backward = zero_backward(reference_norms.residual_block)
residual_drifting_backward = drifting_backward(reference_norms.residual_block)
residual_detached_input = detached_argument(reference_norms.residual_block, 0)
qk_zero_backward = zero_backward(reference_norms.qk_norm)
_drifting_identity = drifting_backward(lambda t: t)


def qk_drifting_backward(query, key, q_weight, k_weight, positions, eps=1e-6):
    """The query's gradient drifts (doubles every second pull-back); drifting_backward over both outputs would
    share one counter between them and double one output's gradient in every pull-back alike."""
    q, k = reference_norms.qk_norm(query, key, q_weight, k_weight, positions, eps)
    return _drifting_identity(q), k
qk_no_key_weight_gradient = detached_argument(reference_norms.qk_norm, 3)


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("rms_norm", "rms_eps_outside_sqrt", {"rms_norm.eps.inside_sqrt"}),
    ("rms_norm", "rms_missing_sqrt",
     {"rms_norm.precision.large_inputs", "rms_norm.reference.matches", "rms_norm.scale.invariance"}),
    ("rms_norm", "rms_unbiased_mean", {"rms_norm.equals_layer_norm_on_zero_mean", "rms_norm.scale.unit_rms"}),
    ("rms_norm", "rms_eps_default_1e6", {"rms_norm.eps.default"}),
    ("rms_norm", "rms_gemma_one_plus_weight",
     {"rms_norm.equals_layer_norm_on_zero_mean", "rms_norm.precision.large_inputs", "rms_norm.reference.matches",
      "rms_norm.scale.unit_rms"}),
    ("layer_norm", "ln_unbiased_variance", {"layer_norm.statistics.zero_mean_unit_variance"}),
    ("layer_norm", "ln_no_mean_subtraction", {"layer_norm.shift_invariance"}),
    ("layer_norm", "ln_affine_before_normalization",
     {"layer_norm.affine.after_normalization", "layer_norm.reference.matches"}),
    ("layer_norm", "ln_over_sequence", {"layer_norm.per_sample_independence"}),
    ("batch_norm", "bn_unbiased_normalization", {"batch_norm.reference.matches"}),
    ("batch_norm", "bn_per_position",
     {"batch_norm.training.batch_statistics", "batch_norm.training.padding_changes_outputs"}),
    ("batch_norm", "bn_batch_statistics_in_eval", {"batch_norm.eval.running_statistics"}),
    ("residual_block", "residual_always_post",
     {"residual_block.pre.identity_when_sublayer_zero", "residual_block.reference.matches"}),
    ("residual_block", "residual_always_pre", {"residual_block.post.output_normalized"}),
    ("qk_norm", "qk_rope_before_norm", {"qk_norm.order.norm_before_rope", "qk_norm.reference.matches"}),
    ("qk_norm", "qk_key_not_normalized", {"qk_norm.bounded_logits"}),
    ("qk_norm", "qk_statistics_across_heads", {"qk_norm.scope.statistics"}),
    ("rms_norm", "rms_squares_in_half", {"rms_norm.precision.large_inputs"}, {}, ("float16",)),  # fine in float32
    # exact within one block of columns, wrong past it: caught at kernel scale, conform at --scale small
    ("rms_norm", "rms_first_block_only", {"rms_norm.reference.matches", "rms_norm.precision.large_inputs"}),
    ("rms_norm", "rms_drops_partial_block", {"rms_norm.reference.matches"}),
    ("layer_norm", "ln_blocks_without_welford_merge", {"layer_norm.reference.matches"}),
    # within the norm-wise bound (error <= eps max|y|): caught only because rms_norm's bound is per element
    ("rms_norm", "rms_block_float_output", {"rms_norm.reference.matches"}),
    # broken backward passes (issue 15): the finite-difference check runs in float64 only
    ("rms_norm", "rms_backward_without_mean_square_term", {"rms_norm.backward.matches_reference"}),
    ("rms_norm", "rms_backward_without_mean_square_term", {"rms_norm.backward.finite_differences"}, {},
     ("float64",)),
    ("rms_norm", "rms_backward_writes_into_input", {"rms_norm.backward.matches_reference"}),
    ("rms_norm", "rms_zero_backward", {"rms_norm.backward.matches_reference"}),
    ("rms_norm", "rms_zero_backward", {"rms_norm.backward.finite_differences"}, {}, ("float64",)),
    ("rms_norm", "rms_drifting_backward", {"rms_norm.backward.repeatable"}),
    ("rms_norm", "rms_no_weight_gradient", {"rms_norm.backward.complete", "rms_norm.backward.matches_reference"}),
    ("layer_norm", "ln_zero_backward", {"layer_norm.backward.matches_reference"}),
    ("layer_norm", "ln_zero_backward", {"layer_norm.backward.finite_differences"}, {}, ("float64",)),
    ("layer_norm", "ln_drifting_backward", {"layer_norm.backward.repeatable"}),
    ("layer_norm", "ln_no_bias_gradient", {"layer_norm.backward.complete"}),
    ("batch_norm", "bn_zero_backward", {"batch_norm.backward.matches_reference"}),
    ("batch_norm", "bn_zero_backward", {"batch_norm.backward.finite_differences"}, {}, ("float64",)),
    ("batch_norm", "bn_drifting_backward", {"batch_norm.backward.repeatable"}),
    ("batch_norm", "bn_no_weight_gradient", {"batch_norm.backward.complete"}),
    ("residual_block", "residual_zero_backward", {"residual_block.backward.matches_reference"}),
    ("residual_block", "residual_zero_backward", {"residual_block.backward.finite_differences"}, {}, ("float64",)),
    ("residual_block", "residual_drifting_backward", {"residual_block.backward.repeatable"}),
    ("residual_block", "residual_detached_input", {"residual_block.backward.complete"}),
    ("qk_norm", "qk_zero_backward", {"qk_norm.backward.matches_reference"}),
    ("qk_norm", "qk_zero_backward", {"qk_norm.backward.finite_differences"}, {}, ("float64",)),
    ("qk_norm", "qk_drifting_backward", {"qk_norm.backward.repeatable"}),
    ("qk_norm", "qk_no_key_weight_gradient", {"qk_norm.backward.complete"}),
]
