"""Broken attention implementations: a plain SDPA with exactly one plausible bug each.

`sdpa` is a straightforward implementation whose knobs each reproduce one bug seen in the wild; the mutants
below turn one knob. (Its default settings are correct and conform: tests/test_mutants.py checks that too.)
"""

from __future__ import annotations

import math
import time

import torch


def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, *,
         default_scale=lambda e: 1 / math.sqrt(e), diagonal=0, alignment="top_left", softmax_dim=-1, subtract_max=True,
         interleave_groups=True, invert_bool_mask=False, ignore_additive_mask=False, dropout_rescale=True,
         nan_for_empty_rows=False, drop_last_key=False, eval_dropout=0.0):
    if drop_last_key and key.shape[-2] > 1:  # an off-by-one slice of the key axis
        key, value = key[..., :-1, :], value[..., :-1, :]
        if attn_mask is not None:
            attn_mask = attn_mask[..., :-1]
    hq, hkv = query.shape[-3], key.shape[-3]
    if hq != hkv:
        n = hq // hkv
        if interleave_groups:
            key, value = key.repeat_interleave(n, dim=-3), value.repeat_interleave(n, dim=-3)
        else:  # query head h uses KV head h % hkv
            key, value = key.repeat(1, n, 1, 1), value.repeat(1, n, 1, 1)
    s = default_scale(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * s
    lq, lk = scores.shape[-2], scores.shape[-1]
    allowed = torch.ones(lq, lk, dtype=torch.bool, device=query.device)
    if is_causal:
        offset = 0 if alignment == "top_left" else lk - lq
        allowed = torch.ones(lq, lk, dtype=torch.bool, device=query.device).tril(offset + diagonal)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            allowed = allowed & (~attn_mask if invert_bool_mask else attn_mask)
        elif not ignore_additive_mask:
            scores = scores + attn_mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    if subtract_max:
        scores = scores - scores.amax(dim=softmax_dim, keepdim=True).nan_to_num(0.0, 0.0, 0.0)
    weights = scores.exp()
    weights = weights / weights.sum(dim=softmax_dim, keepdim=True)
    if not nan_for_empty_rows:
        weights = weights.nan_to_num(0.0)
    dropout_p = max(dropout_p, eval_dropout)
    if dropout_p > 0:
        keep = torch.rand_like(weights, dtype=torch.float32) >= dropout_p
        weights = weights * keep / ((1 - dropout_p) if dropout_rescale else 1.0)
    return weights @ value


def _mutant(**knobs):
    def fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        return sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, **knobs)

    return fn


correct = _mutant()
missing_scale = _mutant(default_scale=lambda e: 1.0)
scale_one_over_e = _mutant(default_scale=lambda e: 1.0 / e)
causal_diagonal_excluded = _mutant(diagonal=-1)
causal_sees_next_token = _mutant(diagonal=1)
softmax_over_queries = _mutant(softmax_dim=-2)
no_max_subtraction = _mutant(subtract_max=False)
gqa_groups_modulo = _mutant(interleave_groups=False)
causal_bottom_right = _mutant(alignment="bottom_right")
bool_mask_inverted = _mutant(invert_bool_mask=True)
additive_mask_ignored = _mutant(ignore_additive_mask=True)
dropout_not_rescaled = _mutant(dropout_rescale=False)
nan_for_fully_masked_rows = _mutant(nan_for_empty_rows=True)
drops_last_key = _mutant(drop_last_key=True)
dropout_in_eval = _mutant(eval_dropout=0.1)


def causal_top_left(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """A torch-style (top-left) target: correct for torch, wrong when bottom_right is asked for."""
    return sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)


# --- cheats a harness must fail --------------------------------------------------------------------------


def zeros(query, key, value, *args, **kwargs):
    return torch.zeros(*query.shape[:-1], value.shape[-1], dtype=query.dtype, device=query.device)


def mean_of_values(query, key, value, *args, **kwargs):
    """A constant output per head: the mean value row, ignoring the queries."""
    hq = query.shape[-3]
    v = value.repeat_interleave(hq // value.shape[-3], dim=-3)
    return v.mean(dim=-2, keepdim=True).expand(*query.shape[:-1], value.shape[-1]).contiguous()


def copy_of_query(query, key, value, *args, **kwargs):
    return query.clone()


def nan_output(query, key, value, *args, **kwargs):
    out = correct(query, key, value, *args, **kwargs)
    out[..., 0, 0] = float("nan")
    return out


def mutates_inputs(query, key, value, *args, **kwargs):
    out = correct(query, key, value, *args, **kwargs)
    key.zero_()
    return out


def always_float32(query, key, value, *args, **kwargs):
    return correct(query.float(), key.float(), value.float(), *args, **kwargs)


def raises(query, key, value, *args, **kwargs):
    raise RuntimeError("kernel launch failed")


def hangs(query, key, value, *args, **kwargs):
    time.sleep(3600)


def wrong_signature(query, key):
    return query


# (component, mutant in this module, the invariants that must each catch it[, options[, dtypes]]);
# collected by tests/test_mutants.py.
CAUGHT = [
    ("attention", "missing_scale", {"attention.reference.matches", "attention.scale.default_inv_sqrt_e"}),
    ("attention", "scale_one_over_e", {"attention.reference.matches", "attention.scale.default_inv_sqrt_e"}),
    ("attention", "causal_diagonal_excluded", {"attention.causal.visible_keys", "attention.convex_combination"}),
    ("attention", "causal_sees_next_token", {"attention.causal.future_independence", "attention.causal.visible_keys"}),
    ("attention", "softmax_over_queries", {"attention.convex_combination", "attention.reference.matches"}),
    ("attention", "no_max_subtraction", {"attention.gqa.matches_reference", "attention.mask.additive"}, {},
     ("float16",)),  # exp overflows at 11.1 in float16, at 88.7 in float32
    ("attention", "gqa_groups_modulo", {"attention.gqa.equals_repeated_kv", "attention.gqa.matches_reference"}),
    ("attention", "causal_bottom_right", {"attention.causal.future_independence", "attention.causal.visible_keys"}),
    ("attention", "causal_top_left",
     {"attention.causal.visible_keys", "attention.reference.matches"}, {"causal_alignment": "bottom_right"}),
    ("attention", "bool_mask_inverted", {"attention.mask.boolean", "attention.mask.boolean_equals_additive"}),
    ("attention", "additive_mask_ignored", {"attention.mask.additive", "attention.mask.boolean_equals_additive"}),
    ("attention", "nan_for_fully_masked_rows", {"attention.mask.fully_masked_rows"}),
    ("attention", "drops_last_key", {"attention.permutation_invariance", "attention.reference.matches"}),
    ("attention", "dropout_not_rescaled", {"attention.dropout.unbiased"}),
    ("attention", "dropout_in_eval", {"attention.dropout.zero_is_identity", "attention.reference.matches"}),
]
